"""Who may call what: the API's permission matrix, written out as a table.

Scopes (access/principals.py): `values:read` reads; `values:write` reads, and writes overrides
and fallbacks, refreshes and rolls back; `sources:manage` reads, and opens and resets source
breakers; `values:approve` reads, and approves or rejects change requests; `webhooks:manage`
reads, and registers webhooks and reads their deliveries; a staff admin session
may do everything (approving with the values.approve_changerequest permission, which the staff
user here holds). Reads (planning's POSTs and the batch read
included: they change nothing) are open to anonymous callers only where the deployment allows it
(DYNCONFIG_ANONYMOUS_READS, never in production).

Every endpoint is called by every role with a valid request on real objects: an allowed role
must get a 2xx, a refused one 401 (no credential) or 403 (a credential without the scope), in
the one error format. A guard test keeps the table complete: every route under /api/ that the
URL resolver has must have its row here."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from access.models import Scope
from audit.models import AuditEntry
from tests.api.test_schema import api_routes
from values.models import ValueRecord, ValueType
from values.change_requests import change_request_propose, override_create_edit
from values.services import override_create
from webhooks.services import webhook_create
from tests.tokens import token_client

ANONYMOUS = "anonymous"
READ_TOKEN = "read token"
WRITE_TOKEN = "write token"
MANAGE_TOKEN = "manage token"
APPROVE_TOKEN = "approve token"
WEBHOOKS_TOKEN = "webhooks token"
STAFF_SESSION = "staff session"
ROLES = (ANONYMOUS, READ_TOKEN, WRITE_TOKEN, MANAGE_TOKEN, APPROVE_TOKEN, WEBHOOKS_TOKEN, STAFF_SESSION)

READERS = frozenset({READ_TOKEN, WRITE_TOKEN, MANAGE_TOKEN, APPROVE_TOKEN, WEBHOOKS_TOKEN, STAFF_SESSION})
WRITERS = frozenset({WRITE_TOKEN, STAFF_SESSION})
MANAGERS = frozenset({MANAGE_TOKEN, STAFF_SESSION})
APPROVERS = frozenset({APPROVE_TOKEN, STAFF_SESSION})
HOOK_MANAGERS = frozenset({WEBHOOKS_TOKEN, STAFF_SESSION})  # webhooks:manage

# The access rules where reads need sign-in (production). Where anonymous reads are allowed
# (development), every READERS row is open to ANONYMOUS as well; nothing else changes.
ACCESS: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/api/schema/"): READERS,
    ("GET", "/api/docs/"): READERS,
    ("GET", "/api/v1/values/"): READERS,
    ("POST", "/api/v1/values/batch/"): READERS,
    ("GET", "/api/v1/values/{key}/"): READERS,
    ("GET", "/api/v1/values/{key}/fallback/"): READERS,
    ("PUT", "/api/v1/values/{key}/fallback/"): WRITERS,
    ("POST", "/api/v1/values/{key}/refresh/"): WRITERS,
    ("GET", "/api/v1/values/{key}/history/"): READERS,
    ("POST", "/api/v1/values/{key}/rollback/"): WRITERS,
    ("GET", "/api/v1/overrides/"): READERS,
    ("POST", "/api/v1/overrides/"): WRITERS,
    ("GET", "/api/v1/overrides/{override_id}/"): READERS,
    ("PATCH", "/api/v1/overrides/{override_id}/"): WRITERS,
    ("DELETE", "/api/v1/overrides/{override_id}/"): WRITERS,
    ("GET", "/api/v1/sources/"): READERS,
    ("GET", "/api/v1/sources/{name}/"): READERS,
    ("POST", "/api/v1/sources/{name}/breaker/reset/"): MANAGERS,
    ("POST", "/api/v1/sources/{name}/breaker/open/"): MANAGERS,
    ("GET", "/api/v1/health/"): READERS,
    ("POST", "/api/v1/planning/budget-tier/"): READERS,
    ("POST", "/api/v1/planning/projections/"): READERS,
    ("POST", "/api/v1/history/{entry_id}/revert/"): WRITERS,
    ("GET", "/api/v1/change-requests/"): READERS,
    ("GET", "/api/v1/change-requests/{request_id}/"): READERS,
    ("POST", "/api/v1/change-requests/{request_id}/approve/"): APPROVERS,
    ("POST", "/api/v1/change-requests/{request_id}/reject/"): APPROVERS,
    ("GET", "/api/v1/values/stream/"): READERS,
    ("GET", "/api/v1/webhooks/"): HOOK_MANAGERS,
    ("POST", "/api/v1/webhooks/"): HOOK_MANAGERS,
    ("GET", "/api/v1/webhooks/{webhook_id}/"): HOOK_MANAGERS,
    ("PATCH", "/api/v1/webhooks/{webhook_id}/"): HOOK_MANAGERS,
    ("DELETE", "/api/v1/webhooks/{webhook_id}/"): HOOK_MANAGERS,
    ("POST", "/api/v1/webhooks/{webhook_id}/rotate-secret/"): HOOK_MANAGERS,
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries/"): HOOK_MANAGERS,
}


def allowed_roles(endpoint: tuple[str, str], *, anonymous_reads: bool) -> frozenset[str]:
    roles = ACCESS[endpoint]
    return roles | {ANONYMOUS} if anonymous_reads and roles == READERS else roles


# A valid request for each endpoint, its objects (overrides, records) made fresh for each call ---

KEY = "budget_thresholds"
CONTEXT = {"region": "us", "industry": "retail"}
SOURCE = "market_research_api"
REASON = "permission matrix test"


@dataclass
class Call:
    path: str
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _override_id() -> int:
    value_type = ValueType.objects.get(key=KEY)
    override = override_create(
        value_type=value_type, value=value_type.fallback_value, reason=REASON, actor="test", channel="test",
        context_match={"region": "us"},
    )
    return override.pk


def _fallback_update() -> Call:
    value_type = ValueType.objects.get(key=KEY)
    body = {"value": value_type.fallback_value, "reason": REASON, "version": value_type.version}
    return Call(f"/api/v1/values/{KEY}/fallback/", body)


def _rollback() -> Call:
    value_type = ValueType.objects.get(key=KEY)
    record = ValueRecord.objects.create(
        value_type=value_type, context_key="industry=retail&region=us", context=CONTEXT,
        value=value_type.fallback_value, provenance={}, fetched_at=timezone.now(),
    )
    return Call(f"/api/v1/values/{KEY}/rollback/", {"record_id": record.pk, "reason": REASON})


def _change_request_id() -> int:
    """A pending request (an override for Germany), proposed by someone none of the roles is."""
    value_type = ValueType.objects.get(key=KEY)
    edit = override_create_edit(
        value_type=value_type, value=value_type.fallback_value, reason=REASON, actor="test", context_match={"region": "de"}
    )
    return change_request_propose(edits=[edit], reason=REASON, actor="test", channel="test").pk


def _webhook_id() -> int:
    webhook, _ = webhook_create(url="https://hooks.example.com/matrix", actor="test", channel="test")
    return webhook.pk


def _revert() -> Call:
    entry = AuditEntry.objects.get(object_type="values.override", object_id=str(_override_id()), action="create")
    return Call(f"/api/v1/history/{entry.pk}/revert/", {"reason": REASON})


REQUESTS: dict[tuple[str, str], Callable[[], Call]] = {
    ("GET", "/api/schema/"): lambda: Call("/api/schema/?format=json"),
    ("GET", "/api/docs/"): lambda: Call("/api/docs/"),
    ("GET", "/api/v1/values/"): lambda: Call("/api/v1/values/"),
    ("POST", "/api/v1/values/batch/"): lambda: Call("/api/v1/values/batch/", {"reads": [{"key": KEY, "context": CONTEXT}]}),
    ("GET", "/api/v1/values/{key}/"): lambda: Call(f"/api/v1/values/{KEY}/?region=us&industry=retail"),
    ("GET", "/api/v1/values/{key}/fallback/"): lambda: Call(f"/api/v1/values/{KEY}/fallback/"),
    ("PUT", "/api/v1/values/{key}/fallback/"): _fallback_update,
    ("POST", "/api/v1/values/{key}/refresh/"): lambda: Call(f"/api/v1/values/{KEY}/refresh/?region=us&industry=retail"),
    ("GET", "/api/v1/values/{key}/history/"): lambda: Call(f"/api/v1/values/{KEY}/history/?region=us&industry=retail"),
    ("POST", "/api/v1/values/{key}/rollback/"): _rollback,
    ("GET", "/api/v1/overrides/"): lambda: Call("/api/v1/overrides/"),
    ("POST", "/api/v1/overrides/"): lambda: Call(
        "/api/v1/overrides/",
        {"value_type": KEY, "context_match": {"region": "us"}, "value": ValueType.objects.get(key=KEY).fallback_value, "reason": REASON},
    ),
    ("GET", "/api/v1/overrides/{override_id}/"): lambda: Call(f"/api/v1/overrides/{_override_id()}/"),
    ("PATCH", "/api/v1/overrides/{override_id}/"): lambda: Call(
        f"/api/v1/overrides/{_override_id()}/", {"expires_at": None, "reason": REASON, "version": 1}
    ),
    ("DELETE", "/api/v1/overrides/{override_id}/"): lambda: Call(
        f"/api/v1/overrides/{_override_id()}/", {"reason": REASON, "version": 1}
    ),
    ("GET", "/api/v1/sources/"): lambda: Call("/api/v1/sources/"),
    ("GET", "/api/v1/sources/{name}/"): lambda: Call(f"/api/v1/sources/{SOURCE}/"),
    ("POST", "/api/v1/sources/{name}/breaker/reset/"): lambda: Call(f"/api/v1/sources/{SOURCE}/breaker/reset/", {"reason": REASON}),
    ("POST", "/api/v1/sources/{name}/breaker/open/"): lambda: Call(
        f"/api/v1/sources/{SOURCE}/breaker/open/", {"duration": "PT1M", "reason": REASON}
    ),
    ("GET", "/api/v1/health/"): lambda: Call("/api/v1/health/"),
    ("POST", "/api/v1/planning/budget-tier/"): lambda: Call(
        "/api/v1/planning/budget-tier/", {"monthly_budget": "5000.00", **CONTEXT}
    ),
    ("POST", "/api/v1/planning/projections/"): lambda: Call(
        "/api/v1/planning/projections/", {"channels": {"search_advertising": "1000.00"}, **CONTEXT}
    ),
    ("POST", "/api/v1/history/{entry_id}/revert/"): _revert,
    ("GET", "/api/v1/change-requests/"): lambda: Call("/api/v1/change-requests/?state=pending"),
    ("GET", "/api/v1/change-requests/{request_id}/"): lambda: Call(f"/api/v1/change-requests/{_change_request_id()}/"),
    ("POST", "/api/v1/change-requests/{request_id}/approve/"): lambda: Call(
        f"/api/v1/change-requests/{_change_request_id()}/approve/", {"note": REASON}
    ),
    ("POST", "/api/v1/change-requests/{request_id}/reject/"): lambda: Call(
        f"/api/v1/change-requests/{_change_request_id()}/reject/", {"note": REASON}
    ),
    # Bounded: the test client would otherwise wait for the end of an endless stream.
    ("GET", "/api/v1/values/stream/"): lambda: Call("/api/v1/values/stream/?max_seconds=0.1"),
    ("GET", "/api/v1/webhooks/"): lambda: Call("/api/v1/webhooks/"),
    ("POST", "/api/v1/webhooks/"): lambda: Call("/api/v1/webhooks/", {"url": "https://hooks.example.com/x"}),
    ("GET", "/api/v1/webhooks/{webhook_id}/"): lambda: Call(f"/api/v1/webhooks/{_webhook_id()}/"),
    ("PATCH", "/api/v1/webhooks/{webhook_id}/"): lambda: Call(f"/api/v1/webhooks/{_webhook_id()}/", {"is_enabled": False}),
    ("DELETE", "/api/v1/webhooks/{webhook_id}/"): lambda: Call(f"/api/v1/webhooks/{_webhook_id()}/", {"reason": REASON}),
    ("POST", "/api/v1/webhooks/{webhook_id}/rotate-secret/"): lambda: Call(
        f"/api/v1/webhooks/{_webhook_id()}/rotate-secret/", {"reason": REASON}
    ),
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries/"): lambda: Call(f"/api/v1/webhooks/{_webhook_id()}/deliveries/"),
}


# The callers ------------------------------------------------------------------------------------


@pytest.fixture
def values_overridden(engine, sources_down):
    """Sources down, and every value type answering from an override of its fallback: the reads
    resolve at once, without waiting on sources (the matrix is about who may call, not about where
    values come from)."""
    for value_type in ValueType.objects.all():
        override_create(
            value_type=value_type, value=value_type.fallback_value, reason=REASON, actor="test", channel="test"
        )


@pytest.fixture
def clients(values_overridden, django_user_model) -> dict[str, APIClient]:
    """A client per role."""
    staff = django_user_model.objects.create_user("operator", password="unused-password", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="approve_changerequest"))
    staff_client = APIClient()  # CSRF checks off, as for a browser that sends its token (tested below)
    staff_client.force_login(staff)
    return {
        ANONYMOUS: APIClient(),
        READ_TOKEN: token_client("reader", [Scope.VALUES_READ]),
        WRITE_TOKEN: token_client("writer", [Scope.VALUES_WRITE]),
        MANAGE_TOKEN: token_client("manager", [Scope.SOURCES_MANAGE]),
        APPROVE_TOKEN: token_client("approver", [Scope.VALUES_APPROVE]),
        WEBHOOKS_TOKEN: token_client("hooks", [Scope.WEBHOOKS_MANAGE]),
        STAFF_SESSION: staff_client,
    }


def call(client: APIClient, method: str, request: Call):
    headers = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in request.headers.items()}
    body = "" if request.body is None else json.dumps(request.body)
    return client.generic(method, request.path, data=body, content_type="application/json", **headers)


def mismatches(client: APIClient, role: str, *, anonymous_reads: bool) -> list[str]:
    """Every endpoint called as `role`: the cells of the matrix where the answer disagrees."""
    wrong = []
    for endpoint, build in REQUESTS.items():
        method, _ = endpoint
        response = call(client, method, build())
        is_allowed = role in allowed_roles(endpoint, anonymous_reads=anonymous_reads)
        expected = "2xx" if is_allowed else (401 if role == ANONYMOUS else 403)
        if is_allowed and not 200 <= response.status_code < 300:
            wrong.append(f"{method} {endpoint[1]}: expected 2xx, got {response.status_code} {response.content[:300]!r}")
        elif not is_allowed and not _is_refusal(response, expected):
            wrong.append(f"{method} {endpoint[1]}: expected {expected}, got {response.status_code} {response.content[:300]!r}")
    return wrong


def _is_refusal(response, status: int) -> bool:
    if response.status_code != status or response["Content-Type"] != "application/json":
        return False
    error = response.json().get("error", {})
    return error.get("status") == status and bool(error.get("code"))


# The matrix --------------------------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
@pytest.mark.parametrize("role", ROLES)
def test_permissions__reads_need_sign_in__each_role_gets_exactly_what_the_table_allows(clients, role):
    assert mismatches(clients[role], role, anonymous_reads=False) == []


@pytest.mark.django_db
@override_settings(DYNCONFIG_ANONYMOUS_READS=True)
@pytest.mark.parametrize("role", ROLES)
def test_permissions__anonymous_reads_allowed__each_role_gets_exactly_what_the_table_allows(clients, role):
    assert mismatches(clients[role], role, anonymous_reads=True) == []


@pytest.mark.django_db
@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_permissions__reads_need_sign_in__anonymous_gets_401_on_every_route_under_api(clients):
    for (method, path), build in REQUESTS.items():
        response = call(clients[ANONYMOUS], method, build())
        assert _is_refusal(response, 401), (method, path, response.status_code, response.content[:300])
        assert response["WWW-Authenticate"] == "Bearer", (method, path)


def test_permissions__the_table__has_a_row_for_every_route_under_api_and_no_other():
    routes = {(method.upper(), path) for path, methods in api_routes(prefix="/api/").items() for method in methods}

    assert set(ACCESS) == routes, {"missing rows": routes - set(ACCESS), "rows without a route": set(ACCESS) - routes}
    assert set(REQUESTS) == set(ACCESS)


@override_settings(DYNCONFIG_ANONYMOUS_READS=True)
def test_permissions__schema_where_anonymous_reads_allowed__documents_exactly_the_table_s_anonymous_operations():
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()

    documented_open = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if {} in operation["security"]
    }

    table_open = {endpoint for endpoint in ACCESS if ANONYMOUS in allowed_roles(endpoint, anonymous_reads=True)}
    assert documented_open == table_open - {("GET", "/api/schema/"), ("GET", "/api/docs/")}


# Sessions and CSRF ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_permissions__staff_session_write_without_csrf_token__refused_403(engine, sources_down, django_user_model):
    staff = django_user_model.objects.create_user("operator", password="unused-password", is_staff=True)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(staff)

    response = call(client, "POST", REQUESTS[("POST", "/api/v1/overrides/")]())

    assert _is_refusal(response, 403)
    assert "CSRF" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_permissions__staff_session_write_with_csrf_token__allowed(engine, sources_down, django_user_model):
    staff = django_user_model.objects.create_user("operator", password="unused-password", is_staff=True)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(staff)
    client.get("/api/docs/")  # the docs page renders the CSRF token, so it sets the cookie
    token = client.cookies["csrftoken"].value

    request = REQUESTS[("POST", "/api/v1/overrides/")]()
    request.headers["X-CSRFToken"] = token
    response = call(client, "POST", request)

    assert response.status_code == 201, response.content


def test_permissions__post_to_an_unknown_api_path_without_csrf_token__json_404_not_a_csrf_page():
    client = APIClient(enforce_csrf_checks=True)

    response = client.post("/api/v1/no-such-thing/", {}, format="json")

    assert _is_refusal(response, 404)
