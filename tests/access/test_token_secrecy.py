"""A planted token goes through its whole life (created, used, throttled, refused, revoked, shown
in the admin and the history) and appears exactly once: in create_api_token's output."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from access.models import ApiToken
from tests.access.conftest import VALUE_TYPES_URL, bearer
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db


@override_settings(
    DYNCONFIG_ANONYMOUS_READS=False,
    REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"read": "2/min", "write": "2/min"}},
)
def test_token__whole_life__only_in_the_one_print_of_create_api_token(
    api_client, client, django_user_model, caplog
):
    caplog.set_level(logging.DEBUG)
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("create_api_token", "planner", "--scope", "values:read", stdout=stdout, stderr=stderr)
    token = stdout.getvalue().strip()
    token_hash = ApiToken.objects.get().token_hash

    responses = [
        api_client.get(VALUE_TYPES_URL, **bearer(token)),  # 200
        api_client.get(VALUE_TYPES_URL, **bearer(token)),  # 200
        api_client.get(VALUE_TYPES_URL, **bearer(token)),  # 429
        api_client.get(VALUE_TYPES_URL, HTTP_AUTHORIZATION=f"Bearer {token} {token}"),  # malformed
        api_client.get(VALUE_TYPES_URL, **bearer(token + "x")),  # wrong
    ]
    call_command("revoke_api_token", "planner", "--reason", "rotated", stdout=stdout, stderr=stderr)
    responses.append(api_client.get(VALUE_TYPES_URL, **bearer(token)))  # revoked
    assert [response.status_code for response in responses] == [200, 200, 429, 401, 401, 401]

    client.force_login(django_user_model.objects.create_superuser("operator", "op@example.com", "unused"))
    row = ApiToken.objects.get()
    entries = AuditEntry.objects.filter(object_type="access.apitoken")
    admin_pages = [
        client.get(reverse("admin:access_apitoken_changelist")),
        client.get(reverse("admin:access_apitoken_change", args=[row.pk])),
        client.get(reverse("admin:audit_auditentry_changelist")),
        *(client.get(reverse("admin:audit_auditentry_change", args=[entry.pk])) for entry in entries),
    ]
    assert {page.status_code for page in admin_pages} == {200}

    command_output = stdout.getvalue() + stderr.getvalue()
    assert command_output.count(token) == 1
    assert token not in caplog.text and token_hash not in caplog.text
    history = json.dumps(list(entries.values()), default=str)
    for text in [*(response.content.decode() for response in responses + admin_pages), history]:
        assert token not in text and token_hash not in text
