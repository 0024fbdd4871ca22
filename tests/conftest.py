"""Fixtures shared by the whole suite. Environment defaults: tests/environment.py."""

import os

import pytest
from django.core.management import call_command

from values.registry import registry


@pytest.fixture
def synced(db):
    """The database after `sync_config --env test`: the built-in value types and every source."""
    call_command("sync_config", "--env", "test", stdout=open(os.devnull, "w"))


@pytest.fixture(scope="session", autouse=True)
def registry_watcher_stopped_before_teardown(django_db_setup, django_db_blocker):
    """Each process's registry watcher checks the database every 0.5 s on a connection of its
    own: it is stopped before pytest-django drops the test database (set up after it, so torn
    down before it), so that no check connects to a database being dropped."""
    yield
    registry.stop_watching()
