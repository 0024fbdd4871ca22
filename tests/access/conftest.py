"""Fixtures for API access: tokens made the way operators make them, and clean caches."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from rest_framework.test import APIClient

from access import throttling
from access.authentication import forget_all_tokens
from access.services import api_token_create

VALUE_TYPES_URL = "/api/v1/values/"
PROBE_URL = "/probe/"  # tests/access/urls.py: reads need a read scope, writes values:write


@pytest.fixture(autouse=True)
def clean_access_state(monkeypatch):
    """No token cached and no request counted from another test (both outlive a test's rollback)."""
    forget_all_tokens()
    caches["default"].clear()
    monkeypatch.setattr(throttling._MethodRateThrottle, "_cache_down_until", 0.0)
    yield
    forget_all_tokens()


@pytest.fixture
def make_token(db):
    """make_token(name, *scopes) -> the token (the secret), created through the service."""

    def make(name: str, *scopes: str) -> str:
        _, secret = api_token_create(name=name, scopes=scopes, actor="test", channel="command")
        return secret

    return make


@pytest.fixture
def api_client():
    return APIClient()


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def assert_json_error(response, status: int, code: str | None = None) -> dict:
    """The response is our one error format, with this status (and code)."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["status"] == status
    if code is not None:
        assert error["code"] == code
    return error
