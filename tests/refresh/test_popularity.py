"""Reads recorded cheaply (values.popularity): counted in memory by `get_value`, flushed to
ContextReads as atomic increments by a read once the interval passed (or by the dispatcher),
never raising into a read."""

from __future__ import annotations

import threading
import time
import timeit

import pytest
from django.db import connections

from tests.refresh.conftest import BUDGET
from values import get_value, popularity
from values.models import ContextReads, ValueType
from values.popularity import ReadCounter

US = {"region": "us"}
DE = {"region": "de"}


def reads_of(key: str) -> dict[str, int]:
    return dict(ContextReads.objects.filter(value_type__key=key, reads__gt=0).values_list("context_key", "reads"))


@pytest.mark.django_db
def test_get_value__reads_counted_in_memory__flushed_as_increments(sources):
    for _ in range(5):
        get_value("budget_thresholds", {"region": " US "})  # canonicalized: the same context as US
    for _ in range(3):
        get_value("budget_thresholds", DE)
    get_value("budget_thresholds", US, use_cache=False)  # a refresh or a diagnosis: not a consumer's read

    assert popularity.counter.pending() == {
        ("budget_thresholds", "region=us"): 5,
        ("budget_thresholds", "region=de"): 3,
    }
    assert reads_of("budget_thresholds") == {}  # in memory only: a read inside a transaction never flushes

    assert popularity.flush() == 2
    assert reads_of("budget_thresholds") == {"region=us": 5, "region=de": 3}
    assert ContextReads.objects.get(context_key="region=us").context == US

    get_value("budget_thresholds", US)
    get_value("budget_thresholds", US)
    popularity.flush()
    assert reads_of("budget_thresholds") == {"region=us": 7, "region=de": 3}
    assert popularity.counter.pending() == {}


@pytest.mark.django_db(transaction=True)
def test_get_value__new_context_at_once_then_once_per_interval__the_reading_thread_flushes(sources, monkeypatch):
    monkeypatch.setattr(popularity.counter, "_flush_due_at", time.monotonic() + 3600)  # not due

    get_value("budget_thresholds", US)
    assert reads_of("budget_thresholds") == {"region=us": 1}  # never seen by this process: at once

    get_value("budget_thresholds", US)
    get_value("budget_thresholds", US)
    assert reads_of("budget_thresholds") == {"region=us": 1}  # known: counted in memory
    assert popularity.counter.pending() == {("budget_thresholds", "region=us"): 2}

    monkeypatch.setattr(popularity.counter, "_flush_due_at", 0.0)  # as if the interval had passed
    get_value("budget_thresholds", US)

    assert reads_of("budget_thresholds") == {"region=us": 4}
    assert popularity.counter.pending() == {}


@pytest.mark.django_db(transaction=True)
def test_flush__many_processes_see_a_context_first__no_read_lost(sources):
    """Each counter stands for a process; all flush a context new to the database at once, so
    several find no row and try to create it: the losers add to the winner's row."""
    flushers = 8
    counters = [ReadCounter() for _ in range(flushers)]
    for index, counter in enumerate(counters, start=1):
        for _ in range(index):
            counter.record("budget_thresholds", "region=fr", {"region": "fr"})
    start = threading.Barrier(flushers)
    errors: list[BaseException] = []

    def flush(counter: ReadCounter) -> None:
        try:
            start.wait(timeout=30)
            counter.flush()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=flush, args=(counter,)) for counter in counters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert reads_of("budget_thresholds") == {"region=fr": sum(range(1, flushers + 1))}


@pytest.mark.django_db
def test_get_value__counting_fails__the_read_still_answers(sources, monkeypatch, caplog):
    class Broken(dict):
        def get(self, *args):
            raise RuntimeError("counter broken")

    monkeypatch.setattr(popularity.counter, "_pending", Broken())

    answer = get_value("budget_thresholds", US)

    assert answer.value == BUDGET
    assert "not counted" in caplog.text


@pytest.mark.django_db
def test_flush__database_error__logged_and_dropped_never_raised(sources, monkeypatch, caplog):
    from django.db import DatabaseError

    def broken(*args, **kwargs):
        raise DatabaseError("database down")

    get_value("budget_thresholds", US)
    monkeypatch.setattr(popularity, "_add_reads", broken)

    assert popularity.flush() == 0
    assert "read counts not written" in caplog.text


@pytest.mark.django_db
def test_flush__type_only_built_in__skipped(engine):
    ValueType.objects.filter(key="channel_performance").delete()
    from tests.values.conftest import reload_engine

    reload_engine()
    popularity.record("channel_performance", "", {})
    assert popularity.flush() == 0


@pytest.mark.django_db(transaction=True)
def test_record__known_context__costs_well_under_a_microsecond(engine):
    counter = ReadCounter()
    context = {"region": "us"}
    counter.record("budget_thresholds", "region=us", context)  # its first sight: written at once
    assert reads_of("budget_thresholds") == {"region=us": 1}
    calls = 100_000
    # The best of several runs: the cost of the code, not of a busy machine's scheduling.
    best = min(timeit.repeat(lambda: counter.record("budget_thresholds", "region=us", context), number=calls, repeat=5))
    per_call = best / calls
    print(f"record(): {per_call * 1e9:.0f} ns per call (including the lambda's own call)")
    assert per_call < 1e-6
    assert counter.pending()[("budget_thresholds", "region=us")] == 5 * calls  # in memory, until the interval
