"""The sources API over HTTP: the list and a source's detail (credentials by name only, the value
types it feeds, its health and recent calls), and the breaker actions, each recorded in the
history, refused without the sources:manage scope, with a bad body or for an unknown source."""

from __future__ import annotations

import json

import pytest
from django.core.cache import caches
from rest_framework.test import APIClient

from access.models import Scope
from sources.breaker import breaker_reset, breaker_state, shared_redis
from sources.models import Source
from sources.models import SourceCall as SourceCallRow
from values.services import source_test_connection
from tests.sources.test_breaker import disposable_redis
from audit.models import AuditEntry
from tests.tokens import token_client

pytestmark = pytest.mark.django_db

PLANTED_SECRET = "planted-sources-api-secret-5e1f"
MARKET = "market_research_api"
MARKET_PATH = "/v1/budget-benchmarks"
MARKET_ANSWER = {
    "micro_business_spending_median": 600,
    "small_business_spending_median": 6000,
    "medium_business_spending_median": 60000,
    "large_business_spending_median": 600000,
    "enterprise_spending_median": 2400000,
}


@pytest.fixture(autouse=True)
def redis_answers(monkeypatch):
    monkeypatch.setattr(shared_redis, "_down_until", 0.0)


@pytest.fixture
def sources(synced, monkeypatch):
    """The synced sources, the market source's credential set to a planted secret, breakers closed."""
    monkeypatch.setenv("MARKET_RESEARCH_API_KEY", PLANTED_SECRET)
    caches["default"].clear()
    # The engine's threads commit their rows, so earlier tests' calls may still be recorded.
    SourceCallRow.objects.all().delete()
    yield
    for name in Source.objects.values_list("name", flat=True):
        breaker_reset(name)


@pytest.fixture
def reader(sources) -> APIClient:
    return token_client("sources-reader", [Scope.VALUES_READ])


@pytest.fixture
def manager(sources) -> APIClient:
    return token_client("sources-manager", [Scope.SOURCES_MANAGE])


def by_name(response) -> dict[str, dict]:
    return {source["name"]: source for source in response.json()}


# Reads --------------------------------------------------------------------------------------------


def test_source_list__synced__every_source_with_links_credentials_and_health(reader):
    response = reader.get("/api/v1/sources/")

    assert response.status_code == 200
    sources = by_name(response)
    assert set(sources) == set(Source.objects.values_list("name", flat=True))
    market = sources[MARKET]
    assert market["kind"] == "http_json"
    assert market["is_enabled"] is True
    assert market["credentials"] == {"MARKET_RESEARCH_API_KEY": "set"}
    assert market["value_types"] == [{"key": "budget_thresholds", "tier": "primary", "weight": 0.6, "channels": []}]
    assert market["health"]["status"] == "healthy"
    assert market["health"]["breaker"]["state"] == "closed"


def test_source_list__credential_variable_unset__shown_as_missing(reader, monkeypatch):
    monkeypatch.delenv("SEMRUSH_API_KEY", raising=False)

    semrush = by_name(reader.get("/api/v1/sources/"))["semrush_api"]

    assert semrush["credentials"] == {"SEMRUSH_API_KEY": "missing"}


def test_source_detail__after_a_call__recent_calls_and_health_without_any_secret(reader, local_server):
    # The secret travels to the server as a Bearer token; the server echoes the headers it got.
    local_server.route("GET", MARKET_PATH, handler=lambda request: (503, {}, {"echo": request.headers}))
    Source.objects.filter(name=MARKET).update(base_url=local_server.url)
    source_test_connection(source=Source.objects.get(name=MARKET))  # one call_source: 3 attempts
    # A base URL holding a secret in its user info and query is shown without them.
    host = local_server.url.removeprefix("http://")
    Source.objects.filter(name=MARKET).update(base_url=f"http://user:{PLANTED_SECRET}@{host}/v1?key={PLANTED_SECRET}#x")

    response = reader.get(f"/api/v1/sources/{MARKET}/")

    assert response.status_code == 200
    body = response.json()
    assert body["base_url"] == f"{local_server.url}/v1"
    assert [call["outcome"] for call in body["recent_calls"]] == ["http_error"] * 3
    assert body["recent_calls"][0]["reason"] == "server error (HTTP 503)"
    assert body["health"]["status"] == "down"
    assert body["health"]["last_failure_reason"] == "http_error: server error (HTTP 503)"
    for path in ("/api/v1/sources/", f"/api/v1/sources/{MARKET}/", "/api/v1/health/"):
        assert PLANTED_SECRET not in reader.get(path).content.decode(), path


def test_source_detail__unknown_source__404_in_the_error_format(reader):
    response = reader.get("/api/v1/sources/no_such_source/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_source_detail__name_with_a_nul_byte__404(reader):
    assert reader.get("/api/v1/sources/bad%00name/").status_code == 404


def test_source_list__anonymous_where_reads_need_a_token__401(sources, settings):
    settings.DYNCONFIG_ANONYMOUS_READS = False

    response = APIClient().get("/api/v1/sources/")

    assert response.status_code == 401


# Breaker actions ----------------------------------------------------------------------------------


def test_breaker_open__manager_with_iso_duration__opened_and_recorded(manager):
    response = manager.post(
        f"/api/v1/sources/{MARKET}/breaker/open/", {"duration": "PT15M", "reason": "provider maintenance"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["source"] == MARKET
    assert response.json()["breaker"]["state"] == "open"
    assert breaker_state(MARKET).state == "open"
    entry = AuditEntry.objects.get(object_type="sources.source", channel="api")
    assert (entry.actor, entry.reason) == ("token:sources-manager", "provider maintenance")
    assert (entry.before["state"], entry.after["state"]) == ("closed", "open")


def test_breaker_open__duration_in_seconds__opened(manager):
    response = manager.post(
        f"/api/v1/sources/{MARKET}/breaker/open/", {"duration": 90, "reason": "provider maintenance"}, format="json"
    )

    assert response.status_code == 200
    assert breaker_state(MARKET).state == "open"


def test_breaker_reset__open_breaker__closed_and_recorded(manager):
    manager.post(f"/api/v1/sources/{MARKET}/breaker/open/", {"duration": 60, "reason": "testing"}, format="json")

    response = manager.post(f"/api/v1/sources/{MARKET}/breaker/reset/", {"reason": "provider is back"}, format="json")

    assert response.status_code == 200
    assert response.json()["breaker"]["state"] == "closed"
    assert breaker_state(MARKET).state == "closed"
    latest = AuditEntry.objects.filter(channel="api").order_by("-id").first()
    assert (latest.reason, latest.before["state"], latest.after["state"]) == ("provider is back", "open", "closed")


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("reset", {}, "reason"),
        ("reset", {"reason": "   "}, "reason"),
        ("open", {"duration": "PT5M"}, "reason"),
        ("open", {"reason": "x"}, "duration"),
        ("open", {"duration": "P1Y", "reason": "x"}, "duration"),
        ("open", {"duration": -5, "reason": "x"}, "duration"),
        ("open", {"duration": True, "reason": "x"}, "duration"),
        ("open", {"duration": "P31D", "reason": "x"}, "duration"),
        ("open", {"duration": 1e300, "reason": "x"}, "duration"),
        ("open", {"duration": [], "reason": "x"}, "duration"),
    ],
)
def test_breaker_action__bad_body__400_naming_the_field_and_nothing_changed(manager, path, body, field):
    response = manager.post(f"/api/v1/sources/{MARKET}/breaker/{path}/", body, format="json")

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {field}
    assert breaker_state(MARKET).state == "closed"
    assert not AuditEntry.objects.filter(channel="api").exists()


def test_breaker_action__reader_token__403_and_nothing_changed(reader):
    response = reader.post(f"/api/v1/sources/{MARKET}/breaker/open/", {"duration": 60, "reason": "x"}, format="json")

    assert response.status_code == 403
    assert breaker_state(MARKET).state == "closed"
    assert not AuditEntry.objects.filter(channel="api").exists()


def test_breaker_action__anonymous__401(sources):
    response = APIClient().post(f"/api/v1/sources/{MARKET}/breaker/reset/", {"reason": "x"}, format="json")

    assert response.status_code == 401
    assert response.json()["error"]["status"] == 401


def test_breaker_action__unknown_source__404(manager):
    response = manager.post("/api/v1/sources/no_such_source/breaker/reset/", {"reason": "x"}, format="json")

    assert response.status_code == 404


def test_breaker_action__redis_down__503_in_the_error_format_and_nothing_recorded(manager):
    with disposable_redis() as (url, server):
        server.kill()
        server.wait(timeout=10)

        response = manager.post(f"/api/v1/sources/{MARKET}/breaker/reset/", {"reason": "x"}, format="json")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "breaker_unavailable"
    assert not AuditEntry.objects.filter(channel="api").exists()


def test_sources_api__responses__json_not_html(reader):
    for path in ("/api/v1/sources/", f"/api/v1/sources/{MARKET}/"):
        response = reader.get(path)
        assert response["Content-Type"] == "application/json"
        json.loads(response.content)
