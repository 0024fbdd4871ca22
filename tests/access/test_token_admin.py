"""API tokens in the admin: listed without their hash, no add or edit form, revoked through the
service by the Revoke action."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse

from access.models import ApiToken
from tests.access.conftest import VALUE_TYPES_URL, assert_json_error, bearer
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db

CHANGELIST_URL = "admin:access_apitoken_changelist"


@pytest.fixture
def operator(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("operator", "op@example.com", "unused"))
    return client


def test_changelist__tokens__listed_with_prefix_and_scopes_never_the_hash(operator, make_token):
    token = make_token("planner", "values:read", "sources:manage")
    row = ApiToken.objects.get()

    page = operator.get(reverse(CHANGELIST_URL)).content.decode()

    assert "planner" in page and f"{row.prefix}…" in page and "values:read, sources:manage" in page
    assert row.token_hash not in page and token not in page


def test_changelist__says_tokens_are_created_by_the_command(operator):
    page = operator.get(reverse(CHANGELIST_URL)).content.decode()

    assert "manage.py create_api_token NAME --scope values:read" in page
    assert "within 5 seconds" in page


def test_change_page__token__read_only_without_the_hash(operator, make_token):
    make_token("planner", "values:read")
    row = ApiToken.objects.get()

    response = operator.get(reverse("admin:access_apitoken_change", args=[row.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert row.token_hash not in page and 'name="token_hash"' not in page
    assert 'name="name"' not in page  # nothing to edit
    assert response.context["has_change_permission"] is False


def test_add_page__refused(operator):
    assert operator.get(reverse("admin:access_apitoken_add")).status_code == 403


def test_delete__not_offered(operator, make_token):
    make_token("planner", "values:read")
    row = ApiToken.objects.get()

    assert operator.get(reverse("admin:access_apitoken_delete", args=[row.pk])).status_code == 403
    assert "delete_selected" not in operator.get(reverse(CHANGELIST_URL)).content.decode()


@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_revoke_action__selected_tokens__revoked_recorded_and_refused_at_once(operator, make_token, api_client):
    revoked, kept = make_token("planner", "values:read"), make_token("dashboard", "values:read")
    assert api_client.get(VALUE_TYPES_URL, **bearer(revoked)).status_code == 200
    planner = ApiToken.objects.get(name="planner")

    response = operator.post(
        reverse(CHANGELIST_URL), {"action": "revoke", "_selected_action": [planner.pk]}, follow=True
    )

    assert "Revoked the token “planner”." in response.content.decode()
    assert not ApiToken.objects.get(name="planner").is_active
    assert ApiToken.objects.get(name="dashboard").is_active
    entry = AuditEntry.objects.filter(object_type="access.apitoken", action="update").get()
    assert (entry.actor, entry.channel, entry.reason) == ("operator", "admin", "Revoked in the admin")
    assert_json_error(api_client.get(VALUE_TYPES_URL, **bearer(revoked)), 401)
    assert api_client.get(VALUE_TYPES_URL, **bearer(kept)).status_code == 200


def test_revoke_action__already_revoked__warning_and_no_second_entry(operator, make_token):
    make_token("planner", "values:read")
    planner = ApiToken.objects.get()
    data = {"action": "revoke", "_selected_action": [planner.pk]}
    operator.post(reverse(CHANGELIST_URL), data)

    response = operator.post(reverse(CHANGELIST_URL), data, follow=True)

    assert "already revoked" in response.content.decode()
    assert AuditEntry.objects.filter(object_type="access.apitoken", action="update").count() == 1


def test_revoke_action__staff_without_change_permission__not_offered(client, django_user_model, make_token):
    viewer = django_user_model.objects.create_user("viewer", password="unused", is_staff=True)
    viewer.user_permissions.add(*_permissions("view_apitoken"))
    client.force_login(viewer)
    make_token("planner", "values:read")

    response = client.get(reverse(CHANGELIST_URL))

    assert response.status_code == 200
    assert 'value="revoke"' not in response.content.decode()


def _permissions(*codenames: str):
    from django.contrib.auth.models import Permission

    return Permission.objects.filter(content_type__app_label="access", codename__in=codenames)
