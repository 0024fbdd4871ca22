"""Fixtures shared by the whole suite. Environment defaults: tests/environment.py."""

import os

import pytest
from django.core.management import call_command


@pytest.fixture
def synced(db):
    """The database after `sync_config --env test`: the built-in value types and every source."""
    call_command("sync_config", "--env", "test", stdout=open(os.devnull, "w"))
