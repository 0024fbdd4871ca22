"""The application in a runserver subprocess on a given (or free) port, with extra settings:
for tests that need several servers, or one restarted on the same port."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.client.conftest import AppServer, _wait_until_healthy
from tests.databases import free_port
from tests.processes import PROJECT_ROOT, child_environment


def start_server(log_dir: Path, name: str, *, port: int | None = None, **settings: str) -> AppServer:
    """runserver on the test's database and Redis, anonymous reads off, `settings` in its environment."""
    port = port or free_port()
    log = log_dir / f"{name}.log"
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=PROJECT_ROOT,
            env=child_environment(DYNCONFIG_ANONYMOUS_READS="false", **settings),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = AppServer(process, f"http://127.0.0.1:{port}", log)
    _wait_until_healthy(server)
    return server


def start_asgi_server(log_dir: Path, name: str, **settings: str) -> AppServer:
    """The same application under uvicorn (ASGI), one process."""
    port = free_port()
    log = log_dir / f"{name}.log"
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "dynconfig_site.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            cwd=PROJECT_ROOT,
            env=child_environment(DYNCONFIG_ANONYMOUS_READS="false", **settings),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = AppServer(process, f"http://127.0.0.1:{port}", log)
    _wait_until_healthy(server)
    return server
