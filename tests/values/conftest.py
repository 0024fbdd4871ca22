"""Fixtures for the resolution engine: a clean engine, and sources served by local servers."""

from __future__ import annotations

import pytest
from django.core.cache import caches

from sources.models import Source
from tests.servers import LocalServer
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
    """The test environment synced, every credential variable set, caches empty."""
    for source in Source.objects.all():
        for variable in source.credential_variables.values():
            monkeypatch.setenv(variable, f"test-credential-{variable.lower()}")
    caches["default"].clear()
    monkeypatch.setattr(l2, "_down_until", 0.0)
    reload_engine()
    yield
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
