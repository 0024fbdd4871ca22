"""Fixtures for the client tests: the real application in a subprocess (runserver on a free
port, sharing the test database and Redis), an API token, and a transport that records every
request the client puts on the wire."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from access.authentication import token_hash
from access.models import ApiToken
from tests.api.conftest import budget_server  # noqa: F401
from tests.databases import free_port
from tests.processes import PROJECT_ROOT, child_environment
from tests.values.conftest import engine, local_server  # noqa: F401

TOKEN = "dcfg_client_test_token_0123456789abcdef0123456789abcdef"
# Django starting on a loaded machine (8 engineers, 2 cores): generous, far below a hang.
STARTUP_TIMEOUT = 60.0


@dataclass
class AppServer:
    """The application served by `manage.py runserver` in a subprocess."""

    process: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        """Kill it: from now on its port refuses connections."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def api_token(budget_server) -> str:  # noqa: F811 (after the engine's fixtures: the DB is ready)
    ApiToken.objects.create(name="client-tests", prefix=TOKEN[:8], token_hash=token_hash(TOKEN), scopes=["values:read"])
    return TOKEN


@pytest.fixture
def app_server(budget_server, api_token, tmp_path) -> Iterator[AppServer]:  # noqa: F811
    """The real application with anonymous reads off, its budget sources answering BUDGET
    (tests/api/conftest.py). Needs committed data: the tests using it are transactional."""
    port = free_port()
    log = tmp_path / "runserver.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=PROJECT_ROOT,
            env=child_environment(DYNCONFIG_ANONYMOUS_READS="false"),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = AppServer(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_until_healthy(server)
        yield server
    finally:
        server.stop()


def _wait_until_healthy(server: AppServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"runserver exited with {server.process.returncode}:\n{server.output()}")
        try:
            if requests.get(server.url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail(f"no /healthz within {STARTUP_TIMEOUT} s:\n{server.output()}")


@dataclass
class Exchange:
    method: str
    path: str  # with the query string
    headers: dict[str, str]
    status: int | None = None  # None: no answer (connection refused, timeout)


@dataclass
class Wire:
    """Every request the client's sessions sent, through a recording adapter (`session_factory`)."""

    exchanges: list[Exchange] = field(default_factory=list)

    def session_factory(self) -> Callable[[], requests.Session]:
        def make() -> requests.Session:
            session = requests.Session()
            session.mount("http://", _RecordingAdapter(self.exchanges))
            return session

        return make

    def methods(self) -> list[str]:
        return [exchange.method for exchange in self.exchanges]


class _RecordingAdapter(HTTPAdapter):
    def __init__(self, exchanges: list[Exchange]) -> None:
        super().__init__()
        self._exchanges = exchanges

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        exchange = Exchange(request.method or "", request.path_url, dict(request.headers))
        self._exchanges.append(exchange)  # list.append is atomic: threads may share the wire
        response = super().send(request, **kwargs)
        exchange.status = response.status_code
        return response


@pytest.fixture
def wire() -> Wire:
    return Wire()
