"""Fixtures and helpers shared by the operator API tests (overrides, fallback, refresh, history,
rollback, batch): API clients holding tokens of given scopes, and the database state that a
refused request must leave untouched."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from access.models import Scope
from audit.history import config_versions
from values.models import Override, ValueType
from audit.models import AuditEntry
from tests.tokens import token_client

WRITER_NAME = "ops-writer"
WRITER_ACTOR = f"token:{WRITER_NAME}"
# The product requirement: an operator's change is served everywhere within this many seconds.
PROPAGATION_LIMIT = 1.0


@pytest.fixture
def writer(engine) -> APIClient:
    return token_client(WRITER_NAME, [Scope.VALUES_WRITE])


@pytest.fixture
def reader(engine) -> APIClient:
    return token_client("ops-reader", [Scope.VALUES_READ])


def database_state() -> dict[str, Any]:
    """Everything an operator write changes: overrides, value types, the history, the version."""
    return {
        "overrides": list(Override.objects.order_by("pk").values()),
        "value_types": list(ValueType.objects.order_by("pk").values()),
        "audit_entries": list(AuditEntry.objects.order_by("pk").values_list("pk", flat=True)),
        "config_version": config_versions()[0],
    }


def poll(read: Callable[[], Any], is_done: Callable[[Any], bool], limit: float = PROPAGATION_LIMIT) -> Any:
    """Call `read` until `is_done(result)` or `limit` seconds pass; returns the last result."""
    deadline = time.monotonic() + limit
    result = read()
    while not is_done(result) and time.monotonic() < deadline:
        time.sleep(0.05)
        result = read()
    return result


def latest_audit_entry() -> AuditEntry:
    return AuditEntry.objects.order_by("-pk").first()
