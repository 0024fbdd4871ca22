"""Fixtures for the sources tests: a local HTTP server standing in for the external APIs."""

from collections.abc import Iterator

import pytest

from tests.servers import LocalServer


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    """A running LocalServer, stopped after the test."""
    with LocalServer() as server:
        yield server


def serve_simulator(server, name: str) -> None:
    """Answer every request `server` has no route for with the simulator `name` (its real wire
    format), so a test sets routes only for the failures it wants."""
    from sources.simulators import SimRequest, simulator_for

    simulate = simulator_for(name)

    def handler(request):
        response = simulate(SimRequest.from_url(request.method, request.path, request.headers, request.body))
        body, content_type = response.encoded()
        return response.status, {"Content-Type": content_type, **response.headers}, body

    server.serve_all(handler)
