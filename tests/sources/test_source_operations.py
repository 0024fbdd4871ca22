"""What operators do with sources: reset or force open a breaker (services, admin actions, each
recorded in the history), test a connection from the admin, and read `source_health`.

Everything goes through the public interface: the services, the admin over HTTP with the
Django test client, and the management command.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from sources.breaker import breaker_force_open, breaker_reset, breaker_state, shared_redis
from sources.models import Source
from sources.services import source_breaker_force_open, source_breaker_reset
from tests.servers import LocalServer
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db

PLANTED_SECRET = "planted-operations-secret-9c1d"
MARKET_PATH = "/v1/budget-benchmarks"
# What market_research_api answers (base.yaml's mapping takes these five fields).
MARKET_ANSWER = {
    "micro_business_spending_median": 600,
    "small_business_spending_median": 6000,
    "medium_business_spending_median": 60000,
    "large_business_spending_median": 600000,
    "enterprise_spending_median": 2400000,
    "confidence": 0.8,
}


@pytest.fixture(autouse=True)
def redis_answers(monkeypatch):
    monkeypatch.setattr(shared_redis, "_down_until", 0.0)


@pytest.fixture
def source(db) -> Source:
    """A source of its own (fresh breaker), reset again after the test."""
    source = Source.objects.create(name="operations_test_source", kind="http_json", base_url="https://example.com")
    breaker_reset(source.name)
    yield source
    breaker_reset(source.name)


@pytest.fixture
def market(synced, monkeypatch) -> Source:
    """The synced market_research_api, its credential set to a planted secret, breaker closed."""
    monkeypatch.setenv("MARKET_RESEARCH_API_KEY", PLANTED_SECRET)
    source = Source.objects.get(name="market_research_api")
    breaker_reset(source.name)
    yield source
    breaker_reset(source.name)


def changelist_action(client, action: str, *sources: Source):
    return client.post(
        reverse("admin:sources_source_changelist"),
        {"action": action, "_selected_action": [source.pk for source in sources]},
        follow=True,
    )


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# Services ----------------------------------------------------------------------------------------


def test_source_breaker_force_open__closed_breaker__open_for_the_duration_and_audited(source):
    state = source_breaker_force_open(
        source=source, duration=timedelta(minutes=15), actor="alice", channel="api", reason="provider incident"
    )

    assert state.state == "open"
    assert 14 * 60 < state.opened_until.timestamp() - time.time() <= 15 * 60
    assert breaker_state(source.name) == state
    [entry] = AuditEntry.objects.filter(object_type="sources.source", object_id=str(source.pk))
    assert (entry.actor, entry.channel, entry.reason) == ("alice", "api", "provider incident")
    assert (entry.before["state"], entry.after["state"]) == ("closed", "open")
    assert entry.after["opened_until"] == state.opened_until.isoformat()


def test_source_breaker_reset__open_breaker__closed_and_audited(source):
    breaker_force_open(source.name, 60)

    state = source_breaker_reset(source=source, actor="bob", channel="api", reason="provider recovered")

    assert (state.state, state.failures) == ("closed", 0)
    [entry] = AuditEntry.objects.filter(object_type="sources.source", object_id=str(source.pk))
    assert (entry.actor, entry.reason, entry.action) == ("bob", "provider recovered", AuditEntry.Action.UPDATE)
    assert (entry.before["state"], entry.after["state"]) == ("open", "closed")


# Admin -------------------------------------------------------------------------------------------


def test_admin_reset_breaker_action__open_breaker__closed_with_admin_audit_entry(admin_client, market):
    breaker_force_open(market.name, 600)

    response = changelist_action(admin_client, "reset_breaker", market)

    assert response.status_code == 200
    assert messages_of(response) == ["market_research_api: breaker closed (0 failures in a row)"]
    assert breaker_state(market.name).state == "closed"
    [entry] = AuditEntry.objects.filter(channel="admin", object_type="sources.source", object_id=str(market.pk))
    assert entry.actor == "admin"
    assert (entry.before["state"], entry.after["state"]) == ("open", "closed")


def test_admin_force_open_action__closed_breaker__open_for_15_minutes_with_audit_entry(admin_client, market):
    response = changelist_action(admin_client, "force_breaker_open", market)

    state = breaker_state(market.name)
    assert state.state == "open"
    assert 14 * 60 < state.opened_until.timestamp() - time.time() <= 15 * 60
    assert messages_of(response) == [f"market_research_api: breaker {state.summary()}"]
    [entry] = AuditEntry.objects.filter(channel="admin", object_type="sources.source", object_id=str(market.pk))
    assert (entry.before["state"], entry.after["state"]) == ("closed", "open")


def test_admin_source_pages__open_breaker__state_and_open_until_shown(admin_client, market):
    breaker_force_open(market.name, 600)
    shown = breaker_state(market.name).summary()
    assert shown.startswith("open until ")

    changelist = admin_client.get(reverse("admin:sources_source_changelist")).content.decode()
    change = admin_client.get(reverse("admin:sources_source_change", args=[market.pk])).content.decode()

    assert shown in changelist
    assert shown in change
    assert "closed (0 failures in a row)" in changelist  # the other sources


def test_admin_test_connection__source_answers__ok_with_confidence(admin_client, market):
    with LocalServer() as server:
        server.route("GET", MARKET_PATH, json=MARKET_ANSWER)
        Source.objects.filter(pk=market.pk).update(base_url=server.url)

        response = changelist_action(admin_client, "test_connection", market)

        assert server.calls(MARKET_PATH) == 1
    assert messages_of(response) == ["market_research_api: ok for budget_thresholds, confidence 0.80"]


def test_admin_test_connection__authentication_refused__error_kind_and_reason_never_the_secret(
    admin_client, market
):
    with LocalServer() as server:
        server.route(
            "GET",
            MARKET_PATH,
            handler=lambda request: (401, {"Content-Type": "application/json"}, {"echo": request.headers}),
        )
        Source.objects.filter(pk=market.pk).update(base_url=server.url)

        response = changelist_action(admin_client, "test_connection", market)

        assert PLANTED_SECRET in server.requests[0].headers["Authorization"]  # it was sent
    assert messages_of(response) == [
        "market_research_api: terminal for budget_thresholds: authentication refused (HTTP 401)"
    ]
    assert PLANTED_SECRET not in response.content.decode()


def test_admin_test_connection__breaker_open__refused_without_a_request(admin_client, market):
    breaker_force_open(market.name, 600)
    with LocalServer() as server:
        server.route("GET", MARKET_PATH, json=MARKET_ANSWER)
        Source.objects.filter(pk=market.pk).update(base_url=server.url)

        response = changelist_action(admin_client, "test_connection", market)

        assert server.calls() == 0
    [message] = messages_of(response)
    assert message.startswith("market_research_api: breaker_open for budget_thresholds: breaker of")


# source_health -----------------------------------------------------------------------------------


def health(*arguments: str) -> str:
    out = StringIO()
    call_command("source_health", *arguments, stdout=out)
    return out.getvalue()


def test_source_health__planted_secret__variable_names_and_status_never_the_value(market, monkeypatch):
    monkeypatch.setenv("GOOGLE_ADS_ACCESS_TOKEN", PLANTED_SECRET)
    monkeypatch.delenv("GOOGLE_ADS_CUSTOMER_ID", raising=False)

    text = health()
    as_json = health("--json")

    assert PLANTED_SECRET not in text and PLANTED_SECRET not in as_json
    assert "GOOGLE_ADS_ACCESS_TOKEN set" in text
    assert "GOOGLE_ADS_CUSTOMER_ID unset" in text
    assert set(json.loads(as_json)[0]) == {"name", "kind", "is_enabled", "credentials", "breaker", "rate_limit"}


def test_source_health__named_source_with_open_breaker__kind_breaker_and_rate_limit(market):
    breaker_force_open(market.name, 600)
    market.requests_per_minute, market.burst_allowance = 120, 0
    market.save()

    text = health("market_research_api")
    [report] = json.loads(health("market_research_api", "--json"))

    assert text.splitlines()[0] == "market_research_api (http_json, enabled)"
    assert "  credentials: MARKET_RESEARCH_API_KEY set" in text
    assert f"  breaker: {breaker_state(market.name).summary()}" in text
    assert "  rate limit: 120/min, burst 1" in text  # a burst of 0 is one call at a time
    assert report["breaker"]["state"] == "open"
    assert report["breaker"]["opened_until"] is not None
    assert report["rate_limit"] == {"requests_per_minute": 120, "burst": 1}
    assert report["credentials"] == {"MARKET_RESEARCH_API_KEY": True}


def test_source_health__unknown_name__command_error_naming_it(synced):
    with pytest.raises(CommandError, match="no source named nonexistent_api"):
        health("market_research_api", "nonexistent_api")
