"""`bin/start --print-config`: what the one command would run, and on what, without starting it.

Cheap (no migrate, no processes): the same settings the web server, worker and beat load.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_INHERITED = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DYNCONFIG_SIMULATOR_URL", "PORT"}


def _print_config(**environ: str) -> str:
    env = {name: value for name, value in os.environ.items() if name not in NOT_INHERITED}
    env.update(DYNCONFIG_ENV="development", **environ)
    result = subprocess.run(
        [str(ROOT / "bin" / "start"), "--print-config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_start__nothing_set__embedded_sqlite_memory_cache_and_filesystem_broker(tmp_path):
    output = _print_config(DYNCONFIG_VAR_DIR=str(tmp_path), PORT="8123")

    assert f"database:   SQLite {tmp_path / 'dynconfig.sqlite3'}" in output
    assert "cache:      in-process only (no REDIS_URL)" in output
    assert f"broker:     filesystem {tmp_path / 'broker'} (no server)" in output
    assert "web:        python manage.py runserver 127.0.0.1:8123 --noreload" in output
    assert "simulators: http://127.0.0.1:8123/simulators" in output
    assert "worker:     python -m celery -A dynconfig_site worker --pool=solo -l info" in output
    assert f"beat:       python -m celery -A dynconfig_site beat -l info -s {tmp_path / 'celerybeat-schedule'}" in output


def test_start__database_redis_and_broker_urls_set__uses_them_and_hides_passwords(tmp_path):
    output = _print_config(
        DYNCONFIG_VAR_DIR=str(tmp_path),
        DATABASE_URL="postgres://dynconfig:db-secret@db.internal:5433/dynconfig",
        REDIS_URL="redis://cache.internal:6379/3",
        CELERY_BROKER_URL="redis://:broker-secret@broker.internal:6380/0",
        DYNCONFIG_SIMULATOR_URL="http://simulators.internal/simulators",
    )

    assert "database:   postgresql dynconfig on db.internal:5433" in output
    assert "cache:      Redis redis://cache.internal:6379/3" in output
    assert "broker:     redis://:***@broker.internal:6380/0" in output
    assert "simulators: http://simulators.internal/simulators" in output
    assert "db-secret" not in output and "broker-secret" not in output


def test_start__only_redis_url_set__the_broker_is_that_redis(tmp_path):
    output = _print_config(DYNCONFIG_VAR_DIR=str(tmp_path), REDIS_URL="redis://cache.internal:6379/3")

    assert "broker:     redis://cache.internal:6379/3" in output
