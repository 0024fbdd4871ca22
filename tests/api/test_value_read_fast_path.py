"""The read endpoint serves the answer's JSON as made once (Answer.as_json), not through DRF's
serializer and renderer: the body must be byte for byte what the renderer would make, with the
same headers, and DRF still renders what its renderer alone can (a media type with parameters)."""

from __future__ import annotations

import jsonschema
import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient
from rest_framework.views import APIView

from tests.api.test_values_api import (
    ANSWER_FIELDS,
    BUDGET_URL,
    PROVENANCE_FIELDS,
    US_RETAIL,
)
from tests.tokens import token_client
from values import get_value


def test_value_read__l1_hit__body_is_byte_for_byte_drfs_rendering_of_the_answer(budget_server, api_client):
    api_client.get(BUDGET_URL, US_RETAIL)  # fetched: the answer is now in L1

    response = api_client.get(BUDGET_URL, US_RETAIL)

    answer = get_value("budget_thresholds", US_RETAIL)
    assert answer.provenance.tier == "l1"
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.content == JSONRenderer().render(answer.as_dict())
    assert set(response.json()) == ANSWER_FIELDS
    assert set(response.json()["provenance"]) == PROVENANCE_FIELDS
    assert response["ETag"] == f'W/"{answer.version()}"'
    assert response["Cache-Control"].startswith("max-age=")


def test_value_read__json_with_indent_asked__drf_renders_it_as_before(budget_server, api_client):
    response = api_client.get(BUDGET_URL, US_RETAIL, HTTP_ACCEPT="application/json; indent=2")

    assert response.status_code == 200
    assert response.content.startswith(b'{\n  "key"')
    assert set(response.json()) == ANSWER_FIELDS


def test_value_read__if_none_match__304_without_body_or_content_type(budget_server, api_client):
    etag = api_client.get(BUDGET_URL, US_RETAIL)["ETag"]

    repeat = api_client.get(BUDGET_URL, US_RETAIL, HTTP_IF_NONE_MATCH=etag)

    assert repeat.status_code == 304
    assert repeat.content == b""
    assert repeat["ETag"] == etag
    assert "Content-Type" not in repeat


# The plain path (values.apis._plain_read) answers a token's or an anonymous client's JSON read
# without DRF's dispatch; everything else goes through DRF. Both must give the same response.
# `Accept: application/json, text/html` is negotiated by DRF to plain JSON, so it takes DRF's
# path to the very same answer.
THROUGH_DRF = {"HTTP_ACCEPT": "application/json, text/html"}


@pytest.fixture
def drf_dispatches(monkeypatch):
    """The requests that went through DRF's dispatch (APIView.initial), by path."""
    seen: list[str] = []
    initial = APIView.initial

    def recording_initial(view, request, *args, **kwargs):
        seen.append(request.path)
        return initial(view, request, *args, **kwargs)

    monkeypatch.setattr(APIView, "initial", recording_initial)
    return seen


def _comparable(response) -> tuple[int, bytes, dict[str, str]]:
    headers = {name: value for name, value in response.items() if name != "X-Request-ID"}
    return response.status_code, response.content, headers


@pytest.mark.django_db
def test_value_read__token__plain_path_answers_as_drf_would_without_its_dispatch(budget_server, drf_dispatches):
    client = token_client("reader", ["values:read"])
    client.get(BUDGET_URL, US_RETAIL)  # fetched: later reads are L1 hits with one version

    plain = client.get(BUDGET_URL, US_RETAIL)
    assert drf_dispatches == []
    through_drf = client.get(BUDGET_URL, US_RETAIL, **THROUGH_DRF)

    assert drf_dispatches == [BUDGET_URL]
    assert plain.status_code == 200
    assert _comparable(plain) == _comparable(through_drf)
    assert plain["Allow"] == "GET, HEAD, OPTIONS"
    assert plain["X-Frame-Options"] == "DENY"
    assert plain["Content-Length"] == str(len(plain.content))


@pytest.mark.django_db
def test_value_read__anonymous__plain_path_answers_as_drf_would(budget_server, drf_dispatches):
    client = APIClient()
    client.get(BUDGET_URL, US_RETAIL)

    plain = client.get(BUDGET_URL, US_RETAIL)
    through_drf = client.get(BUDGET_URL, US_RETAIL, **THROUGH_DRF)

    assert drf_dispatches == [BUDGET_URL]
    assert plain.status_code == 200
    assert _comparable(plain) == _comparable(through_drf)


@pytest.mark.django_db
def test_value_read__token_with_if_none_match__plain_304_equals_drfs(budget_server, drf_dispatches):
    client = token_client("reader", ["values:read"])
    etag = client.get(BUDGET_URL, US_RETAIL)["ETag"]

    plain = client.get(BUDGET_URL, US_RETAIL, HTTP_IF_NONE_MATCH=etag)
    through_drf = client.get(BUDGET_URL, US_RETAIL, HTTP_IF_NONE_MATCH=etag, **THROUGH_DRF)

    assert drf_dispatches == [BUDGET_URL]
    assert plain.status_code == 304
    assert "Content-Type" not in plain
    assert _comparable(plain) == _comparable(through_drf)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("credentials", "query", "status", "code"),
    [
        ({"HTTP_AUTHORIZATION": "Bearer not-a-token"}, US_RETAIL, 401, "authentication_failed"),
        ({"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"}, US_RETAIL, 401, "not_authenticated"),
        ({}, {"planet": "mars"}, 400, "invalid"),
    ],
    ids=["unknown_token", "other_scheme", "bad_context"],
)
def test_value_read__refused__drf_answers_in_the_error_format(
    budget_server, drf_dispatches, credentials, query, status, code
):
    client = token_client("reader", ["values:read"]) if not credentials else APIClient()
    with override_settings(DYNCONFIG_ANONYMOUS_READS=False):
        response = client.get(BUDGET_URL, query, **credentials)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert drf_dispatches == [BUDGET_URL]


@pytest.mark.django_db
def test_value_read__unknown_key_with_token__404_in_the_error_format(engine, drf_dispatches):
    response = token_client("reader", ["values:read"]).get("/api/v1/values/no_such_type/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert drf_dispatches == ["/api/v1/values/no_such_type/"]


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["token", "anonymous"])
def test_value_read__client_over_its_rate__429_with_retry_after(budget_server, drf_dispatches, who):
    client = token_client("reader", ["values:read"]) if who == "token" else APIClient()
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"read": "2/min", "write": None}}):
        statuses = [client.get(BUDGET_URL, US_RETAIL).status_code for _ in range(3)]
        refused = client.get(BUDGET_URL, US_RETAIL)

    assert statuses == [200, 200, 429]
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "throttled"


@pytest.mark.django_db
def test_value_read__staff_session__goes_through_drf_and_answers_the_same(budget_server, admin_client, drf_dispatches):
    anonymous = APIClient().get(BUDGET_URL, US_RETAIL)
    session = admin_client.get(BUDGET_URL, US_RETAIL)

    assert drf_dispatches == [BUDGET_URL]  # the anonymous read took the plain path
    assert session.status_code == anonymous.status_code == 200
    assert session.json()["value"] == anonymous.json()["value"]


def _nullable_as_json_schema(node):
    """OpenAPI 3.0's `nullable: true` as JSON Schema's null type, throughout a schema."""
    if isinstance(node, list):
        return [_nullable_as_json_schema(each) for each in node]
    if not isinstance(node, dict):
        return node
    converted = {name: _nullable_as_json_schema(each) for name, each in node.items() if name != "nullable"}
    if node.get("nullable") is True:
        converted = {"anyOf": [converted, {"type": "null"}]}
    return converted


@pytest.mark.django_db
@pytest.mark.parametrize("client_kind", ["token", "anonymous"])
def test_value_read__plain_path__body_matches_the_openapi_schemas_answer(budget_server, client_kind):
    client = token_client("reader", ["values:read"]) if client_kind == "token" else APIClient()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/v1/values/{key}/"]["get"]
    answer_schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    client.get(BUDGET_URL, US_RETAIL)

    body = client.get(BUDGET_URL, US_RETAIL).json()  # an L1 hit, through the read lane

    assert body["provenance"]["tier"] == "l1"
    document = _nullable_as_json_schema({**answer_schema, "components": schema["components"]})
    jsonschema.validate(body, document)
    # And the schema is not vacuous: a body without its provenance is refused.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({key: value for key, value in body.items() if key != "provenance"}, document)
