"""The circuit breaker of each source, through `call_source` against a local server.

Transitions (closed → open → half-open → closed or open again) run against both stores: Redis
(shared by every process) and this process's memory (no REDIS_URL), which keep the same rules.
Then: two processes sharing Redis see one breaker, and a Redis that dies makes the breaker fail
open instead of failing calls.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import redis
from django.test import override_settings

from sources.adapters.base import ErrorKind, SourceCall, SourceConfig, SourceError
from sources import breaker
from sources.breaker import (
    SEEN_OPEN_SECONDS,
    BreakerState,
    BreakerUnavailable,
    breaker_allow,
    breaker_force_open,
    breaker_reset,
    breaker_state,
    shared_redis,
)
from sources.calls import call_source
from tests.servers import LocalServer
from tests.sources.source_process import SourceProcess, process_environment

PATH = "/v1/rates"
ANSWER = {"rate": 0.05}
RECOVERY = 0.5  # seconds: the breakers of these tests recover fast


def make_source(server: LocalServer, name: str, **settings) -> SourceConfig:
    """A generic JSON source on `server` whose rate limit never gets in the way."""
    defaults = dict(
        requests_per_minute=60_000,
        burst_allowance=1_000,
        breaker_failure_threshold=3,
        breaker_recovery_timeout=timedelta(seconds=RECOVERY),
        breaker_half_open_trials=1,
        connect_timeout=1.0,
        read_timeout=2.0,
        request_template={"method": "GET", "path": PATH},
    )
    return SourceConfig(name=name, kind="http_json", base_url=server.url, **{**defaults, **settings})


def call(source: SourceConfig, budget: float = 1.0) -> str:
    """"ok", or the kind of the SourceError the call raised."""
    try:
        call_source(SourceCall(source=source, value_type="test", context={}, timeout_budget=budget))
    except SourceError as error:
        return error.kind.value
    return "ok"


def calls_at_once(source: SourceConfig, count: int, budget: float = 3.0) -> list[str]:
    outcomes: list[str] = []
    start = threading.Barrier(count)

    def run() -> None:
        start.wait()
        outcomes.append(call(source, budget))

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    return sorted(outcomes)


def wait_for_state(name: str, state: str, timeout: float = 10.0) -> BreakerState:
    deadline = time.monotonic() + timeout
    while (current := breaker_state(name)).state != state:
        assert time.monotonic() < deadline, f"breaker of {name} still {current} after {timeout}s"
        time.sleep(0.02)
    return current


@pytest.fixture(autouse=True)
def redis_answers(monkeypatch):
    """Each test starts with Redis considered up (a previous test may have killed one)."""
    monkeypatch.setattr(shared_redis, "_down_until", 0.0)


@pytest.fixture
def name() -> Iterator[str]:
    """A source name of this test's own, its breaker reset afterwards."""
    name = f"breaker_test_{uuid.uuid4().hex[:10]}"
    yield name
    breaker_reset(name)


@pytest.fixture(params=["redis", "process"])
def store(request, settings) -> str:
    """Where the breaker's state lives: Redis, or this process's memory (REDIS_URL empty)."""
    if request.param == "process":
        settings.REDIS_URL = ""
    return request.param


# Closed → open ---------------------------------------------------------------------------------


def test_breaker__failures_below_threshold__stays_closed_and_a_success_clears_them(local_server, name, store):
    local_server.route("GET", PATH, status=503, json={"error": "unavailable"})
    source = make_source(local_server, name, breaker_failure_threshold=5)

    assert call(source) == "retryable"  # three attempts, three failures

    assert (breaker_state(name).state, breaker_state(name).failures, breaker_state(name).store) == (
        "closed",
        3,
        store,
    )
    local_server.route("GET", PATH, json=ANSWER)
    assert call(source) == "ok"
    assert breaker_state(name).failures == 0


def test_breaker__threshold_failures_in_a_row__opens_and_refuses_without_calling(local_server, name, store):
    local_server.route("GET", PATH, status=503, json={"error": "unavailable"})
    source = make_source(
        local_server, name, breaker_failure_threshold=3, breaker_recovery_timeout=timedelta(seconds=30)
    )

    assert call(source) == "retryable"
    state = breaker_state(name)
    assert state.state == "open"
    assert 25 < (state.opened_until.timestamp() - time.time()) <= 30
    assert local_server.calls(PATH) == 3

    with pytest.raises(SourceError) as refused:
        call_source(SourceCall(source=source, value_type="test", context={}, timeout_budget=1.0))

    assert refused.value.kind is ErrorKind.BREAKER_OPEN
    assert 25 < refused.value.retry_after <= 30
    assert local_server.calls(PATH) == 3  # refused before any request


def test_breaker__answer_not_json__invalid_data_counts_as_failure(local_server, name, store):
    local_server.route("GET", PATH, body="<html>maintenance</html>", headers={"Content-Type": "text/html"})
    source = make_source(local_server, name, breaker_failure_threshold=1)

    assert call(source) == "invalid_data"

    assert breaker_state(name).state == "open"


def test_breaker__terminal_and_disabled__never_count(local_server, name, store, monkeypatch):
    local_server.route("GET", PATH, status=401, json={"error": "bad key"})
    source = make_source(local_server, name, breaker_failure_threshold=1)
    monkeypatch.delenv("BREAKER_TEST_KEY", raising=False)
    without_key = make_source(
        local_server,
        name,
        breaker_failure_threshold=1,
        credential_variables={"api_key": "BREAKER_TEST_KEY"},
        request_template={"method": "GET", "path": PATH, "headers": {"X-Key": "{api_key}"}},
    )

    outcomes = [call(source), call(source), call(without_key)]

    assert outcomes == ["terminal", "terminal", "disabled"]
    assert (breaker_state(name).state, breaker_state(name).failures) == ("closed", 0)
    assert local_server.calls(PATH) == 2


# Open → half-open → closed or open -------------------------------------------------------------


def open_breaker(server: LocalServer, source: SourceConfig) -> None:
    """Open `source`'s breaker through a failing call (its threshold must be 1), then wait
    until its recovery timeout has passed."""
    server.route("GET", PATH, status=503, json={"error": "unavailable"})
    assert call(source) == "breaker_open"  # the first attempt failed and opened it; the retry was refused
    assert breaker_state(source.name).state == "open"
    wait_for_state(source.name, "half_open")


def test_breaker__recovery_timeout_passed__half_open_admits_only_the_configured_trials(local_server, name, store):
    source = make_source(local_server, name, breaker_failure_threshold=1, breaker_half_open_trials=2)
    open_breaker(local_server, source)
    local_server.route("GET", "/slow", json=ANSWER, delay=1.0)  # trials stay in flight a while
    slow = make_source(
        local_server,
        name,
        breaker_failure_threshold=1,
        breaker_half_open_trials=2,
        request_template={"method": "GET", "path": "/slow"},
    )

    outcomes = calls_at_once(slow, 5)

    assert outcomes == ["breaker_open"] * 3 + ["ok"] * 2
    assert local_server.calls("/slow") == 2
    assert breaker_state(name).state == "closed"  # both trials succeeded
    local_server.route("GET", PATH, json=ANSWER)
    assert call(source) == "ok"  # closed: calls reach the server again


def test_breaker__half_open_trial_succeeds__closes(local_server, name, store):
    source = make_source(local_server, name, breaker_failure_threshold=1)
    open_breaker(local_server, source)
    local_server.route("GET", PATH, json=ANSWER)

    assert call(source) == "ok"

    assert (breaker_state(name).state, breaker_state(name).failures) == ("closed", 0)
    assert [call(source), call(source)] == ["ok", "ok"]


def test_breaker__half_open_trial_fails__opens_again_for_the_recovery_timeout(local_server, name, store):
    source = make_source(local_server, name, breaker_failure_threshold=1)
    open_breaker(local_server, source)
    calls_before = local_server.calls(PATH)

    assert call(source) == "breaker_open"  # the trial failed, its retry was refused

    state = breaker_state(name)
    assert state.state == "open"
    assert 0 < state.opened_until.timestamp() - time.time() <= RECOVERY
    assert local_server.calls(PATH) == calls_before + 1  # the one trial


def test_breaker__trial_never_reported__its_slot_given_to_another_after_the_lease(
    local_server, name, store, monkeypatch
):
    source = make_source(local_server, name, breaker_failure_threshold=1)
    open_breaker(local_server, source)
    breaker_allow(source)  # a trial whose process dies mid-call: its outcome never comes
    with pytest.raises(SourceError):
        breaker_allow(source)
    monkeypatch.setattr(breaker, "TRIAL_LEASE_SECONDS", 0.2)
    time.sleep(0.3)

    permit = breaker_allow(source)

    assert permit.trial > 0
    assert breaker_state(name).trials == 1


# Provider-named waits --------------------------------------------------------------------------


def test_breaker__retry_after_longer_than_recovery__opens_at_once_for_that_long(local_server, name, store):
    local_server.route("GET", PATH, status=429, json={"error": "quota"}, headers={"Retry-After": "3"})
    source = make_source(local_server, name, breaker_failure_threshold=5)

    assert call(source) == "retryable"  # one failure, far below the threshold

    state = breaker_state(name)
    assert state.state == "open"
    assert 2 < state.opened_until.timestamp() - time.time() <= 3
    time.sleep(RECOVERY + 0.1)
    assert call(source) == "breaker_open"  # past the recovery timeout, still within the wait
    assert local_server.calls(PATH) == 1


def test_breaker__trial_told_to_wait__reopens_for_the_wait_not_the_recovery(local_server, name, store):
    source = make_source(local_server, name, breaker_failure_threshold=1)
    open_breaker(local_server, source)
    local_server.route("GET", PATH, status=429, json={"error": "quota"}, headers={"Retry-After": "4"})

    assert call(source) == "retryable"

    assert 3 < breaker_state(name).opened_until.timestamp() - time.time() <= 4


def test_breaker__source_moved_to_another_base_url__starts_closed(local_server, name, store):
    source = make_source(
        local_server, name, breaker_failure_threshold=1, breaker_recovery_timeout=timedelta(seconds=30)
    )
    local_server.route("GET", PATH, status=503, json={"error": "unavailable"})
    assert call(source) == "breaker_open"

    with LocalServer() as elsewhere:
        elsewhere.route("GET", PATH, json=ANSWER)

        assert call(make_source(elsewhere, name, breaker_failure_threshold=1)) == "ok"

    assert breaker_state(name).state == "closed"


# Operators -------------------------------------------------------------------------------------


def test_breaker_force_open__closed_breaker__refuses_until_reset(local_server, name, store):
    local_server.route("GET", PATH, json=ANSWER)
    source = make_source(local_server, name)

    breaker_force_open(name, 60)

    assert call(source) == "breaker_open"
    assert 55 < breaker_state(name).opened_until.timestamp() - time.time() <= 60
    breaker_reset(name)
    assert call(source) == "ok"
    assert local_server.calls(PATH) == 1


# Two processes sharing Redis -------------------------------------------------------------------


def process_source(server: LocalServer, name: str, **settings) -> dict:
    return {
        "name": name,
        "base_url": server.url,
        "path": PATH,
        "requests_per_minute": 60_000,
        "burst_allowance": 1_000,
        "breaker_failure_threshold": 3,
        "breaker_recovery_timeout": RECOVERY,
        "breaker_half_open_trials": 1,
        "read_timeout": 3.0,
        **settings,
    }


@pytest.fixture
def two_processes(db, local_server, name):
    """Start two SourceProcesses (side by side: Django takes a while to start) for a source."""
    started: list[SourceProcess] = []

    def start(**settings) -> tuple[SourceProcess, SourceProcess]:
        source = process_source(local_server, name, **settings)
        environment = process_environment()
        started.extend(SourceProcess(source, environment) for _ in range(2))
        for process in started:
            process.ready()
        return started[0], started[1]

    yield start
    for process in started:
        process.stop()


def test_breaker__failures_in_process_a__refuse_calls_in_process_b(local_server, name, two_processes):
    a, b = two_processes(breaker_failure_threshold=3, breaker_recovery_timeout=30)
    local_server.route("GET", PATH, status=503, json={"error": "unavailable"})

    a.command(op="call", threads=1, budget=1.0)
    assert a.result() == {"outcomes": ["retryable"]}
    b.command(op="call", threads=1, budget=1.0)
    assert b.result() == {"outcomes": ["breaker_open"]}

    assert local_server.calls(PATH) == 3  # A's three attempts; B made none
    assert breaker_state(name).state == "open"


def test_breaker__half_open_across_processes__admits_only_the_configured_trials(local_server, name, two_processes):
    a, b = two_processes(breaker_failure_threshold=1, breaker_half_open_trials=2)
    local_server.route("GET", PATH, status=503, json={"error": "unavailable"})
    a.command(op="call", threads=1, budget=1.0)
    assert a.result() == {"outcomes": ["breaker_open"]}
    wait_for_state(name, "half_open")
    local_server.route("GET", PATH, json=ANSWER, delay=1.5)  # trials stay in flight a while
    calls_before = local_server.calls(PATH)

    start_at = time.time() + 0.3
    a.command(op="call", threads=3, budget=3.0, start_at=start_at)
    b.command(op="call", threads=3, budget=3.0, start_at=start_at)
    outcomes = sorted(a.result()["outcomes"] + b.result()["outcomes"])

    assert outcomes == ["breaker_open"] * 4 + ["ok"] * 2
    assert local_server.calls(PATH) - calls_before == 2
    assert breaker_state(name).state == "closed"


# Redis dies ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def disposable_redis() -> Iterator[tuple[str, subprocess.Popen]]:
    """A redis-server of this test's own on a free port, the settings pointed at it:
    yields (its URL, its process), for the test to kill. Killed and reaped in any case."""
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url, socket_timeout=0.5).ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        caches = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": url,
                "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.25, "SOCKET_TIMEOUT": 0.25},
            }
        }
        with override_settings(CACHES=caches, REDIS_URL=url):
            yield url, server
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)


def test_breaker__redis_killed__fails_open_calls_go_through_and_nothing_raises(local_server, name, caplog):
    local_server.route("GET", PATH, json=ANSWER)
    source = make_source(local_server, name)
    with disposable_redis() as (url, server):
        breaker_force_open(name, 60)
        assert call(source) == "breaker_open"  # the state is in this Redis
        server.kill()
        server.wait(timeout=10)
        caplog.set_level(logging.WARNING, logger="sources.breaker")
        # This process goes on refusing, by itself, for as long as it saw the breaker open a moment
        # ago (issue 12: reads do not ask Redis per call during an outage); then Redis is asked.
        time.sleep(SEEN_OPEN_SECONDS)

        outcomes = [call(source) for _ in range(5)]

        assert outcomes == ["ok"] * 5
        assert local_server.calls(PATH) == 5
        assert breaker_state(name).store == "process"
        warnings = [record for record in caplog.records if record.name == "sources.breaker"]
        assert len(warnings) == 1  # one warning per pause, not one per call
        assert "Redis unavailable" in warnings[0].getMessage()


def test_breaker__redis_killed__operator_change_refused_rather_than_kept_in_one_process(name):
    with disposable_redis() as (url, server):
        server.kill()
        server.wait(timeout=10)

        with pytest.raises(BreakerUnavailable):
            breaker_force_open(name, 60)
        with pytest.raises(BreakerUnavailable):
            breaker_reset(name)
