"""Fixtures for the resolution engine: a clean engine, and sources served by local servers."""

from __future__ import annotations

import pytest
from django.core.cache import caches

from sources.models import Source, SourceCall
from tests.servers import LocalServer
from values.background import refreshes
from values.cache import l1, l2
from values.registry import registry

BUDGET = {
    "micro_threshold": 600,
    "small_threshold": 6000,
    "medium_threshold": 60000,
    "large_threshold": 600000,
    "enterprise_threshold": 2400000,
}


def reload_engine() -> None:
    """After changing the database behind the engine's back (ORM in a test), make this process
    see it now: operators' changes go through services and propagate by themselves."""
    registry.refresh(force=True)
    l1.clear()


@pytest.fixture
def engine(synced, monkeypatch):
    """The test environment synced, every credential variable set, caches empty, no calls on
    record. (Sources are called from the engine's threads, whose rows of the call record commit
    outside the test's transaction and would outlive it: this test starts without them.)"""
    SourceCall.objects.all().delete()
    for source in Source.objects.all():
        for variable in source.credential_variables.values():
            monkeypatch.setenv(variable, f"test-credential-{variable.lower()}")
    caches["default"].clear()
    monkeypatch.setattr(l2, "_down_until", 0.0)
    reload_engine()
    yield
    # Refreshes that degraded reads left running use the test's sources and database: let them end.
    refreshes.wait_until_idle(15)
    l1.clear()
    caches["default"].clear()


@pytest.fixture
def local_server():
    with LocalServer() as server:
        yield server


def serve_sources(server: LocalServer, *names: str) -> None:
    """Point the named sources at `server` (the routes are the test's to set)."""
    Source.objects.filter(name__in=names).update(base_url=server.url)
    reload_engine()


# The budget and multiplier sources' wire formats (config/environments/base.yaml: paths, mappings).

SIZES = ("micro", "small", "medium", "large", "enterprise")


def market_answer(budget: dict) -> dict:
    return {
        "micro_business_spending_median": budget["micro_threshold"],
        "small_business_spending_median": budget["small_threshold"],
        "medium_business_spending_median": budget["medium_threshold"],
        "large_business_spending_median": budget["large_threshold"],
        "enterprise_spending_median": budget["enterprise_threshold"],
    }


def benchmarks_answer(budget: dict) -> dict:
    return {"tiers": {size: budget[f"{size}_threshold"] for size in SIZES}}


def economic_answer(multipliers: dict) -> dict:
    return {f"{industry}_performance_multiplier": value for industry, value in multipliers.items()}


def competitive_answer(multipliers: dict) -> dict:
    return {"industries": dict(multipliers)}


def scaled(budget: dict, factor: float) -> dict:
    return {name: number * factor for name, number in budget.items()}
