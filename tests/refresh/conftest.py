"""Fixtures for the refresh tests: the engine's (tests/values/conftest.py), every source served
by one local server, and the read counter emptied around each test."""

from __future__ import annotations

import pytest

from sources.models import Source
from tests.servers import LocalServer
from tests.values.conftest import (  # noqa: F401
    BUDGET,
    benchmarks_answer,
    engine,
    local_server,
    market_answer,
    scaled,
    serve_sources,
)
from values import popularity

MARKET = "market_research_api"  # budget_thresholds, primary, weight 0.6
BENCHMARKS = "industry_benchmarks_api"  # budget_thresholds, primary, weight 0.4
MARKET_PATH = "/v1/budget-benchmarks"
BENCHMARKS_PATH = "/benchmarks/budget-tiers"
ECONOMIC_PATH = "/v2/industry-multipliers"  # industry_multipliers, weight 0.7
COMPETITIVE_PATH = "/multipliers"  # industry_multipliers, weight 0.3

MULTIPLIERS = {
    "technology": 1.25,
    "healthcare": 1.05,
    "finance": 1.35,
    "manufacturing": 0.95,
    "retail": 1.15,
    "services": 1.0,
}





def serve_budget(server: LocalServer, budget: dict = BUDGET) -> None:
    """Both budget_thresholds sources answer `budget` (so the blend is `budget` too)."""
    server.route("GET", MARKET_PATH, json=market_answer(budget))
    server.route("GET", BENCHMARKS_PATH, json=benchmarks_answer(budget))


def fail_budget(server: LocalServer) -> None:
    server.route("GET", MARKET_PATH, status=500, json={"error": "down"})
    server.route("GET", BENCHMARKS_PATH, status=500, json={"error": "down"})


def serve_multipliers(server: LocalServer) -> None:
    server.route("GET", ECONOMIC_PATH, json={f"{name}_performance_multiplier": v for name, v in MULTIPLIERS.items()})
    server.route("GET", COMPETITIVE_PATH, json={"industries": MULTIPLIERS})


@pytest.fixture
def sources(engine, local_server: LocalServer) -> LocalServer:
    """Every source points at the local server (no route: a quick 404, never the internet);
    budget_thresholds' two primaries answer BUDGET."""
    serve_sources(local_server, *Source.objects.values_list("name", flat=True))
    serve_budget(local_server)
    return local_server


@pytest.fixture(autouse=True)
def empty_read_counter():
    """Counts left in memory by other tests must not leak into these (nor these into others)."""
    popularity.counter.clear()
    yield
    popularity.counter.clear()
