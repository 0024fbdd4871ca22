"""A real Celery worker (and beat) on the Redis broker, in subprocesses on the test's database and
Redis (tests/refresh/celery_processes.py): a queued refresh calls the local sources and its
value is served to this process from the shared cache with its provenance; a schedule changed
in the database changes beat's cadence at the next tick, with no restart.

Every wait has a generous timeout (a busy 2-core machine), every process is stopped and reaped
in `finally` (the `with` blocks), and no assertion depends on tight timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.refresh.celery_processes import CeleryProcess
from tests.refresh.conftest import BENCHMARKS, BENCHMARKS_PATH, BUDGET, MARKET, MARKET_PATH
from values import get_value
from values.models import ContextReads, ResolvedValue, ValueType
from values.services import value_type_update
from values.tasks import refresh_value

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_TIMEOUT = 90.0
CONTEXT = {"region": "us", "industry": "retail"}


def wait_until(condition: Callable[[], object], what: str, *processes: CeleryProcess, timeout: float = WAIT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        for process in processes:
            assert process.process.poll() is None, f"{process.name} exited:\n{process.output()[-6000:]}"
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}:\n{p.output()[-4000:]}" for p in processes)
            raise AssertionError(f"not {what} after {timeout}s\n{logs}")
        time.sleep(0.2)


def set_budget_schedule(**fields) -> None:
    value_type_update(
        value_type=ValueType.objects.get(key="budget_thresholds"), actor="tests", channel="tests",
        reason="celery test", **fields,
    )


def test_worker__refresh_value_queued__sources_called_and_value_served_with_provenance(sources, tmp_path):
    with CeleryProcess.worker(tmp_path) as worker:
        worker.wait_for("ready.")
        assert sources.calls() == 0

        refresh_value.delay("budget_thresholds", CONTEXT)

        wait_until(
            lambda: ContextReads.objects.filter(
                value_type__key="budget_thresholds", context_key="industry=retail&region=us",
                last_refreshed_at__isnull=False,
            ).exists(),
            "refreshed by the worker",
            worker,
        )
        worker.wait_for("refresh of budget_thresholds")
        log = worker.output()

    assert sources.calls(MARKET_PATH) == 1 and sources.calls(BENCHMARKS_PATH) == 1, sources.requests
    assert "Task values.tasks.refresh_value[" in log and "refreshed (primary) first value" in log
    stored = ResolvedValue.objects.get(value_type__key="budget_thresholds", context_key="industry=retail&region=us")
    assert stored.value == BUDGET

    answer = get_value("budget_thresholds", CONTEXT)  # this process: the worker's value, from Redis

    assert (answer.provenance.tier, answer.provenance.origin) == ("l2", "primary")
    assert answer.value == BUDGET
    assert {use.name for use in answer.provenance.sources} == {MARKET, BENCHMARKS}
    assert answer.provenance.errors == ()
    assert sources.calls() == 2  # the worker's two calls; this read called nobody


def test_beat_and_worker__update_frequency_changed_in_database__cadence_follows_without_restart(sources, tmp_path):
    # Every 2 s, and values that stay fresh for an hour: only the schedule can queue a refresh.
    set_budget_schedule(update_frequency=timedelta(seconds=2), ttl=timedelta(hours=1))
    environment = {"DYNCONFIG_DISPATCH_INTERVAL": "1"}

    with CeleryProcess.worker(tmp_path, **environment) as worker, CeleryProcess.beat(tmp_path, **environment) as beat:
        worker.wait_for("ready.")
        wait_until(lambda: sources.calls(MARKET_PATH) >= 3, "refreshed three times", worker, beat)

        set_budget_schedule(update_frequency=timedelta(days=1))  # as the admin does; nothing restarts

        time.sleep(3)  # a few ticks: the first one after the commit reads P1D
        wait_until(
            lambda: not ContextReads.objects.filter(
                value_type__key="budget_thresholds", queued_until__gt=timezone.now()
            ).exists(),
            "done with the refreshes queued before the change",
            worker, beat,
        )
        settled = sources.calls(MARKET_PATH)
        ticks_before = beat.output().count("Sending due task")
        time.sleep(6)  # six more ticks at 1 s
        ticks = beat.output().count("Sending due task") - ticks_before
        assert ticks >= 2, beat.output()[-4000:]  # beat kept running the dispatcher...
        assert sources.calls(MARKET_PATH) == settled  # ...which queued no budget refresh

        set_budget_schedule(update_frequency=timedelta(seconds=2))  # and back, still no restart
        wait_until(lambda: sources.calls(MARKET_PATH) >= settled + 2, "refreshing again", worker, beat)
        assert worker.process.poll() is None and beat.process.poll() is None
