"""Prometheus metrics as the engine records them, summed over every process of a host (web
workers, Celery workers, beat). Reading them (a scrape, the dashboard) is monitoring.metrics.

prometheus_client runs in multiprocess mode: each process writes its numbers to files of its
own in settings.DYNCONFIG_METRICS_DIR (settings exports it as PROMETHEUS_MULTIPROC_DIR), and a
scrape (`/metrics`, `collected()`) adds up the files of every process. The directory must be
emptied when no process runs (bin/platform does it at start; in production, see
docs/monitoring.md), and gunicorn's `child_exit` hook (deploy/gunicorn.conf.py) marks a dead
worker.

Recorded from (the contract the engine calls):

    source_call_observed(source, outcome, seconds)   sources.calls, once per attempt
    cache_looked_up(tier, answer)                    values.resolution, per L1/L2/L3 lookup
    answer_served(answer)                            values.resolution, every answer returned
    answers_served_from_l1(answer, times)            values.resolution, L1 fast-path hits in bulk
    degraded_answer_made(value_type, kind, reason)   values.resolution, a stale/fallback made
    refresh_observed(value_type, seconds, is_failed) values.refresh, after each refresh
    refresh_failed(value_type)                       values.refresh, a refresh that never finished

The read path (cache lookups, answers, value ages) runs on every L1 hit, which costs about
1.6 µs; a multiprocess increment costs about 1 µs more each (a lock and an mmap write), three
of them per hit. So those are counted in this process's memory (`_Tally`, a dict under a lock)
and written to the files at most every FLUSH_INTERVAL seconds by a daemon thread, and at each
scrape and at exit: a scrape can lag another process by up to FLUSH_INTERVAL, and a process
killed without exiting (SIGKILL, or a prefork child that ends with os._exit) loses at most
that much. The rest (source calls, refreshes) costs milliseconds anyway and is written at once.

The L1 fast path (values.resolution) does not count here either: each hit appends to a log of
its own, which a callback given to `before_each_flush` turns into counts
(`answers_served_from_l1`) just before each flush. An L1 hit's age is then taken at that moment,
at most FLUSH_INTERVAL after the hit.

dynconfig_breaker_state is not recorded at all: a collector (monitoring.metrics) reads each
source's breaker from Redis (the truth shared by every process) at scrape time.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connections
from prometheus_client import Counter, Histogram, values

if TYPE_CHECKING:
    from core.answers import Answer

# prometheus_client picks its value class (in-memory, or files for multiprocess mode) when
# prometheus_client.values is first imported, from PROMETHEUS_MULTIPROC_DIR. Settings exports it
# before any of our code runs, but a process may have imported prometheus_client before Django's
# settings (gunicorn's master loads deploy/gunicorn.conf.py, then forks workers that inherit the
# module): pick again here. Metric children read `values.ValueClass` when they are created, and
# ours are created only after this module is imported.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(settings.DYNCONFIG_METRICS_DIR)
if not getattr(values.ValueClass, "_multiprocess", False):
    values.ValueClass = values.get_value_class()

# How long the read path's counts may wait in memory before they reach the files.
FLUSH_INTERVAL = 1.0
# Called before each flush (`before_each_flush`).
_drains: list[Callable[[], None]] = []

# Source calls: most answer within a second; the budget of a call is a few seconds.
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Refreshes: one value type's sources, retries included (task time limit: 90 s).
REFRESH_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 90.0)
# Value ages: from just fetched to a day stale (max_staleness is hours to days).
AGE_BUCKETS = (1, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400, 259200, 604800)

# registry=None: never registered in the global REGISTRY; a scrape reads the files instead.
SOURCE_CALLS = Counter(
    "dynconfig_source_calls", "Attempts to call a source, by outcome.", ["source", "outcome"], registry=None
)
SOURCE_CALL_SECONDS = Histogram(
    "dynconfig_source_call_duration_seconds", "How long an attempt to call a source took.", ["source"],
    buckets=CALL_BUCKETS, registry=None,
)
CACHE_LOOKUPS = Counter(
    "dynconfig_cache_lookups", "Cache lookups of the read path, by tier (l1, l2, l3) and result (hit, miss).",
    ["tier", "result"], registry=None,
)
ANSWERS = Counter(
    "dynconfig_answers", "Answers served, by value type and provenance tier.", ["value_type", "tier"], registry=None
)
DEGRADED_ANSWERS = Counter(
    "dynconfig_degraded_answers",
    "Degraded answers made (stale, widened, predicted, fallback), by value type, kind and reason.",
    ["value_type", "kind", "reason"], registry=None,
)
REFRESH_SECONDS = Histogram(
    "dynconfig_refresh_duration_seconds", "How long a background refresh took.", ["value_type"],
    buckets=REFRESH_BUCKETS, registry=None,
)
REFRESH_FAILURES = Counter(
    "dynconfig_refresh_failures", "Background refreshes that brought no value.", ["value_type"], registry=None
)
VALUE_AGE = Histogram(
    "dynconfig_value_age_seconds", "Age of the value served (now - fetched_at), at each read.", ["value_type"],
    buckets=AGE_BUCKETS, registry=None,
)

# dynconfig_breaker_state's numbers.
BREAKER_STATE_NUMBERS = {"closed": 0, "half_open": 1, "open": 2}
# The tiers whose answers carry no fetched value to be old (an operator's value, the fallback).
_AGELESS_ORIGINS = frozenset({"override", "fallback"})


# Recording -------------------------------------------------------------------------------------


def source_call_observed(source: str, outcome: str, seconds: float) -> None:
    """One attempt to call `source` ended with `outcome` after `seconds`."""
    SOURCE_CALLS.labels(source, outcome).inc()
    SOURCE_CALL_SECONDS.labels(source).observe(seconds)


def refresh_observed(value_type: str, seconds: float, *, is_failed: bool) -> None:
    """A background refresh of `value_type` took `seconds`; `is_failed`: it brought no value."""
    REFRESH_SECONDS.labels(value_type).observe(seconds)
    if is_failed:
        REFRESH_FAILURES.labels(value_type).inc()


def refresh_failed(value_type: str) -> None:
    """A refresh of `value_type` that could not finish (its time limit)."""
    REFRESH_FAILURES.labels(value_type).inc()


def degraded_answer_made(value_type: str, kind: str, reason: str) -> None:
    """The engine made a degraded answer (`kind`: stale, widened, predicted, fallback) because of
    `reason` (core.answers.REASONS)."""
    DEGRADED_ANSWERS.labels(value_type, kind, reason).inc()


def cache_looked_up(tier: str, answer: Answer | None) -> None:
    """A lookup in cache `tier` found `answer` (None: a miss). Counted in memory: see the docstring."""
    _tally.count(CACHE_LOOKUPS, (tier, "miss" if answer is None else "hit"))


def answer_served(answer: Answer) -> Answer:
    """Count `answer` as served (by its provenance tier) and its value's age; returns it."""
    _tally.served(answer.key, answer.provenance.tier, _age(answer), 1)
    return answer


def answers_served_from_l1(answer: Answer, times: int) -> None:
    """`times` L1 hits served `answer`: as many L1 lookups found it and as many answers served,
    each of the age the value has now."""
    _tally.count(CACHE_LOOKUPS, ("l1", "hit"), times)
    _tally.served(answer.key, "l1", _age(answer), times)


def before_each_flush(drain: Callable[[], None]) -> None:
    """Have `drain` called before each flush (every FLUSH_INTERVAL in the flusher's thread, and
    at a scrape and at exit): where a hot path's own log of what it did becomes counts. It must
    not raise. Registering the same `drain` again changes nothing."""
    if drain not in _drains:
        _drains.append(drain)


def _age(answer: Answer) -> float | None:
    provenance = answer.provenance
    if provenance.fetched_at is None or provenance.origin in _AGELESS_ORIGINS:
        return None
    return time.time() - provenance.fetched_at.timestamp()



class _Tally:
    """This process's read-path counts not yet written to the multiprocess files."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # the parent flushes its own counts

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple, float] = {}  # (counter, label values) -> amount
        self._ages: dict[str, list[float]] = {}  # value type -> bucket counts..., then the sum
        self._is_flusher_started = False

    def count(self, counter: Counter, labels: tuple[str, ...], amount: int = 1) -> None:
        key = (counter, labels)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + amount
        if not self._is_flusher_started:
            self._start_flusher()

    def served(self, value_type: str, tier: str, age: float | None, times: int) -> None:
        key = (ANSWERS, (value_type, tier))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + times
            if age is not None:
                ages = self._ages.get(value_type)
                if ages is None:
                    ages = self._ages[value_type] = [0.0] * (len(AGE_BUCKETS) + 2)
                ages[bisect_left(AGE_BUCKETS, age)] += times  # the last bucket but one is +Inf
                ages[-1] += age * times
        if not self._is_flusher_started:
            self._start_flusher()

    def flush(self) -> None:
        """Write what was counted since the last flush to this process's files."""
        for drain in list(_drains):
            drain()
        with self._lock:
            counts, self._counts = self._counts, {}
            ages, self._ages = self._ages, {}
        for (counter, labels), amount in counts.items():
            counter.labels(*labels).inc(amount)
        for value_type, buckets in ages.items():
            histogram = VALUE_AGE.labels(value_type)
            # Histogram.observe() adds one observation at a time; these are many at once, so
            # they go to its bucket and sum values directly (prometheus-client is pinned).
            for index, amount in enumerate(buckets[:-1]):
                if amount:
                    histogram._buckets[index].inc(amount)
            histogram._sum.inc(buckets[-1])

    def _start_flusher(self) -> None:
        with self._lock:
            if self._is_flusher_started:
                return
            self._is_flusher_started = True
        threading.Thread(target=self._flush_forever, name="metrics-flush", daemon=True).start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_INTERVAL)
            try:
                self.flush()
            finally:
                # A drain may have used the database (values' read counts): this thread keeps no
                # connection between flushes.
                connections.close_all()


_tally = _Tally()
atexit.register(_tally.flush)


def flush() -> None:
    """Write this process's pending read-path counts now (a scrape does it first)."""
    _tally.flush()
