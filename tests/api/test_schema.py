"""The OpenAPI schema at /api/schema/ and Swagger UI at /api/docs/: served in JSON and YAML, a
valid OpenAPI 3 document that lists every route of the API, documents the one error format and
the bearer token, and a docs page that loads nothing from outside."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
import yaml
from django.conf import settings
from django.contrib.staticfiles import finders
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient
from rest_framework.views import APIView

from access.authentication import token_hash
from access.models import ApiToken, Scope

SCHEMA_URL = "/api/schema/"
DOCS_URL = "/api/docs/"
ERROR_REF = "#/components/schemas/ErrorResponse"
API_PREFIX = "/api/v1/"


def api_routes(prefix: str = API_PREFIX) -> dict[str, set[str]]:
    """Every DRF route under `prefix` that the URL resolver has, as an OpenAPI path, with the HTTP
    methods its view implements (HEAD and OPTIONS aside: Django and DRF answer those for all)."""
    routes: dict[str, set[str]] = {}
    for route, callback in _walk(get_resolver().url_patterns, prefix="/"):
        if route.startswith(prefix) and hasattr(callback, "cls") and issubclass(callback.cls, APIView):
            view = callback.cls
            methods = {name for name in view.http_method_names if hasattr(view, name)} - {"head", "options"}
            routes[route] = methods
    return routes


def _walk(patterns, prefix: str):
    for pattern in patterns:
        route = prefix + _openapi_route(str(pattern.pattern))
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern.callback


def _openapi_route(django_route: str) -> str:
    """`values/<str:key>/` → `values/{key}/` (regex routes stay as they are)."""
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", django_route)


def fetch_schema(client: APIClient) -> dict:
    response = client.get(SCHEMA_URL, {"format": "json"})
    assert response.status_code == 200, response.content
    return response.json()


def operations(schema: dict):
    for path, path_item in schema["paths"].items():
        for method, operation in path_item.items():
            yield path, method, operation


# Served -------------------------------------------------------------------------------------


def test_schema__format_json__an_openapi_3_document_in_json(api_client):
    response = api_client.get(SCHEMA_URL, {"format": "json"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "DynConfig API"
    assert schema["info"]["version"] == "1.0.0"


def test_schema__no_format__the_same_document_in_yaml(api_client):
    response = api_client.get(SCHEMA_URL)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert yaml.safe_load(response.content) == fetch_schema(api_client)


def test_schema__accept_json_as_swagger_ui_sends__json(api_client):
    response = api_client.get(SCHEMA_URL, HTTP_ACCEPT="application/json,*/*")

    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


def test_schema__validated_against_the_openapi_3_specification__valid(api_client):
    validate_schema(fetch_schema(api_client))  # raises on the first violation


# Complete ------------------------------------------------------------------------------------


def test_schema__every_api_route_of_the_url_resolver__documented_with_each_method(api_client):
    documented = {path: set(item) for path, item in fetch_schema(api_client)["paths"].items()}

    routes = api_routes()

    assert routes, "the URL resolver has no route under /api/v1/"
    missing = {
        route: sorted(methods - documented.get(route, set()))
        for route, methods in routes.items()
        if methods - documented.get(route, set())
    }
    assert not missing, f"routes missing from the schema (excluded, or a view it cannot read): {missing}"


def test_schema__documented_paths__all_under_the_api_and_routed(api_client):
    paths = set(fetch_schema(api_client)["paths"])

    assert paths <= set(api_routes()), paths - set(api_routes())


def test_schema__every_operation__documents_auth_errors_and_throttling_in_the_one_error_format(api_client):
    schema = fetch_schema(api_client)

    assert schema["components"]["schemas"]["ErrorResponse"]["required"] == ["error"]
    for path, method, operation in operations(schema):
        for status in ("401", "403", "429"):
            response = operation["responses"].get(status)
            assert response, (method, path, status)
            assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (method, path, status)


def test_schema__operations_with_a_path_parameter__document_404(api_client):
    for path, method, operation in operations(fetch_schema(api_client)):
        if "{" in path:
            assert "404" in operation["responses"], (method, path)


def test_schema__operations_that_take_input__document_400(api_client):
    for path, method, operation in operations(fetch_schema(api_client)):
        takes_query = any(parameter["in"] == "query" for parameter in operation.get("parameters", []))
        if takes_query or "requestBody" in operation:
            assert "400" in operation["responses"], (method, path)


def test_schema__operations_that_take_a_body__document_415(api_client):
    for path, method, operation in operations(fetch_schema(api_client)):
        if "requestBody" in operation:
            assert "415" in operation["responses"], (method, path)


def test_schema__token_authentication__a_bearer_scheme_every_operation_accepts(api_client):
    schema = fetch_schema(api_client)

    scheme = schema["components"]["securitySchemes"]["tokenAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, method, operation in operations(schema):
        assert {"tokenAuth": []} in operation["security"], (method, path)


@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_schema__reads_need_sign_in__no_operation_documented_as_open_to_anonymous_callers():
    schema = SchemaGenerator().get_schema(request=None, public=True)  # as `manage.py spectacular` makes it

    for path, method, operation in operations(schema):
        assert {} not in operation["security"], (method, path)


# (Where anonymous reads are allowed, which operations the schema documents as open is checked
# against the permission table: tests/api/test_permissions.py.)


# Who may read it ----------------------------------------------------------------------------


@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
@pytest.mark.parametrize("url", [SCHEMA_URL, f"{SCHEMA_URL}?format=json", DOCS_URL])
def test_schema_and_docs__anonymous_where_reads_need_sign_in__401_in_the_one_json_error_format(api_client, url):
    response = api_client.get(url)

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.django_db
@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_schema__read_token_where_reads_need_sign_in__served(api_client):
    ApiToken.objects.create(name="reader", prefix="reader00", token_hash=token_hash("reader-token"), scopes=[Scope.VALUES_READ])

    response = api_client.get(SCHEMA_URL, {"format": "json"}, HTTP_AUTHORIZATION="Bearer reader-token")

    assert response.status_code == 200


@pytest.mark.django_db
@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_schema__admin_session_as_swagger_ui_fetches_it__served_with_csrf_checks_on(django_user_model):
    """Swagger UI fetches the schema with the page's cookies (credentials: same-origin) and
    `Accept: application/json,*/*`, and no CSRF token: a GET needs none."""
    staff = django_user_model.objects.create_user("operator", password="unused-password", is_staff=True)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(staff)

    page = client.get(DOCS_URL)
    schema = client.get(SCHEMA_URL, HTTP_ACCEPT="application/json,*/*")

    assert page.status_code == 200
    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.")


# The docs page -------------------------------------------------------------------------------


class _AssetCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls.extend(value for name, value in attrs if name in ("src", "href") and value)


def test_docs__swagger_ui_page__html_that_points_at_the_schema(api_client):
    response = api_client.get(DOCS_URL)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert f'url: "{SCHEMA_URL}"' in response.content.decode()


def test_docs__every_src_and_href__a_local_static_file_that_exists(api_client):
    page = api_client.get(DOCS_URL).content.decode()
    collector = _AssetCollector()
    collector.feed(page)

    assert len(collector.urls) >= 4, collector.urls  # favicon, css, the bundle, the preset
    for url in collector.urls:
        assert url.startswith(f"/{settings.STATIC_URL.strip('/')}/"), url
        assert finders.find(url.removeprefix("/").removeprefix(settings.STATIC_URL.strip("/") + "/")), url


def test_docs__whole_page__names_no_external_url(api_client):
    page = api_client.get(DOCS_URL).content.decode()

    assert not re.search(r"(https?:)?//[\w.-]+\.\w", page), re.findall(r"(?:https?:)?//[^\s\"'<>]+", page)
