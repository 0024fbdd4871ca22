"""Server settings: read from the environment once; production refuses unsafe settings."""

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def _boot(**environ: str) -> subprocess.CompletedProcess:
    """Start Django in a fresh process with exactly these variables (plus PATH)."""
    env = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "dynconfig_site.settings", **environ}
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CACHES['default']['BACKEND'], s.DEBUG)"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)


def test_suite__runs_on_postgresql_and_redis():
    assert connection.vendor == "postgresql"
    assert settings.CACHES["default"]["BACKEND"] == "django_redis.cache.RedisCache"


def test_settings__no_database_or_redis_url__embedded_sqlite_and_memory_cache():
    result = _boot(DYNCONFIG_ENV="development")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.sqlite3",
        "django.core.cache.backends.locmem.LocMemCache",
        "True",
    ]


def test_settings__production_with_debug__refuses_to_start():
    result = _boot(DYNCONFIG_ENV="production", DEBUG="true", SECRET_KEY="x" * 50)
    assert result.returncode != 0
    assert "DEBUG must be off in production" in result.stderr


def test_settings__production_without_secret_key__refuses_to_start():
    result = _boot(DYNCONFIG_ENV="production")
    assert result.returncode != 0
    assert "SECRET_KEY must be set in production" in result.stderr


def test_settings__production_with_secret_key__starts_with_debug_off():
    result = _boot(DYNCONFIG_ENV="production", SECRET_KEY="x" * 50, REDIS_URL="redis://127.0.0.1:6379/15")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1:] == ["django_redis.cache.RedisCache", "False"]


def test_settings__unknown_environment_name__refuses_to_start():
    result = _boot(DYNCONFIG_ENV="prod")
    assert result.returncode != 0
    assert "DYNCONFIG_ENV='prod' is not one of" in result.stderr
