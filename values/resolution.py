"""Resolution: the one answer for a value type and a context. `get_value()` always answers.

Precedence, first match wins:
  1. override   an operator's active override matching the context (most specific wins)
  2. l1         this process's memory            } a fetched, stale or fallback answer
  3. l2         Redis, shared by every process   } cached under a key holding the type's
  4. l3         the database's resolved values   } configuration fingerprint and the context
  5. primary → secondary → tertiary: each tier's sources called concurrently, validated,
                blended by weight; the first tier with a valid blend wins
  6. stale      the last known good value, up to the type's maximum staleness
  7. fallback   the operator-edited emergency fallback (or, with no database, the built-in)
Consistency: a fetched value is written to L3, L2 and L1; a stale or fallback answer only to
L2 and L1, briefly, so that recovery shows soon. Concurrent cold reads of one key fetch once
(one leader per process, one per key across processes through a Redis lock); the others wait
for the leader's answer. Operators' changes reach every process within a second (registry),
and so does a background refresh that changed a value (each process drops its L1 copies).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from monitoring import metrics
from values import popularity
from values.answers import SOURCE_TIERS, Answer, Provenance
from values.cache import WAIT_POLL_INTERVAL, cache_key, flights, l1, l2, l3_get, l3_set, seconds_until
from values.context import canonical_context
from values.fetching import fetch_tier
from values.registry import OverrideConfig, ValueTypeConfig, registry

logger = logging.getLogger(__name__)

# How long a stale or fallback answer is cached: short, so a recovered source shows soon.
FALLBACK_TTL = timedelta(minutes=5)
# A consumer's read waits at most this long for sources before falling back.
FETCH_BUDGET_SECONDS = 3.0
# How long a reader waits for another process's fetch of the same key.
WAIT_FOR_LEADER_SECONDS = FETCH_BUDGET_SECONDS + 0.5
# How many distinct (type, raw context) pairs `_read_keys` remembers.
READ_KEYS_MEMO_SIZE = 10_000
_read_keys_memo: dict[tuple, tuple[dict, str, str]] = {}


class UnknownValueType(LookupError):
    """No value type has this key or alias."""


def get_value(key: str, context: Mapping[str, Any] | None = None, *, use_cache: bool = True) -> Answer:
    """The value of type `key` (or an alias) for `context`, with its provenance.

    Raises UnknownValueType for an unknown key and values.context.ContextError for a context
    the type does not accept; for everything else (sources, Redis or the database down,
    garbage upstream) it answers, and the provenance says how.
    """
    snapshot = registry.snapshot()
    if snapshot.data_version != l1.data_version:
        l1.clear(snapshot.data_version)  # a background refresh replaced values somewhere
    value_type = snapshot.value_type(key)
    if value_type is None:
        raise UnknownValueType(f"unknown value type {key!r}")
    context, context_key, key_in_cache = _read_keys(value_type, context)
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
    now = timezone.now()
    if use_cache:
        answer = _from_l2(key_in_cache, now)
        if l2.is_enabled:  # without Redis (or while it is skipped) there is no L2 to miss
            metrics.cache_looked_up("l2", answer)
        if answer is not None:
            return metrics.answer_served(answer)
    fresh, last_good = l3_get(value_type, context_key)
    if use_cache:
        metrics.cache_looked_up("l3", fresh)
    if use_cache and fresh is not None:
        _store(key_in_cache, fresh, seconds_until(fresh.provenance.expires_at, now))
        return metrics.answer_served(fresh)

    is_leader, landed = flights.join(key_in_cache)
    if not is_leader:
        landed.wait(WAIT_FOR_LEADER_SECONDS)
        answer = l1.get(key_in_cache)
        if answer is not None:
            return metrics.answer_served(answer)
    try:
        answer = _resolve_cold(value_type, context, key_in_cache, context_key, fresh, last_good, now, use_cache)
        return metrics.answer_served(answer)
    finally:
        if is_leader:
            flights.land(key_in_cache)


def _read_keys(value_type: ValueTypeConfig, raw: Mapping[str, Any] | None) -> tuple[dict, str, str]:
    """(canonical context, its key, the cache key), remembered per type and raw context.

    Canonicalizing costs more than an L1 hit itself; consumers repeat the same few contexts.
    The remembered context is shared between answers: treat it as read-only.
    """
    try:
        memo_key = (value_type.key, value_type.fingerprint, tuple(raw.items()) if raw else ())
        hash(memo_key)
    except TypeError:  # a list in the context (channels=[...]): canonicalize every time
        memo_key = None
    if memo_key is not None:
        known = _read_keys_memo.get(memo_key)
        if known is not None:
            return known
    context, context_key = canonical_context(raw, value_type.context_keys, value_type.key)
    keys = (context, context_key, cache_key(value_type, context_key))
    if memo_key is not None:
        if len(_read_keys_memo) >= READ_KEYS_MEMO_SIZE:
            _read_keys_memo.clear()  # crude but bounded; refills with what is read now
        _read_keys_memo[memo_key] = keys
    return keys


def pick_override(
    overrides: tuple[OverrideConfig, ...], context: Mapping[str, Any], now: datetime
) -> OverrideConfig | None:
    """The active override matching `context` with the most context keys (then the newest)."""
    matching = [o for o in overrides if o.is_active(now) and o.matches(context)]
    if not matching:
        return None
    return max(matching, key=lambda o: (len(o.context), o.starts_at, o.id))


def _resolve_cold(
    value_type: ValueTypeConfig,
    context: dict,
    key_in_cache: str,
    context_key: str,
    fresh: Answer | None,
    last_good: Answer | None,
    now: datetime,
    use_cache: bool,
) -> Answer:
    """Steps 5 to 7, with at most one fetch of this key at a time across processes.

    `fresh` is L3's still-fresh answer, given only when the caches were skipped (a refresh):
    if the sources fail, it is kept, not served as stale."""
    token = l2.acquire(key_in_cache, WAIT_FOR_LEADER_SECONDS)
    if token is None:
        answer = _wait_for_leader(key_in_cache)
        if answer is not None:
            return answer
        return _fall_back(value_type, context, key_in_cache, fresh, last_good, now, ("another process is fetching",))
    try:
        # A leader may have stored the answer between our cache misses and taking the lock.
        answer = (l1.get(key_in_cache) or _from_l2(key_in_cache, now)) if use_cache else None
        if answer is not None:
            return answer
        answer, errors = _fetch(value_type, context, last_good)
        if answer is not None:
            _store(key_in_cache, answer, seconds_until(answer.provenance.expires_at, now))
            l3_set(value_type, context_key, answer)
            return answer
        return _fall_back(value_type, context, key_in_cache, fresh, last_good, now, errors)
    finally:
        l2.release(key_in_cache, token)


def _fetch(value_type: ValueTypeConfig, context: dict, last_good: Answer | None) -> tuple[Answer | None, tuple[str, ...]]:
    """Step 5: tier by tier, the first valid blend."""
    reference = last_good.value if last_good else value_type.fallback
    errors: list[str] = []
    for tier in SOURCE_TIERS:
        links = tuple(link for link in value_type.links if link.tier == tier)
        if not links:
            continue
        outcome = fetch_tier(value_type, context, links, reference, FETCH_BUDGET_SECONDS)
        if outcome.blend is None:
            errors.extend(f"{tier}: {error}" for error in outcome.errors)
            continue
        fetched_at = min((use.fetched_at for use in outcome.uses), default=timezone.now())
        ttl = min(value_type.ttl, outcome.ttl) if outcome.ttl else value_type.ttl
        provenance = Provenance(
            tier=tier,
            origin=tier,
            sources=outcome.uses,
            confidence=outcome.blend.confidence,
            fetched_at=fetched_at,
            expires_at=timezone.now() + ttl,
            errors=tuple(errors) + tuple(f"{tier}: {error}" for error in outcome.errors),
        )
        return Answer(value_type.key, context, outcome.blend.value, provenance), ()
    if not value_type.links:
        errors.append("no sources configured")
    return None, tuple(errors)


def _fall_back(
    value_type: ValueTypeConfig,
    context: dict,
    key_in_cache: str,
    fresh: Answer | None,
    last_good: Answer | None,
    now: datetime,
    errors: tuple[str, ...],
) -> Answer:
    """Steps 6 and 7: the last known good value while it is not too old, else the fallback.

    A value that is still fresh in L3 (a refresh skipped the caches, and the sources failed)
    stays what it is, with the failure noted: it is not stale yet."""
    if fresh is not None:
        answer = replace(fresh, provenance=replace(fresh.provenance, errors=errors))
        _store(key_in_cache, answer, seconds_until(answer.provenance.expires_at, now))
        return answer
    brief = min(value_type.ttl, FALLBACK_TTL)
    if (
        last_good is not None
        and last_good.provenance.expires_at is not None
        and now - last_good.provenance.expires_at <= value_type.max_staleness
    ):
        provenance = Provenance(
            tier="stale",
            origin="stale",
            sources=last_good.provenance.sources,
            confidence=last_good.provenance.confidence,
            fetched_at=last_good.provenance.fetched_at,
            expires_at=now + brief,
            stale=True,
            errors=errors,
        )
        answer = Answer(value_type.key, context, _for_context(value_type, context, last_good.value), provenance)
    else:
        provenance = Provenance(
            tier="fallback",
            origin="fallback",
            sources=(),
            confidence=0.0,
            fetched_at=None,
            expires_at=now + brief,
            errors=errors,
        )
        answer = Answer(value_type.key, context, _for_context(value_type, context, value_type.fallback), provenance)
    reason = _why_degraded(value_type, answer, last_good)
    metrics.degraded_answer_made(value_type.key, answer.provenance.origin, reason)
    logger.warning(
        "%s [%s]: serving the %s value (%s): %s", value_type.key, _context_text(context), answer.provenance.origin,
        reason, "; ".join(errors) or "no detail", extra={"value_type": value_type.key},
    )
    _store(key_in_cache, answer, brief.total_seconds())
    return answer


def _context_text(context: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in context.items()) or "no context"


def _why_degraded(value_type: ValueTypeConfig, answer: Answer, last_good: Answer | None) -> str:
    """A short label for the metrics: why `answer` is stale or the fallback."""
    if answer.provenance.errors == ("another process is fetching",):
        return "fetch_in_progress"  # the leader's fetch outlasted our wait
    if "no sources configured" in answer.provenance.errors:
        return "no_sources"
    if answer.provenance.origin == "fallback":
        if value_type.id is None:
            return "no_database"  # the built-in type: no stored value to fall back on
        if last_good is not None:
            return "stale_too_old"  # past the type's max_staleness
    return "sources_failed"


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


def _from_l2(key_in_cache: str, now: datetime) -> Answer | None:
    answer = l2.get(key_in_cache)
    if answer is not None:
        l1.set(key_in_cache, answer, seconds_until(answer.provenance.expires_at, now))
    return answer


def _store(key_in_cache: str, answer: Answer, ttl: float) -> None:
    l2.set(key_in_cache, answer, ttl)
    l1.set(key_in_cache, answer, ttl)


def _wait_for_leader(key_in_cache: str) -> Answer | None:
    """Another process fetches this key: wait for its answer in L2, as long as it holds the lock."""
    deadline = time.monotonic() + WAIT_FOR_LEADER_SECONDS
    while time.monotonic() < deadline:
        answer = l2.get(key_in_cache)
        if answer is not None:
            l1.set(key_in_cache, answer, seconds_until(answer.provenance.expires_at, timezone.now()))
            return answer
        if not l2.is_locked(key_in_cache):
            return l2.get(key_in_cache)
        time.sleep(WAIT_POLL_INTERVAL)
    return None
