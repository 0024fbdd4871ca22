"""/readyz: the database, Redis and the broker, each checked with a timeout; never a password."""

from __future__ import annotations

import socket

from django.test import Client, override_settings


def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_readyz__everything_answers__200_ready_with_each_check_ok(db):
    response = Client().get("/readyz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "redis", "broker"}
    for check in body["checks"].values():
        assert check["ok"] is True
        assert check["seconds"] >= 0


def test_readyz__redis_url_at_a_closed_port__503_naming_redis_without_its_password(db):
    url = f"redis://:hunter2-readyz-secret@127.0.0.1:{closed_port()}/0"

    with override_settings(REDIS_URL=url):
        response = Client().get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["ok"] is True
    assert "hunter2-readyz-secret" not in response.content.decode()


def test_readyz__redis_not_configured__ready_and_says_so(db):
    with override_settings(REDIS_URL=""):
        response = Client().get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["redis"] == {
        "ok": True, "seconds": response.json()["checks"]["redis"]["seconds"],
        "detail": "not configured (in-process caching only)",
    }


def test_readyz__database_at_a_closed_port__503_naming_the_database(db):
    from django.db import connections

    database = connections["default"].settings_dict
    original = database["PORT"], database["PASSWORD"]
    database["PORT"], database["PASSWORD"] = str(closed_port()), "pg-readyz-secret"
    try:
        response = Client().get("/readyz")
    finally:
        database["PORT"], database["PASSWORD"] = original

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is False
    assert checks["redis"]["ok"] is True
    assert "pg-readyz-secret" not in response.content.decode()
