"""Background refreshes: which (value type, context) pairs are due, and refreshing one.

The schedule is the data. Beat runs one task, the dispatcher (values.tasks), every
DYNCONFIG_DISPATCH_INTERVAL seconds. At each tick it reads every value type's *current*
`update_frequency` and the time its last round was queued (RefreshSchedule), so an operator's
change applies at the next tick, without a restart and without a second copy of the schedule.

A pair is due when it is one of its type's candidates (its TOP_CONTEXTS most read contexts
lately, plus the empty context), is neither queued nor backing off, is not served by an
override, and
  - its type's round is due (update_frequency passed since the last round), or
  - its last refresh failed and the backoff is over (a retry), or
  - its stored value expires soon: always when it would expire before the next tick could act,
    else with probability exp(-remaining / window), XFetch's rule, so that refreshes of values
    fetched together spread out instead of arriving at once.
Each due pair is queued as its own task (one slow source never holds up other keys), under a
lease (`queued_until`) taken in the same transaction, so the next tick does not queue it again.

A refresh (`value_refresh`) is a read that skips the caches: `get_value(..., use_cache=False)`.
The engine validates, stores a good value in L3, L2 and L1, and keeps the last known good one
when the sources fail or answer something invalid (it never caches invalid data). A refresh
that brought no value from a source tier has failed: the context backs off for
RETRY_BACKOFF_BASE × 2^(failures - 1), at most RETRY_BACKOFF_CAP. A refresh that changed the
value tells every process to drop its L1 (bump_data_version, after commit).
"""

from __future__ import annotations

import logging
import math
import random as random_module
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from core import metrics
from values import popularity
from core.answers import SOURCE_TIERS, Answer
from core.context import ContextError, canonical_context
from audit.history import bump_data_version
from values.events import value_refreshed_publish
from values.models import ContextReads, RefreshSchedule, ResolvedValue, ValueType
from values.registry import ValueTypeConfig, registry
from values.resolution import get_value, pick_override

logger = logging.getLogger(__name__)

# How many of a type's most read contexts are refreshed ahead of consumers (plus the empty
# context): the few that carry most reads; the long tail is fetched when someone reads it.
TOP_CONTEXTS = 20
# Only contexts read within this window compete for the top: yesterday's campaign that nobody
# reads any more must not keep costing source calls.
RECENT_READS_WINDOW = timedelta(days=7)
# The seed's retry delay after a failed refresh; it doubles with each further failure...
RETRY_BACKOFF_BASE = timedelta(minutes=5)
# ...up to this: a source down for a day is tried hourly, never in a tight loop.
RETRY_BACKOFF_CAP = timedelta(hours=1)
# A queued refresh holds its pair this long (the message expires with it): longer than a
# task's hard time limit (CELERY_TASK_TIME_LIMIT, 90 s) plus a wait in a busy queue. If the
# task is lost, the pair is queued again after it.
REFRESH_LEASE = timedelta(minutes=5)
# A value that expires within (dispatch interval + this) is refreshed now: the next tick may be
# too late. A refresh takes seconds; the rest is room for a queue that is behind.
REFRESH_AHEAD = timedelta(seconds=30)
# XFetch's beta: above 1 refreshes earlier, below 1 later; 1 is the paper's choice.
EARLY_REFRESH_BETA = 1.0
# How much of a failure's reason is kept on the row (the whole one goes to the log).
ERROR_TEXT_LIMIT = 2000
# How many queued pairs the dispatcher's log line names (it counts them all).
QUEUED_LOG_PAIRS = 10

REFRESHED = "refreshed"
UNCHANGED = "unchanged"
FAILED = "failed"

_NOTHING = object()  # no value stored yet for a pair (None could be a value)


@dataclass(frozen=True)
class RefreshOutcome:
    key: str
    context: dict[str, Any]
    status: str  # refreshed (a new value) | unchanged (the same value) | failed
    reason: str
    answer: Answer | None  # None when the key or the context was refused

    @property
    def tier(self) -> str:
        """Where the value was served from: primary/secondary/tertiary when fetched now, l3
        when the sources failed but the stored value is still fresh, or stale/fallback/override."""
        return self.answer.provenance.tier if self.answer else ""


@dataclass(frozen=True)
class DueRefresh:
    key: str
    context: dict[str, Any]
    row_id: int
    why: str  # round | retry | expiring


def retry_delay(failures: int) -> timedelta:
    """How long a context waits after its `failures`-th refresh failure in a row."""
    doublings = min(max(failures - 1, 0), 20)  # 2^20 × 5 min is far past the cap already
    return min(RETRY_BACKOFF_BASE * 2**doublings, RETRY_BACKOFF_CAP)


# Refreshing one pair ---------------------------------------------------------------------------


def value_refresh(*, key: str, context: Mapping[str, Any] | None = None) -> RefreshOutcome:
    """Fetch `key` for `context` from its sources now and store it; say what came of it.

    Never raises for a refused key or context (a failed outcome says why); database errors
    propagate to the caller (the task's lease expires and the pair is queued again).
    """
    value_type = registry.snapshot().value_type(key)
    if value_type is None:
        return RefreshOutcome(key, dict(context or {}), FAILED, f"unknown value type {key!r}", None)
    try:
        canonical, context_key = canonical_context(context, value_type.context_keys, value_type.key)
    except ContextError as error:
        return RefreshOutcome(value_type.key, dict(context or {}), FAILED, str(error), None)

    started = time.perf_counter()
    previous = _stored_value(value_type, context_key)
    answer = get_value(value_type.key, canonical, use_cache=False)
    origin = answer.provenance.origin
    notes = "; ".join(answer.provenance.errors)
    # Fetched now means made by a source tier and served as such (not a kept L3 value).
    is_fetched_now = origin in SOURCE_TIERS and answer.provenance.tier == origin
    if origin == "override":
        reason = "an override is active: sources not called"
        outcome = RefreshOutcome(value_type.key, canonical, UNCHANGED, reason, answer)
    elif is_fetched_now:
        is_changed = previous is _NOTHING or previous != answer.value
        reason = "first value" if previous is _NOTHING else "value changed" if is_changed else "same value"
        if notes:  # a source of the tier failed while another answered
            reason = f"{reason}; {notes}"
        outcome = RefreshOutcome(value_type.key, canonical, REFRESHED if is_changed else UNCHANGED, reason, answer)
    else:
        served = answer.provenance.tier
        reason = notes or f"no source gave a value ({served})"
        outcome = RefreshOutcome(value_type.key, canonical, FAILED, f"served {served}: {reason}", answer)

    _record_outcome(value_type, context_key, canonical, outcome)
    metrics.refresh_observed(value_type.key, time.perf_counter() - started, is_failed=outcome.status == FAILED)
    return outcome


def refresh_failure_record(*, key: str, context: Mapping[str, Any] | None, reason: str) -> None:
    """Record a refresh that could not finish (e.g. its time limit): the pair backs off."""
    value_type = registry.snapshot().value_type(key)
    if value_type is None:
        return
    try:
        canonical, context_key = canonical_context(context, value_type.context_keys, value_type.key)
    except ContextError:
        return
    _record_outcome(value_type, context_key, canonical, RefreshOutcome(value_type.key, canonical, FAILED, reason, None))
    metrics.refresh_failed(value_type.key)



def _stored_value(value_type: ValueTypeConfig, context_key: str) -> Any:
    if value_type.id is None:
        return _NOTHING
    row = ResolvedValue.objects.filter(value_type_id=value_type.id, context_key=context_key).values("value").first()
    return row["value"] if row else _NOTHING


def _record_outcome(value_type: ValueTypeConfig, context_key: str, context: dict, outcome: RefreshOutcome) -> None:
    """The pair's backoff and lease after a refresh; the L1 of every process dropped if it changed."""
    if value_type.id is None:
        return  # a built-in type the database does not hold: no state to keep
    now = timezone.now()
    with transaction.atomic():
        row, _ = ContextReads.objects.select_for_update().get_or_create(
            value_type_id=value_type.id, context_key=context_key, defaults={"context": context}
        )
        row.queued_until = None
        if outcome.status == FAILED:
            row.failures += 1
            row.next_refresh_at = now + retry_delay(row.failures)
            row.last_error = outcome.reason[:ERROR_TEXT_LIMIT]
            logger.warning(
                "refresh of %s [%s] failed (%d in a row), next try at %s: %s",
                value_type.key, context_key, row.failures, row.next_refresh_at.isoformat(), outcome.reason,
                extra={"value_type": value_type.key},
            )
        else:
            row.failures = 0
            row.next_refresh_at = None
            row.last_error = ""
            row.last_refreshed_at = now
        row.save(update_fields=["queued_until", "failures", "next_refresh_at", "last_error", "last_refreshed_at"])
        if outcome.status != FAILED:
            RefreshSchedule.objects.update_or_create(value_type_id=value_type.id, defaults={"last_refreshed_at": now})
        if outcome.status == REFRESHED:
            transaction.on_commit(bump_data_version)
            value_refreshed_publish(key=value_type.key, context=context)  # after the bump: its data_version


# What is due, and queuing it -------------------------------------------------------------------


def refreshes_due(
    now: datetime | None = None, *, random: Callable[[], float] = random_module.random
) -> list[tuple[str, dict]]:
    """The (key, context) pairs due now (see the module docstring); queues nothing."""
    return [(due.key, due.context) for due in _due(now or timezone.now(), random)[0]]


def refresh_dispatch(
    *,
    enqueue: Callable[[str, dict], None],
    now: datetime | None = None,
    random: Callable[[], float] = random_module.random,
) -> list[DueRefresh]:
    """Queue every due pair once: lease it and start its type's round in one transaction, then
    call `enqueue(key, context)` for each after the commit. Returns what was queued.

    Safe to run twice at once (two beats, one per host for failover): each type's schedule row
    is locked for the whole dispatch, decision included, and a dispatch leaves the types another
    holds to it; so a pair is never queued on a decision made before another dispatch's lease.
    """
    now = now or timezone.now()
    popularity.flush(now=now)  # this process's counts, before ranking
    type_ids = list(ValueType.objects.values_list("pk", flat=True))
    _ensure_schedules(type_ids)
    _ensure_empty_contexts(type_ids)
    with transaction.atomic():
        mine = list(
            RefreshSchedule.objects.select_for_update(skip_locked=True).values_list("value_type_id", flat=True)
        )
        due, round_type_ids = _due(now, random, only_type_ids=mine)
        claimed = set(
            ContextReads.objects.select_for_update(skip_locked=True)
            .filter(pk__in=[item.row_id for item in due])
            .filter(_is_free(now))
            .values_list("pk", flat=True)
        )
        ContextReads.objects.filter(pk__in=claimed).update(queued_until=now + REFRESH_LEASE)
        for value_type_id in round_type_ids:
            RefreshSchedule.objects.update_or_create(value_type_id=value_type_id, defaults={"last_dispatched_at": now})
        queued = [item for item in due if item.row_id in claimed]
        for item in queued:
            # Robust: a broker error on one message must not stop the others (their leases
            # expire and the next ticks queue them again).
            transaction.on_commit(lambda item=item: enqueue(item.key, item.context), robust=True)
    if queued:
        # Counted by why, with the first few pairs: at hundreds of types, a line naming every
        # pair would be hundreds of KB per tick.
        whys = Counter(item.why for item in queued)
        shown = ", ".join(f"{item.key}[{item.why}]" for item in queued[:QUEUED_LOG_PAIRS])
        more = f" and {len(queued) - QUEUED_LOG_PAIRS} more" if len(queued) > QUEUED_LOG_PAIRS else ""
        logger.info(
            "queued %d refreshes (%s): %s%s",
            len(queued), ", ".join(f"{why} {count}" for why, count in sorted(whys.items())), shown, more,
        )  # fmt: skip
    return queued


def _is_free(now: datetime) -> Q:
    """Neither queued (lease running) nor backing off."""
    return (Q(queued_until__isnull=True) | Q(queued_until__lte=now)) & (
        Q(next_refresh_at__isnull=True) | Q(next_refresh_at__lte=now)
    )


def _due(
    now: datetime, random: Callable[[], float], *, only_type_ids: list[int] | None = None
) -> tuple[list[DueRefresh], list[int]]:
    """(due pairs, ids of the types whose round is due), of every type or of `only_type_ids`."""
    snapshot = registry.snapshot()
    value_types = ValueType.objects.only("id", "key", "update_frequency")
    if only_type_ids is not None:
        value_types = value_types.filter(pk__in=only_type_ids)
    value_types = list(value_types)
    last_rounds = dict(RefreshSchedule.objects.values_list("value_type_id", "last_dispatched_at"))
    type_ids = [value_type.pk for value_type in value_types]
    _ensure_empty_contexts(type_ids)
    # Every type's candidates and their stored values in two queries, however many types.
    candidates_of = _candidates(type_ids, now)
    stored_of = _stored_expiries(candidates_of)
    window = timedelta(seconds=settings.DYNCONFIG_DISPATCH_INTERVAL) + REFRESH_AHEAD
    due: list[DueRefresh] = []
    round_type_ids: list[int] = []
    for value_type in value_types:
        config = snapshot.value_type(value_type.key)
        if config is None or config.id != value_type.pk:
            continue  # this process has not loaded the type yet: the next tick will
        last_round = last_rounds.get(value_type.pk)
        is_round_due = last_round is None or now >= last_round + value_type.update_frequency
        if is_round_due:
            round_type_ids.append(value_type.pk)
        candidates = candidates_of.get(value_type.pk, [])
        stored = stored_of.get(value_type.pk, {})
        for row in candidates:
            if not _is_free_row(row, now):
                continue
            try:
                context, _ = canonical_context(row.context, config.context_keys, config.key)
            except ContextError:
                continue  # read under older context keys; it ages out of the window
            if config.overrides and pick_override(config.overrides, context, now) is not None:
                continue  # consumers get the override; a refresh would not call sources
            why = _why_due(is_round_due, row, stored.get(row.context_key), config, now, window, random)
            if why:
                due.append(DueRefresh(config.key, context, row.pk, why))
    return due, round_type_ids


def _why_due(
    is_round_due: bool,
    row: ContextReads,
    stored: tuple[datetime, str] | None,
    config: ValueTypeConfig,
    now: datetime,
    window: timedelta,
    random: Callable[[], float],
) -> str:
    if is_round_due:
        return "round"
    if row.failures:
        return "retry"  # its backoff is over (checked by the caller)
    if stored is None:
        return ""  # never fetched: its round, or a consumer's read, fetches it
    expires_at, fingerprint = stored
    if fingerprint != config.fingerprint:
        return "expiring"  # resolved under an older configuration: every read misses it
    if expires_soon(expires_at, now, window, random):
        return "expiring"
    return ""


def expires_soon(expires_at: datetime, now: datetime, window: timedelta, random: Callable[[], float]) -> bool:
    """XFetch: always within `window` of expiry; before that with probability exp(-remaining / (window × beta))."""
    remaining = (expires_at - now).total_seconds()
    scale = window.total_seconds()
    if remaining <= scale:
        return True
    draw = random()
    if draw <= 0:
        return True
    return remaining <= -scale * EARLY_REFRESH_BETA * math.log(draw)


def _candidates(value_type_ids: list[int], now: datetime) -> dict[int, list[ContextReads]]:
    """Each type's empty context and its most read contexts lately (TOP_CONTEXTS, ranked per
    type in the one query), by type id, the empty context first."""
    popularity = Window(
        RowNumber(),
        partition_by=[F("value_type_id")],
        order_by=[F("reads").desc(), F("last_read_at").desc(), F("context_key").asc()],
    )
    popular = (
        ContextReads.objects.filter(value_type_id__in=value_type_ids, last_read_at__gte=now - RECENT_READS_WINDOW)
        .exclude(context_key="")
        .annotate(rank=popularity)
        .filter(rank__lte=TOP_CONTEXTS)
    )
    empty = ContextReads.objects.filter(value_type_id__in=value_type_ids, context_key="")
    candidates: dict[int, list[ContextReads]] = {}
    for row in [*empty, *sorted(popular, key=lambda row: row.rank)]:
        candidates.setdefault(row.value_type_id, []).append(row)
    return candidates


def _stored_expiries(candidates: dict[int, list[ContextReads]]) -> dict[int, dict[str, tuple[datetime, str]]]:
    """(expires_at, fingerprint) of the stored value of each candidate that has one, by type id
    and context key: one query (a semi-join on the candidates' rows) for every type's candidates."""
    candidate_ids = [row.pk for rows in candidates.values() for row in rows]
    is_candidate = ContextReads.objects.filter(
        pk__in=candidate_ids, value_type_id=OuterRef("value_type_id"), context_key=OuterRef("context_key")
    )
    stored: dict[int, dict[str, tuple[datetime, str]]] = {}
    rows = ResolvedValue.objects.filter(Exists(is_candidate)).values_list(
        "value_type_id", "context_key", "expires_at", "fingerprint"
    )
    for value_type_id, context_key, expires_at, fingerprint in rows:
        stored.setdefault(value_type_id, {})[context_key] = (expires_at, fingerprint)
    return stored


def _ensure_schedules(value_type_ids: list[int]) -> None:
    """Every type has its schedule row (the dispatch's lock), dispatched or not."""
    existing = set(RefreshSchedule.objects.values_list("value_type_id", flat=True))
    missing = [value_type_id for value_type_id in value_type_ids if value_type_id not in existing]
    if missing:
        RefreshSchedule.objects.bulk_create(
            [RefreshSchedule(value_type_id=value_type_id) for value_type_id in missing], ignore_conflicts=True
        )


def _ensure_empty_contexts(value_type_ids: list[int]) -> None:
    """Every type's empty context has its row (for its lease and backoff), read or not."""
    existing = set(ContextReads.objects.filter(context_key="").values_list("value_type_id", flat=True))
    missing = [value_type_id for value_type_id in value_type_ids if value_type_id not in existing]
    if missing:
        ContextReads.objects.bulk_create(
            [ContextReads(value_type_id=value_type_id, context_key="", context={}) for value_type_id in missing],
            ignore_conflicts=True,
        )


def _is_free_row(row: ContextReads, now: datetime) -> bool:
    return (row.queued_until is None or row.queued_until <= now) and (
        row.next_refresh_at is None or row.next_refresh_at <= now
    )
