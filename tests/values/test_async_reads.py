"""`values.aget_value` and `aget_many` against `values.get_value`, tier by tier, on real parts
(the test PostgreSQL and Redis, sources served by a local HTTP server), and the registry's
version check that no read waits for.

The async reads that miss L1 run on the engine's threads, whose database connections see only
committed data: these tests are transactional.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest
from django.core.cache import caches
from django.db import connection, connections, transaction

from core.answers import Answer
from tests.api.conftest import budget_server  # noqa: F401
from tests.processes import PROJECT_ROOT, child_environment
from tests.values.conftest import BUDGET, engine, local_server, market_answer, scaled  # noqa: F401
from values import aget_many, aget_value, get_value
from values.background import refreshes
from values.cache import l1
from values.models import ResolvedValue, ValueType
from values.registry import CHECK_INTERVAL, registry
from values.resolution import UnknownValueType
from values.services import override_create

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "budget_thresholds"
US = {"region": "us"}
DE = {"region": "de"}
MARKET_PATH = "/v1/budget-benchmarks"
BENCHMARKS_PATH = "/benchmarks/budget-tiers"
# Fields of a provenance that say when, not what: two reads made a moment apart differ there.
MOMENTS = ("fetched_at", "expires_at", "sources")


def clear_caches() -> None:
    l1.clear()
    caches["default"].clear()


def clear_every_tier() -> None:
    clear_caches()
    ResolvedValue.objects.filter(value_type__key=KEY).delete()


def made_alike(first: Answer, second: Answer, *, ignoring: tuple[str, ...] = ()) -> dict:
    """What two answers made a moment apart must share: everything but the moments (and the
    provenance fields `ignoring`), and the sources by name, weight and confidence."""

    def shape(answer: Answer) -> dict:
        left_out = MOMENTS + ignoring
        provenance = {name: value for name, value in answer.as_dict()["provenance"].items() if name not in left_out}
        sources = [(use.name, use.weight, use.confidence) for use in answer.provenance.sources]
        return {"key": answer.key, "context": answer.context, "value": answer.value, **provenance, "sources": sources}

    return {"sync": shape(first), "async": shape(second)}


# Every tier: the same answer ----------------------------------------------------------------------


def test_aget_value__l1_hit__equals_get_value(budget_server):
    get_value(KEY, US)
    sync = get_value(KEY, US)

    answer = asyncio.run(aget_value(KEY, US))

    assert sync.provenance.tier == "l1"
    assert answer == sync


def test_aget_value__l2_hit__equals_get_value(budget_server):
    get_value(KEY, US)
    l1.clear()
    sync = get_value(KEY, US)
    l1.clear()

    answer = asyncio.run(aget_value(KEY, US))

    assert sync.provenance.tier == "l2"
    assert answer == sync


def test_aget_value__l3_hit__equals_get_value(budget_server):
    get_value(KEY, US)
    clear_caches()
    sync = get_value(KEY, US)
    clear_caches()

    answer = asyncio.run(aget_value(KEY, US))

    assert sync.provenance.tier == "l3"
    assert answer == sync


def test_aget_value__fetched_from_local_sources__same_value_and_provenance_as_get_value(budget_server):
    clear_every_tier()
    sync = get_value(KEY, US)
    clear_every_tier()

    answer = asyncio.run(aget_value(KEY, US))

    assert sync.provenance.tier == "primary"
    alike = made_alike(sync, answer)
    assert alike["async"] == alike["sync"]
    assert budget_server.calls(MARKET_PATH) == budget_server.calls(BENCHMARKS_PATH) == 2


def test_aget_value__sources_down_nothing_stored__same_fallback_as_get_value(budget_server):
    budget_server.route("GET", MARKET_PATH, status=503, json={"error": "down"})
    budget_server.route("GET", BENCHMARKS_PATH, status=503, json={"error": "down"})
    clear_every_tier()
    sync = get_value(KEY, US)
    refreshes.wait_until_idle(15)
    clear_every_tier()

    answer = asyncio.run(aget_value(KEY, US))
    refreshes.wait_until_idle(15)

    assert (sync.provenance.tier, sync.provenance.reason) == ("fallback", "sources_down")
    # The errors differ by the world: the secondary's refused connection opened its breaker.
    alike = made_alike(sync, answer, ignoring=("errors",))
    assert alike["async"] == alike["sync"]


def test_aget_value__active_override__same_override_answer_as_get_value(budget_server):
    value = scaled(BUDGET, 2)
    get_value(KEY, US)  # an L1 copy the override must win over
    override_create(
        value_type=ValueType.objects.get(key=KEY), value=value, reason="test", actor="tester", channel="test",
        context_match={"region": "us"},
    )  # fmt: skip

    sync = get_value(KEY, US)
    answer = asyncio.run(aget_value(KEY, US))

    assert (sync.provenance.tier, sync.value) == ("override", value)
    assert answer == sync


def test_aget_value__unknown_key__raises_unknown_value_type(budget_server):
    with pytest.raises(UnknownValueType):
        asyncio.run(aget_value("budget_thresholdz", US))


# The event loop: no query on an L1 hit, no wait on the version check ------------------------------


def test_l1_hit_in_event_loop__past_the_check_interval__no_database_query(budget_server, django_assert_num_queries):
    get_value(KEY, US)
    time.sleep(CHECK_INTERVAL + 0.2)  # the old read path polled the version here: in the loop, it raised

    async def read_both() -> tuple[Answer, Answer]:
        # get_value itself too: an async view calling it on the loop must not reach the database.
        return await aget_value(KEY, US), get_value(KEY, US)

    with django_assert_num_queries(0):
        from_aget, from_get = asyncio.run(read_both())

    assert from_aget.provenance.tier == from_get.provenance.tier == "l1"


def test_aget_value__cold_reads_on_threads__leave_no_database_connection_open(budget_server):
    clear_every_tier()
    before = _connections_to_test_database()

    answers = asyncio.run(aget_many([(KEY, {"region": region}) for region in ("us", "de", "fr", "gb")]))

    assert [answer.provenance.tier for answer in answers] == ["primary"] * 4
    assert _connections_to_test_database() == before


def _connections_to_test_database() -> int:
    """Sessions on the test database other than this thread's, at their fewest over a few looks
    (the registry's watcher connects for a moment every half second)."""
    counts = []
    for _ in range(5):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            counts.append(cursor.fetchone()[0])
        time.sleep(0.05)
    return min(counts)


# aget_many ------------------------------------------------------------------------------------------


def test_aget_many__two_cold_reads__resolved_concurrently(budget_server):
    """Each read's market_research_api request waits for the other read's at a barrier: one
    read at a time would leave the first waiting until the barrier gives up, without that
    source's value."""
    meeting = threading.Barrier(2, timeout=0.9)  # below the read budget (1 s in tests)

    def market(request):
        try:
            meeting.wait()
        except threading.BrokenBarrierError:
            return 503, {}, {"error": "the other read never came"}
        return 200, {"Content-Type": "application/json"}, market_answer(BUDGET)

    budget_server.route("GET", MARKET_PATH, handler=market)
    clear_caches()
    ResolvedValue.objects.all().delete()

    answers = asyncio.run(aget_many([(KEY, US), (KEY, DE)]))

    assert [answer.context for answer in answers] == [US, DE]
    for answer in answers:
        assert answer.provenance.tier == "primary"
        assert {use.name for use in answer.provenance.sources} == {"market_research_api", "industry_benchmarks_api"}


def test_aget_many__l1_hits_and_a_cold_read__each_in_order_as_get_value_answers(budget_server):
    get_value(KEY, US)
    answers = asyncio.run(aget_many([(KEY, US), (KEY, DE), ("budget_classification", US)]))

    assert [answer.provenance.tier for answer in answers] == ["l1", "primary", "l1"]
    assert answers[0] == answers[2] == get_value(KEY, US)
    assert answers[1].value == get_value(KEY, DE).value


# The registry's version check: a background thread ---------------------------------------------------


def test_registry__override_committed_by_another_process__reaches_snapshot_within_the_interval(budget_server):
    get_value(KEY, US)
    version = registry.snapshot().version
    code = (
        "from values.models import ValueType; from values.services import override_create; "
        "override_create(value_type=ValueType.objects.get(key='budget_thresholds'), value=%r, reason='elsewhere', "
        "actor='other', channel='test', context_match={'region': 'us'})" % scaled(BUDGET, 3)
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=PROJECT_ROOT, env=child_environment(),
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    committed_at = time.monotonic()
    while registry.current is None or registry.current.version == version:
        assert time.monotonic() - committed_at < 2 * CHECK_INTERVAL + 0.5, "the watcher never reloaded"
        time.sleep(0.02)

    answer = asyncio.run(aget_value(KEY, US))
    assert (answer.provenance.tier, answer.value) == ("override", scaled(BUDGET, 3))


def test_registry__process_forked__child_starts_its_own_watcher_and_sees_changes(budget_server):
    get_value(KEY, US)
    version = registry.snapshot().version
    reading, writing = _pipe()
    pid = _fork_child(writing, version)
    try:
        assert reading.readline().strip() == "WATCHING"
        override_create(
            value_type=ValueType.objects.get(key=KEY), value=scaled(BUDGET, 4), reason="after fork", actor="tester",
            channel="test", context_match={},
        )  # fmt: skip
        seen = reading.readline().strip()
    finally:
        _, status = _reap(pid)
    assert seen == "RELOADED"
    assert status == 0


def _pipe():
    read_end, write_end = os.pipe()
    return os.fdopen(read_end, "r"), write_end


def _fork_child(write_end: int, version: int) -> int:
    """A child that reads with the inherited snapshot, reports its watcher, then waits (at most
    5 s) for a newer snapshot and reports it. It never touches the parent's connection."""
    pid = os.fork()
    if pid:
        os.close(write_end)
        return pid
    status = 1
    try:
        registry.snapshot()
        names = {thread.name for thread in threading.enumerate()}
        os.write(write_end, b"WATCHING\n" if "dynconfig-registry-watcher" in names else b"NO WATCHER\n")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            current = registry.current
            if current is not None and current.version not in (None, version):
                os.write(write_end, b"RELOADED\n")
                status = 0
                break
            time.sleep(0.02)
        else:
            os.write(write_end, b"NOT RELOADED\n")
    finally:
        os._exit(status)


def _reap(pid: int) -> tuple[int, int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return done, os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    return os.waitpid(pid, 0)[0], -9


def test_registry__change_read_in_its_own_transaction_then_rolled_back__dropped_by_the_watcher(budget_server):
    get_value(KEY, US)

    class RolledBack(Exception):
        pass

    with pytest.raises(RolledBack), transaction.atomic():
        override_create(
            value_type=ValueType.objects.get(key=KEY), value=scaled(BUDGET, 5), reason="never", actor="tester",
            channel="test", context_match={"region": "us"},
        )  # fmt: skip
        inside = get_value(KEY, US)  # the writer reads its own change, uncommitted
        raise RolledBack
    time.sleep(2 * CHECK_INTERVAL + 0.2)
    after = asyncio.run(aget_value(KEY, US))

    assert (inside.provenance.tier, inside.value) == ("override", scaled(BUDGET, 5))
    assert after.provenance.tier in ("l1", "l2")
    assert after.value != scaled(BUDGET, 5)


def test_registry__database_down_then_back__snapshot_kept_then_a_change_reaches_it(budget_server, caplog):
    get_value(KEY, US)
    snapshot = registry.snapshot()
    database = connection.settings_dict  # every thread's connections are made from it
    port = database["PORT"]
    connection.close()
    database["PORT"] = "1"  # nothing listens there: every connection is refused
    try:
        time.sleep(2 * CHECK_INTERVAL + 0.2)  # two checks of the watcher, both refused
        kept, during = registry.current, get_value(KEY, US)
    finally:
        database["PORT"] = port
        connection.close()

    def change() -> None:
        """Another thread's change: this one never reloads for it, the watcher must."""
        try:
            override_create(
                value_type=ValueType.objects.get(key=KEY), value=scaled(BUDGET, 6), reason="back", actor="tester",
                channel="test", context_match={"region": "us"},
            )  # fmt: skip
        finally:
            connections.close_all()

    changed_elsewhere = threading.Thread(target=change)
    changed_elsewhere.start()
    changed_elsewhere.join(30)
    time.sleep(2 * CHECK_INTERVAL + 0.2)
    after = get_value(KEY, US)

    assert kept is snapshot
    assert during.provenance.tier == "l1"
    assert any("configuration not reloaded" in record.getMessage() for record in caplog.records)
    assert (after.provenance.tier, after.value) == ("override", scaled(BUDGET, 6))
