"""Honest expiry (issue 17, items 3 and 5): no answer says `stale: false` past its own expiry.

The rule, checked by `assert_honest` on every answer at the moment it is returned: an answer
whose provenance says `stale: false` is served no later than its `expires_at` plus the documented
clock skew (250 ms). An answer without an expiry (an override that never expires) is exempt.

Each test gives budget_thresholds a 2-second TTL so that values expire while it runs, and reads
through what used to break the rule: a slow upstream (the lifetime counted from the request, not
from the answer), hanging sources, and a Redis frozen (SIGSTOP) while the app stored an answer,
which Redis then applied late. Real parts throughout: the test PostgreSQL and Redis (or a
redis-server of the test's own), sources served by local HTTP servers.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime, timedelta

import pytest
from django.core.cache import caches
from django.utils import timezone
from django_redis import get_redis_connection

from sources.breaker import shared_redis
from tests.values.conftest import BUDGET, benchmarks_answer, market_answer, reload_engine, scaled
from tests.values.test_read_budget import US_RETAIL, history, stop_sources, store_last_good
from tests.values.test_resolution import (
    BENCHMARKS_PATH,
    MARKET_PATH,
    OTHER_BUDGET,
    US,
    blended,
    budget_server,  # noqa: F401 - a fixture
    create_override,
    own_redis,
    wait_for_propagation,
)
from values import get_value
from core.answers import Answer, Provenance
from values.cache import cache_key, l1, l2
from values.models import ValueType
from values.registry import registry

# The documented clock skew: a fresh answer may be served this long past its expires_at.
SKEW = timedelta(milliseconds=250)
# budget_thresholds' TTL in these tests: short, so that values expire while a test runs.
TTL = timedelta(seconds=2)
# Between two reads of a continuous-read loop.
READ_INTERVAL = 0.05
BLEND = blended([(0.6, BUDGET), (0.4, OTHER_BUDGET)])
DE = {"region": "de"}
FR = {"region": "fr"}
JP = {"region": "jp"}
BR = {"region": "br"}


def assert_honest(answer: Answer) -> None:
    """Issue 17 item 5: `stale: false` only while now ≤ expires_at + SKEW (no expiry: exempt).
    Call it as the answer is returned: it compares with the clock now."""
    now = timezone.now()
    provenance = answer.provenance
    if provenance.stale or provenance.expires_at is None:
        return
    late = now - provenance.expires_at
    assert late <= SKEW, (
        f"served as fresh {late.total_seconds():.3f}s past its expiry: tier={provenance.tier} "
        f"origin={provenance.origin} fetched_at={provenance.fetched_at} expires_at={provenance.expires_at} "
        f"reason={provenance.reason}"
    )


def read(context: dict, *, use_cache: bool = True) -> Answer:
    """budget_thresholds for `context`, checked by `assert_honest` as it is returned."""
    answer = get_value("budget_thresholds", context, use_cache=use_cache)
    assert_honest(answer)
    return answer


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - timezone.now()).total_seconds()))


def key_of(context_key: str) -> str:
    return cache_key(registry.snapshot().value_type("budget_thresholds"), context_key)


def an_answer(*, expires_in: timedelta) -> Answer:
    now = timezone.now()
    provenance = Provenance(
        tier="primary", origin="primary", sources=(), confidence=1.0, fetched_at=now, expires_at=now + expires_in
    )
    return Answer("budget_thresholds", US, BUDGET, provenance)


@pytest.fixture
def short_ttl(budget_server):  # noqa: F811
    """Both budget sources served, and budget_thresholds fresh for 2 seconds only."""
    ValueType.objects.filter(key="budget_thresholds").update(ttl=TTL)
    reload_engine()
    return budget_server


# 1. A slow upstream -----------------------------------------------------------------------------


def test_reads_and_refreshes__sources_slow_1_5s__no_fresh_answer_past_its_expiry(short_ttl):
    short_ttl.route("GET", MARKET_PATH, json=market_answer(BUDGET), delay=1.5)
    short_ttl.route("GET", BENCHMARKS_PATH, json=benchmarks_answer(OTHER_BUDGET), delay=1.5)
    served: list[Answer] = []
    refreshed: list[tuple[datetime, Answer]] = []

    # A refresh first (it fetches: 1.5 s), consumers' reads through its expiry (degraded: their
    # budget is 1 s; then what their background refresh fetched), and a refresh again.
    started = time.monotonic()
    refresh_at = [0.0, 6.5]  # seconds into the loop
    while time.monotonic() - started < 7.0:
        if refresh_at and time.monotonic() - started >= refresh_at[0]:
            refresh_at.pop(0)
            asked_at = timezone.now()
            answer = read(US, use_cache=False)
            refreshed.append((asked_at, answer))
        else:
            answer = read(US)
        served.append(answer)
        time.sleep(READ_INTERVAL)

    tiers = [(answer.provenance.tier, answer.provenance.origin) for answer in served]
    assert ("stale", "stale") in tiers, tiers
    assert ("l1", "primary") in tiers, tiers
    fetched = [answer for answer in served if answer.provenance.origin == "primary"]
    assert len({answer.provenance.fetched_at for answer in fetched}) >= 2, tiers  # several fetches
    for answer in fetched:
        assert answer.value == pytest.approx(BLEND)
        assert answer.provenance.expires_at == answer.provenance.fetched_at + TTL, answer.provenance
    _, first_refresh = refreshed[0]
    assert first_refresh.provenance.tier == "primary", first_refresh.provenance
    for asked_at, answer in refreshed:
        if answer.provenance.tier == "primary":  # fetched by this refresh: counted from the answer
            assert answer.provenance.fetched_at >= asked_at + timedelta(seconds=1.4), answer.provenance


# 2. Hanging sources -----------------------------------------------------------------------------


@pytest.mark.parametrize("hanging", [(MARKET_PATH, BENCHMARKS_PATH), (MARKET_PATH,)], ids=["both", "one"])
def test_reads_and_refreshes__sources_hanging_after_a_good_value__no_fresh_answer_past_its_expiry(
    short_ttl, settings, hanging
):
    settings.DYNCONFIG_REFRESH_BUDGET = 1.5  # a refresh gives hanging sources 1.5 s, then gives up
    good = read(US)
    assert good.provenance.tier == "primary"
    for path in hanging:
        short_ttl.route("GET", path, hang=True)
    served: list[Answer] = []

    # Refreshes while the good value is fresh but will not be by their end, and after it expired.
    refresh_at = [good.provenance.expires_at - timedelta(seconds=1), good.provenance.expires_at + timedelta(seconds=1)]
    end = good.provenance.expires_at + timedelta(seconds=3)
    while timezone.now() < end:
        if refresh_at and timezone.now() >= refresh_at[0]:
            refresh_at.pop(0)
            served.append(read(US, use_cache=False))
        else:
            served.append(read(US))
        time.sleep(READ_INTERVAL)

    assert not refresh_at
    if len(hanging) == 2:  # nothing fresh to be had: the last known good, as stale
        assert any(answer.provenance.tier == "stale" and answer.provenance.stale for answer in served)
    else:  # the answering source alone, blended
        assert any(answer.provenance.fetched_at > good.provenance.expires_at for answer in served)


# 3. Redis frozen while the app stored an answer, then resumed -----------------------------------


def test_l2__answer_stored_while_redis_frozen_applied_after_its_expiry__not_served(short_ttl, monkeypatch):
    frozen = threading.Event()
    # Breakers and rate limits keep this process's state (as they do when Redis fails): Redis
    # then carries the engine's commands only, and the engine's SET, not a breaker's call on the
    # same connection pool, is what meets the frozen Redis.
    monkeypatch.setattr(shared_redis, "_down_until", time.monotonic() + 60)

    with own_redis(socket_timeout=0.25) as redis_server:

        def freezing_redis(request):
            """Answer, but freeze Redis first: the read holds its fetch lock, and its SET of
            the answer comes next, into a Redis that takes it and says nothing."""
            if not frozen.is_set():
                frozen.set()
                redis_server.send_signal(signal.SIGSTOP)
            return 200, {}, market_answer(BUDGET)

        short_ttl.route("GET", MARKET_PATH, handler=freezing_redis)
        key = key_of("region=us")
        raw = get_redis_connection("default")
        sets_before = raw.info("commandstats").get("cmdstat_set", {}).get("calls", 0)
        l1.clear()
        try:
            stored = read(US)
            assert frozen.is_set() and stored.provenance.tier == "primary"
            sleep_until(stored.provenance.expires_at + timedelta(milliseconds=500))
        finally:
            redis_server.send_signal(signal.SIGCONT)
        time.sleep(0.2)  # Redis applies what it was sent while frozen
        monkeypatch.setattr(l2, "_down_until", 0.0)  # the SET's timeout made the app skip L2
        l1.clear()
        raw = get_redis_connection("default")
        # The fetch lock and the answer: both SETs reached Redis (one of them late).
        assert raw.info("commandstats")["cmdstat_set"]["calls"] >= sets_before + 2

        in_redis = raw.get(key)
        from_l2 = l2.get(key)
        again = read(US)

    assert in_redis is None  # its absolute expiry (PXAT) had passed when Redis applied the SET
    assert from_l2 is None
    assert again.provenance.fetched_at != stored.provenance.fetched_at or again.provenance.stale, again.provenance


def test_l2_get__answer_past_its_expiry_written_late_with_a_long_lifetime__a_miss(engine):
    key = "dynconfig:test:late-write"
    expired = an_answer(expires_in=-timedelta(seconds=1))
    raw = get_redis_connection("default")
    # What a SET with a relative lifetime, applied late, leaves: the entry outlives the answer.
    raw.set(key, expired.found_in("l2").as_json(), px=60_000)  # as L2 stores answers: their JSON

    assert raw.exists(key)
    assert l2.get(key) is None


def test_l2_set__fresh_answer__redis_expires_it_at_its_expires_at(engine):
    key = "dynconfig:test:absolute-expiry"
    answer = an_answer(expires_in=timedelta(seconds=3))

    l2.set(key, answer)

    raw = get_redis_connection("default")
    expires_at_ms = int(answer.provenance.expires_at.timestamp() * 1000)
    assert abs(raw.pexpiretime(key) - expires_at_ms) <= 1
    assert 2_500 < raw.pttl(key) <= 3_000
    assert l2.get(key).provenance.expires_at == answer.provenance.expires_at


def test_l2_set__answer_already_expired__nothing_written(engine):
    key = "dynconfig:test:expired-write"

    l2.set(key, an_answer(expires_in=-timedelta(milliseconds=1)))

    assert not get_redis_connection("default").exists(key)


# 4. Every tier ----------------------------------------------------------------------------------


def test_read__answer_of_every_tier__honest_when_served_and_not_fresh_after_its_expiry(short_ttl):
    # Stale: DE's last known good, expired a minute ago (done first: it ages every stored value).
    store_last_good(DE, BLEND, expired_ago=timedelta(minutes=1))
    # Predicted: JP's history only, older than the type's max staleness.
    history("region=jp", [scaled(BUDGET, 1.0), scaled(BUDGET, 1.1), scaled(BUDGET, 5.0), scaled(BUDGET, 1.2)])
    first: dict[str, tuple[dict, Answer]] = {}

    first["primary"] = US, read(US)
    first["l1"] = US, read(US)
    l1.clear()
    first["l2"] = US, read(US)
    l1.clear()
    caches["default"].clear()
    first["l3"] = US, read(US)
    # After the cache reads: an operator's change makes every process drop its L1.
    create_override(scaled(BUDGET, 2), context_match=FR, expires_at=timezone.now() + timedelta(seconds=2.5))
    wait_for_propagation()
    first["override"] = FR, read(FR)
    stop_sources(short_ttl)
    first["stale"] = DE, read(DE)
    first["widened"] = US_RETAIL, read(US_RETAIL)  # from US's value, fresh
    first["predicted"] = JP, read(JP)
    first["fallback"] = BR, read(BR)

    assert {tier: answer.provenance.tier for tier, (_, answer) in first.items()} == {tier: tier for tier in first}
    expiries = [answer.provenance.expires_at for _, answer in first.values() if answer.provenance.expires_at]
    sleep_until(max(expiries) + SKEW + timedelta(milliseconds=100))

    for tier, (context, answer) in first.items():
        if tier == "l2":
            l1.clear()
        elif tier == "l3":
            l1.clear()
            caches["default"].clear()
        again = read(context)
        if answer.provenance.expires_at is not None:  # that answer is not served as fresh again
            is_same = again.provenance.expires_at == answer.provenance.expires_at
            assert again.provenance.stale or not is_same, (tier, again.provenance)
    assert read(FR).provenance.tier != "override"


def test_read__widened_from_a_value_about_to_expire__not_fresh_past_that_values_expiry(short_ttl):
    wider = read(US)
    assert wider.provenance.tier == "primary"
    stop_sources(short_ttl)
    sleep_until(wider.provenance.expires_at - timedelta(seconds=1))

    widened = read(US_RETAIL)
    sleep_until(wider.provenance.expires_at + SKEW + timedelta(milliseconds=250))
    again = read(US_RETAIL)

    assert widened.provenance.tier == "widened" and widened.provenance.stale is False
    assert widened.provenance.fetched_at == wider.provenance.fetched_at
    # What it serves is US's value, obtained at US's fetched_at: not fresh for longer than US's.
    assert again.value != wider.value or again.provenance.stale, again.provenance
    assert widened.provenance.expires_at <= wider.provenance.expires_at, widened.provenance
