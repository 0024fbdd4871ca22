"""Rate limits over HTTP: reads and writes counted apart, per token or per client IP, a 429 in
our error format with Retry-After, rates changeable at run time, and a cache outage fails open."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from access.throttling import _MethodRateThrottle
from tests.access.conftest import PROBE_URL, VALUE_TYPES_URL, assert_json_error, bearer

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.access.urls")]

# 20 s into a minute: no test's requests straddle a window boundary, and Retry-After is known.
FROZEN_NOW = 1_800_000_000.0 + 20


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(_MethodRateThrottle, "timer", staticmethod(lambda: FROZEN_NOW))


def rates(read: str | None, write: str | None) -> override_settings:
    # DRF's own throttles read their rates once, at class definition; ours read them per
    # request, so overriding the setting is enough (DRF reloads api_settings on the change).
    return override_settings(
        REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"read": read, "write": write}}
    )


def test_throttle_classes__installed_for_the_whole_api():
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] == [
        "access.throttling.ReadRateThrottle",
        "access.throttling.WriteRateThrottle",
    ]


@rates(read="2/min", write="100/min")
def test_reads__over_the_read_rate__429_in_error_format_with_retry_after(api_client):
    assert [api_client.get(VALUE_TYPES_URL).status_code for _ in range(2)] == [200, 200]

    response = api_client.get(VALUE_TYPES_URL)

    error = assert_json_error(response, 429, "throttled")
    assert "throttled" in error["message"].lower()
    assert response["Retry-After"] == "40"  # the rest of the minute


@rates(read="1/min", write="1/min")
def test_writes__counted_apart_from_reads(api_client, make_token):
    token = make_token("writer", "values:write")
    assert api_client.get(PROBE_URL, **bearer(token)).status_code == 200
    assert api_client.get(PROBE_URL, **bearer(token)).status_code == 429

    assert api_client.post(PROBE_URL, {}, format="json", **bearer(token)).status_code == 200
    response = api_client.post(PROBE_URL, {}, format="json", **bearer(token))
    assert_json_error(response, 429, "throttled")
    assert "Retry-After" in response


@rates(read="1/min", write="1/min")
def test_tokens__each_has_its_own_budget_apart_from_anonymous_clients(api_client, make_token):
    first, second = make_token("first", "values:read"), make_token("second", "values:read")
    assert api_client.get(PROBE_URL, **bearer(first)).status_code == 200
    assert api_client.get(PROBE_URL, **bearer(first)).status_code == 429

    assert api_client.get(PROBE_URL, **bearer(second)).status_code == 200
    assert api_client.get(PROBE_URL).status_code == 200  # anonymous, same address


@rates(read="1/min", write="1/min")
def test_anonymous__counted_per_client_address(api_client):
    assert api_client.get(PROBE_URL, REMOTE_ADDR="10.0.0.1").status_code == 200
    assert api_client.get(PROBE_URL, REMOTE_ADDR="10.0.0.1").status_code == 429

    assert api_client.get(PROBE_URL, REMOTE_ADDR="10.0.0.2").status_code == 200


@rates(read="1/min", write="1/min")
def test_anonymous__own_x_forwarded_for_without_a_proxy__does_not_reset_the_budget(api_client):
    assert api_client.get(PROBE_URL, REMOTE_ADDR="10.0.0.1").status_code == 200

    response = api_client.get(PROBE_URL, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")

    assert response.status_code == 429


@rates(read=None, write=None)
def test_rates_off__never_throttled(api_client):
    assert {api_client.get(PROBE_URL).status_code for _ in range(5)} == {200}


@rates(read="1/min", write="1/min")
def test_rate_cache_unreachable__requests_let_through(api_client, caplog):
    unreachable = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        }
    }
    with override_settings(CACHES=unreachable):
        statuses = [api_client.get(PROBE_URL).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
    assert "Rate limit cache unavailable" in caplog.text
