"""Resolution: the one answer for a value type and a context. `get_value()` always answers, fast.

Precedence, first match wins:
  1. override   an operator's active override matching the context (most specific wins)
  2. l1         this process's memory            } an answer made before (fetched or degraded),
  3. l2         Redis, shared by every process   } under a key holding the type's configuration
  4. l3         the database's resolved values   } fingerprint and the context
  5. primary → secondary → tertiary: each tier's sources called concurrently, validated,
                blended by weight; the first tier with a valid blend wins. One deadline for the
                whole read, shared by every tier.
  6. stale      the last known good value, up to the type's maximum staleness
  7. widened    the nearest wider context's value (context keys dropped in the type's
                widening order, down to the empty context), if fresh or not too stale
  8. predicted  a forecast from this context's own history (core.prediction), valid by the
                type's rules, where the type allows it
  9. fallback   the operator-edited emergency fallback (or, with no database, the built-in)
Steps 6 to 9 make a degraded answer; its provenance says why (`reason`: budget_exceeded,
breaker_open, sources_down, no_sources, no_database) and whether a refresh is on its way.

Two kinds of read:
- A consumer's read (`use_cache=True`: HTTP, in-process, batch, planning) waits for sources at
  most its read budget (the type's `read_budget`, else DYNCONFIG_READ_BUDGET, 150 ms), with one
  urgent attempt per source: no retry, no wait for a rate-limit token, none for an open breaker.
  When the sources give nothing in time it answers from steps 6 to 9 at once and leaves a
  refresh of the pair running in the background (values.background), so a later read is fresh.
- A refresh (`use_cache=False`: background refreshes, refresh_values, an operator's refresh)
  skips the caches and gives the sources DYNCONFIG_REFRESH_BUDGET, with retries and rate-limit
  waits; if they fail, a value still fresh in L3 is kept.

Consistency: a fetched value is written to L3, L2 and L1; a degraded answer only to L2 and L1,
briefly, so that recovery shows soon. Concurrent cold reads of one key fetch once (one leader
per process, one per key across processes through a Redis lock); the others wait for the
leader's answer, a consumer no longer than its budget. Operators' changes reach every process
within a second (registry), and so does a background refresh that changed a value (each
process drops its L1 copies).

Expiry: an answer's `expires_at` is counted from when its value was obtained, and every cache
lifetime from `expires_at` (values.cache.store); no answer says `stale: false` past it.

The L1 fast path: a read whose (key, context) this process has read before under the current
snapshot, of a type with no override, is one snapshot check, one memo lookup, one L1 lookup and
one append to a log counted later, before each metrics flush and each flush of the read counts
(`_l1_hit`, `_count_l1_hits`). Everything else takes the chain above, and so does the read that
finds the read counts due to be written (values.popularity: a reading thread writes them). `aget_value` / `aget_many` are the same for async code: an L1 hit is answered on the
event loop, any other read runs `get_value` on a thread of ASYNC_READ_THREADS.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.utils import timezone

from core import metrics
from values import popularity
from core.answers import SOURCE_TIERS, Answer, Provenance
from values.background import refreshes
from values.cache import (
    WAIT_POLL_INTERVAL,
    cache_key,
    flights,
    keep_in_l1,
    l1,
    l2,
    l3_get,
    l3_get_fresh_many,
    l3_history,
    l3_set,
    store,
)
from core.context import canonical_context, wider_contexts
from values.fetching import BREAKER_OPEN, OUT_OF_TIME, fetch_tier
from core.prediction import forecast
from values.registry import OverrideConfig, Snapshot, ValueTypeConfig, registry
from core.validation import value_problems

logger = logging.getLogger(__name__)

# How long a degraded answer is cached: short, so a recovered source shows soon.
FALLBACK_TTL = timedelta(minutes=5)
# A fetch lock outlives its fetch's deadline by this much (a leader storing its answer).
LOCK_MARGIN_SECONDS = 0.5
# A wider context's value is a guess for a narrower one: it is trusted half as much.
WIDENED_CONFIDENCE_FACTOR = 0.5
# A forecast uses at most this many past values of the context, from at most this far back.
PREDICTION_POINTS = 30
PREDICTION_WINDOW = timedelta(days=30)
# How many distinct (key, raw context) pairs `_read_keys` remembers.
READ_KEYS_MEMO_SIZE = 10_000
# Threads per process for async reads that miss L1: each waits at most its read budget for
# sources (most wait on Redis or the database for a millisecond), so a few cover many readers.
ASYNC_READ_THREADS = 8

# Why an answer is degraded (core.answers.REASONS).
BUDGET_EXCEEDED, SOURCES_DOWN, NO_SOURCES, NO_DATABASE = "budget_exceeded", "sources_down", "no_sources", "no_database"
# Degraded for these reasons, a consumer's read leaves a refresh running: it may still succeed.
# (An open breaker refuses the refresh too; the dispatcher's refreshes try again later.)
REFRESHABLE_REASONS = frozenset({BUDGET_EXCEEDED, SOURCES_DOWN})


class UnknownValueType(LookupError):
    """No value type has this key or alias."""


@dataclass(frozen=True, slots=True)
class _Read:
    """What a read's (key, raw context) comes to under one snapshot, remembered (`_read_keys`)."""

    snapshot: Snapshot
    value_type: ValueTypeConfig
    context: dict  # canonical, shared by every answer made from it: read-only
    context_key: str
    key_in_cache: str
    is_overridable: bool  # the type has overrides: each read checks them (they start and end)


# (key as asked, raw context items) -> _Read; bounded by READ_KEYS_MEMO_SIZE.
_read_keys_memo: dict[tuple, _Read] = {}
# The L1 fast path's hits, (answer, read) each, not yet counted: appending is atomic and costs
# no lock; core.metrics' flusher turns them into counts every second (`_count_l1_hits`).
_l1_hits: deque[tuple[Answer, _Read]] = deque()


def _forget_in_child() -> None:
    """After a fork: the parent counts its own hits, and the child remembers no read, so that
    its first read of each is a full one (which also starts this process's metrics flusher)."""
    _l1_hits.clear()
    _read_keys_memo.clear()


os.register_at_fork(after_in_child=_forget_in_child)


@dataclass(frozen=True)
class _ColdRead:
    """A read that missed every cache it may use: the pair and what L3 holds of it."""

    value_type: ValueTypeConfig
    context: dict
    context_key: str
    key_in_cache: str
    fresh: Answer | None  # L3's still-fresh answer: only a refresh gets this far with one
    last_good: Answer | None
    use_cache: bool
    wider: tuple[tuple[dict, str], ...]  # the wider contexts and their keys, nearest first
    wider_stored: Mapping[str, Answer]  # L3's last known good answers of those that have one


def get_value(key: str, context: Mapping[str, Any] | None = None, *, use_cache: bool = True) -> Answer:
    """The value of type `key` (or an alias) for `context`, with its provenance.

    Raises UnknownValueType for an unknown key and core.context.ContextError for a context
    the type does not accept; for everything else (sources, Redis or the database down,
    garbage upstream) it answers, and the provenance says how. `use_cache=False` is a refresh
    (see the module's docstring).
    """
    if use_cache:
        answer = _l1_hit(key, context)
        if answer is not None:
            return answer
    return _resolve(key, context, use_cache)


async def aget_value(key: str, context: Mapping[str, Any] | None = None, *, use_cache: bool = True) -> Answer:
    """`get_value` for async code: the same answer, provenance and errors. An L1 hit is answered
    on the event loop (no thread, no query); any other read runs on one of this process's
    ASYNC_READ_THREADS threads, so that the loop never waits on Redis, the database or a source."""
    if use_cache:
        answer = _l1_hit(key, context)
        if answer is not None:
            return answer
    return await _resolve_in_thread(key, context, use_cache)


async def aget_many(reads: Iterable[tuple[str, Mapping[str, Any] | None]], *, use_cache: bool = True) -> list[Answer]:
    """The answers of many (key, context) reads, in their order, resolved concurrently: L1 hits
    at once, the others each on its own thread. Raises as `get_value` does for the first read
    that is refused (an unknown key, a context the type does not accept)."""
    return list(await asyncio.gather(*(aget_value(key, context, use_cache=use_cache) for key, context in reads)))


def _l1_hit(key: str, raw: Mapping[str, Any] | None) -> Answer | None:
    """The fast path: the L1 answer of a read this process made before under the current
    snapshot, of a type without overrides; None sends the read down the whole chain."""
    try:
        read = _read_keys_memo.get((key, tuple(raw.items()) if raw else ()))
    except TypeError:  # a list in the context (channels=[...]): never remembered
        return None
    # `current` is None while a reload is due; a new snapshot (a change, or new data) misses.
    # When the read counts are due to be written, a reading thread writes them: the full path.
    if (
        read is None
        or read.snapshot is not registry.current
        or read.is_overridable
        or time.monotonic() >= popularity.counter.flush_due_at
    ):
        return None
    answer = l1.get(read.key_in_cache)
    if answer is not None:
        _l1_hits.append((answer, read))
    return answer


def _count_l1_hits() -> None:
    """The fast path's hits since the last call, counted: metrics (lookups, answers, ages) and
    the contexts' popularity. Called by core.metrics before each flush; never raises."""
    try:
        hits: dict[tuple[int, int], list] = {}
        for _ in range(len(_l1_hits)):  # no more than were logged when it began
            try:
                answer, read = _l1_hits.popleft()
            except IndexError:  # a scrape and the flusher drain at once: the other took the rest
                break
            counted = hits.get((id(answer), id(read)))  # both alive: the log holds them
            if counted is None:
                hits[(id(answer), id(read))] = [answer, read, 1]
            else:
                counted[2] += 1
        for answer, read, times in hits.values():
            metrics.answers_served_from_l1(answer, times)
            popularity.record(read.value_type.key, read.context_key, read.context, reads=times)
    except Exception:  # noqa: BLE001 - counting must not stop the metrics flusher; logged
        logger.exception("L1 hits not counted")


metrics.before_each_flush(_count_l1_hits)
popularity.count_logged_reads = _count_l1_hits

_async_reads: tuple[int, ThreadPoolExecutor] | None = None  # (pid, its pool): a forked child makes its own


async def _resolve_in_thread(key: str, context: Mapping[str, Any] | None, use_cache: bool) -> Answer:
    global _async_reads
    if _async_reads is None or _async_reads[0] != os.getpid():
        _async_reads = (os.getpid(), ThreadPoolExecutor(ASYNC_READ_THREADS, thread_name_prefix="dynconfig-async-read"))
    resolve = sync_to_async(_resolve_and_close, thread_sensitive=False, executor=_async_reads[1])
    return await resolve(key, context, use_cache)


def _resolve_and_close(key: str, context: Mapping[str, Any] | None, use_cache: bool) -> Answer:
    try:
        return _resolve(key, context, use_cache)
    finally:
        # A pool thread serves no request whose end would close its connection: it keeps none.
        connections.close_all()


def _resolve(key: str, context: Mapping[str, Any] | None, use_cache: bool) -> Answer:
    """The whole precedence chain (the module's docstring), with every count made at once."""
    snapshot = registry.snapshot()
    if snapshot.data_version != l1.data_version:
        l1.clear(snapshot.data_version)  # a background refresh replaced values somewhere
    read = _read_keys(snapshot, key, context)
    value_type, context, context_key, key_in_cache = read.value_type, read.context, read.context_key, read.key_in_cache
    popularity.record(value_type.key, context_key, context, is_consumer_read=use_cache)

    if value_type.overrides:
        override = pick_override(value_type.overrides, context, timezone.now())
        if override is not None:
            return metrics.answer_served(_override_answer(value_type, context, override))

    if use_cache:
        answer = l1.get(key_in_cache)
        metrics.cache_looked_up("l1", answer)
        if answer is not None:
            return metrics.answer_served(answer)
        answer = _from_l2(key_in_cache)
        if l2.is_enabled:  # without Redis (or while it is skipped) there is no L2 to miss
            metrics.cache_looked_up("l2", answer)
        if answer is not None:
            return metrics.answer_served(answer)
    # The wider contexts' stored values come in the same query: a degraded answer may need them.
    wider = wider_contexts(context, value_type.widening_order)
    fresh, last_good, wider_stored = l3_get(value_type, context_key, [key for _, key in wider])
    if use_cache:
        metrics.cache_looked_up("l3", fresh)
        if fresh is not None:
            store(key_in_cache, fresh)
            return metrics.answer_served(fresh)

    cold = _ColdRead(
        value_type, context, context_key, key_in_cache, fresh, last_good, use_cache, tuple(wider), wider_stored
    )
    answer = _read_cold(cold) if use_cache else _refresh(cold)
    return metrics.answer_served(answer)


def answers_known_now(keys: Sequence[str]) -> dict[str, Answer | None]:
    """For each value type in `keys`, what a read of its empty context would be served from what
    is known now, without fetching: an active override, L1, L2, or a fresh value in L3 (one
    query for them all); None when none of them holds one (the next read fetches it).

    For pages that show many types at a glance (the admin's changelist): it calls no source,
    waits for nothing, stores nothing and counts no read, so its cost does not grow with the
    number of types beyond one cache lookup each. Raises UnknownValueType for an unknown key.
    """
    snapshot = registry.snapshot()
    now = timezone.now()
    known: dict[str, Answer | None] = {}
    missed: list[tuple[str, ValueTypeConfig]] = []  # (the key as asked, its type)
    for key in keys:
        value_type = snapshot.value_type(key)
        if value_type is None:
            raise UnknownValueType(f"unknown value type {key!r}")
        override = pick_override(value_type.overrides, {}, now) if value_type.overrides else None
        if override is not None:
            known[key] = _override_answer(value_type, {}, override)
            continue
        key_in_cache = cache_key(value_type, "")
        known[key] = l1.get(key_in_cache) or l2.get(key_in_cache)
        if known[key] is None:
            missed.append((key, value_type))
    stored = l3_get_fresh_many([value_type for _, value_type in missed], "")
    for key, value_type in missed:
        known[key] = stored.get(value_type.key)
    return known


def _read_keys(snapshot: Snapshot, key: str, raw: Mapping[str, Any] | None) -> _Read:
    """The value type, canonical context, its key and the cache key of a read, remembered per
    key as asked (a type's key or an alias) and raw context, under `snapshot`.

    Looking the type up and canonicalizing cost more than an L1 hit itself; consumers repeat the
    same few contexts, so an L1 hit (`_l1_hit`) pays one dict lookup here. The remembered context
    is shared between answers: treat it as read-only.
    """
    try:
        memo_key = (key, tuple(raw.items()) if raw else ())
        known = _read_keys_memo.get(memo_key)
    except TypeError:  # a list in the context (channels=[...]): canonicalize every time
        memo_key = known = None
    if known is not None and known.snapshot is snapshot:
        return known
    value_type = snapshot.value_type(key)
    if value_type is None:
        raise UnknownValueType(f"unknown value type {key!r}")
    context, context_key = canonical_context(raw, value_type.context_keys, value_type.key)
    read = _Read(snapshot, value_type, context, context_key, cache_key(value_type, context_key), bool(value_type.overrides))
    if memo_key is not None:
        if len(_read_keys_memo) >= READ_KEYS_MEMO_SIZE:
            _read_keys_memo.clear()  # crude but bounded; refills with what is read now
        # Remembered with the snapshot: a new one (configuration or data) makes every entry miss,
        # after the read that clears L1 for new data (`_resolve`) remembers it again.
        _read_keys_memo[memo_key] = read
    return read


def pick_override(
    overrides: tuple[OverrideConfig, ...], context: Mapping[str, Any], now: datetime
) -> OverrideConfig | None:
    """The active override matching `context` with the most context keys (then the newest)."""
    matching = [o for o in overrides if o.is_active(now) and o.matches(context)]
    if not matching:
        return None
    return max(matching, key=lambda o: (len(o.context), o.starts_at, o.id))


def read_budget(value_type: ValueTypeConfig) -> float:
    """Seconds a consumer's read of `value_type` waits for its sources."""
    if value_type.read_budget is not None:
        return value_type.read_budget.total_seconds()
    return settings.DYNCONFIG_READ_BUDGET


# Steps 5 to 9 ----------------------------------------------------------------------------------


def _read_cold(cold: _ColdRead) -> Answer:
    """A consumer's cold read: the sources within the read budget, else a degraded answer now
    and a refresh left running in the background."""
    deadline = time.monotonic() + read_budget(cold.value_type)
    is_leader, landed = flights.join(cold.key_in_cache)
    if not is_leader:  # another thread of this process fetches the pair: wait for it, briefly
        landed.wait(max(0.0, deadline - time.monotonic()))
        answer = l1.get(cold.key_in_cache)
        if answer is not None:
            return answer
        return _degraded(cold, ("another read in this process is fetching",), BUDGET_EXCEEDED, is_kept=False)
    try:
        answer = _fetch_or_degrade(cold, deadline, is_urgent=True)
    finally:
        flights.land(cold.key_in_cache)
    if answer.provenance.refreshing:
        refreshes.submit(cold.key_in_cache, lambda: _refresh_in_background(cold))
    return answer


def _refresh(cold: _ColdRead) -> Answer:
    """A refresh: the sources with the long budget, retries and rate-limit waits."""
    deadline = time.monotonic() + settings.DYNCONFIG_REFRESH_BUDGET
    is_leader, landed = flights.join(cold.key_in_cache)
    if not is_leader:
        landed.wait(max(0.0, deadline - time.monotonic()))
        answer = l1.get(cold.key_in_cache)
        if answer is not None:
            return answer
    try:
        return _fetch_or_degrade(cold, deadline, is_urgent=False)
    finally:
        if is_leader:
            flights.land(cold.key_in_cache)


def _fetch_or_degrade(cold: _ColdRead, deadline: float, *, is_urgent: bool) -> Answer:
    """Steps 5 to 9 under the pair's fetch lock, so that one process fetches it at a time and a
    degraded answer is stored before any refresh could store a fresh one."""
    token = l2.acquire(cold.key_in_cache, deadline - time.monotonic() + LOCK_MARGIN_SECONDS)
    if token is None:
        answer = _wait_for_leader(cold.key_in_cache, deadline)
        if answer is not None:
            return answer
        # The other process stores what it gets: this answer is not kept.
        return _degraded(cold, ("another process is fetching",), BUDGET_EXCEEDED, is_kept=False)
    try:
        # A leader may have stored the answer between our cache misses and taking the lock.
        answer = (l1.get(cold.key_in_cache) or _from_l2(cold.key_in_cache)) if cold.use_cache else None
        if answer is not None:
            return answer
        answer, errors, reason = _fetch_and_keep(cold, deadline, is_urgent=is_urgent)
        if answer is not None:
            return answer
        if cold.fresh is not None and cold.fresh.provenance.expires_at > timezone.now():
            # A refresh whose sources failed, while the L3 value is still fresh: kept as it is.
            answer = replace(cold.fresh, provenance=replace(cold.fresh.provenance, errors=errors))
            store(cold.key_in_cache, answer)
            return answer
        return _degraded(cold, errors, reason, is_refreshing=is_urgent and reason in REFRESHABLE_REASONS)
    finally:
        l2.release(cold.key_in_cache, token)


def _refresh_in_background(cold: _ColdRead) -> None:
    """What a consumer's read left behind: the pair fetched with the long budget and stored.
    If another process holds the fetch, it stores what it gets; if this fetch fails, the
    degraded answer already cached stays until it expires."""
    started = time.perf_counter()
    deadline = time.monotonic() + settings.DYNCONFIG_REFRESH_BUDGET
    token = l2.acquire(cold.key_in_cache, settings.DYNCONFIG_REFRESH_BUDGET + LOCK_MARGIN_SECONDS)
    if token is None:
        return
    try:
        answer, errors, _ = _fetch_and_keep(cold, deadline, is_urgent=False)
    finally:
        l2.release(cold.key_in_cache, token)
    if answer is None:
        logger.info(
            "%s [%s]: background refresh brought no value: %s",
            cold.value_type.key, _context_text(cold.context), "; ".join(errors) or "no detail",
            extra={"value_type": cold.value_type.key},
        )
    metrics.refresh_observed(cold.value_type.key, time.perf_counter() - started, is_failed=answer is None)


def _fetch_and_keep(
    cold: _ColdRead, deadline: float, *, is_urgent: bool
) -> tuple[Answer | None, tuple[str, ...], str]:
    """Step 5: tier by tier until `deadline`, the first valid blend, stored in every tier.
    (answer or None, what failed, the reason for a degraded answer)."""
    value_type = cold.value_type
    reference = cold.last_good.value if cold.last_good else value_type.fallback
    errors: list[str] = []
    failures: list[str] = []
    for tier in SOURCE_TIERS:
        links = tuple(link for link in value_type.links if link.tier == tier)
        if not links:
            continue
        outcome = fetch_tier(value_type, cold.context, links, reference, deadline, is_urgent=is_urgent)
        if outcome.blend is None:
            errors.extend(f"{tier}: {error}" for error in outcome.errors)
            failures.extend(outcome.failures)
            continue
        fetched_at = min((use.fetched_at for use in outcome.uses), default=timezone.now())
        ttl = min(value_type.ttl, outcome.ttl) if outcome.ttl else value_type.ttl
        provenance = Provenance(
            tier=tier,
            origin=tier,
            sources=outcome.uses,
            confidence=outcome.blend.confidence,
            fetched_at=fetched_at,
            expires_at=fetched_at + ttl,  # from when the value was obtained, not when asked for
            errors=tuple(errors) + tuple(f"{tier}: {error}" for error in outcome.errors),
        )
        answer = Answer(value_type.key, cold.context, outcome.blend.value, provenance)
        store(cold.key_in_cache, answer)
        l3_set(value_type, cold.context_key, answer)
        return answer, (), ""
    if value_type.id is None:
        reason = NO_DATABASE  # the built-in type: the database never answered
    elif not value_type.links:
        errors.append("no sources configured")
        reason = NO_SOURCES
    elif OUT_OF_TIME in failures:
        reason = BUDGET_EXCEEDED
    elif failures and all(failure == BREAKER_OPEN for failure in failures):
        reason = BREAKER_OPEN
    else:
        reason = SOURCES_DOWN
    return None, tuple(errors), reason


def _degraded(
    cold: _ColdRead, errors: tuple[str, ...], reason: str, *, is_refreshing: bool = False, is_kept: bool = True
) -> Answer:
    """Steps 6 to 9: stale, widened, predicted, else the fallback; cached briefly if `is_kept`."""
    value_type = cold.value_type
    now = timezone.now()
    made = _stale(cold, now) or _widened(cold, now) or _predicted(cold, now) or _fallback(cold)
    value, provenance = made
    # Briefly, and never past the expiry of a still-fresh value it was made from (widened).
    expires_at = now + min(value_type.ttl, FALLBACK_TTL)
    if provenance.expires_at is not None:
        expires_at = min(expires_at, provenance.expires_at)
    provenance = replace(
        provenance,
        expires_at=expires_at,
        errors=errors,
        reason=reason,
        refreshing=is_refreshing,
    )
    answer = Answer(value_type.key, cold.context, _for_context(value_type, cold.context, value), provenance)
    metrics.degraded_answer_made(value_type.key, provenance.origin, reason)
    logger.warning(
        "%s [%s]: serving the %s value (%s): %s", value_type.key, _context_text(cold.context), provenance.origin,
        reason, "; ".join(errors) or "no detail", extra={"value_type": value_type.key},
    )
    if is_kept:
        store(cold.key_in_cache, answer)
    return answer


def _stale(cold: _ColdRead, now: datetime) -> tuple[Any, Provenance] | None:
    """Step 6: the last known good value, while not older than the type's max staleness."""
    last_good = cold.last_good
    if last_good is None or not _is_usable(last_good, cold.value_type, now):
        return None
    return last_good.value, _degraded_provenance("stale", last_good.provenance, stale=True)


def _widened(cold: _ColdRead, now: datetime) -> tuple[Any, Provenance] | None:
    """Step 7: the nearest wider context's value (in L1, else L3), fresh or not too stale, that
    holds every channel asked for."""
    value_type = cold.value_type
    wanted_channels = set(cold.context.get("channels", ())) if value_type.is_channel_keyed else set()
    for context, context_key in cold.wider:
        answer = l1.get(cache_key(value_type, context_key))
        if answer is None or answer.provenance.is_degraded:
            answer = cold.wider_stored.get(context_key)
        if answer is None or not _is_usable(answer, value_type, now):
            continue
        if wanted_channels and not (isinstance(answer.value, dict) and wanted_channels <= set(answer.value)):
            continue
        is_stale = answer.provenance.expires_at < now
        provenance = _degraded_provenance(
            "widened",
            answer.provenance,
            stale=is_stale,
            confidence=answer.provenance.confidence * WIDENED_CONFIDENCE_FACTOR,
            context_used=context,
        )
        if not is_stale:  # fresh only as long as the value it was made from
            provenance = replace(provenance, expires_at=answer.provenance.expires_at)
        return answer.value, provenance
    return None


def _predicted(cold: _ColdRead, now: datetime) -> tuple[Any, Provenance] | None:
    """Step 8: a forecast from the context's own history, if the type allows it and the forecast
    passes the type's rules."""
    value_type = cold.value_type
    if not value_type.is_prediction_enabled or cold.last_good is None:
        return None  # without a last good value the context has no history either
    history = l3_history(value_type, cold.context_key, now - PREDICTION_WINDOW, PREDICTION_POINTS)
    made = forecast([value for _, value in history])
    if made is None:
        return None
    problems = value_problems(made.value, value_type.rules)
    if problems:
        logger.info("%s [%s]: forecast refused: %s", value_type.key, _context_text(cold.context), "; ".join(problems))
        return None
    newest, oldest = history[0][0], history[-1][0]
    provenance = Provenance(
        tier="predicted",
        origin="predicted",
        sources=(),
        confidence=made.confidence,
        fetched_at=newest,
        expires_at=None,
        stale=True,  # made from values past their expiry
        window={"oldest": oldest.isoformat(), "newest": newest.isoformat(), "points": made.points},
    )
    return made.value, provenance


def _fallback(cold: _ColdRead) -> tuple[Any, Provenance]:
    """Step 9: the emergency fallback."""
    provenance = Provenance(
        tier="fallback", origin="fallback", sources=(), confidence=0.0, fetched_at=None, expires_at=None
    )
    return cold.value_type.fallback, provenance


def _degraded_provenance(origin: str, made_from: Provenance, *, stale: bool, **fields: Any) -> Provenance:
    return Provenance(
        tier=origin,
        origin=origin,
        sources=made_from.sources,
        confidence=fields.pop("confidence", made_from.confidence),
        fetched_at=made_from.fetched_at,
        expires_at=None,
        stale=stale,
        **fields,
    )


def _is_usable(answer: Answer, value_type: ValueTypeConfig, now: datetime) -> bool:
    """Whether a stored answer is fresh, or stale by no more than the type's max staleness."""
    expires_at = answer.provenance.expires_at
    return expires_at is not None and now - expires_at <= value_type.max_staleness


def _context_text(context: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in context.items()) or "no context"


def _for_context(value_type: ValueTypeConfig, context: Mapping[str, Any], value: Any) -> Any:
    """A channel-keyed value holds only the channels asked for (when some were)."""
    wanted = context.get("channels") if value_type.is_channel_keyed else None
    if not wanted or not isinstance(value, dict):
        return value
    return {channel: data for channel, data in value.items() if channel in wanted}


def _override_answer(value_type: ValueTypeConfig, context: dict, override: OverrideConfig) -> Answer:
    provenance = Provenance(
        tier="override",
        origin="override",
        sources=(),
        confidence=1.0,
        fetched_at=override.updated_at,
        expires_at=override.expires_at,
        errors=(),
    )
    return Answer(value_type.key, context, _for_context(value_type, context, override.value), provenance)


def _from_l2(key_in_cache: str) -> Answer | None:
    answer = l2.get(key_in_cache)
    if answer is not None:
        keep_in_l1(key_in_cache, answer)
    return answer


def _wait_for_leader(key_in_cache: str, deadline: float) -> Answer | None:
    """Another process fetches this key: wait for its answer in L2 until `deadline`, as long as
    it holds the lock."""
    while time.monotonic() < deadline:
        answer = _from_l2(key_in_cache)
        if answer is not None:
            return answer
        if not l2.is_locked(key_in_cache):
            return _from_l2(key_in_cache)
        time.sleep(min(WAIT_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
    return None
