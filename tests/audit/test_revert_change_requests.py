"""Reverting a history entry while change requests are on (values.change_requests.revert_propose):
the revert is proposed, not applied; checked as the direct revert is (its refusals, its messages);
applied and served once another principal approves it. Sources' reverts still apply at once."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse

from access.models import Scope
from audit.models import AuditEntry
from sources.models import Source
from tests.api.conftest import sources_down  # noqa: F401
from tests.api.operator_fixtures import poll
from tests.tokens import token_client
from tests.values.conftest import engine  # noqa: F401
from values.models import ChangeRequest, Override, ValueType
from values.services import override_create, override_delete, value_type_update

pytestmark = pytest.mark.django_db

KEY = "industry_multipliers"


@pytest.fixture(autouse=True)
def change_requests_on():
    with override_settings(DYNCONFIG_CHANGE_REQUESTS=True):
        yield


def fallback_changed(**changes: float) -> AuditEntry:
    value_type = ValueType.objects.get(key=KEY)
    value_type_update(
        value_type=value_type, actor="alice", channel="test", reason="edit",
        fallback_value={**value_type.fallback_value, **changes},
    )  # fmt: skip
    return AuditEntry.objects.latest("pk")


def api_revert(client, entry_id: int, body: dict):
    return client.post(f"/api/v1/history/{entry_id}/revert/", body, format="json")


def writer():
    return token_client("writer", [Scope.VALUES_WRITE])


def state() -> tuple:
    """What a proposal must leave as it was: the history and the objects a revert would touch."""
    return (
        list(AuditEntry.objects.order_by("pk").values_list("pk", flat=True)),
        list(ValueType.objects.order_by("pk").values_list("fallback_value", "version")),
        list(Override.objects.order_by("pk").values_list("pk", "value", "version")),
    )


def test_api_revert__change_requests_on__202_pending_request_with_the_restoring_diff_and_nothing_applied(synced):
    original = ValueType.objects.get(key=KEY).fallback_value
    entry = fallback_changed(retail=1.4)
    changed = ValueType.objects.get(key=KEY).fallback_value
    before = state()

    response = api_revert(writer(), entry.pk, {"reason": "wrong number", "version": ValueType.objects.get(key=KEY).version})

    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"] == f"/api/v1/change-requests/{body['id']}/"
    assert (body["state"], body["proposed_by"], body["channel"], body["value_type"]) == ("pending", "token:writer", "api", KEY)
    assert body["reason"] == f"revert of entry {entry.pk}: wrong number"
    [line] = body["diff"]
    assert (line["field"], line["before"], line["after"]) == ("fallback_value", changed, original)
    assert ChangeRequest.objects.get(pk=body["id"]).state == ChangeRequest.State.PENDING
    assert state() == before


def test_api_revert_proposal__approved_by_an_approver_token__restored_audited_and_served(sources_down):  # noqa: F811
    original = ValueType.objects.get(key=KEY).fallback_value
    entry = fallback_changed(retail=1.4)
    proposal = api_revert(writer(), entry.pk, {"reason": "wrong number"}).json()
    approver = token_client("ops-approver", [Scope.VALUES_APPROVE])

    response = approver.post(f"/api/v1/change-requests/{proposal['id']}/approve/", {"note": "ok"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["state"] == "applied"
    assert ValueType.objects.get(key=KEY).fallback_value == original
    applied = AuditEntry.objects.latest("pk")
    assert applied.actor == "token:writer (approved by token:ops-approver)"
    assert applied.reason == f"change request {proposal['id']}: revert of entry {entry.pk}: wrong number"
    reader = token_client("ops-reader", [Scope.VALUES_READ])
    served = poll(
        lambda: reader.get(f"/api/v1/values/{KEY}/", {"region": "us"}).json(),
        lambda answer: answer["value"]["retail"] == original["retail"],
    )
    assert served["value"]["retail"] == original["retail"] and served["provenance"]["tier"] == "fallback"


def test_api_revert_proposal__create_of_override__approved__deletes_it(synced):
    override = override_create(
        value_type=ValueType.objects.get(key=KEY), value=ValueType.objects.get(key=KEY).fallback_value,
        reason="campaign", actor="alice", channel="test", context_match={"region": "us"},
    )  # fmt: skip
    entry = AuditEntry.objects.filter(object_id=str(override.pk), action="create").latest("pk")
    proposal = api_revert(writer(), entry.pk, {"reason": "not needed"}).json()
    assert Override.objects.filter(pk=override.pk).exists()

    approver = token_client("ops-approver", [Scope.VALUES_APPROVE])
    response = approver.post(f"/api/v1/change-requests/{proposal['id']}/approve/", {"note": "ok"}, format="json")

    assert response.json()["state"] == "applied", response.content
    assert not Override.objects.filter(pk=override.pk).exists()


def test_api_revert_proposal__delete_of_override__approved__makes_it_again(synced):
    value = {**ValueType.objects.get(key=KEY).fallback_value, "retail": 1.5}
    override = override_create(
        value_type=ValueType.objects.get(key=KEY), value=value, reason="campaign", actor="alice", channel="test",
        context_match={"region": "us"},
    )  # fmt: skip
    override_delete(override=override, expected_version=1, actor="alice", channel="test", reason="gone")
    entry = AuditEntry.objects.filter(object_id=str(override.pk), action="delete").latest("pk")
    proposal = api_revert(writer(), entry.pk, {"reason": "still needed"}).json()
    assert [item["action"] for item in proposal["items"]] == ["create"] and not Override.objects.exists()

    approver = token_client("ops-approver", [Scope.VALUES_APPROVE])
    response = approver.post(f"/api/v1/change-requests/{proposal['id']}/approve/", {"note": "ok"}, format="json")

    assert response.json()["state"] == "applied", response.content
    [restored] = Override.objects.all()
    assert (restored.value, restored.context_match, restored.author) == (value, {"region": "us"}, "alice")


def test_api_revert__change_requests_on_and_plan_refuses__400_with_the_plans_message_and_no_request(synced):
    entry = fallback_changed(retail=1.4)
    fallback_changed(retail=1.6)
    before = state()

    response = api_revert(writer(), entry.pk, {"reason": "undo"})

    assert response.status_code == 400, response.content
    assert "changed since this entry" in str(response.json()["error"]["fields"]["non_field_errors"])
    assert not ChangeRequest.objects.exists()
    assert state() == before


def test_api_revert__change_requests_on_and_stale_version__409_and_no_request(synced):
    entry = fallback_changed(retail=1.4)

    response = api_revert(writer(), entry.pk, {"reason": "undo", "version": 1})

    assert response.status_code == 409, response.content
    assert not ChangeRequest.objects.exists()


def test_api_revert__change_requests_on_and_entry_of_a_source__applied_at_once_as_sources_are_not_requests(synced):
    source = Source.objects.order_by("pk").first()
    entry = AuditEntry.objects.create(
        actor="alice", channel="test", action="update", object_type="sources.source", object_id=str(source.pk),
        object_repr=str(source), before={"read_timeout": 7.0}, after={"read_timeout": source.read_timeout},
    )  # fmt: skip

    response = api_revert(writer(), entry.pk, {"reason": "undo"})

    assert response.status_code == 200, response.content
    assert Source.objects.get(pk=source.pk).read_timeout == 7.0
    assert not ChangeRequest.objects.exists()


# --- the admin -----------------------------------------------------------------------------


def revert_url(entry: AuditEntry) -> str:
    return reverse("admin:audit_auditentry_revert", args=[entry.pk])


def test_admin_revert__get_with_change_requests_on__says_confirming_proposes(admin_client, synced):
    entry = fallback_changed(retail=1.4)

    response = admin_client.get(revert_url(entry))

    assert "confirming proposes this revert" in response.content.decode()
    assert 'value="Propose for approval"' in response.content.decode()


def test_admin_revert__post_with_change_requests_on__pending_request_object_unchanged(admin_client, synced):
    entry = fallback_changed(retail=1.4)
    changed = ValueType.objects.get(key=KEY).fallback_value
    before = state()

    response = admin_client.post(revert_url(entry), {"reason": "wrong number"}, follow=True)

    change_request = ChangeRequest.objects.get()
    assert change_request.state == ChangeRequest.State.PENDING and change_request.channel == "admin"
    assert change_request.reason == f"revert of entry {entry.pk}: wrong number"
    assert response.redirect_chain[-1][0] == reverse("admin:values_changerequest_change", args=[change_request.pk])
    assert "proposed for approval" in response.content.decode()
    assert ValueType.objects.get(key=KEY).fallback_value == changed
    assert state() == before


def test_admin_revert__post_with_change_requests_on_and_plan_refuses__no_request_and_says_why(admin_client, synced):
    entry = fallback_changed(retail=1.4)
    fallback_changed(retail=1.6)
    before = state()

    response = admin_client.post(revert_url(entry), {"reason": "undo"}, follow=True)

    assert "changed since this entry" in response.content.decode()
    assert not ChangeRequest.objects.exists()
    assert state() == before
