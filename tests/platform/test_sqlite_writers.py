"""The embedded default (SQLite) under concurrent writers: web, worker and beat share one file.

`bin/start` without DATABASE_URL runs three processes on one SQLite file. An operator's save must
never fail with `database is locked` because the worker or beat wrote at the same moment; the
settings (dynconfig_site/settings.py, SQLITE_OPTIONS) give SQLite a write-ahead log, a busy
timeout and transactions that take the write lock when they begin.

The test migrates and syncs a fresh SQLite file, then starts WRITERS processes on it, each
writing through the real services for WRITE_SECONDS at once: what the admin writes (overrides
created, updated and deleted; a fallback saved; each one audited, bumping the one configuration
version row), what the worker writes (a refresh's outcome) and what beat writes (a dispatch, the
read counts). None may fail on a lock.

Run as a script (`python tests/platform/test_sqlite_writers.py WRITER_INDEX SECONDS`), this module
is one writer process; it speaks in lines through tests.processes.LineProcess:

    READY {"journal_mode": ..., "synchronous": ..., "busy_timeout": ..., "transaction_mode": ...}
        once Django is set up and its connection opened; then it waits for GO on stdin
    DONE {"counts": {write: how many}, "locked": [...], "began": unix time, "ended": unix time}
        after writing for SECONDS; exits 0
    ERROR {"write": ..., "error": ...}   any other failure of a write (the test fails at once)
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings

from tests.processes import PROJECT_ROOT, LineProcess, child_environment

WRITERS = 4
WRITE_SECONDS = 4.0
# Django starting in several processes at once on a loaded machine; far below a hang.
STARTUP_TIMEOUT = 40.0
# The writers' seconds, plus one busy timeout of margin (a writer waiting for the lock).
DONE_TIMEOUT = WRITE_SECONDS + 30.0
SETUP_TIMEOUT = 60.0
ACTOR = "sqlite-writer"
CHANNEL = "test"
WRITES = (
    "override_create", "override_update", "override_delete", "fallback_update",  # the admin's
    "read_counts", "refresh_outcome", "dispatch",  # the worker's and beat's
)
# synchronous=NORMAL as PRAGMA synchronous reports it.
SYNCHRONOUS_NORMAL = 1


class WriterProcess(LineProcess):
    failure_words = ("ERROR",)

    def __init__(self, index: int, environment: dict[str, str], log_dir: Path):
        name = f"writer-{index}"
        stderr = (log_dir / f"{name}.stderr").open("w")
        super().__init__(Path(__file__), [str(index), str(WRITE_SECONDS)], environment, stderr, name)


def embedded_environment(tmp_path: Path) -> dict[str, str]:
    """The embedded default on a fresh SQLite file: no Redis, the filesystem broker under var/."""
    environment = child_environment(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        DYNCONFIG_VAR_DIR=str(tmp_path / "var"),
        LOG_LEVEL="ERROR",  # a refresh outcome's failure is logged as a warning on purpose here
        PYTHONPATH=str(PROJECT_ROOT),  # this module runs as a script and imports tests.processes
    )
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        environment.pop(name)
    return environment


def manage(environment: dict[str, str], *arguments: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT,
        check=False,  # the assertion below shows its output
    )
    assert result.returncode == 0, f"manage.py {' '.join(arguments)}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"


@pytest.mark.django_db  # child_environment checks the suite's own database is a test one
def test_sqlite__four_processes_writing_at_once__no_write_fails_on_a_lock(tmp_path):
    environment = embedded_environment(tmp_path)
    manage(environment, "migrate", "--noinput")
    manage(environment, "sync_config", "--env", "test")

    writers: list[WriterProcess] = []
    try:
        for index in range(WRITERS):
            writers.append(WriterProcess(index, environment, tmp_path))
        connections = [writer.expect("READY", STARTUP_TIMEOUT) for writer in writers]
        for writer in writers:
            writer.send("GO")
        results = [writer.expect("DONE", DONE_TIMEOUT) for writer in writers]
        for writer in writers:
            assert writer.wait() == 0, writer.diagnostics()
    finally:
        for writer in writers:
            writer.stop()

    assert [result["locked"] for result in results] == [[]] * WRITERS
    # Every process's connection: the write-ahead log, the busy timeout, immediate transactions.
    for settings_seen in connections:
        assert settings_seen == {
            "journal_mode": "wal",
            "synchronous": SYNCHRONOUS_NORMAL,
            "busy_timeout": settings.SQLITE_BUSY_TIMEOUT_SECONDS * 1000,  # PRAGMA busy_timeout: milliseconds
            "transaction_mode": "IMMEDIATE",
        }
    # They really wrote at the same time, every kind of write, many times.
    assert max(result["began"] for result in results) < min(result["ended"] for result in results)
    for result in results:
        assert set(result["counts"]) == set(WRITES), result["counts"]
    assert sum(sum(result["counts"].values()) for result in results) >= 10 * WRITERS * len(WRITES)


def test_sqlite__new_file_after_migrate__write_ahead_log_kept_in_the_file(tmp_path):
    """journal_mode=WAL is a property of the file: a plain sqlite3 connection (no Django) sees it."""
    database = tmp_path / "db.sqlite3"
    environment = {
        **{name: value for name, value in os.environ.items() if name not in ("REDIS_URL", "CELERY_BROKER_URL")},
        "DJANGO_SETTINGS_MODULE": "dynconfig_site.settings",
        "DATABASE_URL": f"sqlite:///{database}",
        "DYNCONFIG_VAR_DIR": str(tmp_path / "var"),
        "DYNCONFIG_ENV": "test",
    }
    manage(environment, "migrate", "--noinput")

    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# The writer process ----------------------------------------------------------------------------


def writer_main(index: int, seconds: float) -> int:
    # Django is set up before the project's models are imported: this runs as a script.
    import django

    django.setup()
    from django.db import OperationalError, connection, transaction

    from values.models import ValueType
    from values.popularity import ReadCounter
    from values.refresh import refresh_dispatch, refresh_failure_record
    from values.services import (
        override_create,
        override_delete,
        override_update,
        value_type_fallback_update,
    )

    with connection.cursor() as cursor:
        seen = {
            name: cursor.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "busy_timeout")
        }
    seen["transaction_mode"] = connection.transaction_mode
    print(f"READY {json.dumps(seen)}", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 2

    read_counts = ReadCounter(flush_interval=0)
    reason = f"concurrent writer {index}"

    def override_writes(value_type: ValueType, counts: Counter) -> None:
        override = override_create(
            value_type=value_type, value=value_type.fallback_value, reason=reason, actor=ACTOR, channel=CHANNEL
        )
        counts["override_create"] += 1
        override = override_update(
            override=override, expected_version=override.version, actor=ACTOR, channel=CHANNEL,
            reason=reason, value=value_type.fallback_value,
        )
        counts["override_update"] += 1
        override_delete(
            override=override, expected_version=override.version, actor=ACTOR, channel=CHANNEL, reason=reason
        )
        counts["override_delete"] += 1

    def fallback_update(value_type: ValueType, counts: Counter) -> None:
        with transaction.atomic():  # read and write in one transaction: no version conflict
            current = ValueType.objects.get(pk=value_type.pk)
            value_type_fallback_update(
                value_type=current, value=current.fallback_value, expected_version=current.version,
                actor=ACTOR, channel=CHANNEL, reason=reason,
            )
        counts["fallback_update"] += 1

    def worker_and_beat_writes(value_type: ValueType, counts: Counter) -> None:
        read_counts.record(value_type.key, "", {})
        read_counts.flush()
        counts["read_counts"] += 1
        refresh_failure_record(key=value_type.key, context={}, reason=reason)
        counts["refresh_outcome"] += 1
        refresh_dispatch(enqueue=lambda key, context: None)
        counts["dispatch"] += 1

    value_types = list(ValueType.objects.order_by("key"))
    counts: Counter = Counter()
    locked: list[str] = []
    began = time.time()
    deadline = time.monotonic() + seconds
    turn = index
    while time.monotonic() < deadline:
        value_type = value_types[turn % len(value_types)]
        turn += 1
        for write in (override_writes, fallback_update, worker_and_beat_writes):
            try:
                write(value_type, counts)
            except OperationalError as error:
                locked.append(f"{write.__name__}: {error}")
            except Exception as error:  # noqa: BLE001 - reported to the test, which fails on it
                print(f"ERROR {json.dumps({'write': write.__name__, 'error': repr(error)})}", flush=True)
                return 1
    print(f"DONE {json.dumps({'counts': counts, 'locked': locked, 'began': began, 'ended': time.time()})}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(writer_main(int(sys.argv[1]), float(sys.argv[2])))
