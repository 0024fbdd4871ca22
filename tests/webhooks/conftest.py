"""Fixtures for the webhooks tests: the engine's (a synced database, empty caches)."""

from tests.values.conftest import engine  # noqa: F401
