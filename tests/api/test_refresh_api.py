"""Refresh now over HTTP: the sources are called at once and the new answer returned with the
outcome; a failed refresh still answers 200 with the best value kept, saying it failed."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tests.api.conftest import budget_server, route_budget, sources_down  # noqa: F401
from tests.api.operator_fixtures import reader, writer  # noqa: F401
from tests.api.test_values_api import ANSWER_FIELDS, assert_json_error
from tests.values.conftest import BUDGET, reload_engine, scaled
from values.models import ValueRecord, ValueType
from values.services import override_create

REFRESH_URL = "/api/v1/values/budget_thresholds/refresh/?region=us&industry=retail"
BUDGET_URL = "/api/v1/values/budget_thresholds/"
US_RETAIL = {"region": "us", "industry": "retail"}


@pytest.mark.django_db
def test_value_refresh__sources_up__calls_them_now_and_answers_the_new_value_with_ok(writer, budget_server):
    response = writer.post(REFRESH_URL)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == ANSWER_FIELDS | {"refresh"}
    assert body["context"] == US_RETAIL
    assert body["value"] == pytest.approx(BUDGET)
    assert body["provenance"]["origin"] == "primary"
    assert body["refresh"] == {"ok": True, "status": "refreshed", "reason": "first value"}
    assert budget_server.calls() == 2  # one call to each source
    assert ValueRecord.objects.filter(context_key="industry=retail&region=us").count() == 1


@pytest.mark.django_db
def test_value_refresh__sources_changed_since_a_read__serves_the_new_value_at_once(writer, budget_server):
    writer.get(BUDGET_URL, US_RETAIL)  # cached now
    route_budget(budget_server, scaled(BUDGET, 1.5))

    response = writer.post(REFRESH_URL)

    assert response.json()["value"] == pytest.approx(scaled(BUDGET, 1.5))
    assert response.json()["refresh"]["status"] == "refreshed"
    assert writer.get(BUDGET_URL, US_RETAIL).json()["value"] == pytest.approx(scaled(BUDGET, 1.5))


@pytest.mark.django_db
def test_value_refresh__sources_down__200_with_the_fallback_and_ok_false_with_the_reason(writer, sources_down):  # noqa: F811
    response = writer.post(REFRESH_URL)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["provenance"]["origin"] == "fallback"  # served from l1, where the refresh put it
    assert body["refresh"]["ok"] is False
    assert body["refresh"]["status"] == "failed"
    assert "market_research_api" in body["refresh"]["reason"]


@pytest.mark.django_db
def test_value_refresh__override_active__ok_unchanged_and_the_override_answers(writer, budget_server):
    override_create(
        value_type=ValueType.objects.get(key="budget_thresholds"),
        value=scaled(BUDGET, 2),
        reason="season",
        actor="test",
        channel="api",
    )
    reload_engine()
    response = writer.post(REFRESH_URL)

    assert response.status_code == 200
    assert response.json()["provenance"]["tier"] == "override"
    assert response.json()["refresh"]["ok"] is True
    assert response.json()["refresh"]["status"] == "unchanged"
    assert budget_server.calls() == 0


@pytest.mark.django_db
def test_value_refresh__unknown_key__404(writer):
    assert_json_error(writer.post("/api/v1/values/no_such_type/refresh/"), 404, "not_found")


@pytest.mark.django_db
def test_value_refresh__unknown_context_key__400_on_context(writer, budget_server):
    error = assert_json_error(writer.post("/api/v1/values/budget_thresholds/refresh/?colour=red"), 400)

    assert "colour" in " ".join(error["fields"]["context"])
    assert budget_server.calls() == 0


@pytest.mark.django_db
@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_value_refresh__read_token_or_anonymous__refused_and_no_source_called(reader, budget_server):
    assert_json_error(reader.post(REFRESH_URL), 403)
    assert_json_error(APIClient().post(REFRESH_URL), 401)
    assert budget_server.calls() == 0
