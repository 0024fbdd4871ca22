"""The emergency fallback over HTTP: read it with its version, replace it naming that version,
validated against the type's schema and bounds, recorded in the history, served when every
source is down; every refusal leaves the database as it was."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tests.api.conftest import sources_down  # noqa: F401
from tests.api.operator_fixtures import (  # noqa: F401
    WRITER_ACTOR,
    database_state,
    latest_audit_entry,
    poll,
    reader,
    writer,
)
from tests.api.test_values_api import assert_json_error
from values.models import ValueType

FALLBACK_URL = "/api/v1/values/budget_thresholds/fallback/"
BUDGET_URL = "/api/v1/values/budget_thresholds/"
NEW_FALLBACK = {
    "micro_threshold": 800,
    "small_threshold": 8000,
    "medium_threshold": 80000,
    "large_threshold": 800000,
    "enterprise_threshold": 3000000,
}


def stored_budget_type() -> ValueType:
    return ValueType.objects.get(key="budget_thresholds")


@pytest.mark.django_db
def test_fallback_read__known_type__its_value_version_and_etag(reader):
    stored = stored_budget_type()

    response = reader.get(FALLBACK_URL)

    assert response.status_code == 200
    assert response.json() == {"key": "budget_thresholds", "value": stored.fallback_value, "version": stored.version}
    assert response["ETag"] == f'"{stored.version}"'


@pytest.mark.django_db
def test_fallback_read__by_alias__the_canonical_type(reader):
    response = reader.get("/api/v1/values/budget_classification/fallback/")

    assert response.status_code == 200
    assert response.json()["key"] == "budget_thresholds"


@pytest.mark.django_db
def test_fallback_read__unknown_key__404(reader):
    assert_json_error(reader.get("/api/v1/values/no_such_type/fallback/"), 404, "not_found")


@pytest.mark.django_db
def test_fallback_update__current_version_in_if_match__200_stored_and_history_entry(writer):
    old = stored_budget_type()

    response = writer.put(
        FALLBACK_URL, {"value": NEW_FALLBACK, "reason": "new market survey"}, format="json",
        HTTP_IF_MATCH=f'"{old.version}"',
    )

    assert response.status_code == 200, response.content
    assert response.json() == {"key": "budget_thresholds", "value": NEW_FALLBACK, "version": old.version + 1}
    assert response["ETag"] == f'"{old.version + 1}"'
    stored = stored_budget_type()
    assert (stored.fallback_value, stored.version) == (NEW_FALLBACK, old.version + 1)
    entry = latest_audit_entry()
    assert (entry.action, entry.object_type, entry.object_id) == ("update", "values.valuetype", str(old.pk))
    assert (entry.actor, entry.channel, entry.reason) == (WRITER_ACTOR, "api", "new market survey")
    assert entry.before["fallback_value"] == old.fallback_value
    assert entry.after["fallback_value"] == NEW_FALLBACK


@pytest.mark.django_db
def test_fallback_update__version_in_body__200_and_served_when_sources_are_down(writer, sources_down):  # noqa: F811
    version = stored_budget_type().version

    response = writer.put(
        FALLBACK_URL, {"value": NEW_FALLBACK, "reason": "new market survey", "version": version}, format="json"
    )

    assert response.status_code == 200, response.content
    served = poll(
        lambda: writer.get(BUDGET_URL, {"region": "us"}),
        lambda response: response.json()["value"] == NEW_FALLBACK,
    )
    assert served.json()["value"] == NEW_FALLBACK
    assert served.json()["provenance"]["tier"] == "fallback"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value",
    [
        {**NEW_FALLBACK, "micro_threshold": -1},  # below the bounds
        {**NEW_FALLBACK, "small_threshold": 10},  # not ascending
        {"micro_threshold": 800},  # not the schema
        "eight hundred",
        None,
    ],
)
def test_fallback_update__value_breaking_the_rules__400_on_value_and_nothing_changed(writer, value):
    before = database_state()

    error = assert_json_error(
        writer.put(FALLBACK_URL, {"value": value, "reason": "x"}, format="json",
                   HTTP_IF_MATCH=f'"{stored_budget_type().version}"'),
        400,
        "invalid",
    )

    assert list(error["fields"]) == ["value"], error
    assert database_state() == before


@pytest.mark.django_db
def test_fallback_update__without_reason__400_and_nothing_changed(writer):
    before = database_state()

    error = assert_json_error(
        writer.put(
            FALLBACK_URL, {"value": NEW_FALLBACK}, format="json", HTTP_IF_MATCH=f'"{stored_budget_type().version}"'
        ),
        400,
    )

    assert "reason" in error["fields"]
    assert database_state() == before


@pytest.mark.django_db
def test_fallback_update__no_version__428_and_nothing_changed(writer):
    before = database_state()

    assert_json_error(
        writer.put(FALLBACK_URL, {"value": NEW_FALLBACK, "reason": "x"}, format="json"), 428, "precondition_required"
    )
    assert database_state() == before


@pytest.mark.django_db
def test_fallback_update__stale_version__409_naming_the_current_one_and_nothing_changed(writer):
    current = stored_budget_type().version
    writer.put(FALLBACK_URL, {"value": NEW_FALLBACK, "reason": "first", "version": current}, format="json")
    before = database_state()

    error = assert_json_error(
        writer.put(FALLBACK_URL, {"value": NEW_FALLBACK, "reason": "second", "version": current}, format="json"),
        409,
        "conflict",
    )

    assert f"current version is {current + 1}" in error["message"]
    assert database_state() == before


@pytest.mark.django_db
def test_fallback_update__unknown_key__404(writer):
    assert_json_error(
        writer.put("/api/v1/values/no_such_type/fallback/", {"value": 1, "reason": "x", "version": 1}, format="json"),
        404,
    )


@pytest.mark.django_db
@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_fallback_update__read_token_or_anonymous__refused_and_nothing_changed(reader):
    before = database_state()
    body = {"value": NEW_FALLBACK, "reason": "x", "version": stored_budget_type().version}

    assert_json_error(reader.put(FALLBACK_URL, body, format="json"), 403)
    assert_json_error(APIClient().put(FALLBACK_URL, body, format="json"), 401)
    assert database_state() == before
