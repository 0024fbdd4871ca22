"""Fixtures for the HTTP API tests: the engine's fixtures, and the budget sources served locally."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.servers import LocalServer
from tests.values.conftest import (  # noqa: F401
    BUDGET,
    benchmarks_answer,
    engine,
    local_server,
    market_answer,
    serve_sources,
)

BUDGET_SOURCES = ("market_research_api", "industry_benchmarks_api")
CHANNEL_SOURCES = ("google_ads_api", "facebook_marketing_api", "email_intelligence_api")


def route_budget(server: LocalServer, budget: dict = BUDGET) -> None:
    """Both budget_thresholds sources answer `budget`, each in its own wire format."""
    server.route("GET", "/v1/budget-benchmarks", json=market_answer(budget))
    server.route("GET", "/benchmarks/budget-tiers", json=benchmarks_answer(budget))


@pytest.fixture
def budget_server(engine, local_server):  # noqa: F811
    """The budget_thresholds sources served by a local server that answers BUDGET."""
    route_budget(local_server)
    serve_sources(local_server, *BUDGET_SOURCES)
    return local_server


@pytest.fixture
def sources_down(engine):  # noqa: F811
    """Every source pointed at a local port that refuses connections."""
    with LocalServer() as server:
        url = server.url
    from sources.models import Source

    Source.objects.update(base_url=url)
    from tests.values.conftest import reload_engine

    reload_engine()
    return url


@pytest.fixture
def api_client():
    return APIClient()
