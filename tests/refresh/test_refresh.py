"""Refreshes in this process, through the services (values.refresh) and the dispatcher's rule:
the schedule read from the data at each tick, the backoff after failures, the last known good
value kept when a refresh brings an invalid one, and the most read contexts refreshed first.

The dispatcher is called with a clock (`now`) and a `random` of the test's: 1.0 never refreshes
early by chance, so what is due is deterministic. Queued refreshes are collected, then run with
`value_refresh`, as the worker's task would.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from sources.models import Source
from sources.services import source_breaker_reset
from tests.refresh.conftest import (
    BENCHMARKS,
    BUDGET,
    MARKET,
    MARKET_PATH,
    MULTIPLIERS,
    fail_budget,
    scaled,
    serve_budget,
    serve_multipliers,
)
from values import get_value, popularity, refresh
from values.cache import l1
from audit.history import config_versions
from values.models import ContextReads, RefreshSchedule, ResolvedValue, ValueType
from values.refresh import (
    FAILED,
    REFRESHED,
    RETRY_BACKOFF_BASE,
    RETRY_BACKOFF_CAP,
    UNCHANGED,
    expires_soon,
    refresh_dispatch,
    refreshes_due,
    retry_delay,
    value_refresh,
)
from values.services import override_create, value_type_update

pytestmark = pytest.mark.django_db

US = {"region": "us"}
DE = {"region": "de"}
BUDGET_ALL = ("budget_thresholds", {})  # the empty context
# For a region, budget_thresholds' secondary (world_bank_api) calls out too (without one it only
# scales the fallback by 1, with no call, and answers): with the primaries down, DE fails.
BUDGET_DE = ("budget_thresholds", DE)
MULTIPLIERS_ALL = ("industry_multipliers", {})


def never_early() -> float:
    """A draw of 1.0: -ln(1) = 0, so nothing is refreshed early by chance."""
    return 1.0


def dispatch(now: datetime, capture, random=never_early) -> list[tuple[str, dict]]:
    """One dispatcher tick at `now`; what it queued (the enqueue runs after its commit)."""
    queued: list[tuple[str, dict]] = []
    with capture(execute=True):
        refresh_dispatch(enqueue=lambda key, context: queued.append((key, context)), now=now, random=random)
    return queued


def run(queued: list[tuple[str, dict]], capture, *wanted: tuple[str, dict]) -> list[refresh.RefreshOutcome]:
    """Run the `wanted` pairs among the queued refreshes (the others stay queued), as the worker
    would; their outcomes, in order."""
    outcomes = []
    with capture(execute=True):
        for key, context in wanted:
            assert (key, context) in queued, ((key, context), queued)
            outcomes.append(value_refresh(key=key, context=context))
    return outcomes


def set_frequency(key: str, frequency: timedelta) -> None:
    value_type_update(
        value_type=ValueType.objects.get(key=key), actor="tests", channel="tests",
        reason="refresh test", update_frequency=frequency,
    )


def reads_row(key: str, context_key: str = "") -> ContextReads:
    return ContextReads.objects.get(value_type__key=key, context_key=context_key)


# The schedule is the data -------------------------------------------------------------------


def test_dispatch__update_frequency_changed__next_tick_follows_it(sources, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    set_frequency("budget_thresholds", timedelta(seconds=2))
    start = timezone.now()

    first = dispatch(start, capture)
    assert BUDGET_ALL in first  # never refreshed: its round is due at once
    assert run(first, capture, BUDGET_ALL)[0].status == REFRESHED
    assert RefreshSchedule.objects.get(value_type__key="budget_thresholds").last_dispatched_at == start

    assert BUDGET_ALL not in dispatch(start + timedelta(seconds=1), capture)  # 1 s < PT2S
    second = dispatch(start + timedelta(seconds=3), capture)
    assert BUDGET_ALL in second
    assert run(second, capture, BUDGET_ALL)[0].status == UNCHANGED

    set_frequency("budget_thresholds", timedelta(days=1))  # as the admin does, through the service

    for later in (5, 60, 200):  # within the value's TTL (300 s here): only the round could queue it
        assert BUDGET_ALL not in dispatch(start + timedelta(seconds=later), capture)
    ResolvedValue.objects.filter(value_type__key="budget_thresholds").update(expires_at=start + timedelta(days=2))
    assert BUDGET_ALL not in dispatch(start + timedelta(hours=23), capture)
    assert BUDGET_ALL in dispatch(start + timedelta(days=1, seconds=3), capture)


def test_dispatch__queued_pair__not_queued_again_until_run_or_lease_over(sources, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    set_frequency("budget_thresholds", timedelta(seconds=1))
    start = timezone.now()

    assert BUDGET_ALL in dispatch(start, capture)
    # Its round is due again, but its refresh has not run yet: queued once only.
    assert BUDGET_ALL not in dispatch(start + timedelta(seconds=5), capture)
    assert reads_row("budget_thresholds").queued_until == start + refresh.REFRESH_LEASE
    # The task was lost: its lease ends and a later tick queues it again.
    assert BUDGET_ALL in dispatch(start + refresh.REFRESH_LEASE + timedelta(seconds=1), capture)


def test_refreshes_due__lists_pairs_without_queuing(sources):
    assert BUDGET_ALL in refreshes_due(random=never_early)
    assert BUDGET_ALL in refreshes_due(random=never_early)  # nothing was leased
    assert not ContextReads.objects.filter(queued_until__isnull=False).exists()


# Backoff ------------------------------------------------------------------------------------


def test_refresh__failing_source__backs_off_5_minutes_then_doubles_and_other_keys_go_on(
    sources, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    fail_budget(sources)
    serve_multipliers(sources)
    # Consumers read DE (counted as get_value counts it; a real read would also call the sources
    # and bring their breakers closer to opening, which would change the reasons below).
    popularity.record("budget_thresholds", "region=de", DE)
    popularity.flush()
    start = timezone.now()

    first = dispatch(start, capture)
    before = timezone.now()
    failed, refreshed = run(first, capture, BUDGET_DE, MULTIPLIERS_ALL)
    after = timezone.now()

    assert failed.status == FAILED
    assert failed.tier == "fallback"  # nothing better known yet
    assert "HTTP 500" in failed.reason and MARKET in failed.reason and BENCHMARKS in failed.reason
    row = reads_row("budget_thresholds", "region=de")
    assert row.failures == 1
    assert before + RETRY_BACKOFF_BASE <= row.next_refresh_at <= after + RETRY_BACKOFF_BASE
    assert "HTTP 500" in row.last_error
    assert (refreshed.status, refreshed.tier, refreshed.answer.value) == (REFRESHED, "primary", MULTIPLIERS)

    # Both types' rounds are due every second from now on; the failing pair waits its backoff.
    set_frequency("budget_thresholds", timedelta(seconds=1))
    set_frequency("industry_multipliers", timedelta(seconds=1))
    calls_before = sources.calls(MARKET_PATH)
    for later in (30, 120, 290):
        queued = dispatch(start + timedelta(seconds=later), capture)
        assert BUDGET_DE not in queued, later
        assert run(queued, capture, MULTIPLIERS_ALL)[0].status == UNCHANGED  # never blocked by the other key
    assert sources.calls(MARKET_PATH) == calls_before  # no tight loop on the failing source

    retry_at = row.next_refresh_at + timedelta(seconds=1)
    queued = dispatch(retry_at, capture)
    before = timezone.now()
    assert run(queued, capture, BUDGET_DE)[0].status == FAILED
    after = timezone.now()
    row.refresh_from_db()
    assert row.failures == 2
    assert before + 2 * RETRY_BACKOFF_BASE <= row.next_refresh_at <= after + 2 * RETRY_BACKOFF_BASE
    assert BUDGET_DE not in dispatch(row.next_refresh_at - timedelta(seconds=1), capture)

    # The sources recover (and an operator closes their breakers, open after so many failures):
    # the next retry succeeds and the backoff is gone.
    serve_budget(sources)
    for source in Source.objects.filter(name__in=[MARKET, BENCHMARKS]):
        source_breaker_reset(source=source, actor="tests", channel="tests", reason="recovered")
    queued = dispatch(row.next_refresh_at + timedelta(seconds=1), capture)
    assert run(queued, capture, BUDGET_DE)[0].status == REFRESHED
    row.refresh_from_db()
    assert (row.failures, row.next_refresh_at, row.last_error) == (0, None, "")


def test_retry_delay__doubles_from_5_minutes_up_to_an_hour():
    assert [retry_delay(failures) for failures in range(1, 8)] == [
        timedelta(minutes=minutes) for minutes in (5, 10, 20, 40, 60, 60, 60)
    ]
    assert retry_delay(10_000) == RETRY_BACKOFF_CAP


# Invalid values -----------------------------------------------------------------------------


def test_refresh__out_of_bound_numbers__last_known_good_kept_and_served(sources, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    with capture(execute=True):
        good = value_refresh(key="budget_thresholds", context=US)
    assert (good.status, good.tier) == (REFRESHED, "primary")
    assert good.answer.value == BUDGET

    # Both sources now answer numbers past the bounds (enterprise above 1e9, 1000× the last good).
    serve_budget(sources, scaled(BUDGET, 1000))
    with capture(execute=True):
        invalid = value_refresh(key="budget_thresholds", context=US)

    assert invalid.status == FAILED
    assert invalid.tier == "l3"  # the stored value is still fresh: kept, not made stale
    assert invalid.answer.value == BUDGET
    assert "above the maximum" in invalid.reason
    row = ResolvedValue.objects.get(value_type__key="budget_thresholds", context_key="region=us")
    assert row.value == BUDGET  # the invalid value was never stored

    l1.clear()  # another process: it finds what the refresh left in Redis, the good value as it was
    answer = get_value("budget_thresholds", US)
    assert (answer.provenance.tier, answer.provenance.origin, answer.value) == ("l2", "primary", BUDGET)
    l1.clear()
    from django.core.cache import caches

    caches["default"].clear()  # the brief stale answer gone: the database's good value
    answer = get_value("budget_thresholds", US)
    assert (answer.provenance.tier, answer.provenance.origin, answer.value) == ("l3", "primary", BUDGET)


def test_refresh__value_changed__every_process_told_after_commit(sources, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    with capture(execute=True):
        value_refresh(key="budget_thresholds", context=US)
    _, data_version = config_versions()

    with capture(execute=True):
        assert value_refresh(key="budget_thresholds", context=US).status == UNCHANGED
    assert config_versions()[1] == data_version  # same value: nobody's L1 needs dropping

    serve_budget(sources, scaled(BUDGET, 1.5))
    with capture(execute=False) as callbacks:
        assert value_refresh(key="budget_thresholds", context=US).status == REFRESHED
        assert config_versions()[1] == data_version  # not before the commit
    for callback in callbacks:
        callback()
    assert config_versions()[1] == data_version + 1


def test_refresh__unknown_key_or_context__failed_with_reason(sources):
    assert value_refresh(key="nope", context={}).reason == "unknown value type 'nope'"
    refused = value_refresh(key="budget_thresholds", context={"planet": "mars"})
    assert refused.status == FAILED and "unknown context key 'planet'" in refused.reason


def test_dispatch__overridden_context__not_refreshed(sources, django_capture_on_commit_callbacks):
    from values.registry import registry

    override_create(
        value_type=ValueType.objects.get(key="budget_thresholds"), value=scaled(BUDGET, 2),
        reason="test", actor="tests", channel="tests", context_match={},
    )
    registry.refresh(force=True)
    assert BUDGET_ALL not in dispatch(timezone.now(), django_capture_on_commit_callbacks)


# Early refresh (XFetch) ---------------------------------------------------------------------


def test_expires_soon__certain_near_expiry_then_less_likely_the_further_it_is():
    now = timezone.now()
    window = timedelta(seconds=40)
    assert expires_soon(now + timedelta(seconds=39), now, window, never_early)
    assert not expires_soon(now + timedelta(seconds=80), now, window, never_early)
    # exp(-80 / 40): a draw below it refreshes, one above does not.
    assert expires_soon(now + timedelta(seconds=80), now, window, lambda: math.exp(-2) - 1e-9)
    assert not expires_soon(now + timedelta(seconds=80), now, window, lambda: math.exp(-2) + 1e-9)
    assert expires_soon(now + timedelta(days=1), now, window, lambda: 0.0)


def test_dispatch__value_expiring_before_next_tick__refreshed_early(sources, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    start = timezone.now()
    assert run(dispatch(start, capture), capture, BUDGET_ALL)[0].status == REFRESHED
    expires_at = ResolvedValue.objects.get(value_type__key="budget_thresholds", context_key="").expires_at

    # The round (PT6H) is not due; the value (TTL 300 s in the test environment) is fresh.
    assert BUDGET_ALL not in dispatch(start + timedelta(seconds=10), capture)
    # Close to its expiry it is refreshed before consumers meet a cold read.
    assert BUDGET_ALL in dispatch(expires_at - timedelta(seconds=20), capture)


def test_dispatch__early_refresh_by_chance__follows_the_draw(sources, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    start = timezone.now()
    run(dispatch(start, capture), capture, BUDGET_ALL)
    later = start + timedelta(seconds=10)
    assert BUDGET_ALL not in dispatch(later, capture, random=lambda: 0.5)
    assert BUDGET_ALL in dispatch(later, capture, random=lambda: 1e-300)


# The most read contexts ---------------------------------------------------------------------


def test_dispatch__most_read_contexts__refreshed_and_the_tail_left_to_reads(
    sources, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(refresh, "TOP_CONTEXTS", 2)
    for region, reads in (("us", 5), ("de", 3), ("fr", 1)):
        for _ in range(reads):
            get_value("budget_thresholds", {"region": region})
    popularity.flush()

    queued = dispatch(timezone.now(), django_capture_on_commit_callbacks)

    budget = [context for key, context in queued if key == "budget_thresholds"]
    assert budget == [{}, {"region": "us"}, {"region": "de"}]
