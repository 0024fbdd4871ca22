"""A Celery worker or beat in a subprocess of the test, on the test's database and Redis.

    with CeleryProcess.worker(tmp_path) as worker:
        worker.wait_for("ready.")
        refresh_value.delay("budget_thresholds", {})

The process gets this test's DATABASE_URL (the test database: every test using it is
transactional, so that the data is committed), REDIS_URL, CELERY_BROKER_URL (the same Redis:
the broker of this process's `.delay()`), DYNCONFIG_ENV=test and the sources' credential
variables. Its output goes to a log file in tmp_path (read by `wait_for` and shown on failure).
Leaving the block stops it: SIGTERM (Celery's warm shutdown), then SIGKILL if it lingers, and
it is always reaped, so no process outlives its test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from tests.processes import child_environment


PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Celery starting (Django, the app, the broker connection) on a busy 2-core machine.
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def celery_environment(**extra: str) -> dict[str, str]:
    """A Celery process's environment: this test's database, Redis and broker, the credentials."""
    assert settings.CELERY_BROKER_URL.startswith("redis://"), settings.CELERY_BROKER_URL
    return child_environment(**extra)


class CeleryProcess:
    def __init__(self, name: str, arguments: list[str], log_dir: Path, environment: dict[str, str]):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "dynconfig_site", *arguments],
            cwd=PROJECT_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @classmethod
    def worker(cls, log_dir: Path, **extra_environment: str) -> CeleryProcess:
        arguments = [
            "worker", "--pool=solo", "-Q", "celery", "--without-heartbeat", "--without-mingle",
            "--without-gossip", "-l", "info", "-n", f"refresh-test-{os.getpid()}@%h",
        ]
        return cls("worker", arguments, log_dir, celery_environment(**extra_environment))

    @classmethod
    def beat(cls, log_dir: Path, **extra_environment: str) -> CeleryProcess:
        arguments = ["beat", "-s", str(log_dir / "beat-schedule"), "-l", "info"]
        return cls("beat", arguments, log_dir, celery_environment(**extra_environment))

    def __enter__(self) -> CeleryProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.output()[-6000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {text!r} after {timeout}s:\n{self.output()[-6000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; always reaped."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
        finally:
            self._log.close()
