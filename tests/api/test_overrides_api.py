"""The overrides API: list, create, read, update and delete over HTTP, with the version rule
(If-Match or "version": missing 428, stale 409), validation against the type's rules, a history
entry for each change, and nothing changed by any refusal. PostgreSQL and Redis are real."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from django.db import connections
from django.test import override_settings
from rest_framework.test import APIClient

from access.models import Scope
from tests.api.conftest import sources_down  # noqa: F401
from tests.api.operator_fixtures import (  # noqa: F401
    WRITER_ACTOR,
    database_state,
    latest_audit_entry,
    poll,
    reader,
    token_client,
    writer,
)
from tests.admin.test_admin import post_change
from tests.api.test_values_api import assert_json_error
from tests.values.conftest import BUDGET
from values.models import Override
from audit.models import AuditEntry

OVERRIDES_URL = "/api/v1/overrides/"
BUDGET_URL = "/api/v1/values/budget_thresholds/"
OVERRIDE_FIELDS = {
    "id", "value_type", "context_match", "value", "reason", "author", "starts_at", "expires_at",
    "is_active", "version", "created_at", "updated_at",
}
DOUBLED = {name: number * 2 for name, number in BUDGET.items()}
TRIPLED = {name: number * 3 for name, number in BUDGET.items()}


def detail_url(override_id: int) -> str:
    return f"{OVERRIDES_URL}{override_id}/"


def create(client: APIClient, **fields) -> dict:
    body = {"value_type": "budget_thresholds", "context_match": {"region": "us"}, "value": DOUBLED,
            "reason": "campaign season", **fields}
    response = client.post(OVERRIDES_URL, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


# Create -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_override_create__valid__201_with_every_field_an_etag_and_a_history_entry(writer):
    response = writer.post(
        OVERRIDES_URL,
        {"value_type": "budget_thresholds", "context_match": {"region": "us"}, "value": DOUBLED,
         "reason": "campaign season", "expires_at": "2099-01-01T00:00:00Z"},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == OVERRIDE_FIELDS
    assert body["value_type"] == "budget_thresholds"
    assert body["context_match"] == {"region": "us"}
    assert body["value"] == DOUBLED
    assert body["reason"] == "campaign season"
    assert body["author"] == WRITER_ACTOR
    assert body["is_active"] is True
    assert body["version"] == 1
    assert datetime.fromisoformat(body["expires_at"]) == datetime(2099, 1, 1, tzinfo=timezone.utc)
    assert response["ETag"] == '"1"'
    assert response["Location"] == detail_url(body["id"])
    entry = latest_audit_entry()
    assert (entry.action, entry.object_type, entry.object_id) == ("create", "values.override", str(body["id"]))
    assert (entry.actor, entry.channel, entry.reason) == (WRITER_ACTOR, "api", "campaign season")
    assert entry.before is None
    assert entry.after["value"] == DOUBLED and entry.after["context_match"] == {"region": "us"}


@pytest.mark.django_db
def test_override_create__by_alias__stored_under_the_canonical_type(writer):
    body = create(writer, value_type="budget_classification")

    assert body["value_type"] == "budget_thresholds"
    assert Override.objects.get(pk=body["id"]).value_type.key == "budget_thresholds"


@pytest.mark.django_db
def test_override_create__then_value_read__served_as_override_within_a_second(writer, sources_down):  # noqa: F811
    create(writer)

    response = poll(
        lambda: writer.get(BUDGET_URL, {"region": "us", "industry": "retail"}),
        lambda response: response.json()["provenance"]["tier"] == "override",
    )

    assert response.status_code == 200
    assert response.json()["provenance"]["tier"] == "override"
    assert response.json()["value"] == DOUBLED


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "invalid_field"),
    [
        ({"value": {**DOUBLED, "micro_threshold": -1}}, "value"),  # below the bounds
        ({"value": {**DOUBLED, "small_threshold": 1}}, "value"),  # not ascending
        ({"value": {"micro_threshold": 1}}, "value"),  # not the schema
        ({"value": None}, "value"),
        ({"context_match": {"colour": "red"}}, "context_match"),  # not a context key of the type
        ({"context_match": {"region": "<script>"}}, "context_match"),  # not a name
        ({"context_match": {"region": ["us", "eu"]}}, "context_match"),
        ({"context_match": {"region": None}}, "context_match"),
        ({"value": {**DOUBLED, "micro_threshold": 10**400}}, "value"),  # no number that large
        ({"reason": ""}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"value_type": "no_such_type"}, "value_type"),
        ({"expires_at": "2000-01-01T00:00:00Z"}, "expires_at"),  # before its start
        ({"starts_at": "not a time"}, "starts_at"),
    ],
)
def test_override_create__invalid_field__400_naming_it_and_nothing_changed(writer, fields, invalid_field):
    before = database_state()
    body = {"value_type": "budget_thresholds", "context_match": {"region": "us"}, "value": DOUBLED,
            "reason": "campaign season", **fields}

    error = assert_json_error(writer.post(OVERRIDES_URL, body, format="json"), 400, "invalid")

    assert invalid_field in error["fields"], error
    assert database_state() == before


@pytest.mark.django_db
def test_override_create__without_reason__400_and_nothing_changed(writer):
    before = database_state()

    error = assert_json_error(
        writer.post(OVERRIDES_URL, {"value_type": "budget_thresholds", "value": DOUBLED}, format="json"), 400
    )

    assert "reason" in error["fields"]
    assert database_state() == before


@pytest.mark.django_db
@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_override_create__read_token_or_anonymous__refused_and_nothing_changed(reader):
    before = database_state()
    body = {"value_type": "budget_thresholds", "value": DOUBLED, "reason": "x"}

    assert_json_error(reader.post(OVERRIDES_URL, body, format="json"), 403)
    assert_json_error(APIClient().post(OVERRIDES_URL, body, format="json"), 401)
    assert database_state() == before


# List and read ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_override_list__filtered_by_type_and_activity__only_the_matching_ones(writer, reader):
    active = create(writer)
    future = create(writer, starts_at="2099-01-01T00:00:00Z")
    other_type = create(
        writer, value_type="industry_multipliers", context_match={}, value={"retail": 1.5}
    )

    everything = reader.get(OVERRIDES_URL)
    budget_only = reader.get(OVERRIDES_URL, {"value_type": "budget_classification"})
    active_budget = reader.get(OVERRIDES_URL, {"value_type": "budget_thresholds", "active": "true"})
    inactive = reader.get(OVERRIDES_URL, {"active": "false"})

    assert everything.status_code == 200
    assert {item["id"] for item in everything.json()} == {active["id"], future["id"], other_type["id"]}
    assert all(set(item) == OVERRIDE_FIELDS for item in everything.json())
    assert {item["id"] for item in budget_only.json()} == {active["id"], future["id"]}
    assert [item["id"] for item in active_budget.json()] == [active["id"]]
    assert [(item["id"], item["is_active"]) for item in inactive.json()] == [(future["id"], False)]


@pytest.mark.django_db
@pytest.mark.parametrize("query", [{"value_type": "no_such_type"}, {"active": "maybe"}])
def test_override_list__unknown_type_or_bad_active__400(reader, query):
    error = assert_json_error(reader.get(OVERRIDES_URL, query), 400)

    assert set(error["fields"]) == set(query)


@pytest.mark.django_db
def test_override_read__existing__its_fields_with_the_version_as_etag(writer, reader):
    created = create(writer)

    response = reader.get(detail_url(created["id"]))

    assert response.status_code == 200
    assert response.json() == created
    assert response["ETag"] == '"1"'


@pytest.mark.django_db
def test_override_read__unknown_id__404(reader):
    assert_json_error(reader.get(detail_url(999_999)), 404, "not_found")


# Update -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_override_update__current_version_in_if_match__200_version_raised_and_history_entry(writer):
    created = create(writer)

    response = writer.patch(
        detail_url(created["id"]), {"value": TRIPLED, "reason": "bigger season"}, format="json", HTTP_IF_MATCH='"1"'
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["value"] == TRIPLED
    assert body["version"] == 2
    assert body["reason"] == "campaign season"  # why it exists; why it changed is in the history
    assert response["ETag"] == '"2"'
    stored = Override.objects.get(pk=created["id"])
    assert (stored.value, stored.version) == (TRIPLED, 2)
    entry = latest_audit_entry()
    assert (entry.action, entry.object_id) == ("update", str(created["id"]))
    assert (entry.actor, entry.channel) == (WRITER_ACTOR, "api")
    assert entry.reason == "bigger season"
    assert entry.before["value"] == DOUBLED and entry.before["version"] == 1
    assert entry.after["value"] == TRIPLED and entry.after["version"] == 2


@pytest.mark.django_db
def test_override_update__current_version_in_body__200(writer):
    created = create(writer)

    response = writer.patch(
        detail_url(created["id"]),
        {"expires_at": "2099-06-01T00:00:00Z", "context_match": {"region": "eu"}, "reason": "moved", "version": 1},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["context_match"] == {"region": "eu"}
    assert response.json()["value"] == DOUBLED  # not sent, not changed


@pytest.mark.django_db
def test_override_update__no_version__428_and_nothing_changed(writer):
    created = create(writer)
    before = database_state()

    error = assert_json_error(
        writer.patch(detail_url(created["id"]), {"value": TRIPLED, "reason": "x"}, format="json"),
        428,
        "precondition_required",
    )

    assert "If-Match" in error["message"]
    assert database_state() == before


@pytest.mark.django_db
def test_override_update__stale_version__409_naming_the_current_one_and_nothing_changed(writer):
    created = create(writer)
    writer.patch(detail_url(created["id"]), {"value": TRIPLED, "reason": "first"}, format="json", HTTP_IF_MATCH='"1"')
    before = database_state()

    error = assert_json_error(
        writer.patch(detail_url(created["id"]), {"value": DOUBLED, "reason": "second"}, format="json",
                     HTTP_IF_MATCH='"1"'),
        409,
        "conflict",
    )

    assert "current version is 2" in error["message"]
    assert database_state() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "headers", "invalid_field"),
    [
        ({"value": {**DOUBLED, "micro_threshold": -5}, "reason": "x"}, {"HTTP_IF_MATCH": '"1"'}, "value"),
        ({"context_match": {"colour": "red"}, "reason": "x"}, {"HTTP_IF_MATCH": '"1"'}, "context_match"),
        ({"expires_at": "2000-01-01T00:00:00Z", "reason": "x"}, {"HTTP_IF_MATCH": '"1"'}, "expires_at"),
        ({"value": TRIPLED}, {"HTTP_IF_MATCH": '"1"'}, "reason"),
        ({"value": TRIPLED, "reason": "x"}, {"HTTP_IF_MATCH": "*"}, "If-Match"),
        ({"value": TRIPLED, "reason": "x", "version": 2}, {"HTTP_IF_MATCH": '"1"'}, "version"),
        ({"value": TRIPLED, "reason": "x", "version": 0}, {}, "version"),
    ],
)
def test_override_update__invalid_input__400_naming_it_and_nothing_changed(writer, body, headers, invalid_field):
    created = create(writer)
    before = database_state()

    error = assert_json_error(writer.patch(detail_url(created["id"]), body, format="json", **headers), 400)

    assert invalid_field in error["fields"], error
    assert database_state() == before


@pytest.mark.django_db
def test_override_update__unknown_id__404(writer):
    assert_json_error(
        writer.patch(detail_url(999_999), {"value": TRIPLED, "reason": "x"}, format="json", HTTP_IF_MATCH='"1"'), 404
    )


@pytest.mark.django_db
def test_override_update__read_token__403_and_nothing_changed(writer, reader):
    created = create(writer)
    before = database_state()

    assert_json_error(
        reader.patch(detail_url(created["id"]), {"value": TRIPLED, "reason": "x"}, format="json", HTTP_IF_MATCH='"1"'),
        403,
    )
    assert database_state() == before


# Delete -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_override_delete__current_version_and_reason_in_query__204_and_history_entry(writer):
    created = create(writer)

    response = writer.delete(detail_url(created["id"]) + "?reason=season+over", HTTP_IF_MATCH='"1"')

    assert response.status_code == 204, response.content
    assert not Override.objects.filter(pk=created["id"]).exists()
    entry = latest_audit_entry()
    assert (entry.action, entry.object_id, entry.actor, entry.reason) == (
        "delete", str(created["id"]), WRITER_ACTOR, "season over"
    )
    assert entry.before["value"] == DOUBLED and entry.after is None


@pytest.mark.django_db
def test_override_delete__version_and_reason_in_body__204(writer):
    created = create(writer)

    response = writer.delete(detail_url(created["id"]), {"reason": "season over", "version": 1}, format="json")

    assert response.status_code == 204, response.content
    assert not Override.objects.filter(pk=created["id"]).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url_suffix", "body", "headers", "status", "code"),
    [
        ("", {"version": 1}, {}, 400, "invalid"),  # no reason
        ("?reason=+", {}, {"HTTP_IF_MATCH": '"1"'}, 400, "invalid"),  # a blank reason
        ("?reason=done", {}, {}, 428, "precondition_required"),
        ("?reason=done", {}, {"HTTP_IF_MATCH": '"7"'}, 409, "conflict"),
    ],
)
def test_override_delete__refused__error_and_nothing_changed(writer, url_suffix, body, headers, status, code):
    created = create(writer)
    before = database_state()

    response = writer.delete(detail_url(created["id"]) + url_suffix, body, format="json", **headers)

    assert_json_error(response, status, code)
    assert database_state() == before


@pytest.mark.django_db
def test_override_delete__unknown_id__404(writer):
    assert_json_error(writer.delete(detail_url(999_999) + "?reason=x", HTTP_IF_MATCH='"1"'), 404)


# Two operators at once ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_override_update__two_clients_same_version_at_once__one_200_and_one_409(engine):  # noqa: F811
    first_client = token_client("ops-first", [Scope.VALUES_WRITE])
    second_client = token_client("ops-second", [Scope.VALUES_WRITE])
    created = create(first_client)
    start = threading.Barrier(2, timeout=10)
    statuses: dict[str, int] = {}

    def patch(name: str, client: APIClient, value: dict) -> None:
        try:
            start.wait()
            response = client.patch(
                detail_url(created["id"]), {"value": value, "reason": name}, format="json", HTTP_IF_MATCH='"1"'
            )
            statuses[name] = response.status_code
        finally:
            connections.close_all()  # this thread's own connection

    threads = [
        threading.Thread(target=patch, args=("first", first_client, TRIPLED)),
        threading.Thread(target=patch, args=("second", second_client, {**DOUBLED, "micro_threshold": 700})),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(statuses.values()) == [200, 409], statuses
    winner = next(name for name, status in statuses.items() if status == 200)
    stored = Override.objects.get(pk=created["id"])
    assert stored.version == 2
    assert stored.value == (TRIPLED if winner == "first" else {**DOUBLED, "micro_threshold": 700})
    updates = AuditEntry.objects.filter(object_type="values.override", action="update")
    assert [entry.reason for entry in updates] == [winner]


@pytest.mark.django_db
def test_override_update__edited_in_the_admin_meanwhile__409_and_the_admin_edit_stays(writer, admin_client):
    created = create(writer)
    edited = post_change(
        admin_client, Override.objects.get(pk=created["id"]), value=TRIPLED, change_reason="edited in the admin"
    )
    assert edited.status_code == 302

    error = assert_json_error(
        writer.patch(detail_url(created["id"]), {"value": DOUBLED, "reason": "x"}, format="json", HTTP_IF_MATCH='"1"'),
        409,
    )

    assert "current version is 2" in error["message"]
    assert Override.objects.get(pk=created["id"]).value == TRIPLED
