"""How many beats may run: two beats on one database and broker, and what each due pair costs.

Two beats send the dispatcher twice per tick. The dispatcher leases each pair it queues
(`queued_until`, values.refresh.refresh_dispatch), so the second dispatch of a tick finds the
pairs leased, or already refreshed and no longer due: each pair is refreshed once per round.

The first test runs the real thing (tests/refresh/celery_processes.py): two beats ticking every
second, one worker with a pool of two (as production's prefork pool, so that the two dispatches
of a tick may run at once), budget_thresholds' round every ROUND seconds. It counts each pair's
calls at the local sources and checks that two calls of one pair are a round apart.

The second holds one dispatch between deciding what is due and leasing it, while the other
dispatches and its refreshes finish: two dispatches that overlap, one of them slow (a loaded
host, a slow database). The held one decides before its transaction, from rows read before the
other's lease; when it leases, the refreshes have released theirs, so it queues every pair again.
It failed before each type's schedule row was locked for the whole dispatch (the decision
included): a pair was queued twice. It holds the dispatch in its `random` hook,
drawn while it decides whether a value not due by its round expires soon.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connections
from django.utils import timezone

from tests.refresh.celery_processes import CeleryProcess, celery_environment
from tests.refresh.conftest import (
    BENCHMARKS_PATH,
    BUDGET,
    MARKET_PATH,
    benchmarks_answer,
    market_answer,
    serve_multipliers,
)
from tests.servers import LocalServer, RecordedRequest
from values import popularity
from values.models import ContextReads, ValueType
from values.refresh import refresh_dispatch, value_refresh
from values.services import value_type_update

pytestmark = pytest.mark.django_db(transaction=True)

ROUND = 5.0  # budget_thresholds' update_frequency, in seconds
DISPATCH_INTERVAL = "1"  # each beat sends the dispatcher every second
ROUNDS_WANTED = 3
# Two calls of one pair in one round are a tick apart at most; two rounds are ROUND apart, less
# what the queue delayed the earlier refresh (a busy 2-core machine): half a round tells them apart.
SAME_ROUND = ROUND / 2
WAIT_TIMEOUT = 60.0
# How long the held dispatch waits for the other one and its refreshes (a second or two): if a
# fix makes the other dispatch wait for the held one, the hold ends after this.
HOLD_TIMEOUT = 20.0
REGIONS = ("us", "de", "fr")
PAIRS = ("", *(f"region={region}" for region in REGIONS))  # the empty context is always a candidate


def never_early() -> float:
    return 1.0  # XFetch's draw that never refreshes a value early


class BudgetCalls:
    """The budget sources on the local server, recording when each context's refresh called."""

    def __init__(self, server: LocalServer):
        self.times: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()
        server.route("GET", MARKET_PATH, handler=self._market)
        server.route("GET", BENCHMARKS_PATH, json=benchmarks_answer(BUDGET))

    def _market(self, request: RecordedRequest):
        query = parse_qs(urlsplit(request.path).query)
        region = query.get("region", [""])[0]
        with self._lock:
            self.times[f"region={region}" if region else ""].append(time.monotonic())
        return 200, {"Content-Type": "application/json"}, market_answer(BUDGET)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {pair: len(self.times[pair]) for pair in PAIRS}

    def gaps(self) -> dict[str, list[float]]:
        with self._lock:
            return {pair: [b - a for a, b in zip(self.times[pair], self.times[pair][1:])] for pair in PAIRS}


def budget_schedule(**fields) -> None:
    value_type_update(
        value_type=ValueType.objects.get(key="budget_thresholds"), actor="tests", channel="tests",
        reason="two beats test", **fields,
    )


def read_regions() -> None:
    """Consumers read budget_thresholds in each region: those contexts become candidates."""
    for region in REGIONS:
        popularity.record("budget_thresholds", f"region={region}", {"region": region})
    popularity.flush()


def wait_until(condition: Callable[[], object], what: str, *processes: CeleryProcess, timeout: float = WAIT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not condition():
        for process in processes:
            assert process.process.poll() is None, f"{process.name} exited:\n{process.output()[-6000:]}"
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}:\n{p.output()[-4000:]}" for p in processes)
            raise AssertionError(f"not {what} after {timeout}s\n{logs}")
        time.sleep(0.2)


def pool_worker(log_dir, **environment: str) -> CeleryProcess:
    """One worker with a prefork pool of two: two dispatches of a tick can run at once."""
    arguments = [
        "worker", "--pool=prefork", "--concurrency=2", "-Q", "celery", "--without-heartbeat",
        "--without-mingle", "--without-gossip", "-l", "info", "-n", f"two-beats-{os.getpid()}@%h",
    ]
    return CeleryProcess("worker", arguments, log_dir, celery_environment(**environment))


def beat(log_dir, name: str, **environment: str) -> CeleryProcess:
    directory = log_dir / name  # a schedule file and a log of its own
    directory.mkdir()
    process = CeleryProcess.beat(directory, **environment)
    process.name = name
    return process


def test_two_beats__one_worker__each_due_pair_refreshed_once_per_round(sources, tmp_path):
    calls = BudgetCalls(sources)
    # Values stay fresh for an hour: only budget_thresholds' round queues its refreshes.
    budget_schedule(update_frequency=timedelta(seconds=ROUND), ttl=timedelta(hours=1))
    read_regions()
    environment = {"DYNCONFIG_DISPATCH_INTERVAL": DISPATCH_INTERVAL}

    with pool_worker(tmp_path, **environment) as worker:
        worker.wait_for("ready.")
        with beat(tmp_path, "beat-1", **environment) as first, beat(tmp_path, "beat-2", **environment) as second:
            wait_until(
                lambda: min(calls.counts().values()) >= ROUNDS_WANTED, f"{ROUNDS_WANTED} rounds", worker, first, second,
            )
            ticks = {process.name: process.output().count("Sending due task") for process in (first, second)}
        # Beats stopped: let the worker finish what they queued, until nothing moves for a while.
        settled = {}
        def is_settled() -> bool:
            counts = calls.counts()
            is_leased = ContextReads.objects.filter(queued_until__gt=timezone.now()).exists()
            if counts != settled.get("counts") or is_leased:
                settled.update(counts=counts, since=time.monotonic())
                return False
            return time.monotonic() - settled["since"] >= 2 * float(DISPATCH_INTERVAL)
        wait_until(is_settled, "settled", worker)

    counts, gaps = calls.counts(), calls.gaps()
    report = f"calls per pair {counts}, gaps between a pair's calls (s) {gaps}, beats' ticks {ticks}"
    assert all(count >= 2 for count in ticks.values()), report  # both beats ran the dispatcher
    assert all(gap >= SAME_ROUND for pair_gaps in gaps.values() for gap in pair_gaps), report  # never twice a round
    assert len(set(counts.values())) == 1, report  # and every pair in every round


def test_two_dispatches_overlap__other_refreshed_while_one_decides__pair_refreshed_once_per_round(sources):
    calls = BudgetCalls(sources)
    serve_multipliers(sources)
    budget_schedule(update_frequency=timedelta(seconds=1), ttl=timedelta(hours=1))
    read_regions()
    # A first round of everything, run as the worker would: industry_multipliers gets a fresh
    # value and a round a day away, so deciding whether it is due draws `random`.
    for due in refresh_dispatch(enqueue=lambda key, context: None, random=never_early):
        value_refresh(key=due.key, context=due.context)
    time.sleep(1.1)  # budget_thresholds' next round is due
    before = calls.counts()

    deciding, resume = threading.Event(), threading.Event()
    queued = {}

    def slow_random() -> float:  # the held dispatch has decided budget_thresholds by now
        deciding.set()
        resume.wait(HOLD_TIMEOUT)
        return never_early()

    def held_dispatch() -> None:
        try:
            queued["held"] = refresh_dispatch(enqueue=lambda key, context: None, random=slow_random)
        finally:
            connections.close_all()

    held = threading.Thread(target=held_dispatch)
    held.start()
    try:
        if not deciding.wait(WAIT_TIMEOUT):
            pytest.fail("the held dispatch never drew `random`: nothing held it")  # not the xfail's failure
        queued["other"] = refresh_dispatch(enqueue=lambda key, context: None, random=never_early)
        for due in queued["other"]:  # the worker runs the other dispatch's refreshes meanwhile
            value_refresh(key=due.key, context=due.context)
    finally:
        resume.set()
        held.join(WAIT_TIMEOUT)

    both = [(due.key, due.context) for due in queued["other"]] + [(due.key, due.context) for due in queued["held"]]
    for due in queued["held"]:  # ...and then the held dispatch's
        value_refresh(key=due.key, context=due.context)
    this_round = {pair: calls.counts()[pair] - before[pair] for pair in PAIRS}
    assert this_round == {pair: 1 for pair in PAIRS}, f"queued: {both}"
