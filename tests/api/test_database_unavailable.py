"""A database that cannot be reached is a 503 `database_unavailable` with Retry-After, in the one
error format, on every endpoint that needs the database; a short HTML page in the admin, never
a traceback; and nothing written. In this process, with every query refused (the connection
pointed at a port where nothing listens); tests/access/test_database_outage.py stops a real
PostgreSQL under the running application."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, OperationalError
from django.test import RequestFactory, override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from access.models import Scope
from dynconfig_site.api_errors import DATABASE_RETRY_AFTER_SECONDS, api_exception_handler
from dynconfig_site.database_outage import DatabaseOutageMiddleware
from tests.api.operator_fixtures import database_state
from tests.api.test_schema import ERROR_REF, fetch_schema, operations
from tests.databases import database_unreachable
from tests.tokens import token_client

OUTAGE_PAGE_TEXT = "The database is unavailable; try again shortly."
FALLBACK = {
    "micro_threshold": 1,
    "small_threshold": 2,
    "medium_threshold": 3,
    "large_threshold": 4,
    "enterprise_threshold": 5,
}
# Endpoints that need the database, each with a body that is valid when it is up.
NEEDS_THE_DATABASE = [
    ("post", "/api/v1/overrides/", {"value_type": "budget_thresholds", "context_match": {"region": "us"},
                                    "value": FALLBACK, "reason": "during an outage"}),
    ("put", "/api/v1/values/budget_thresholds/fallback/", {"value": FALLBACK, "reason": "during an outage",
                                                          "version": 1}),
    ("post", "/api/v1/values/budget_thresholds/rollback/", {"record_id": 1, "reason": "during an outage",
                                                           "version": 1}),
    ("post", "/api/v1/sources/market_research_api/breaker/reset/", {"reason": "during an outage"}),
    ("get", "/api/v1/overrides/", None),
    ("get", "/api/v1/values/budget_thresholds/history/", None),
    ("get", "/api/v1/values/budget_thresholds/fallback/", None),
    ("get", "/api/v1/sources/", None),
]


def assert_database_unavailable(response) -> None:
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == str(DATABASE_RETRY_AFTER_SECONDS)
    assert response.json() == {"error": {"status": 503, "code": "database_unavailable", "message": OUTAGE_PAGE_TEXT}}


@pytest.fixture
def operator(engine) -> APIClient:
    """A token of every scope, already looked up (so that its own lookup needs no query)."""
    client = token_client("ops-everything", [Scope.VALUES_WRITE, Scope.SOURCES_MANAGE])
    assert client.get("/api/v1/overrides/").status_code == 200
    return client


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("method", "url", "body"), NEEDS_THE_DATABASE, ids=[f"{method} {url}" for method, url, _ in NEEDS_THE_DATABASE]
)
def test_endpoint_needing_the_database__database_unreachable__503_database_unavailable_nothing_written(
    operator, method, url, body
):
    before = database_state()

    with database_unreachable():
        response = getattr(operator, method)(url, body, format="json") if body else getattr(operator, method)(url)

    assert_database_unavailable(response)
    assert database_state() == before


@pytest.mark.django_db(transaction=True)
def test_api_with_an_admin_session__database_unreachable__503_database_unavailable(engine, admin_client):
    with database_unreachable():
        response = admin_client.get("/api/v1/overrides/")

    assert_database_unavailable(response)


@pytest.mark.django_db(transaction=True)
@override_settings(DEBUG=True)  # where Django would show its traceback page
def test_admin_page__database_unreachable__503_short_page_not_a_traceback(engine, admin_client):
    with database_unreachable():
        response = admin_client.get(reverse("admin:index"))

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == str(DATABASE_RETRY_AFTER_SECONDS)
    page = response.content.decode()
    assert OUTAGE_PAGE_TEXT in page
    assert "Traceback" not in page and "OperationalError" not in page
    assert len(page) < 1000


@pytest.mark.django_db(transaction=True)
@override_settings(DEBUG=True)
def test_admin_sign_in__database_unreachable__503_short_page(engine, client):
    login_url = reverse("admin:login")
    assert client.get(login_url).status_code == 200  # the form renders without the database

    with database_unreachable():
        response = client.post(login_url, {"username": "admin", "password": "secret"})

    assert response.status_code == 503
    assert OUTAGE_PAGE_TEXT in response.content.decode()


@pytest.mark.parametrize(
    ("path", "accept", "expected_type"),
    [
        ("/api/v1/anything/", "text/html", "application/json"),
        ("/metrics", "application/json", "application/json"),
        ("/admin/", "text/html,application/xhtml+xml,*/*", "text/html"),
    ],
)
def test_middleware__database_error_outside_drf__503_json_for_the_api_else_html(path, accept, expected_type):
    middleware = DatabaseOutageMiddleware(get_response=lambda request: None)
    request = RequestFactory().get(path, HTTP_ACCEPT=accept)

    response = middleware.process_exception(request, OperationalError("connection refused"))

    assert response.status_code == 503
    assert response["Content-Type"].startswith(expected_type)
    assert response["Retry-After"] == str(DATABASE_RETRY_AFTER_SECONDS)


def test_middleware__other_error__left_to_django():
    middleware = DatabaseOutageMiddleware(get_response=lambda request: None)
    request = RequestFactory().get("/admin/")

    assert middleware.process_exception(request, ValueError("a bug")) is None


def test_exception_handler__a_query_the_database_refused__left_a_500():
    # Not an outage: an integrity error that escaped a service is a bug, and stays one.
    request = RequestFactory().get("/api/v1/overrides/")

    assert api_exception_handler(IntegrityError("duplicate key"), {"request": request}) is None


@pytest.mark.django_db
def test_schema__every_operation__documents_503_database_unavailable_in_the_one_error_format(api_client):
    schema = fetch_schema(api_client)

    for path, method, operation in operations(schema):
        response = operation["responses"].get("503")
        assert response, (method, path)
        assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (method, path)
        if "/breaker/" not in path:  # the breaker views document their own 503 (Redis down)
            assert "database_unavailable" in response["description"], (method, path)
