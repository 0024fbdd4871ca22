"""Fixtures for the HTTP API tests: the engine's fixtures, and the budget sources served locally."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.servers import LocalServer
from tests.values.conftest import BUDGET, engine, local_server, serve_sources  # noqa: F401

BUDGET_SOURCES = ("market_research_api", "industry_benchmarks_api")
CHANNEL_SOURCES = ("google_ads_api", "facebook_marketing_api", "email_intelligence_api")


def route_budget(server: LocalServer, budget: dict = BUDGET) -> None:
    """Both budget_thresholds sources answer `budget`, each in its own wire format."""
    server.route(
        "GET",
        "/v1/budget-benchmarks",
        json={
            "micro_business_spending_median": budget["micro_threshold"],
            "small_business_spending_median": budget["small_threshold"],
            "medium_business_spending_median": budget["medium_threshold"],
            "large_business_spending_median": budget["large_threshold"],
            "enterprise_spending_median": budget["enterprise_threshold"],
        },
    )
    server.route(
        "GET",
        "/benchmarks/budget-tiers",
        json={
            "tiers": {
                "micro": budget["micro_threshold"],
                "small": budget["small_threshold"],
                "medium": budget["medium_threshold"],
                "large": budget["large_threshold"],
                "enterprise": budget["enterprise_threshold"],
            }
        },
    )


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
