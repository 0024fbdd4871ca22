"""A consumer's read never waits on a broken world (issue 12): the read budget, one urgent attempt
per source, fail-fast breakers, a refresh left running in the background, and the degraded
answers between the sources and the fallback: stale, widened, predicted.

Timing bounds here are generous (a read within 1 s, against a budget of 150 ms) so that a loaded
machine does not make them flaky; bench/run.py's outage section measures the tight figures.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from sources.breaker import breaker_state
from sources.calls import MAX_ATTEMPTS
from sources.models import Source
from tests.values.conftest import BUDGET, benchmarks_answer, market_answer, reload_engine, scaled
from tests.values.test_resolution import (
    BENCHMARKS,
    BENCHMARKS_PATH,
    MARKET,
    MARKET_PATH,
    OTHER_BUDGET,
    SEED_FALLBACK,
    US,
    blended,
    budget_server,  # noqa: F401 - a fixture
    set_tier,
)
from values import get_value
from values.background import refreshes
from values.cache import cache_key, l1, l2
from values.models import ResolvedValue, ValueRecord, ValueType
from values.registry import registry

# Well above the 150 ms budget, well below the 1-3 s that retries and rate-limit waits took.
GENEROUS_BOUND = 1.0
US_RETAIL = {"region": "us", "industry": "retail"}


@pytest.fixture
def tight_budget(budget_server):  # noqa: F811
    """budget_thresholds reads wait at most 150 ms for sources (the production default)."""
    ValueType.objects.filter(key="budget_thresholds").update(read_budget=timedelta(milliseconds=150))
    reload_engine()
    return budget_server


def timed_read(key: str, context: dict):
    started = time.monotonic()
    answer = get_value(key, context)
    return answer, time.monotonic() - started


def eventually_fresh(key: str, context: dict, timeout: float = 8.0):
    """Read until the answer is a fetched one (the background refresh landed), or give up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = get_value(key, context)
        if answer.provenance.origin in ("primary", "secondary", "tertiary"):
            return answer
        time.sleep(0.1)
    raise AssertionError(f"no fresh answer within {timeout}s; last: {answer.provenance}")


def stop_sources(server) -> None:
    """Both budget sources refuse connections: nothing listens at their URL any more."""
    server.stop()


def store_last_good(context: dict, value: dict, *, expired_ago: timedelta | None = None) -> None:
    """A stored value for `context`, fresh or expired `expired_ago` ago (read it, then age it)."""
    value_type = registry.snapshot().value_type("budget_thresholds")
    answer = get_value("budget_thresholds", context)
    assert answer.provenance.origin == "primary", answer.provenance
    if expired_ago is not None:
        ResolvedValue.objects.filter(value_type_id=value_type.id).update(expires_at=timezone.now() - expired_ago)
    l1.clear()
    l2._call("flushdb")
    assert answer.value == pytest.approx(value)


# 1. The read budget and urgent calls ------------------------------------------------------------


def test_read__every_source_refusing__fallback_within_budget_and_breakers_open_at_once(tight_budget):
    stop_sources(tight_budget)

    first, first_took = timed_read("budget_thresholds", US)
    second, second_took = timed_read("budget_thresholds", {"region": "de"})

    assert first_took < GENEROUS_BOUND and second_took < GENEROUS_BOUND
    assert first.provenance.tier == "fallback" and first.value == SEED_FALLBACK
    assert first.provenance.reason == "sources_down"
    assert first.provenance.refreshing is True
    # A refused connection opened both breakers at once: the next context does not even try.
    assert breaker_state(MARKET).state == breaker_state(BENCHMARKS).state == "open"
    assert second.provenance.reason == "breaker_open"
    assert second.provenance.refreshing is False
    assert any(f"{MARKET}: breaker_open" in error for error in second.provenance.errors)


def test_read__every_source_hanging__degraded_within_budget_then_fresh_once_they_answer(tight_budget):
    tight_budget.route("GET", MARKET_PATH, hang=True)
    tight_budget.route("GET", BENCHMARKS_PATH, hang=True)

    answer, took = timed_read("budget_thresholds", US)

    assert took < GENEROUS_BOUND
    assert answer.provenance.tier == "fallback"
    assert answer.provenance.reason == "budget_exceeded"
    assert answer.provenance.refreshing is True
    assert any("no answer within" in error or "timed out" in error for error in answer.provenance.errors)


def test_read__sources_slow_1_5s__degraded_now_and_the_background_fetch_serves_the_next_read(tight_budget):
    tight_budget.route("GET", MARKET_PATH, json=market_answer(BUDGET), delay=1.5)
    tight_budget.route("GET", BENCHMARKS_PATH, json=benchmarks_answer(OTHER_BUDGET), delay=1.5)

    answer, took = timed_read("budget_thresholds", US)
    fresh = eventually_fresh("budget_thresholds", US)

    assert took < GENEROUS_BOUND
    assert answer.provenance.tier == "fallback" and answer.provenance.reason == "budget_exceeded"
    assert fresh.value == pytest.approx(blended([(0.6, BUDGET), (0.4, OTHER_BUDGET)]))
    assert fresh.provenance.tier == "l1"  # stored by the background fetch, not fetched by this read


@pytest.mark.parametrize("garbage", ["<html>502 Bad Gateway</html>", '{"tiers": {"micro": "lots"}}'])
def test_read__every_source_answering_garbage__fallback_within_budget_reason_sources_down(tight_budget, garbage):
    for path in (MARKET_PATH, BENCHMARKS_PATH):
        tight_budget.route("GET", path, body=garbage, headers={"Content-Type": "application/json"})

    answer, took = timed_read("budget_thresholds", US)

    assert took < GENEROUS_BOUND
    assert answer.provenance.tier == "fallback"
    assert answer.provenance.reason == "sources_down"


def test_read__one_of_two_sources_hanging__the_other_blended_within_the_budget(budget_server):  # noqa: F811
    # Half a second: room for the answering source on a loaded machine, far from the hang.
    ValueType.objects.filter(key="budget_thresholds").update(read_budget=timedelta(milliseconds=500))
    reload_engine()
    budget_server.route("GET", BENCHMARKS_PATH, hang=True)

    answer, took = timed_read("budget_thresholds", US)

    assert took < GENEROUS_BOUND + 0.5
    assert answer.provenance.tier == "primary"
    assert [use.name for use in answer.provenance.sources] == [MARKET]
    assert answer.value == pytest.approx(BUDGET)


def test_read__source_failing__one_attempt_by_the_read_and_the_retries_in_the_background(tight_budget):
    tight_budget.route("GET", MARKET_PATH, status=503, json={"error": "down"})
    tight_budget.route("GET", BENCHMARKS_PATH, status=503, json={"error": "down"})

    answer = get_value("budget_thresholds", US)
    assert refreshes.wait_until_idle(15)

    assert answer.provenance.reason == "sources_down"
    # One urgent attempt per source by the read, then the background refresh's full tries.
    assert tight_budget.calls(MARKET_PATH) == 1 + MAX_ATTEMPTS
    assert tight_budget.calls(BENCHMARKS_PATH) == 1 + MAX_ATTEMPTS


def test_read__rate_limit_spent__the_read_does_not_wait_for_a_token(budget_server):  # noqa: F811
    # A budget long enough that a wait for the next token (one a second) would show.
    ValueType.objects.filter(key="budget_thresholds").update(read_budget=timedelta(seconds=3))
    Source.objects.filter(name=MARKET).update(requests_per_minute=60, burst_allowance=1)
    reload_engine()
    get_value("budget_thresholds", {"region": "de"})  # spends market_research_api's one token

    answer, took = timed_read("budget_thresholds", US)

    assert took < GENEROUS_BOUND
    assert [use.name for use in answer.provenance.sources] == [BENCHMARKS]
    assert any("rate" in error for error in answer.provenance.errors)


def test_refresh__primary_and_secondary_hanging__one_deadline_for_both_tiers(budget_server, settings):  # noqa: F811
    settings.DYNCONFIG_REFRESH_BUDGET = 1.0
    set_tier(BENCHMARKS, "secondary")
    budget_server.route("GET", MARKET_PATH, hang=True)
    budget_server.route("GET", BENCHMARKS_PATH, hang=True)

    started = time.monotonic()
    answer = get_value("budget_thresholds", US, use_cache=False)
    took = time.monotonic() - started

    assert answer.provenance.tier == "fallback"
    # A budget per tier took two budgets (2 s); one deadline for the read takes one.
    assert took < 1.8


def test_l2_lock__leader_outlived_its_lock__its_release_leaves_the_next_leaders_lock(engine):
    key = "dynconfig:test:lock-owner"
    first = l2.acquire(key, 0.1)
    time.sleep(0.2)  # the first leader's lock expired while it was still fetching
    second = l2.acquire(key, 5.0)
    assert first is not None and second is not None and first != second

    l2.release(key, first)

    assert l2.is_locked(key)  # still the second leader's
    l2.release(key, second)
    assert not l2.is_locked(key)


# 2. Degraded answers: stale → widened → predicted → fallback ------------------------------------


def test_read__unseen_context_sources_down__widened_from_the_nearest_wider_context(tight_budget):
    store_last_good(US, blended([(0.6, BUDGET), (0.4, OTHER_BUDGET)]))
    tight_budget.route("GET", MARKET_PATH, json=market_answer(scaled(BUDGET, 2)))
    tight_budget.route("GET", BENCHMARKS_PATH, json=benchmarks_answer(scaled(OTHER_BUDGET, 2)))
    get_value("budget_thresholds", {})  # the empty context, further away, holds other numbers
    l1.clear()
    l2._call("flushdb")
    stop_sources(tight_budget)

    answer = get_value("budget_thresholds", US_RETAIL)

    assert answer.provenance.tier == answer.provenance.origin == "widened"
    assert answer.provenance.context_used == US  # industry dropped first, as the type declares
    assert answer.context == US_RETAIL
    assert answer.value == pytest.approx(blended([(0.6, BUDGET), (0.4, OTHER_BUDGET)]))
    assert answer.provenance.reason == "sources_down"
    assert 0 < answer.provenance.confidence < 1
    assert answer.provenance.as_dict()["context_used"] == {"region": "us"}


def test_read__context_has_its_own_stale_value__stale_before_widened(tight_budget):
    store_last_good(US_RETAIL, blended([(0.6, BUDGET), (0.4, OTHER_BUDGET)]), expired_ago=timedelta(hours=1))
    stop_sources(tight_budget)

    answer = get_value("budget_thresholds", US_RETAIL)

    assert answer.provenance.tier == "stale"
    assert answer.provenance.stale is True


def test_read__type_widens_nothing__fallback_instead_of_a_wider_value(tight_budget):
    store_last_good(US, blended([(0.6, BUDGET), (0.4, OTHER_BUDGET)]))
    ValueType.objects.filter(key="budget_thresholds").update(widening_order=[])
    reload_engine()
    stop_sources(tight_budget)

    answer = get_value("budget_thresholds", US_RETAIL)

    assert answer.provenance.tier == "fallback"


def history(context_key: str, values: list[dict], *, days_ago: float = 10) -> None:
    """Past fetched values of budget_thresholds in one context, oldest first, a day apart, the
    newest `days_ago` days old (past the type's 7-day max staleness: no stale value to serve)."""
    value_type = ValueType.objects.get(key="budget_thresholds")
    newest = timezone.now() - timedelta(days=days_ago)
    for age, value in enumerate(reversed(values)):
        fetched_at = newest - timedelta(days=age)
        ValueRecord.objects.create(
            value_type=value_type, context_key=context_key, context={}, value=value, provenance={}, fetched_at=fetched_at
        )
    # The engine keeps the newest as the last known good value, beside its history.
    ResolvedValue.objects.create(
        value_type=value_type, context_key=context_key, context={}, value=values[-1], fetched_at=newest,
        provenance={"tier": "primary", "origin": "primary", "sources": [], "confidence": 1.0,
                    "fetched_at": newest.isoformat(), "expires_at": None, "stale": False},
        expires_at=newest + timedelta(hours=6),
    )


def test_read__history_but_no_recent_value__predicted_with_confidence_and_window(tight_budget):
    ValueType.objects.filter(key="budget_thresholds").update(widening_order=[])
    reload_engine()
    history("region=us", [scaled(BUDGET, 1.0), scaled(BUDGET, 1.1), scaled(BUDGET, 5.0), scaled(BUDGET, 1.2)])
    stop_sources(tight_budget)

    answer = get_value("budget_thresholds", US)

    assert answer.provenance.tier == answer.provenance.origin == "predicted"
    # The weighted median: the one wild value (×5) does not move it.
    assert answer.value == pytest.approx(scaled(BUDGET, 1.2))
    assert 0 < answer.provenance.confidence <= 0.5
    assert answer.provenance.window["points"] == 4
    assert answer.provenance.window["oldest"] < answer.provenance.window["newest"]
    assert answer.provenance.stale is True


def test_read__forecast_breaks_the_types_rules__refused_and_fallback_served(tight_budget):
    ValueType.objects.filter(key="budget_thresholds").update(widening_order=[])
    reload_engine()
    not_ascending = {**BUDGET, "small_threshold": 100}  # below micro_threshold: breaks `ascending`
    history("region=us", [not_ascending] * 4)
    stop_sources(tight_budget)

    answer = get_value("budget_thresholds", US)

    assert answer.provenance.tier == "fallback"
    assert answer.value == SEED_FALLBACK


def test_read__prediction_switched_off__fallback_though_history_exists(tight_budget):
    ValueType.objects.filter(key="budget_thresholds").update(widening_order=[], is_prediction_enabled=False)
    reload_engine()
    history("region=us", [BUDGET] * 4)
    stop_sources(tight_budget)

    answer = get_value("budget_thresholds", US)

    assert answer.provenance.tier == "fallback"


def test_read__too_little_history__no_forecast(tight_budget):
    ValueType.objects.filter(key="budget_thresholds").update(widening_order=[])
    reload_engine()
    history("region=us", [BUDGET] * 2)
    stop_sources(tight_budget)

    assert get_value("budget_thresholds", US).provenance.tier == "fallback"


def test_read__degraded_answer__cached_in_l2_with_its_reason(tight_budget):
    stop_sources(tight_budget)

    answer = get_value("budget_thresholds", US)
    value_type = registry.snapshot().value_type("budget_thresholds")
    cached = l2.get(cache_key(value_type, "region=us"))

    assert cached is not None and cached.provenance.reason == answer.provenance.reason == "sources_down"
    assert cached.provenance.tier == "l2" and cached.provenance.origin == "fallback"


def test_read_api__unseen_context_during_an_outage__widened_provenance_in_the_json(tight_budget, client):
    store_last_good(US, blended([(0.6, BUDGET), (0.4, OTHER_BUDGET)]))
    stop_sources(tight_budget)

    response = client.get("/api/v1/values/budget_thresholds/", {"region": "us", "industry": "toys"})

    assert response.status_code == 200
    provenance = response.json()["provenance"]
    assert provenance["tier"] == provenance["origin"] == "widened"
    assert provenance["context_used"] == {"region": "us"}
    assert provenance["reason"] == "sources_down"
    assert provenance["refreshing"] is True
    assert provenance["window"] is None


def test_read__source_slower_than_the_budget__consumers_do_not_open_its_breaker(tight_budget):
    # Half a second: healthy, but longer than a consumer waits (Google Ads can take that long).
    tight_budget.route("GET", MARKET_PATH, json=market_answer(BUDGET), delay=0.5)

    answers = [get_value("budget_thresholds", {"region": f"slow{number}"}) for number in range(8)]

    # Each read timed out on it (cut short by its own budget), more often than the breaker's
    # threshold (5), and blended the other source alone; the source's breaker stays closed, so
    # that refreshes, which wait for it, keep its values coming.
    assert all([use.name for use in answer.provenance.sources] == [BENCHMARKS] for answer in answers)
    assert breaker_state(MARKET).state == "closed"
