"""The project under ASGI: gunicorn with uvicorn workers, the production command of
docs/deploy.md ("Web over ASGI"), in a subprocess sharing the test database and Redis.

Its async view `GET /healthz/reads/` reads every value type with `values.aget_many` on the event
loop. The data must be committed for the server to see it: the tests are transactional.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.api.conftest import budget_server  # noqa: F401
from tests.databases import free_port
from tests.processes import PROJECT_ROOT, child_environment
from tests.values.conftest import BUDGET, engine, local_server  # noqa: F401
from values import get_value
from values.models import ValueType
from values.registry import CHECK_INTERVAL, registry
from values.services import override_create

# Django starting on a loaded machine: generous, far below a hang.
STARTUP_TIMEOUT = 60.0


@pytest.fixture
def asgi_server(budget_server, tmp_path) -> Iterator[str]:  # noqa: F811
    """`gunicorn dynconfig_site.asgi -k uvicorn_worker.UvicornWorker`, one worker; its URL."""
    port = free_port()
    log = tmp_path / "gunicorn-asgi.log"
    command = [
        sys.executable, "-m", "gunicorn", "dynconfig_site.asgi",
        "-c", "deploy/gunicorn.conf.py",
        "-k", "uvicorn_worker.UvicornWorker",
        "--bind", f"127.0.0.1:{port}",
        "--workers", "1",
        "--graceful-timeout", "5",
    ]  # fmt: skip
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=child_environment(), stdin=subprocess.DEVNULL,
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_until_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail(f"no /healthz within {STARTUP_TIMEOUT} s:\n{log.read_text(errors='replace')[-4000:]}")


@pytest.mark.django_db(transaction=True)
def test_async_view_under_uvicorn__reads_every_type_with_aget_many__then_from_l1_on_the_loop(asgi_server):
    first = requests.get(asgi_server + "/healthz/reads/", timeout=30)
    second = requests.get(asgi_server + "/healthz/reads/", timeout=30)

    assert first.status_code == second.status_code == 200, first.text
    assert first.json()["interface"] == second.json()["interface"] == "asgi"
    keys = {value_type.key for value_type in registry.snapshot().types.values()}
    assert set(first.json()["reads"]) == set(second.json()["reads"]) == keys
    # The first read of budget_thresholds in the server left its sources' answer in L2 (this
    # process sees it there); the server's second read found it in its own L1, on the loop.
    budget = first.json()["reads"]["budget_thresholds"]
    assert (budget["tier"], budget["is_degraded"]) == ("primary", False)
    assert second.json()["reads"]["budget_thresholds"]["tier"] == "l1"
    assert get_value("budget_thresholds", {}).provenance.tier == "l2"


@pytest.mark.django_db(transaction=True)
def test_async_view_under_uvicorn__override_committed__served_within_a_second(asgi_server):
    assert requests.get(asgi_server + "/healthz/reads/", timeout=30).json()["reads"]["budget_thresholds"]["tier"] in (
        "primary", "l2", "l1",
    )  # fmt: skip
    override_create(
        value_type=ValueType.objects.get(key="budget_thresholds"), value={name: n * 2 for name, n in BUDGET.items()},
        reason="asgi test", actor="tester", channel="test",
    )  # fmt: skip
    time.sleep(2 * CHECK_INTERVAL + 0.2)  # two checks of the server's watcher

    after = requests.get(asgi_server + "/healthz/reads/", timeout=30).json()["reads"]["budget_thresholds"]
    assert after["tier"] == "override"
