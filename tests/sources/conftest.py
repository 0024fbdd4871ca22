"""Fixtures for the sources tests: a local HTTP server standing in for the external APIs."""

from collections.abc import Iterator

import pytest

from tests.servers import LocalServer


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    """A running LocalServer, stopped after the test."""
    with LocalServer() as server:
        yield server
