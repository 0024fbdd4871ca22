"""GET /api/v1/health/: each source's health as its calls went, through the engine against real
local servers (stopped, slowed past a second, restored), and a record that every process shares.

These tests commit (transaction=True): the engine calls sources from its own threads, and the
second process writes from its own connection, so their rows are real commits, flushed after.
"""

from __future__ import annotations

import secrets

import pytest
from rest_framework.test import APIClient

from access.authentication import token_hash
from access.models import ApiToken, Scope
from sources.adapters.base import SourceCall, SourceConfig
from sources.calls import call_source
from sources.models import Source
from sources.models import SourceCall as SourceCallRow
from tests.servers import LocalServer
from tests.sources.source_process import SourceProcess, process_environment
from tests.values.conftest import (  # noqa: F401
    BUDGET,
    benchmarks_answer,
    engine,
    local_server,
    market_answer,
    reload_engine,
    serve_sources,
)
from values import get_value

pytestmark = pytest.mark.django_db(transaction=True)

MARKET = "market_research_api"  # budget_thresholds, primary
BENCHMARKS = "industry_benchmarks_api"  # budget_thresholds, primary
WORLD_BANK = "world_bank_api"  # budget_thresholds, secondary
CONTEXT = {"region": "us", "industry": "retail"}
SLOW_DELAY = 1.2  # seconds: past the 1 s mean that makes a source degraded, within the 3 s budget


@pytest.fixture(autouse=True)
def empty_call_record(transactional_db) -> None:
    """The engine's threads commit their rows, so earlier tests' calls may still be recorded."""
    SourceCallRow.objects.all().delete()


@pytest.fixture
def reader(engine) -> APIClient:  # noqa: F811
    token = secrets.token_urlsafe(32)
    ApiToken.objects.create(name="health-reader", prefix=token[:8], token_hash=token_hash(token), scopes=[Scope.VALUES_READ])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def nothing_answers(engine) -> None:  # noqa: F811
    """Every source pointed at a port that refuses connections: no test reaches the internet."""
    with LocalServer() as server:
        url = server.url
    Source.objects.update(base_url=url)
    reload_engine()


def serve_budget(server: LocalServer, delay: float = 0.0) -> None:
    server.route("GET", "/v1/budget-benchmarks", json=market_answer(BUDGET), delay=delay)
    server.route("GET", "/benchmarks/budget-tiers", json=benchmarks_answer(BUDGET), delay=delay)
    serve_sources(server, MARKET, BENCHMARKS)


def refresh(times: int = 1) -> None:
    """Reads that skip the caches, as the background refresh does: every one calls the sources."""
    for _ in range(times):
        get_value("budget_thresholds", CONTEXT, use_cache=False)


def health(client: APIClient) -> dict:
    response = client.get("/api/v1/health/")
    assert response.status_code == 200  # always: a report, not a probe
    return response.json()


def test_health__source_stopped_then_slowed_then_restored__down_then_degraded_then_healthy(reader, nothing_answers):
    # Stopped: both budget sources refuse connections, then the secondary too. A refused
    # connection opens a source's breaker at once (no retries): down, and says why.
    with LocalServer() as stopped:
        serve_budget(stopped)
    refresh()

    report = health(reader)
    market = report["sources"][MARKET]
    assert market["status"] == "down"
    assert market["reasons"][0].startswith("its breaker is open until")
    assert market["last_failure_reason"] == "http_error: connection failed"
    assert market["last_success_at"] is None
    assert report["status"] == "down"  # every source of budget_thresholds is down: served from fallback
    assert report["reasons"][0].startswith("every source of budget_thresholds is down")

    # Slowed: answers, but each after 1.2 s.
    with LocalServer() as slow:
        serve_budget(slow, delay=SLOW_DELAY)
        refresh(3)

        market = health(reader)["sources"][MARKET]
    assert market["status"] == "degraded"
    assert market["mean_seconds"] > 1.0
    assert any(reason.startswith("its recent successful calls took") for reason in market["reasons"])
    assert market["last_success_at"] is not None

    # Restored: fast again; after a few good calls the failures and slow calls leave the window.
    with LocalServer() as restored:
        serve_budget(restored)
        refresh(8)

        report = health(reader)
    market = report["sources"][MARKET]
    assert (market["status"], market["reasons"], market["error_rate"]) == ("healthy", [], 0.0)
    assert market["mean_seconds"] < 1.0
    assert report["sources"][BENCHMARKS]["status"] == "healthy"
    # The secondary failed when it was asked and has not been asked since: still down, which
    # no longer makes budget_thresholds unanswerable, only the whole degraded.
    assert report["sources"][WORLD_BANK]["status"] == "down"
    assert (report["status"], report["reasons"]) == ("degraded", [f"{WORLD_BANK} is down"])


def test_health__no_calls_yet__every_source_healthy_with_the_thresholds(reader):
    report = health(reader)

    assert report["status"] == "healthy"
    assert set(report["sources"]) == set(Source.objects.values_list("name", flat=True))
    assert {source["status"] for source in report["sources"].values()} == {"healthy"}
    assert report["sources"][MARKET]["reasons"] == ["no calls in the last 15 minutes: nothing known against it"]
    assert report["thresholds"] == {
        "recent_calls": 10,
        "recent_window_seconds": 900,
        "down_after_failures": 3,
        "slow_mean_seconds": 1.0,
        "max_error_rate": 0.2,
    }


def test_health__anonymous_where_reads_need_a_token__401(engine, settings):  # noqa: F811
    settings.DYNCONFIG_ANONYMOUS_READS = False

    assert APIClient().get("/api/v1/health/").status_code == 401


def test_health__calls_from_another_process__counted_with_this_ones(reader, local_server):
    path = "/v1/rates"
    local_server.route("GET", path, json={"rate": 0.05})
    name = "shared_record_source"
    Source.objects.create(name=name, kind="http_json", base_url=local_server.url, request_template={"method": "GET", "path": path})
    settings = dict(name=name, base_url=local_server.url, requests_per_minute=60_000, burst_allowance=1_000)
    with SourceProcess({**settings, "path": path, "breaker_recovery_timeout": 60}, process_environment()) as child:
        child.ready()
        child.command(op="call", threads=3, budget=3.0)
        assert child.result()["outcomes"] == ["ok"] * 3
    source = SourceConfig(kind="http_json", request_template={"method": "GET", "path": path}, **settings)
    for _ in range(2):
        call_source(SourceCall(source=source, value_type="test", context={}, timeout_budget=3.0))

    shared = health(reader)["sources"][name]

    assert local_server.calls(path) == 5
    assert (shared["status"], shared["calls"], shared["errors"]) == ("healthy", 5, 0)
