"""Reverting a history entry: the service (values.services.audit_entry_revert), the admin's
confirmation page and the API. A revert is a new, audited change through the model's own
validation; a refusal changes nothing."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from access.models import Scope
from audit.models import AuditEntry
from sources.models import Source
from sources.services import source_breaker_reset
from tests.tokens import token_client
from values.models import Override, ValueType, ValueTypeSource
from values.services import (
    VersionConflict,
    audit_entry_revert,
    override_create,
    override_delete,
    value_type_update,
)

pytestmark = pytest.mark.django_db

KEY = "industry_multipliers"
REASON = "revert test"


def multipliers(**changes: float) -> dict[str, float]:
    return {**ValueType.objects.get(key=KEY).fallback_value, **changes}


def fallback_changed(**changes: float) -> AuditEntry:
    value_type_update(
        value_type=ValueType.objects.get(key=KEY), actor="alice", channel="test", reason="edit",
        fallback_value=multipliers(**changes),
    )  # fmt: skip
    return AuditEntry.objects.latest("pk")


def new_override(value: dict | None = None) -> Override:
    return override_create(
        value_type=ValueType.objects.get(key=KEY), value=value or multipliers(), reason="campaign",
        actor="alice", channel="test", context_match={"region": "us"},
    )  # fmt: skip


def entry_of(obj, action: str) -> AuditEntry:
    return AuditEntry.objects.filter(object_id=str(obj.pk), action=action).latest("pk")


def database_state() -> tuple:
    """What a refused revert must leave as it was."""
    return (
        AuditEntry.objects.count(),
        list(ValueType.objects.order_by("pk").values_list("fallback_value", "field_bounds", "version")),
        list(Override.objects.order_by("pk").values_list("pk", "value", "version")),
        list(ValueTypeSource.objects.order_by("pk").values_list("pk", "weight")),
    )


# --- the service ---------------------------------------------------------------------------


def test_revert__update__restores_the_changed_fields_as_a_new_audited_update(synced):
    original = ValueType.objects.get(key=KEY).fallback_value
    entry = fallback_changed(retail=1.4)
    version = ValueType.objects.get(key=KEY).version

    reverted = audit_entry_revert(entry=entry, actor="bob", channel="test", reason="wrong number")

    value_type = ValueType.objects.get(key=KEY)
    assert value_type.fallback_value == original
    assert value_type.version == version + 1
    assert reverted.action == "update" and reverted.actor == "bob"
    assert reverted.reason == f"revert of entry {entry.pk}: wrong number"
    assert reverted.before["fallback_value"]["retail"] == 1.4
    assert reverted.after["fallback_value"] == original


def test_revert__create_of_override__deletes_it_with_a_delete_entry(synced):
    override = new_override()
    entry = entry_of(override, "create")

    reverted = audit_entry_revert(entry=entry, actor="bob", channel="test", reason="not needed")

    assert not Override.objects.filter(pk=override.pk).exists()
    assert reverted.action == "delete" and reverted.object_id == str(override.pk)
    assert reverted.after is None and reverted.before["value"] == override.value


def test_revert__delete_of_override__recreates_it_with_its_id_and_a_newer_version(synced):
    override = new_override(multipliers(retail=1.5))
    override_delete(override=override, expected_version=1, actor="alice", channel="test", reason="gone")
    entry = entry_of(override, "delete")

    reverted = audit_entry_revert(entry=entry, actor="bob", channel="test", reason="still needed")

    restored = Override.objects.get(pk=override.pk)
    assert restored.value["retail"] == 1.5 and restored.context_match == {"region": "us"}
    assert restored.author == "alice" and restored.version == 2
    assert reverted.action == "create" and reverted.before is None


def test_revert__delete_of_source_link__recreates_the_link(synced):
    link = ValueTypeSource.objects.select_related("value_type", "source").first()
    weight = link.weight
    entry = AuditEntry.objects.create(
        actor="alice", channel="test", action="delete", object_type="sources.valuetypesource",
        object_id=str(link.pk), object_repr=str(link), before={
            "id": link.pk, "value_type_id": link.value_type_id, "source_id": link.source_id, "tier": link.tier,
            "weight": weight, "channels": link.channels, "request_params": link.request_params,
            "field_mapping": link.field_mapping,
        },
    )  # fmt: skip
    link_id = link.pk
    link.delete()

    audit_entry_revert(entry=entry, actor="bob", channel="test", reason="link back")

    assert ValueTypeSource.objects.get(pk=link_id).weight == weight


def test_revert__field_changed_since__refused_naming_what_would_be_overwritten(synced):
    entry = fallback_changed(retail=1.4)
    fallback_changed(retail=1.6)
    state = database_state()

    with pytest.raises(ValidationError) as refusal:
        audit_entry_revert(entry=entry, actor="bob", channel="test", reason="stale")

    assert "fallback_value changed since this entry" in refusal.value.messages[0]
    assert "1.6" in refusal.value.messages[0]
    assert database_state() == state


def test_revert__before_state_invalid_now__refused_by_the_model_and_nothing_changed(synced):
    value_type = ValueType.objects.get(key=KEY)
    value_type_update(
        value_type=value_type, actor="alice", channel="test", reason="wider", field_bounds={"*": {"min": 0.3, "max": 6.0}}
    )
    widened = AuditEntry.objects.latest("pk")
    fallback_changed(retail=5.0)  # only allowed by the wider bounds
    state = database_state()

    with pytest.raises(ValidationError):
        audit_entry_revert(entry=widened, actor="bob", channel="test", reason="narrow again")

    assert database_state() == state


def test_revert__create_whose_object_was_deleted_since__refused(synced):
    override = new_override()
    entry = entry_of(override, "create")
    override_delete(override=override, expected_version=1, actor="alice", channel="test", reason="gone")
    state = database_state()

    with pytest.raises(ValidationError, match="deleted since"):
        audit_entry_revert(entry=entry, actor="bob", channel="test", reason="undo")

    assert database_state() == state


def test_revert__create_of_value_type__refused(synced):
    entry = AuditEntry.objects.filter(object_type="values.valuetype", action="create").first()
    state = database_state()

    with pytest.raises(ValidationError, match="does not delete a value type"):
        audit_entry_revert(entry=entry, actor="bob", channel="test", reason="undo")

    assert database_state() == state


@pytest.mark.parametrize("object_type", ["access.apitoken", "values.unknown"])
def test_revert__kind_of_object_not_revertible__refused(synced, object_type):
    entry = AuditEntry.objects.create(
        actor="alice", channel="test", action="update", object_type=object_type, object_id="1",
        object_repr="x", before={"a": 1}, after={"a": 2},
    )  # fmt: skip

    with pytest.raises(ValidationError, match="cannot be reverted"):
        audit_entry_revert(entry=entry, actor="bob", channel="test", reason="undo")


def test_revert__breaker_action__refused_as_not_a_change_of_fields(synced):
    source_breaker_reset(source=Source.objects.first(), actor="alice", channel="test", reason="reset")
    entry = AuditEntry.objects.latest("pk")
    count = AuditEntry.objects.count()

    with pytest.raises(ValidationError, match="records an action"):
        audit_entry_revert(entry=entry, actor="bob", channel="test", reason="undo")

    assert AuditEntry.objects.count() == count


def test_revert__stale_expected_version__conflict(synced):
    entry = fallback_changed(retail=1.4)
    state = database_state()

    with pytest.raises(VersionConflict):
        audit_entry_revert(entry=entry, actor="bob", channel="test", reason="undo", expected_version=1)

    assert database_state() == state


def test_revert__blank_reason__refused(synced):
    entry = fallback_changed(retail=1.4)

    with pytest.raises(ValidationError):
        audit_entry_revert(entry=entry, actor="bob", channel="test", reason="  ")


# --- the admin -----------------------------------------------------------------------------


def revert_url(entry: AuditEntry) -> str:
    return reverse("admin:audit_auditentry_revert", args=[entry.pk])


def test_admin_entry_page__offers_revert(admin_client, synced):
    entry = fallback_changed(retail=1.4)

    response = admin_client.get(reverse("admin:audit_auditentry_change", args=[entry.pk]))

    assert revert_url(entry) in response.content.decode()


def test_admin_revert__get__shows_the_diff_and_asks_for_a_reason(admin_client, synced):
    entry = fallback_changed(retail=1.4)

    response = admin_client.get(revert_url(entry))

    assert response.status_code == 200
    body = response.content.decode()
    table = body[body.index('class="revert-changes"') :]
    table = table[: table.index("</table>")]
    assert "fallback_value" in table and "1.4" in table and "1.1" in table
    assert 'name="reason"' in body and "csrfmiddlewaretoken" in body


def test_admin_revert__post_with_reason__reverts_and_redirects_to_the_new_entry(admin_client, synced):
    original = ValueType.objects.get(key=KEY).fallback_value
    entry = fallback_changed(retail=1.4)

    response = admin_client.post(revert_url(entry), {"reason": "wrong number"}, follow=True)

    assert ValueType.objects.get(key=KEY).fallback_value == original
    reverted = AuditEntry.objects.latest("pk")
    assert reverted.reason == f"revert of entry {entry.pk}: wrong number" and reverted.channel == "admin"
    assert response.redirect_chain[-1][0] == reverse("admin:audit_auditentry_change", args=[reverted.pk])
    assert f"Reverted entry {entry.pk}" in response.content.decode()


def test_admin_revert__post_without_reason__not_reverted(admin_client, synced):
    entry = fallback_changed(retail=1.4)
    state = database_state()

    response = admin_client.post(revert_url(entry), {"reason": ""})

    assert response.status_code == 200
    assert database_state() == state


def test_admin_revert__stale_entry__page_says_why_and_nothing_changes(admin_client, synced):
    entry = fallback_changed(retail=1.4)
    fallback_changed(retail=1.6)
    state = database_state()

    response = admin_client.post(revert_url(entry), {"reason": "undo"}, follow=True)

    assert "changed since this entry" in response.content.decode()
    assert database_state() == state


def test_admin_revert__staff_without_change_permission__403(client, synced, django_user_model):
    entry = fallback_changed(retail=1.4)
    staff = django_user_model.objects.create_user("viewer", password="unused-password", is_staff=True)
    staff.user_permissions.add(
        Permission.objects.get(codename="view_auditentry"), Permission.objects.get(codename="view_valuetype")
    )
    client.force_login(staff)
    state = database_state()

    page = client.get(revert_url(entry))
    post = client.post(revert_url(entry), {"reason": "undo"})

    assert page.status_code == 403 and post.status_code == 403
    assert database_state() == state


def test_admin_revert__staff_with_change_permission__reverts(client, synced, django_user_model):
    entry = fallback_changed(retail=1.4)
    staff = django_user_model.objects.create_user("editor", password="unused-password", is_staff=True)
    staff.user_permissions.add(
        Permission.objects.get(codename="view_auditentry"), Permission.objects.get(codename="change_valuetype")
    )
    client.force_login(staff)

    response = client.post(revert_url(entry), {"reason": "undo"})

    assert response.status_code == 302
    assert ValueType.objects.get(key=KEY).fallback_value["retail"] != 1.4


# --- the API -------------------------------------------------------------------------------


def api_revert(client, entry_id: int, body: dict):
    return client.post(f"/api/v1/history/{entry_id}/revert/", body, format="json")


def test_api_revert__writer__200_with_the_new_entry(synced):
    original = ValueType.objects.get(key=KEY).fallback_value
    entry = fallback_changed(retail=1.4)

    response = api_revert(token_client("writer", [Scope.VALUES_WRITE]), entry.pk, {"reason": "wrong number"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["reason"] == f"revert of entry {entry.pk}: wrong number"
    assert body["actor"] == "token:writer" and body["channel"] == "api" and body["action"] == "update"
    assert ValueType.objects.get(key=KEY).fallback_value == original


def test_api_revert__stale_entry__400_in_the_error_format_and_nothing_changed(synced):
    entry = fallback_changed(retail=1.4)
    fallback_changed(retail=1.6)
    state = database_state()

    response = api_revert(token_client("writer", [Scope.VALUES_WRITE]), entry.pk, {"reason": "undo"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == 400 and "changed since this entry" in str(error["fields"]["non_field_errors"])
    assert database_state() == state


def test_api_revert__stale_version__409(synced):
    entry = fallback_changed(retail=1.4)

    response = api_revert(token_client("writer", [Scope.VALUES_WRITE]), entry.pk, {"reason": "undo", "version": 1})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


def test_api_revert__missing_reason__400(synced):
    entry = fallback_changed(retail=1.4)

    response = api_revert(token_client("writer", [Scope.VALUES_WRITE]), entry.pk, {})

    assert response.status_code == 400
    assert "reason" in response.json()["error"]["fields"]


def test_api_revert__unknown_entry__404(synced):
    response = api_revert(token_client("writer", [Scope.VALUES_WRITE]), 999_999, {"reason": "undo"})

    assert response.status_code == 404
    assert response.json()["error"]["status"] == 404


def test_api_revert__no_credential__401(synced):
    entry = fallback_changed(retail=1.4)

    response = api_revert(APIClient(), entry.pk, {"reason": "undo"})

    assert response.status_code == 401
    assert ValueType.objects.get(key=KEY).fallback_value["retail"] == 1.4


def test_api_revert__read_token__403(synced):
    entry = fallback_changed(retail=1.4)

    response = api_revert(token_client("reader", [Scope.VALUES_READ]), entry.pk, {"reason": "undo"})

    assert response.status_code == 403
    assert ValueType.objects.get(key=KEY).fallback_value["retail"] == 1.4
