"""The planning endpoints over HTTP: the answer's shape with provenance, refusals in the one
error format (and nothing changed by them), unusable values as 409, who may call."""

from __future__ import annotations

import secrets

import pytest
from django.test import override_settings

from access.authentication import token_hash
from access.models import ApiToken
from tests.planning.conftest import CHANNELS, SOCIAL, set_value
from values.models import Override
from audit.models import AuditEntry

BUDGET_TIER_URL = "/api/v1/planning/budget-tier/"
PROJECTIONS_URL = "/api/v1/planning/projections/"
PROVENANCE_FIELDS = {"tier", "origin", "sources", "confidence", "fetched_at", "expires_at", "stale", "errors"}
ESTIMATE_FIELDS = {"spend", "clicks", "impressions", "conversions", "cost_per_conversion"}


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["status"] == status and error["code"] and error["message"]
    return error


def test_budget_tier_api__finance_budget__tier_thresholds_and_both_provenances(known_values, api_client):
    response = api_client.post(
        BUDGET_TIER_URL, {"monthly_budget": "10400.00", "region": "US", "industry": "finance"}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["tier"] == "small"  # 8000 × 1.3 = 10400: exactly at the threshold
    assert (body["monthly_budget"], body["multiplier"], body["region"]) == ("10400.00", "1.3", "us")
    assert body["effective_thresholds"] == {
        "micro": "1300.00", "small": "10400.00", "medium": "52000.00", "large": "390000.00", "enterprise": "1950000.00",
    }
    assert body["thresholds"]["small"] == "8000.00"
    assert body["notes"] == []
    assert set(body["provenance"]) == {"budget_thresholds", "industry_multipliers"}
    for provenance in body["provenance"].values():
        assert set(provenance) == PROVENANCE_FIELDS
        assert provenance["tier"] == "override"


def test_budget_tier_api__number_budget_no_industry__multipliers_provenance_null(known_values, api_client):
    response = api_client.post(BUDGET_TIER_URL, {"monthly_budget": 999.99}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["tier"], body["industry"], body["multiplier"]) == (None, None, "1")
    assert body["provenance"]["industry_multipliers"] is None
    assert "below the micro threshold" in body["notes"][0]


def test_projections_api__two_channels__estimates_totals_and_provenance(known_values, api_client):
    response = api_client.post(
        PROJECTIONS_URL,
        {"channels": {"search_advertising": "1000", "social_media": 333.33}, "region": "us"},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    search = body["channels"]["search_advertising"]
    assert set(search) == ESTIMATE_FIELDS | {"performance"}
    assert search["clicks"] == {"low": 125, "high": 666}
    assert search["conversions"] == {"low": "2.50", "high": "79.92"}
    assert search["cost_per_conversion"] == {"low": "12.51", "high": "400.00"}
    assert search["performance"]["cpc_range"] == ["1.5", "8.0"]
    assert set(body["totals"]) == ESTIMATE_FIELDS
    assert body["totals"]["spend"] == "1333.33"
    assert body["totals"]["cost_per_conversion"] == {"low": "11.78", "high": "348.13"}
    assert set(body["provenance"]["channel_performance"]) == PROVENANCE_FIELDS


def test_projections_api__largest_spend_and_rarest_conversions__answers_200_with_exact_amounts(known_values, api_client):
    rare = {"cpc_range": [999, 1000], "ctr_range": [0.5, 0.5], "conversion_rate_range": [1.5e-11, 1.5e-11]}
    set_value("channel_performance", {"search_advertising": rare})

    response = api_client.post(PROJECTIONS_URL, {"channels": {"search_advertising": "1000000000000.00"}}, format="json")

    assert response.status_code == 200, response.content
    search = response.json()["channels"]["search_advertising"]
    assert search["clicks"] == {"low": 1000000000, "high": 1001001001}
    assert search["conversions"] == {"low": "0.01", "high": "0.01"}  # 1e9 × 1.5e-11 = 0.015, down
    assert search["cost_per_conversion"] == {"low": "100000000000000.00", "high": "100000000000000.00"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "monthly_budget"),
        ({"monthly_budget": "-0.01"}, "monthly_budget"),
        ({"monthly_budget": "12.345"}, "monthly_budget"),
        ({"monthly_budget": "NaN"}, "monthly_budget"),
        ({"monthly_budget": "Infinity"}, "monthly_budget"),
        ({"monthly_budget": "lots"}, "monthly_budget"),
        ({"monthly_budget": True}, "monthly_budget"),
        ({"monthly_budget": "1000000000000.01"}, "monthly_budget"),
        ({"monthly_budget": 100, "region": "not a region!"}, "region"),
        ({"monthly_budget": 100, "industry": ["retail"]}, "industry"),
        ({"monthly_budget": 100, "industry": "x" * 65}, "industry"),
    ],
)
def test_budget_tier_api__bad_input__400_naming_the_field_and_nothing_changed(known_values, api_client, body, field):
    before = (Override.objects.count(), AuditEntry.objects.count())

    response = api_client.post(BUDGET_TIER_URL, body, format="json")

    error = error_of(response, 400)
    assert error["code"] == "invalid"
    assert list(error["fields"]) == [field]
    assert (Override.objects.count(), AuditEntry.objects.count()) == before


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"channels"}),
        ({"channels": {}}, {"channels"}),
        ({"channels": ["search_advertising"]}, {"channels"}),
        ({"channels": {"search_advertising": "-5"}}, {"channels"}),
        ({"channels": {"search_advertising": "NaN"}}, {"channels"}),
        ({"channels": {"not a channel": "5"}}, {"channels"}),
        ({"channels": {"": "5"}}, {"channels"}),
        ({"channels": {"search_advertising": "1e400"}}, {"channels"}),
        ({"channels": {"search_advertising": 5}, "region": {"us": 1}}, {"region"}),
    ],
)
def test_projections_api__bad_input__400_naming_the_field_and_nothing_changed(known_values, api_client, body, fields):
    before = (Override.objects.count(), AuditEntry.objects.count())

    response = api_client.post(PROJECTIONS_URL, body, format="json")

    assert set(error_of(response, 400)["fields"]) == fields
    assert (Override.objects.count(), AuditEntry.objects.count()) == before


def test_projections_api__unknown_channel__400_listing_the_known_channels(known_values, api_client):
    response = api_client.post(PROJECTIONS_URL, {"channels": {"search_advertising": 5, "radio": 5}}, format="json")

    fields = error_of(response, 400)["fields"]
    assert fields == {"channels": {"radio": ["unknown channel 'radio' (allowed: search_advertising, social_media)"]}}


@pytest.mark.parametrize(
    "body", [b"[1, 2]", b'"budget"', b"{not json", b'{"monthly_budget": 1e400, "channels": {"x": -1e400}}']
)
def test_planning_apis__body_not_an_object__400_in_the_error_format(known_values, api_client, body):
    for url in (BUDGET_TIER_URL, PROJECTIONS_URL):
        error_of(api_client.post(url, body, content_type="application/json"), 400)


def test_projections_api__value_with_zero_ctr__409_unusable_value_naming_it(known_values, api_client):
    set_value("channel_performance", {**CHANNELS, "social_media": {**SOCIAL, "ctr_range": [0, 0.04]}})

    response = api_client.post(PROJECTIONS_URL, {"channels": {"social_media": 100}}, format="json")

    error = error_of(response, 409)
    assert error["code"] == "unusable_value"
    assert "social_media.ctr_range" in error["message"]


@pytest.mark.parametrize("url", [BUDGET_TIER_URL, PROJECTIONS_URL])
def test_planning_apis__get__405_in_the_error_format(known_values, api_client, url):
    error_of(api_client.get(url), 405)


@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_planning_apis__anonymous_without_anonymous_reads__refused(known_values, api_client):
    response = api_client.post(BUDGET_TIER_URL, {"monthly_budget": 100}, format="json")

    assert response.status_code in (401, 403)
    error_of(response, response.status_code)


@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_planning_apis__token_with_values_read__answers_200(known_values, api_client):
    token = secrets.token_urlsafe(32)
    ApiToken.objects.create(name="planner", prefix=token[:8], token_hash=token_hash(token), scopes=["values:read"])
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    budget = api_client.post(BUDGET_TIER_URL, {"monthly_budget": 100}, format="json")
    projection = api_client.post(PROJECTIONS_URL, {"channels": {"search_advertising": 100}}, format="json")

    assert (budget.status_code, projection.status_code) == (200, 200)
