"""Concurrency of the resolution engine, across threads and across processes.

- Stampede: concurrent cold reads of one key and context call each source once, whether they
  come from threads of one process or from threads of several processes (one leader per
  process through InProcessFlights, one per key across processes through the Redis lock), and
  every reader gets the leader's answer (no fallback for the waiting ones).
- Coherence: an operator's change committed by one process reaches a reader in another process
  within one second (values.registry polls the newest AuditEntry id every 0.5 s).

The other processes run tests/values/reader_process.py on the test database (committed data:
every test here is transactional) and the same Redis database. Every wait has a timeout and
every process is killed and reaped in `finally`, so a bug fails a test instead of hanging it.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import pytest
from django.db import connections, transaction

from tests.processes import LineProcess, child_environment
from tests.servers import LocalServer
from tests.values.conftest import BUDGET, serve_sources
from values import get_value
from values.models import ValueType
from values.services import override_create, value_type_update

pytestmark = pytest.mark.django_db(transaction=True)

READER_SCRIPT = Path(__file__).with_name("reader_process.py")

BUDGET_SOURCES = ("market_research_api", "industry_benchmarks_api")
MARKET_PATH = "/v1/budget-benchmarks"
INDUSTRY_PATH = "/benchmarks/budget-tiers"
MULTIPLIER_SOURCES = ("economic_intelligence_api", "competitive_analysis_api")

CONTEXT = {"region": "us", "industry": "retail"}
CONTEXT_ARGUMENTS = ["--context", "region=us", "--context", "industry=retail"]

# What the two budget sources say (base.yaml's mappings), and their blend by weight 0.6 / 0.4.
INDUSTRY_BUDGET = {name: threshold * 7 / 6 for name, threshold in BUDGET.items()}  # 700, 7000, ...
MARKET_PAYLOAD = {
    "micro_business_spending_median": BUDGET["micro_threshold"],
    "small_business_spending_median": BUDGET["small_threshold"],
    "medium_business_spending_median": BUDGET["medium_threshold"],
    "large_business_spending_median": BUDGET["large_threshold"],
    "enterprise_spending_median": BUDGET["enterprise_threshold"],
}
INDUSTRY_PAYLOAD = {
    "tiers": {name.removesuffix("_threshold"): value for name, value in INDUSTRY_BUDGET.items()}
}
BLENDED = {name: 0.6 * BUDGET[name] + 0.4 * INDUSTRY_BUDGET[name] for name in BUDGET}  # 640, 6400, ...

PROCESSES = 5
THREADS_PER_PROCESS = 10
SOURCE_DELAY = 0.3
# The product requirement: an operator's change is served everywhere within this many seconds.
PROPAGATION_LIMIT = 1.0

# Waits, generous against a loaded machine, far below a hang.
STARTUP_TIMEOUT = 40.0  # Django starting in several processes at once on few CPUs
READ_TIMEOUT = 20.0


# Helpers -----------------------------------------------------------------------------------------


class ReaderProcess(LineProcess):
    """reader_process.py in a subprocess: lines in through stdin, words and JSON out of stdout."""

    failure_words = ("ERROR", "TIMEOUT")

    def __init__(self, arguments: list[str], environment: dict[str, str], log_dir: Path, name: str):
        stderr = (log_dir / f"{name}.stderr").open("w")
        super().__init__(READER_SCRIPT, arguments, environment, stderr, name)


def reader_environment() -> dict[str, str]:
    """The environment of a reader process: this test's database and Redis, the credentials."""
    return child_environment(LOG_LEVEL="WARNING")


def serve_budget(server: LocalServer, delay: float = 0.0) -> None:
    server.route("GET", MARKET_PATH, json=MARKET_PAYLOAD, delay=delay)
    server.route("GET", INDUSTRY_PATH, json=INDUSTRY_PAYLOAD, delay=delay)
    serve_sources(server, *BUDGET_SOURCES)


def assert_blended(value: dict) -> None:
    assert set(value) == set(BLENDED), value
    for name, expected in BLENDED.items():
        assert math.isclose(value[name], expected, rel_tol=1e-9), (name, value[name], expected)


def assert_one_leader(results: list[dict], server: LocalServer) -> None:
    """Each source called once; every reader got the same blended value, one of them fetched it."""
    assert server.calls(MARKET_PATH) == 1, server.requests
    assert server.calls(INDUSTRY_PATH) == 1, server.requests
    assert server.calls() == 2, server.requests
    assert [r for r in results if "exception" in r] == []
    assert {r["origin"] for r in results} == {"primary"}, [(r["tier"], r["origin"], r["errors"]) for r in results]
    assert [r["tier"] for r in results].count("primary") == 1  # the leader; the others waited for it
    assert all(r["errors"] == [] for r in results)
    values = [json.dumps(r["value"], sort_keys=True) for r in results]
    assert len(set(values)) == 1, set(values)
    assert_blended(results[0]["value"])


def watch(
    log_dir: Path, name: str, key: str, context_arguments: list[str], *conditions: str, timeout: float = 5.0
) -> ReaderProcess:
    arguments = ["watch", "--key", key, *context_arguments, *conditions, "--timeout", str(timeout)]
    return ReaderProcess(arguments, reader_environment(), log_dir, name)


def commit_and_signal(change, watcher: ReaderProcess) -> float:
    """Run `change` in a transaction; the moment right after its COMMIT goes to `watcher`."""
    committed: list[float] = []
    with transaction.atomic():
        change()
        transaction.on_commit(lambda: committed.append(time.time()))
    assert committed, "not committed"
    watcher.send(repr(committed[0]))
    return committed[0]


# Stampede ----------------------------------------------------------------------------------------


def test_cold_reads__50_threads_in_5_processes__each_source_called_once(engine, local_server, tmp_path):
    serve_budget(local_server, delay=SOURCE_DELAY)
    environment = reader_environment()
    arguments = ["read", "--threads", str(THREADS_PER_PROCESS), "--key", "budget_thresholds", *CONTEXT_ARGUMENTS]
    readers: list[ReaderProcess] = []
    try:
        for index in range(PROCESSES):
            readers.append(ReaderProcess(arguments, environment, tmp_path, f"reader-{index}"))
        for reader in readers:  # every thread of every process waiting at its barrier
            reader.expect("READY", STARTUP_TIMEOUT)
        assert local_server.calls() == 0
        for reader in readers:
            reader.send("GO")
        results = []
        for reader in readers:
            reader.expect("DONE", READ_TIMEOUT)
            results.extend(json.loads(line.partition(" ")[2]) for line in reader.lines if line.startswith("RESULT "))
            assert reader.wait() == 0, reader.diagnostics()
    finally:
        for reader in readers:
            reader.stop()

    assert len(results) == PROCESSES * THREADS_PER_PROCESS
    assert len({r["pid"] for r in results}) == PROCESSES
    # They really overlapped: every read had begun before the first one had its answer.
    assert max(r["began"] for r in results) < min(r["ended"] for r in results)
    assert_one_leader(results, local_server)
    # L3 too: a reader that missed L2 just before the leader stored its answer may read the
    # database just after the leader wrote it (a thread's first query opens its connection).
    assert {r["tier"] for r in results} <= {"primary", "l1", "l2", "l3"}


def test_cold_reads__50_threads_in_one_process__each_source_called_once(engine, local_server):
    serve_budget(local_server, delay=SOURCE_DELAY)
    threads_count = PROCESSES * THREADS_PER_PROCESS
    start = threading.Barrier(threads_count + 1, timeout=READ_TIMEOUT)
    results: list[dict] = []

    def reader(index: int) -> None:
        # Each thread opens its database connection during its read and closes it at once (see
        # reader_process.py: the server's connections are shared with other test runs).
        try:
            start.wait()
            began = time.time()
            try:
                answer = get_value("budget_thresholds", CONTEXT)
                result = {
                    "tier": answer.provenance.tier,
                    "origin": answer.provenance.origin,
                    "value": answer.value,
                    "errors": list(answer.provenance.errors),
                }
            except Exception as error:  # noqa: BLE001 - the assertions below report it
                result = {"exception": repr(error)}
            results.append({**result, "thread": index, "began": began, "ended": time.time()})
        finally:
            connections.close_all()

    threads = [threading.Thread(target=reader, args=(index,), daemon=True) for index in range(threads_count)]
    for thread in threads:
        thread.start()
    start.wait()  # released together
    for thread in threads:
        thread.join(timeout=READ_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a reader hung"

    assert len(results) == threads_count
    assert max(r["began"] for r in results) < min(r["ended"] for r in results)
    assert_one_leader(results, local_server)
    assert {r["tier"] for r in results} == {"primary", "l1"}


# Coherence ---------------------------------------------------------------------------------------


def test_override_created__another_process_serves_it_within_one_second(engine, local_server, tmp_path):
    serve_budget(local_server)
    override = {name: threshold * 2 for name, threshold in BUDGET.items()}
    budget_thresholds = ValueType.objects.get(key="budget_thresholds")
    watcher = watch(
        tmp_path, "watcher", "budget_thresholds", CONTEXT_ARGUMENTS,
        "--until-tier", "override", "--until-value", json.dumps(override),
    )
    try:
        first = watcher.expect("READY", STARTUP_TIMEOUT)
        assert first["tier"] == "primary", first
        assert_blended(first["value"])
        assert watcher.expect("CHANGE", READ_TIMEOUT)["tier"] == "l1"  # then from its memory
        time.sleep(0.7)  # steady state: its registry has checked the version since

        committed_at = commit_and_signal(
            lambda: override_create(
                value_type=budget_thresholds,
                value=override,
                reason="concurrency test",
                actor="tests",
                channel="tests",
                context_match={"region": "us"},
            ),
            watcher,
        )
        seen = watcher.expect("SEEN", PROPAGATION_LIMIT + 5)
        assert watcher.wait() == 0
    finally:
        watcher.stop()

    print(f"override served by the other process {seen['elapsed']:.3f}s after the commit")
    assert seen["value"] == override
    assert seen["elapsed"] == pytest.approx(seen["at"] - committed_at)
    assert 0 <= seen["elapsed"] <= PROPAGATION_LIMIT, seen
    assert local_server.calls() == 2  # the watcher's one fetch; the override needs none


def test_fallback_changed__another_process_serves_it_within_one_second(engine, local_server, tmp_path):
    # Both sources of industry_multipliers answer 404 at once (no routes): the answer is the fallback.
    serve_sources(local_server, *MULTIPLIER_SOURCES)
    industry_multipliers = ValueType.objects.get(key="industry_multipliers")
    old_fallback = industry_multipliers.fallback_value
    new_fallback = {**old_fallback, "technology": 1.5, "retail": 0.9}
    watcher = watch(
        tmp_path, "watcher", "industry_multipliers", ["--context", "region=us"],
        "--until-origin", "fallback", "--until-value", json.dumps(new_fallback),
    )
    try:
        first = watcher.expect("READY", STARTUP_TIMEOUT)
        assert (first["tier"], first["value"]) == ("fallback", old_fallback), first
        assert watcher.expect("CHANGE", READ_TIMEOUT)["tier"] == "l1"  # the fallback, cached briefly
        time.sleep(0.7)
        calls_before = local_server.calls()

        committed_at = commit_and_signal(
            lambda: value_type_update(
                value_type=industry_multipliers,
                actor="tests",
                channel="tests",
                reason="concurrency test",
                fallback_value=new_fallback,
            ),
            watcher,
        )
        seen = watcher.expect("SEEN", PROPAGATION_LIMIT + 5)
        assert watcher.wait() == 0
    finally:
        watcher.stop()

    print(f"new fallback served by the other process {seen['elapsed']:.3f}s after the commit")
    assert seen["value"] == new_fallback
    assert seen["tier"] == "fallback"  # resolved again under the new configuration, not a cached answer
    assert seen["elapsed"] == pytest.approx(seen["at"] - committed_at)
    assert 0 <= seen["elapsed"] <= PROPAGATION_LIMIT, seen
    assert local_server.calls() == calls_before + 2  # the change made every tier miss: sources tried again



# Races found by these tests, and fixed ---------------------------------------------------------


def test_cold_read_overlapping_a_finished_leader__sources_called_once(engine, local_server, monkeypatch):
    from values import resolution

    serve_budget(local_server)
    real_l3_get = resolution.l3_get
    late_missed, first_done = threading.Event(), threading.Event()
    answers: dict[str, object] = {}

    def l3_get(value_type, context_key, wider_keys=()):
        result = real_l3_get(value_type, context_key, wider_keys)
        if threading.current_thread().name == "late":
            # Its caches and the database said "nothing yet"; the other read now runs to its end
            # (a slow database answer, or a thread descheduled here, in real life).
            late_missed.set()
            first_done.wait(READ_TIMEOUT)
        return result

    monkeypatch.setattr(resolution, "l3_get", l3_get)

    def read(name: str) -> None:
        try:
            answers[name] = get_value("budget_thresholds", CONTEXT)
        finally:
            if name == "first":
                first_done.set()
            connections.close_all()

    late = threading.Thread(target=read, args=("late",), name="late", daemon=True)
    first = threading.Thread(target=read, args=("first",), name="first", daemon=True)
    late.start()
    assert late_missed.wait(READ_TIMEOUT)
    first.start()
    first.join(READ_TIMEOUT)
    late.join(READ_TIMEOUT)
    assert not first.is_alive() and not late.is_alive(), "a reader hung"

    assert answers["first"].value == answers["late"].value
    assert local_server.calls(MARKET_PATH) == 1  # not 2: the late reader finds the leader's answer
    assert local_server.calls(INDUSTRY_PATH) == 1


def test_changes_committed_out_of_id_order__both_served(engine):
    from values.registry import CHECK_INTERVAL

    budget_thresholds = ValueType.objects.get(key="budget_thresholds")
    slow_value = {name: threshold * 2 for name, threshold in BUDGET.items()}
    fast_value = {name: threshold * 3 for name, threshold in BUDGET.items()}
    inserted, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def slow_operator() -> None:
        """Saves first (the smaller AuditEntry id), commits last."""
        try:
            with transaction.atomic():
                override_create(
                    value_type=budget_thresholds, value=slow_value, reason="slow", actor="slow",
                    channel="tests", context_match={"region": "us"},
                )
                inserted.set()
                release.wait(READ_TIMEOUT)
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)
            inserted.set()
        finally:
            connections.close_all()

    operator = threading.Thread(target=slow_operator, daemon=True)
    operator.start()
    try:
        assert inserted.wait(READ_TIMEOUT) and not failures, failures
        override_create(
            value_type=budget_thresholds, value=fast_value, reason="fast", actor="fast",
            channel="tests", context_match={"region": "eu"},
        )
        time.sleep(CHECK_INTERVAL + 0.1)
        assert get_value("budget_thresholds", {"region": "eu"}).value == fast_value  # reloaded
    finally:
        release.set()
        operator.join(READ_TIMEOUT)
    assert not operator.is_alive() and not failures, failures

    time.sleep(2 * CHECK_INTERVAL + 0.1)  # two more version checks, a second after the commit
    answer = get_value("budget_thresholds", {"region": "us"})
    assert (answer.provenance.tier, answer.value) == ("override", slow_value)  # fails: never reloaded
