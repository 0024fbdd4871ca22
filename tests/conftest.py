"""Test defaults: the `test` environment on the local PostgreSQL and Redis, over real connections.

These are defaults only: set DATABASE_URL / REDIS_URL to point the suite elsewhere.
"""

import os

os.environ.setdefault("DYNCONFIG_ENV", "test")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dynconfig")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")

import pytest  # noqa: E402
from django.core.management import call_command  # noqa: E402


@pytest.fixture
def synced(db):
    """The database after `sync_config --env test`: the built-in value types and every source."""
    call_command("sync_config", "--env", "test", stdout=open(os.devnull, "w"))
