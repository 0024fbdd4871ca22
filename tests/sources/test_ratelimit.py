"""The rate limit of each source (a token bucket), through `call_source` against a local server.

Counted at the server: a call over budget is never made. The bucket in Redis (shared by every
process) and in this process's memory (no REDIS_URL) keep the same rules; two processes
hammering one source together stay within one budget; a Redis that dies lets calls through.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter

import pytest

from sources.adapters.base import ErrorKind, SourceCall, SourceError
from sources.breaker import shared_redis
from sources.calls import call_source
from tests.servers import LocalServer
from tests.sources.source_process import SourceProcess, process_environment
from tests.sources.test_breaker import ANSWER, PATH, call, disposable_redis, make_source


@pytest.fixture(autouse=True)
def redis_answers(monkeypatch):
    """Each test starts with Redis considered up (a previous test may have killed one)."""
    monkeypatch.setattr(shared_redis, "_down_until", 0.0)


@pytest.fixture
def name() -> str:
    """A source name of this test's own: its bucket starts full."""
    return f"ratelimit_test_{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["redis", "process"])
def store(request, settings) -> str:
    """Where the bucket lives: Redis, or this process's memory (REDIS_URL empty)."""
    if request.param == "process":
        settings.REDIS_URL = ""
    return request.param


def limited(server: LocalServer, name: str, per_minute: int, burst: int):
    return make_source(server, name, requests_per_minute=per_minute, burst_allowance=burst)


def test_rate_limit__burst_spent__next_call_refused_without_a_request(local_server, name, store):
    local_server.route("GET", PATH, json=ANSWER)
    source = limited(local_server, name, per_minute=6, burst=3)  # a token every 10 s

    outcomes = [call(source, budget=0.2) for _ in range(3)]
    with pytest.raises(SourceError) as refused:
        call_source(SourceCall(source=source, value_type="test", context={}, timeout_budget=0.2))

    assert outcomes == ["ok"] * 3
    assert refused.value.kind is ErrorKind.RATE_LIMITED
    assert 5 < refused.value.retry_after <= 10  # the next token is due within 10 s
    assert local_server.calls(PATH) == 3


def test_rate_limit__token_due_within_the_budget__waits_for_it_and_calls(local_server, name, store):
    local_server.route("GET", PATH, json=ANSWER)
    source = limited(local_server, name, per_minute=120, burst=1)  # a token every 0.5 s
    assert call(source) == "ok"

    started = time.monotonic()
    outcome = call(source, budget=2.0)

    assert outcome == "ok"
    assert 0.2 < time.monotonic() - started < 1.5
    assert local_server.calls(PATH) == 2


def test_rate_limit__burst_allowance_zero__one_call_at_a_time(local_server, name, store):
    local_server.route("GET", PATH, json=ANSWER)
    source = limited(local_server, name, per_minute=6, burst=0)

    assert [call(source, budget=0.2), call(source, budget=0.2)] == ["ok", "rate_limited"]
    assert local_server.calls(PATH) == 1


def test_rate_limit__retries__take_tokens_too(local_server, name, store):
    local_server.route("GET", PATH, status=503, json={"error": "unavailable"})
    source = limited(local_server, name, per_minute=6, burst=2)

    outcome = call(source, budget=2.0)  # a third attempt would need a token 10 s away

    assert outcome == "rate_limited"
    assert local_server.calls(PATH) == 2


def test_rate_limit__threads_of_one_process_without_redis__no_more_calls_than_the_budget(
    local_server, name, settings
):
    settings.REDIS_URL = ""
    local_server.route("GET", PATH, json=ANSWER)
    source = limited(local_server, name, per_minute=60, burst=5)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    started = time.monotonic()

    def hammer() -> None:
        while time.monotonic() - started < 1.0:
            outcome = call(source, budget=0.2)
            with lock:
                outcomes[outcome] += 1
            if outcome != "ok":
                time.sleep(0.005)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    elapsed = time.monotonic() - started

    assert local_server.calls(PATH) == outcomes["ok"]
    assert 5 <= outcomes["ok"] <= 5 + math.ceil(elapsed) + 1, (outcomes, elapsed)  # burst + 1 a second
    assert outcomes["rate_limited"] > 0
    assert set(outcomes) <= {"ok", "rate_limited"}


def test_rate_limit__two_processes_hammering__no_more_calls_than_the_budget(db, local_server, name):
    local_server.route("GET", PATH, json=ANSWER)
    source = {
        "name": name,
        "base_url": local_server.url,
        "path": PATH,
        "requests_per_minute": 60,
        "burst_allowance": 5,
        "breaker_failure_threshold": 5,
        "breaker_recovery_timeout": 60,
        "breaker_half_open_trials": 1,
    }
    environment = process_environment()
    with SourceProcess(source, environment) as a, SourceProcess(source, environment) as b:
        a.ready()
        b.ready()
        start_at = time.time() + 0.3
        for process in (a, b):
            process.command(op="hammer", seconds=1.0, budget=0.2, start_at=start_at)
        results = [a.result(), b.result()]
        elapsed = time.time() - start_at

    outcomes = Counter()
    for result in results:
        outcomes.update(result["outcomes"])
    assert local_server.calls(PATH) == outcomes["ok"]
    assert 5 <= outcomes["ok"] <= 5 + math.ceil(elapsed) + 1, (outcomes, elapsed)  # one budget for both
    assert outcomes["rate_limited"] > 0
    assert set(outcomes) <= {"ok", "rate_limited"}
    assert all(result["waited"] < 0.2 + 0.5 for result in results)  # waits stay within the budget


def test_rate_limit__redis_killed__fails_open(local_server, name):
    local_server.route("GET", PATH, json=ANSWER)
    source = limited(local_server, name, per_minute=1, burst=1)
    with disposable_redis() as (url, server):
        assert [call(source, budget=0.2), call(source, budget=0.2)] == ["ok", "rate_limited"]
        server.kill()
        server.wait(timeout=10)

        outcomes = [call(source, budget=0.2) for _ in range(3)]

    assert outcomes == ["ok"] * 3
    assert local_server.calls(PATH) == 4
