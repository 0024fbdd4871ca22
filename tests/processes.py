"""Child processes of a test: the environment that shares the test's database and Redis, and a
child that speaks in lines (commands in on stdin, `WORD {json}` out on stdout)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO
from urllib.parse import quote

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXIT_TIMEOUT = 10.0


def child_environment(**extra: str) -> dict[str, str]:
    """This process's environment (credentials set by fixtures included), with DATABASE_URL
    naming the test database in use, and the same Redis, broker and settings."""
    from django.conf import settings
    from django.db import connection

    database = connection.settings_dict
    assert database["ENGINE"] == "django.db.backends.postgresql", "child processes share PostgreSQL"
    assert database["NAME"].startswith("test_"), database["NAME"]  # never the real database
    user = quote(database["USER"] or "", safe="")
    if database["PASSWORD"]:
        user += ":" + quote(database["PASSWORD"], safe="")
    host = f"{user}@" if user else ""
    host += f"{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}"
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dynconfig_site.settings",
        "DATABASE_URL": f"postgres://{host}/{quote(database['NAME'], safe='')}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "DYNCONFIG_ENV": "test",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class LineProcess:
    """A Python script in a subprocess: `send()` a line, `expect()` the next `WORD {json}` line.

    A line starting with one of `failure_words` fails the test at once. `stop()` (also on
    leaving the `with` block) kills and reaps it: no process outlives its test.
    """

    failure_words: tuple[str, ...] = ("ERROR",)

    def __init__(self, script: Path, arguments: list[str], environment: dict[str, str], stderr: IO[str], name: str):
        self.name = name
        self.lines: list[str] = []  # everything it printed, for failure messages
        self._stderr = stderr
        self.process = subprocess.Popen(
            [sys.executable, str(script), *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            bufsize=1,
            env=environment,
            cwd=PROJECT_ROOT,
        )
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._pump = threading.Thread(target=self._read_stdout, daemon=True)
        self._pump.start()

    def __enter__(self) -> LineProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def expect(self, word: str, timeout: float) -> dict | None:
        """The JSON after the next line starting with `word` (other lines are kept in `lines`)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                raise AssertionError(f"{self.name}: no {word} within {timeout}s\n{self.diagnostics()}") from None
            if line is None:
                self._queue.put(None)  # stays at EOF for later calls
                raise AssertionError(f"{self.name}: exited before {word}\n{self.diagnostics()}")
            self.lines.append(line)
            first, _, rest = line.partition(" ")
            if first == word:
                return json.loads(rest) if rest else None
            if first in self.failure_words:
                raise AssertionError(f"{self.name}: {line}\n{self.diagnostics()}")

    def wait(self, timeout: float = EXIT_TIMEOUT) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name}: still running after {timeout}s\n{self.diagnostics()}") from None

    def stop(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=EXIT_TIMEOUT)
        finally:
            self._pump.join(timeout=EXIT_TIMEOUT)
            self.process.stdout.close()
            self._stderr.close()

    def diagnostics(self) -> str:
        self._stderr.flush()
        with open(self._stderr.name) as stderr:
            tail = stderr.read()[-4000:]
        stdout = "\n".join(self.lines[-30:])
        return f"exit code {self.process.poll()}; stdout:\n{stdout}\nstderr:\n{tail}"

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)  # EOF
