"""Prometheus metrics through /metrics: each event moves its metric, processes add up, and
production asks for credentials.

Every test compares two scrapes (before and after), because the metrics directory is shared by
the whole run (tests/environment.py gives each run its own) and counters never go down.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from access.authentication import token_hash
from access.models import ApiToken
from sources.adapters.base import SourceCall, SourceConfig, SourceError
from sources.breaker import breaker_force_open, breaker_reset
from sources.calls import call_source
from sources.models import Source
from tests.api.conftest import BUDGET_SOURCES, budget_server, engine, local_server, route_budget  # noqa: F401
from tests.processes import PROJECT_ROOT, child_environment
from tests.values.conftest import reload_engine
from values import get_value
from values.cache import l1
from values.models import ResolvedValue
from values.refresh import refresh_failure_record, value_refresh
from values.registry import registry

US = {"region": "us"}
KEY = "budget_thresholds"
MARKET_PATH = "/v1/budget-benchmarks"
BENCHMARKS_PATH = "/benchmarks/budget-tiers"


def scrape(client: Client | None = None, **headers) -> list:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return [sample for family in text_string_to_metric_families(response.content.decode()) for sample in family.samples]


def metric(samples: list, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(
        sample.value
        for sample in samples
        if sample.name == name and all(sample.labels.get(label) == value for label, value in labels.items())
    )


class Delta:
    """How much each metric moved between `Delta()` and `.after()`."""

    def __init__(self) -> None:
        self.before = scrape()

    def after(self) -> Delta:
        self.now = scrape()
        return self

    def __call__(self, name: str, **labels: str) -> float:
        return metric(self.now, name, **labels) - metric(self.before, name, **labels)


def sources_down(server) -> None:
    server.route("GET", MARKET_PATH, status=500, json={"error": "down"})
    server.route("GET", BENCHMARKS_PATH, status=500, json={"error": "down"})


def clear_l1_and_l2() -> None:
    from django.core.cache import caches

    l1.clear()
    caches["default"].clear()


# Source calls ----------------------------------------------------------------------------------


def a_source(server, **settings) -> SourceConfig:
    return SourceConfig(
        name=f"metrics_{uuid.uuid4().hex[:8]}",  # a breaker and a rate limit of its own
        kind="http_json",
        base_url=server.url,
        request_template={"method": "GET", "path": settings.pop("path")},
        field_mapping={},
        requests_per_minute=6000,
        burst_allowance=100,
        **settings,
    )


def test_source_calls__success_timeout_http_error__each_counted_by_outcome_with_durations(db, local_server):
    local_server.route("GET", "/ok", json={"rate": 1.5})
    local_server.route("GET", "/slow", json={"rate": 1.5}, delay=2.0)
    local_server.route("GET", "/forbidden", status=403, json={"error": "no"})
    ok, slow, forbidden = (
        a_source(local_server, path="/ok"),
        a_source(local_server, path="/slow", read_timeout=0.2),
        a_source(local_server, path="/forbidden"),
    )
    delta = Delta()

    call_source(SourceCall(source=ok, value_type=KEY, context={}, timeout_budget=3.0))
    with pytest.raises(SourceError):
        call_source(SourceCall(source=slow, value_type=KEY, context={}, timeout_budget=0.3))
    with pytest.raises(SourceError):
        call_source(SourceCall(source=forbidden, value_type=KEY, context={}, timeout_budget=3.0))

    delta.after()
    assert delta("dynconfig_source_calls_total", source=ok.name, outcome="success") == 1
    assert delta("dynconfig_source_calls_total", source=slow.name, outcome="timeout") >= 1
    assert delta("dynconfig_source_calls_total", source=slow.name, outcome="success") == 0
    assert delta("dynconfig_source_calls_total", source=forbidden.name, outcome="http_error") == 1
    assert delta("dynconfig_source_call_duration_seconds_count", source=ok.name) == 1
    assert delta("dynconfig_source_call_duration_seconds_sum", source=slow.name) >= 0.2


# The read path ---------------------------------------------------------------------------------


def test_reads__primary_then_l1_l2_l3__lookups_and_answers_counted_per_tier(budget_server):  # noqa: F811
    delta = Delta()

    tiers = [get_value(KEY, US).provenance.tier]
    tiers.append(get_value(KEY, US).provenance.tier)
    l1.clear()
    tiers.append(get_value(KEY, US).provenance.tier)
    clear_l1_and_l2()
    tiers.append(get_value(KEY, US).provenance.tier)

    delta.after()
    assert tiers == ["primary", "l1", "l2", "l3"]
    lookups = {
        (tier, result): delta("dynconfig_cache_lookups_total", tier=tier, result=result)
        for tier in ("l1", "l2", "l3")
        for result in ("hit", "miss")
    }
    assert lookups == {
        ("l1", "hit"): 1, ("l1", "miss"): 3,
        ("l2", "hit"): 1, ("l2", "miss"): 2,
        ("l3", "hit"): 1, ("l3", "miss"): 1,
    }
    for tier in tiers:
        assert delta("dynconfig_answers_total", value_type=KEY, tier=tier) == 1
    assert delta("dynconfig_degraded_answers_total", value_type=KEY) == 0


def test_reads__value_fetched_two_hours_ago__its_age_observed_at_each_read(budget_server):  # noqa: F811
    delta = Delta()
    get_value(KEY, US)  # fetched now: age about 0
    row = ResolvedValue.objects.get(value_type__key=KEY)
    row.provenance = {**row.provenance, "fetched_at": (timezone.now() - timedelta(hours=2)).isoformat()}
    row.save(update_fields=["provenance"])
    clear_l1_and_l2()

    answer = get_value(KEY, US)

    delta.after()
    assert answer.provenance.tier == "l3"
    assert delta("dynconfig_value_age_seconds_count", value_type=KEY) == 2
    assert delta("dynconfig_value_age_seconds_bucket", value_type=KEY, le="3600.0") == 1  # the fresh one
    assert delta("dynconfig_value_age_seconds_bucket", value_type=KEY, le="21600.0") == 2
    assert delta("dynconfig_value_age_seconds_sum", value_type=KEY) >= 7200


def test_reads__sources_down_with_no_value_yet__fallback_counted_as_degraded(budget_server):  # noqa: F811
    sources_down(budget_server)
    delta = Delta()

    answer = get_value(KEY, US)

    delta.after()
    assert answer.provenance.tier == "fallback"
    assert delta("dynconfig_answers_total", value_type=KEY, tier="fallback") == 1
    assert delta("dynconfig_degraded_answers_total", value_type=KEY, kind="fallback", reason="sources_down") == 1
    assert delta("dynconfig_value_age_seconds_count", value_type=KEY) == 0  # a fallback has no fetch time


def test_reads__expired_and_sources_down__stale_counted_as_degraded(budget_server):  # noqa: F811
    get_value(KEY, US)
    sources_down(budget_server)
    ResolvedValue.objects.filter(value_type__key=KEY).update(expires_at=timezone.now() - timedelta(hours=1))
    clear_l1_and_l2()
    delta = Delta()

    answer = get_value(KEY, US)

    delta.after()
    assert answer.provenance.tier == "stale"
    assert delta("dynconfig_answers_total", value_type=KEY, tier="stale") == 1
    assert delta("dynconfig_degraded_answers_total", value_type=KEY, kind="stale", reason="sources_down") == 1


def test_reads__last_good_older_than_max_staleness__fallback_with_the_sources_reason(budget_server):  # noqa: F811
    get_value(KEY, US)
    sources_down(budget_server)
    max_staleness = registry.snapshot().value_type(KEY).max_staleness
    ResolvedValue.objects.filter(value_type__key=KEY).update(expires_at=timezone.now() - max_staleness - timedelta(hours=1))
    clear_l1_and_l2()
    delta = Delta()

    get_value(KEY, US)

    delta.after()
    # The kind says what was served instead of the too old value; the reason, why the sources gave nothing.
    assert delta("dynconfig_degraded_answers_total", value_type=KEY, kind="fallback", reason="sources_down") == 1


# Refreshes ---------------------------------------------------------------------------------------


def test_refresh__success_then_failures__durations_and_failures_counted(budget_server):  # noqa: F811
    delta = Delta()
    assert value_refresh(key=KEY, context=US).status != "failed"
    delta.after()
    assert delta("dynconfig_refresh_duration_seconds_count", value_type=KEY) == 1
    assert delta("dynconfig_refresh_failures_total", value_type=KEY) == 0

    sources_down(budget_server)
    ResolvedValue.objects.all().delete()
    assert value_refresh(key=KEY, context=US).status == "failed"
    refresh_failure_record(key=KEY, context=US, reason="time limit")

    delta.after()
    assert delta("dynconfig_refresh_duration_seconds_count", value_type=KEY) == 2
    assert delta("dynconfig_refresh_failures_total", value_type=KEY) == 2


# Breakers ----------------------------------------------------------------------------------------


def test_breaker_state__forced_open_then_reset__2_then_0_per_source(engine):  # noqa: F811
    name = "market_research_api"
    try:
        breaker_force_open(name, 60)
        opened = scrape()
    finally:
        breaker_reset(name)
    closed = scrape()

    assert metric(opened, "dynconfig_breaker_state", source=name) == 2
    assert metric(opened, "dynconfig_breaker_state", source="industry_benchmarks_api") == 0
    assert metric(closed, "dynconfig_breaker_state", source=name) == 0
    assert {sample.labels["source"] for sample in closed if sample.name == "dynconfig_breaker_state"} == set(
        Source.objects.values_list("name", flat=True)
    )


# Processes add up --------------------------------------------------------------------------------

CHILD = """
import json, os, sys
sys.path.insert(0, os.getcwd())
os.environ["DJANGO_SETTINGS_MODULE"] = "dynconfig_site.settings"
import django
django.setup()
from sources.adapters.base import SourceCall, SourceConfig
from sources.calls import call_source
from values import get_value

count, url, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
source = SourceConfig(name=name, kind="http_json", base_url=url, field_mapping={},
                      request_template={"method": "GET", "path": "/ok"},
                      requests_per_minute=6000, burst_allowance=100)
for _ in range(count):
    call_source(SourceCall(source=source, value_type="budget_thresholds", context={}, timeout_budget=5.0))
tiers = [get_value("budget_thresholds", {"region": "us"}).provenance.tier for _ in range(count)]
print(json.dumps(tiers))
"""


@pytest.fixture
def committed_budget_server(transactional_db, local_server, monkeypatch):  # noqa: F811
    """Like budget_server, but committed: child processes read the same configuration."""
    call_command("sync_config", "--env", "test", stdout=StringIO())
    for source in Source.objects.all():
        for variable in source.credential_variables.values():
            monkeypatch.setenv(variable, f"test-credential-{variable.lower()}")
    route_budget(local_server)
    local_server.route("GET", "/ok", json={"rate": 1.5})
    Source.objects.filter(name__in=BUDGET_SOURCES).update(base_url=local_server.url)
    clear_l1_and_l2()
    reload_engine()
    yield local_server
    clear_l1_and_l2()


def test_two_processes__each_n_calls_and_reads__metrics_add_up_to_2n(committed_budget_server):
    count, name = 5, f"metrics_{uuid.uuid4().hex[:8]}"
    delta = Delta()

    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(count), committed_budget_server.url, name],
            env=child_environment(), cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=60) for child in children]

    assert [child.returncode for child in children] == [0, 0], [error[-2000:] for _, error in outputs]
    tiers = [tier for output, _ in outputs for tier in json.loads(output)]
    delta.after()
    assert delta("dynconfig_source_calls_total", source=name, outcome="success") == 2 * count
    assert delta("dynconfig_source_call_duration_seconds_count", source=name) == 2 * count
    # The reads are counted in each child's memory and written at exit at the latest.
    assert delta("dynconfig_answers_total", value_type=KEY) == 2 * count
    assert delta("dynconfig_cache_lookups_total", tier="l1", result="hit") == tiers.count("l1")


# Access ------------------------------------------------------------------------------------------


def make_token(scopes: list[str]) -> str:
    token = f"metrics-token-{uuid.uuid4().hex}"
    ApiToken.objects.create(name=token[-12:], prefix=token[:8], token_hash=token_hash(token), scopes=scopes)
    return token


@override_settings(IS_PRODUCTION=True)
def test_metrics__production_without_credentials__401_in_the_error_format(db):
    response = Client().get("/metrics", HTTP_ACCEPT="text/plain")

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["status"] == 401
    assert response["WWW-Authenticate"] == "Bearer"


@override_settings(IS_PRODUCTION=True)
def test_metrics__production_token_with_a_read_scope__served(db):
    token = make_token(["values:read"])

    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 200
    assert "# TYPE dynconfig_breaker_state gauge" in response.content.decode()


@override_settings(IS_PRODUCTION=True)
def test_metrics__production_token_without_scopes_or_plain_session__403(db):
    token = make_token([])
    user = User.objects.create_user("reader", password="x-long-password-1")
    session = Client()
    session.force_login(user)

    by_token = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    by_session = session.get("/metrics")

    assert (by_token.status_code, by_session.status_code) == (403, 403)
    assert by_token.json()["error"]["status"] == 403


@override_settings(IS_PRODUCTION=True)
def test_metrics__production_staff_session__served(db):
    staff = Client()
    staff.force_login(User.objects.create_user("operator", password="x-long-password-1", is_staff=True))

    response = staff.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
