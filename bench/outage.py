"""The outage section of bench/run.py: cold reads while budget_thresholds' sources are broken.

Three scenarios, one after the other; at the start of each, every cache tier is empty of its
contexts (the bench's Redis db flushed, the type's resolved values and history deleted, L1
cleared) and every breaker is closed:

  refusing     every source of the type, all tiers, at a port where nothing listens
  hanging      every source at a local server that accepts and never answers
  one hanging  one primary source hanging, the other answering after 30 ms (a healthy API);
               the secondary hanging too, so that only the answering source can make a fresh
               value

Before the scenarios, WARM_UP_READS reads of other contexts with every source answering: the
process has served reads before its outage, so its fetch threads and connections exist.

The hanging and the answering servers run in a process of their own (bench/outage_servers.py):
a real upstream does not wait for the readers' GIL.

In each, `readers` threads of this process (16 in bench/run.py) call `values.get_value()` for
READS distinct contexts no read has seen (region r00..r99 × industry <scenario>-0 and -1: the
regions have the shape of country codes, so that World Bank's adapter makes its request rather
than refusing the context), under the read budget in force: the production default, 150 ms,
unless the value type sets its own (bench/run.py keeps DYNCONFIG_READ_BUDGET out of its
environment). Each read is timed alone (time.perf_counter_ns), and its answer's tier, reason,
sources and refreshing flag are kept, with this process's CPU time over all the reads.

Source calls are counted twice: from the engine's call record (sources.health: one row per
attempt, with refusals by the breaker or the rate limit, which make no request) and as requests
received by the hanging server; first when the last read ends, then once the refreshes that the
reads left behind (values.background.refreshes) have finished, which the next scenario waits
for. The engine's warnings (one per degraded answer) go to bench/results/outage.log meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
KEY = "budget_thresholds"
# At least 200 reads, so that the p99 is not the slowest read or two.
# Reads of other contexts with every source answering, before the scenarios: see _warm_up.
WARM_UP_READS = 64
READS = 200
# A refresh gives its sources DYNCONFIG_REFRESH_BUDGET (3 s), four at a time: 200 of them against
# sources that hang, with breakers that never opened, would take 150 s. Past this, the scenario
# says that its refreshes had not finished, and the next one starts anyway.
REFRESH_WAIT_SECONDS = 60.0
# The readers start together; one that fails before the start must not hold the others forever.
START_TIMEOUT_SECONDS = 30.0
# How long the upstreams' process may take to start, and to stop once asked.
SERVERS_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Read:
    """One timed get_value() and what its answer said."""

    nanoseconds: int
    tier: str
    reason: str | None
    is_refreshing: bool
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    pointed_at: dict[str, str]  # source → "refusing", "hanging" or "answering"
    answering_source: str | None = None  # the one source a fresh value may come from, if any


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    readers: int
    reads: list[Read]
    seconds: float  # wall-clock time of all the reads
    cpu_seconds: float  # this process's CPU time meanwhile, every thread's (the GIL lets one run at a time)
    calls_by_reads: dict[str, Counter]  # source → call outcome → attempts, until the last read ended
    calls_after_reads: dict[str, Counter]  # the same, made after (by the background refreshes)
    hanging_requests: tuple[int, int]  # requests at the hanging server: until the last read, after
    refresh_seconds: float  # how long the background refreshes took to finish after the last read
    is_idle: bool  # they did finish within REFRESH_WAIT_SECONDS
    breakers: dict[str, str]  # source → its breaker at the end, as operators see it


def measure_outage(
    results_dir: Path, *, hanging_source: str, answering_source: str, readers: int
) -> list[ScenarioResult]:
    """The three scenarios, with the sources of KEY pointed at broken endpoints in turn; their
    base URLs are put back afterwards, and every endpoint started here is stopped. The engine's
    log goes to `results_dir`/outage.log meanwhile, the upstreams' to outage-servers.log."""
    from sources.models import Source
    from values.models import ValueTypeSource

    links = list(ValueTypeSource.objects.filter(value_type__key=KEY).select_related("source"))
    names = sorted(link.source.name for link in links)
    primaries = {link.source.name for link in links if link.tier == "primary"}
    if {hanging_source, answering_source} != primaries:
        raise SystemExit(f"bench: {KEY}'s primary sources are {sorted(primaries)}, not {hanging_source} and {answering_source}")
    scenarios = [
        Scenario("refusing", "every source refusing", dict.fromkeys(names, "refusing")),
        Scenario("hanging", "every source hanging", dict.fromkeys(names, "hanging")),
        Scenario(
            "one_hanging",
            "one primary hanging, one answering",
            {**dict.fromkeys(names, "hanging"), answering_source: "answering"},
            answering_source=answering_source,
        ),
    ]
    original_urls = dict(Source.objects.filter(name__in=names).values_list("name", "base_url"))
    results = []
    with (
        _refusing_endpoint() as refusing_url,
        _upstreams(results_dir / "outage-servers.log") as upstreams,
        _engine_log_to(results_dir / "outage.log"),
    ):
        endpoints = {"refusing": refusing_url, **upstreams}
        try:
            _warm_up(names, endpoints["answering"], readers)
            for scenario in scenarios:
                _point_sources({name: endpoints[kind] for name, kind in scenario.pointed_at.items()})
                results.append(_run_scenario(scenario, names, upstreams["hanging"], readers))
        finally:
            _point_sources(original_urls)
            _start_clean(names)
    return results


def _warm_up(names: list[str], answering_url: str, readers: int) -> None:
    """A process that has served reads before the outage: its fetch threads, HTTP sessions and
    Redis and database connections exist (their first use costs more than any read after it)."""
    _start_clean(names)
    _point_sources(dict.fromkeys(names, answering_url))
    _read_concurrently([{"region": f"w{number:02d}"} for number in range(WARM_UP_READS)], readers)


def _run_scenario(scenario: Scenario, names: list[str], hanging_url: str, readers: int) -> ScenarioResult:
    from sources.breaker import breaker_state
    from values.background import refreshes

    _start_clean(names)
    contexts = [{"region": f"r{number % 100:02d}", "industry": f"{scenario.name.replace('_', '-')}-{number // 100}"}
                for number in range(READS)]  # fmt: skip
    first_call_id = _last_call_id()
    hanging_before = _requests_received(hanging_url)
    started, cpu_started = time.perf_counter(), time.process_time()
    reads = _read_concurrently(contexts, readers)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    hanging_by_reads = _requests_received(hanging_url) - hanging_before
    last_read_call_id = _last_call_id()
    waiting = time.perf_counter()
    is_idle = refreshes.wait_until_idle(REFRESH_WAIT_SECONDS)
    refresh_seconds = time.perf_counter() - waiting
    return ScenarioResult(
        scenario=scenario,
        readers=readers,
        reads=reads,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        calls_by_reads=_calls_between(first_call_id, last_read_call_id),
        calls_after_reads=_calls_between(last_read_call_id, _last_call_id()),
        hanging_requests=(hanging_by_reads, _requests_received(hanging_url) - hanging_before - hanging_by_reads),
        refresh_seconds=refresh_seconds,
        is_idle=is_idle,
        breakers={name: breaker_state(name).summary() for name in names},
    )


def _read_concurrently(contexts: list[dict], readers: int) -> list[Read]:
    """Every context read once, by `readers` threads taking the next one as they finish the last."""
    from django.db import connection, connections

    from values.resolution import get_value

    pending: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(contexts)):
        pending.put(index)
    reads: list[Read | None] = [None] * len(contexts)
    start_together = threading.Barrier(readers, timeout=START_TIMEOUT_SECONDS)

    def reader() -> None:
        try:
            connection.ensure_connection()  # a server's thread has its connection open already
            start_together.wait()
            while True:
                try:
                    index = pending.get_nowait()
                except queue.Empty:
                    return
                started = time.perf_counter_ns()
                answer = get_value(KEY, contexts[index])
                elapsed = time.perf_counter_ns() - started
                provenance = answer.provenance
                reads[index] = Read(
                    elapsed, provenance.tier, provenance.reason, provenance.refreshing,
                    tuple(sorted(use.name for use in provenance.sources)),
                )  # fmt: skip
        finally:
            connections.close_all()  # this thread's own

    with ThreadPoolExecutor(readers, thread_name_prefix="bench-reader") as pool:
        for running in [pool.submit(reader) for _ in range(readers)]:
            running.result()
    return [read for read in reads if read is not None]


def _start_clean(names: list[str]) -> None:
    """Nothing left of an earlier scenario: no refresh running, no cached answer of the type in
    any tier, every breaker closed (and, with the Redis db flushed, every rate limit full)."""
    import redis
    from django.core.cache import caches

    from sources.breaker import breaker_reset
    from values.background import refreshes
    from values.cache import l1
    from values.models import ResolvedValue, ValueRecord

    refreshes.wait_until_idle(REFRESH_WAIT_SECONDS)
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    caches["default"].clear()
    ResolvedValue.objects.filter(value_type__key=KEY).delete()
    ValueRecord.objects.filter(value_type__key=KEY).delete()
    l1.clear()
    for name in names:
        breaker_reset(name)


def _point_sources(base_urls: dict[str, str]) -> None:
    """Set the sources' base URLs, as tests do (tests/values/conftest.py:serve_sources): sources
    are configuration synced from YAML, so no operator service changes them."""
    from sources.models import Source
    from values.cache import l1
    from values.registry import registry

    for name, url in base_urls.items():
        Source.objects.filter(name=name).update(base_url=url)
    registry.refresh(force=True)
    l1.clear()


def _last_call_id() -> int:
    """The newest row of the call record, once every call handed to its writer is written."""
    from sources.health import recorder
    from sources.models import SourceCall

    recorder.flush(timeout=10)
    return SourceCall.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _calls_between(after_id: int, up_to_id: int) -> dict[str, Counter]:
    from sources.models import SourceCall

    calls: dict[str, Counter] = {}
    rows = SourceCall.objects.filter(id__gt=after_id, id__lte=up_to_id).values_list("source_name", "outcome")
    for name, outcome in rows:
        calls.setdefault(name, Counter())[outcome] += 1
    return calls


@contextmanager
def _refusing_endpoint() -> Iterator[str]:
    """A URL whose port refuses connections: bound (so no one else takes it), never listening."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{bound.getsockname()[1]}"


@contextmanager
def _upstreams(log_path: Path) -> Iterator[dict[str, str]]:
    """bench/outage_servers.py running: {"answering": url, "hanging": url}. Stopped on the way
    out by closing its standard input (SIGKILL if it lingers)."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(BENCH / "outage_servers.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            start_new_session=True,  # Ctrl-C reaches the bench, whose finally block stops this
        )  # fmt: skip
    try:
        ready = threading.Timer(SERVERS_TIMEOUT_SECONDS, process.kill)
        ready.start()
        line = process.stdout.readline()
        ready.cancel()
        if not line:
            raise SystemExit(f"bench: bench/outage_servers.py did not start; see {log_path}")
        yield json.loads(line)
    finally:
        process.stdin.close()
        try:
            process.wait(SERVERS_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _requests_received(server_url: str) -> int:
    from bench.outage_servers import COUNT_PATH

    with urllib.request.urlopen(server_url + COUNT_PATH, timeout=5) as response:
        return json.loads(response.read())["requests"]


@contextmanager
def _engine_log_to(path: Path) -> Iterator[None]:
    """The root logger's stream handlers write to `path` meanwhile: a degraded answer logs a
    warning, and 600 of them would bury the table (they are still formatted and written)."""
    handlers = [
        handler for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
    ]  # fmt: skip
    with open(path, "w") as log:
        streams = [handler.setStream(log) for handler in handlers]
        try:
            yield
        finally:
            for handler, stream in zip(handlers, streams):
                handler.setStream(stream)
