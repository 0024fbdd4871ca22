"""Fixtures for the command tests: the engine's, and the API tests' local sources."""

from tests.api.conftest import budget_server, sources_down  # noqa: F401
from tests.values.conftest import engine, local_server  # noqa: F401
