"""History and rollback over HTTP: the values fetched for a context, newest first, with the
operator changes of the type; a rollback serves a past value again as an audited override."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tests.api.conftest import budget_server, route_budget  # noqa: F401
from tests.api.operator_fixtures import (  # noqa: F401
    WRITER_ACTOR,
    database_state,
    latest_audit_entry,
    poll,
    reader,
    writer,
)
from tests.api.test_values_api import assert_json_error
from tests.values.conftest import BUDGET, scaled
from values.models import Override, ValueRecord, ValueType

HISTORY_URL = "/api/v1/values/budget_thresholds/history/"
ROLLBACK_URL = "/api/v1/values/budget_thresholds/rollback/"
BUDGET_URL = "/api/v1/values/budget_thresholds/"
US_RETAIL = {"region": "us", "industry": "retail"}
RAISED = scaled(BUDGET, 1.5)
CHANGE_FIELDS = {"id", "at", "actor", "channel", "action", "object_type", "object_id", "before", "after", "reason"}


@pytest.fixture
def two_fetched_values(writer, budget_server) -> tuple[ValueRecord, ValueRecord]:
    """BUDGET then RAISED fetched for us/retail (and BUDGET once for another context)."""
    writer.post("/api/v1/values/budget_thresholds/refresh/?region=us&industry=retail")
    writer.post("/api/v1/values/budget_thresholds/refresh/?region=eu")
    route_budget(budget_server, RAISED)
    writer.post("/api/v1/values/budget_thresholds/refresh/?region=us&industry=retail")
    records = ValueRecord.objects.filter(context_key="industry=retail&region=us").order_by("fetched_at", "id")
    first, second = records
    return first, second


# History ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_value_history__two_fetches__values_of_that_context_newest_first(reader, two_fetched_values):
    first, second = two_fetched_values

    response = reader.get(HISTORY_URL, US_RETAIL)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["key"] == "budget_thresholds"
    assert body["context"] == US_RETAIL
    assert [item["id"] for item in body["values"]] == [second.pk, first.pk]
    assert all(set(item) == {"id", "value", "provenance", "fetched_at"} for item in body["values"])
    assert body["values"][0]["value"] == pytest.approx(RAISED)
    assert body["values"][1]["value"] == pytest.approx(BUDGET)
    assert body["values"][0]["provenance"]["origin"] == "primary"
    assert datetime.fromisoformat(body["values"][0]["fetched_at"]) == second.fetched_at


@pytest.mark.django_db
def test_value_history__operator_changes__this_types_changes_newest_first_with_every_field(writer, reader):
    created = writer.post(
        "/api/v1/overrides/",
        {"value_type": "budget_thresholds", "value": RAISED, "reason": "season"},
        format="json",
    ).json()
    writer.patch(f"/api/v1/overrides/{created['id']}/", {"value": BUDGET, "reason": "smaller"}, format="json",
                 HTTP_IF_MATCH='"1"')
    writer.delete(f"/api/v1/overrides/{created['id']}/?reason=over", HTTP_IF_MATCH='"2"')
    version = ValueType.objects.get(key="budget_thresholds").version
    writer.put("/api/v1/values/budget_thresholds/fallback/", {"value": BUDGET, "reason": "survey", "version": version},
               format="json")
    writer.post(  # another type's change: not in this history
        "/api/v1/overrides/", {"value_type": "industry_multipliers", "value": {"retail": 1.2}, "reason": "x"},
        format="json",
    )

    response = reader.get(HISTORY_URL)

    assert response.status_code == 200
    changes = response.json()["changes"]
    assert [(change["object_type"], change["action"], change["reason"]) for change in changes[:4]] == [
        ("values.valuetype", "update", "survey"),
        ("values.override", "delete", "over"),
        ("values.override", "update", "smaller"),
        ("values.override", "create", "season"),
    ]
    assert all(set(change) == CHANGE_FIELDS for change in changes)
    assert all(change["actor"] == WRITER_ACTOR and change["channel"] == "api" for change in changes[:4])
    assert changes[0]["after"]["fallback_value"] == BUDGET
    assert changes[1]["object_id"] == str(created["id"]) and changes[1]["after"] is None
    assert changes[3]["before"] is None and changes[3]["after"]["value"] == RAISED
    assert "industry_multipliers" not in str(changes)


@pytest.mark.django_db
def test_value_history__limit__at_most_that_many_of_each(reader, two_fetched_values):
    response = reader.get(HISTORY_URL, {**US_RETAIL, "limit": 1})

    assert response.status_code == 200
    assert [item["id"] for item in response.json()["values"]] == [two_fetched_values[1].pk]
    assert len(response.json()["changes"]) <= 1


@pytest.mark.django_db
@pytest.mark.parametrize(("query", "field"), [({"limit": "0"}, "limit"), ({"limit": "ten"}, "limit"),
                                               ({"limit": "501"}, "limit"), ({"colour": "red"}, "context")])
def test_value_history__bad_limit_or_context__400_naming_it(reader, query, field):
    error = assert_json_error(reader.get(HISTORY_URL, query), 400)

    assert field in error["fields"]


@pytest.mark.django_db
def test_value_history__unknown_key__404(reader):
    assert_json_error(reader.get("/api/v1/values/no_such_type/history/"), 404, "not_found")


@pytest.mark.django_db
@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_value_history__anonymous_without_anonymous_reads__401(engine):
    assert_json_error(APIClient().get(HISTORY_URL), 401)


# Rollback ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_value_rollback__past_record__201_override_for_its_context_served_as_override(writer, two_fetched_values):
    first, _ = two_fetched_values
    assert writer.get(BUDGET_URL, US_RETAIL).json()["value"] == pytest.approx(RAISED)

    response = writer.post(ROLLBACK_URL, {"record_id": first.pk, "reason": "the raise was wrong"}, format="json")

    assert response.status_code == 201, response.content
    override = response.json()
    assert override["value_type"] == "budget_thresholds"
    assert override["context_match"] == US_RETAIL
    assert override["value"] == pytest.approx(BUDGET)
    assert override["author"] == WRITER_ACTOR
    assert override["expires_at"] is None
    assert "the raise was wrong" in override["reason"] and str(first.pk) in override["reason"]
    assert response["ETag"] == '"1"'
    entry = latest_audit_entry()
    assert (entry.action, entry.object_type, entry.object_id) == ("create", "values.override", str(override["id"]))
    assert (entry.actor, entry.channel) == (WRITER_ACTOR, "api")
    assert "the raise was wrong" in entry.reason
    assert entry.before is None and entry.after["value"] == pytest.approx(BUDGET)
    served = poll(
        lambda: writer.get(BUDGET_URL, US_RETAIL),
        lambda response: response.json()["provenance"]["tier"] == "override",
    )
    assert served.json()["provenance"]["tier"] == "override"
    assert served.json()["value"] == pytest.approx(BUDGET)


@pytest.mark.django_db
def test_value_rollback__with_expiry__the_override_expires_then(writer, two_fetched_values):
    response = writer.post(
        ROLLBACK_URL,
        {"record_id": two_fetched_values[0].pk, "reason": "for the weekend", "expires_at": "2099-01-01T00:00:00Z"},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert datetime.fromisoformat(response.json()["expires_at"]) == datetime(2099, 1, 1, tzinfo=timezone.utc)


@pytest.mark.django_db
def test_value_rollback__channel_context__context_match_names_the_channels_as_text(writer):
    value_type = ValueType.objects.get(key="channel_performance")
    record = ValueRecord.objects.create(
        value_type=value_type,
        context_key="channels=email_marketing,social_media",
        context={"channels": ["email_marketing", "social_media"]},
        value={name: value_type.fallback_value[name] for name in ("email_marketing", "social_media")},
        provenance={"tier": "primary"},
        fetched_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )

    response = writer.post(
        "/api/v1/values/channel_performance/rollback/", {"record_id": record.pk, "reason": "back"}, format="json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["context_match"] == {"channels": "email_marketing,social_media"}


@pytest.mark.django_db
def test_value_rollback__record_of_another_type__404_and_nothing_changed(writer):
    value_type = ValueType.objects.get(key="industry_multipliers")
    record = ValueRecord.objects.create(
        value_type=value_type, context_key="", context={}, value=value_type.fallback_value,
        provenance={"tier": "primary"}, fetched_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    before = database_state()

    response = writer.post(ROLLBACK_URL, {"record_id": record.pk, "reason": "x"}, format="json")

    assert_json_error(response, 404, "not_found")
    assert database_state() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"record_id": 999_999, "reason": "x"}, 404, None),
        ({"record_id": 1}, 400, "reason"),
        ({"record_id": "one", "reason": "x"}, 400, "record_id"),
        ({"record_id": 1, "reason": "x", "expires_at": "2000-01-01T00:00:00Z"}, 400, "expires_at"),
    ],
)
def test_value_rollback__refused__error_and_nothing_changed(writer, two_fetched_values, body, status, field):
    if body.get("record_id") == 1:
        body = {**body, "record_id": two_fetched_values[0].pk}
    before = database_state()

    error = assert_json_error(writer.post(ROLLBACK_URL, body, format="json"), status)

    if field:
        assert field in error["fields"], error
    assert database_state() == before
    assert not Override.objects.exists()


@pytest.mark.django_db
@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_value_rollback__read_token__403_and_nothing_changed(reader, two_fetched_values):
    before = database_state()
    body = {"record_id": two_fetched_values[0].pk, "reason": "x"}

    assert_json_error(reader.post(ROLLBACK_URL, body, format="json"), 403)
    assert database_state() == before
