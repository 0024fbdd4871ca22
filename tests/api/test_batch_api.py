"""Batch reads over HTTP: many values in one request, in request order, each the same JSON as
GET values/{key}/ or that read's own error; a malformed batch is refused whole."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tests.api.conftest import budget_server, sources_down  # noqa: F401
from tests.api.operator_fixtures import reader  # noqa: F401
from tests.api.test_values_api import ANSWER_FIELDS, assert_json_error
from tests.values.conftest import BUDGET

BATCH_URL = "/api/v1/values/batch/"
US_RETAIL = {"region": "us", "industry": "retail"}


@pytest.mark.django_db
def test_value_batch_read__answers_and_errors__one_result_per_read_in_request_order(budget_server, api_client):
    api_client.get("/api/v1/values/budget_thresholds/", US_RETAIL)  # fetched now, in l1 after
    reads = [
        {"key": "budget_thresholds", "context": US_RETAIL},
        {"key": "no_such_type", "context": {"region": "us"}},
        {"key": "budget_thresholds", "context": {"colour": "red"}},
        {"key": "budget_classification", "context": {"industry": "retail", "region": "us"}},
    ]

    response = api_client.post(BATCH_URL, {"reads": reads}, format="json")

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert len(results) == 4
    single = api_client.get("/api/v1/values/budget_thresholds/", US_RETAIL).json()
    assert results[0] == single  # the same JSON as GET values/{key}/ (both served by l1)
    assert results[1] == {
        "key": "no_such_type",
        "context": {"region": "us"},
        "error": {"status": 404, "code": "not_found", "message": "unknown value type 'no_such_type'"},
    }
    assert set(results[2]) == {"key", "context", "error"}
    assert results[2]["error"]["status"] == 400
    assert results[2]["error"]["code"] == "invalid_context"
    assert "colour" in results[2]["error"]["message"]
    assert results[3]["key"] == "budget_thresholds"  # an alias answers under the canonical key
    assert results[3]["value"] == pytest.approx(BUDGET)
    assert budget_server.calls() == 2  # fetched once, by the single read


@pytest.mark.django_db
def test_value_batch_read__channels_as_a_list_and_no_context__answers(sources_down, api_client):  # noqa: F811
    response = api_client.post(
        BATCH_URL,
        {"reads": [
            {"key": "channel_performance", "context": {"channels": ["social_media", "search_advertising"]}},
            {"key": "industry_multipliers"},
        ]},
        format="json",
    )

    assert response.status_code == 200, response.content
    channels, multipliers = response.json()["results"]
    assert set(channels) == ANSWER_FIELDS
    assert channels["context"]["channels"] == ["search_advertising", "social_media"]
    assert set(channels["value"]) == {"search_advertising", "social_media"}
    assert set(multipliers) == ANSWER_FIELDS
    assert multipliers["context"] == {}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "read",
    [
        {"key": "industry_multipliers", "context": {"region": None}},
        {"key": "industry_multipliers", "context": {"region": {"name": "us"}}},
        {"key": "industry_multipliers", "context": {"region": "<script>"}},
        {"key": "channel_performance", "context": {"channels": 5}},
    ],
)
def test_value_batch_read__one_bad_context__that_read_alone_answers_400(sources_down, api_client, read):  # noqa: F811
    good = {"key": "industry_multipliers", "context": {"region": "us"}}

    response = api_client.post(BATCH_URL, {"reads": [good, read]}, format="json")

    assert response.status_code == 200, response.content
    answered, refused = response.json()["results"]
    assert set(answered) == ANSWER_FIELDS
    assert refused["key"] == read["key"] and refused["context"] == read["context"]
    assert refused["error"]["status"] == 400 and refused["error"]["code"] == "invalid_context"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "reads"),
        ({"reads": []}, "reads"),
        ({"reads": [{"key": "industry_multipliers"}] * 101}, "reads"),
        ({"reads": [{"context": {"region": "us"}}]}, "reads"),
        ({"reads": [{"key": "industry_multipliers", "context": "region=us"}]}, "reads"),
        ({"reads": "budget_thresholds"}, "reads"),
    ],
)
def test_value_batch_read__malformed_batch__400_naming_reads(engine, api_client, body, field):
    error = assert_json_error(api_client.post(BATCH_URL, body, format="json"), 400, "invalid")

    assert field in error["fields"]


@pytest.mark.django_db
def test_value_batch_read__a_hundred_reads__all_answered(sources_down, api_client):  # noqa: F811
    response = api_client.post(BATCH_URL, {"reads": [{"key": "industry_multipliers"}] * 100}, format="json")

    assert response.status_code == 200
    assert len(response.json()["results"]) == 100


@pytest.mark.django_db
def test_value_batch_read__get__405(engine, api_client):
    assert_json_error(api_client.get(BATCH_URL), 405, "method_not_allowed")


@pytest.mark.django_db
@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_value_batch_read__anonymous_without_anonymous_reads__401_and_read_token__200(sources_down, reader):  # noqa: F811
    body = {"reads": [{"key": "industry_multipliers"}]}

    assert_json_error(APIClient().post(BATCH_URL, body, format="json"), 401)
    assert reader.post(BATCH_URL, body, format="json").status_code == 200
