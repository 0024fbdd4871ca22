"""The read API over HTTP: value types, one resolved value with its provenance, caching headers,
errors in the one JSON format, and who may read. Sources are local servers; PostgreSQL and Redis
are real."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from django.test import override_settings

from tests.api.conftest import BUDGET_SOURCES
from tests.values.conftest import BUDGET, reload_engine, serve_sources
from values.models import ValueType
from values.services import override_create

VALUE_TYPES_URL = "/api/v1/values/"
BUDGET_URL = "/api/v1/values/budget_thresholds/"
US_RETAIL = {"region": "us", "industry": "retail"}
ANSWER_FIELDS = {"key", "context", "value", "provenance"}
PROVENANCE_FIELDS = {
    "tier", "origin", "sources", "confidence", "fetched_at", "expires_at", "stale", "errors",
    # Issue 12: why a degraded answer, whether a refresh is running, a widened answer's context,
    # a predicted answer's history window (null when they do not apply).
    "reason", "refreshing", "context_used", "window",
}
SOURCE_USE_FIELDS = {"name", "weight", "confidence", "fetched_at"}
ISO_DURATION = re.compile(r"^P(?!$)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None, f"{text} has no time zone"
    return moment


def max_age(response) -> int:
    match = re.fullmatch(r"max-age=(\d+)", response["Cache-Control"])
    assert match, response["Cache-Control"]
    return int(match.group(1))


def assert_json_error(response, status: int, code: str | None = None) -> dict:
    """The response is the API's one error format with `status`; returns `error`."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    assert b"<html" not in response.content.lower()
    error = response.json()["error"]
    assert error["status"] == status
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


# The value types ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_value_type_list_shows_the_three_builtin_types_with_their_configuration(engine, api_client):
    response = api_client.get(VALUE_TYPES_URL)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    types = {entry["key"]: entry for entry in response.json()}
    assert set(types) == {"budget_thresholds", "industry_multipliers", "channel_performance"}
    for entry in types.values():
        assert set(entry) == {
            "key", "aliases", "description", "context_keys", "update_frequency", "ttl", "max_staleness", "sources",
        }
        assert isinstance(entry["description"], str) and entry["description"]
        for duration in ("update_frequency", "ttl", "max_staleness"):
            assert ISO_DURATION.match(entry[duration]), (entry["key"], duration, entry[duration])
        assert entry["sources"], entry["key"]
        for source in entry["sources"]:
            assert set(source) == {"name", "tier", "weight", "channels"}
            assert source["tier"] in ("primary", "secondary", "tertiary")
            assert isinstance(source["weight"], float)
            assert isinstance(source["channels"], list)

    budget = types["budget_thresholds"]
    assert budget["aliases"] == ["budget_classification"]
    assert budget["context_keys"] == ["region", "industry"]
    assert budget["update_frequency"] == "PT6H"
    assert budget["ttl"] == "PT5M"  # test.yaml: default_ttl 300
    assert budget["max_staleness"] == "P7D"
    assert {(s["name"], s["tier"], s["weight"]) for s in budget["sources"]} == {
        ("market_research_api", "primary", 0.6),
        ("industry_benchmarks_api", "primary", 0.4),
        ("world_bank_api", "secondary", 1.0),
    }
    assert types["industry_multipliers"]["update_frequency"] == "P1D"
    channels = types["channel_performance"]
    assert channels["update_frequency"] == "PT1H"
    assert {s["name"]: s["channels"] for s in channels["sources"]} == {
        "google_ads_api": ["search_advertising"],
        "facebook_marketing_api": ["social_media"],
        "email_intelligence_api": ["email_marketing"],
        "semrush_api": ["search_advertising"],
    }


# One resolved value ------------------------------------------------------------------------


@pytest.mark.django_db
def test_value_read_with_sources_up_answers_the_contract_fields_from_primary_then_from_l1(
    budget_server, api_client
):
    before = datetime.now().astimezone()
    first = api_client.get(BUDGET_URL, US_RETAIL)

    assert first.status_code == 200, first.content
    assert first["Content-Type"] == "application/json"
    body = first.json()
    assert set(body) == ANSWER_FIELDS
    assert body["key"] == "budget_thresholds"
    assert body["context"] == {"industry": "retail", "region": "us"}
    assert body["value"] == pytest.approx(BUDGET)
    provenance = body["provenance"]
    assert set(provenance) == PROVENANCE_FIELDS
    assert provenance["tier"] == "primary"
    assert provenance["origin"] == "primary"
    assert provenance["stale"] is False
    assert provenance["errors"] == []
    assert isinstance(provenance["confidence"], float) and 0 < provenance["confidence"] <= 1
    fetched_at = parse_time(provenance["fetched_at"])
    expires_at = parse_time(provenance["expires_at"])
    assert before - timedelta(seconds=1) <= fetched_at < expires_at
    assert expires_at - fetched_at <= timedelta(minutes=5, seconds=5)
    assert sorted(use["name"] for use in provenance["sources"]) == sorted(BUDGET_SOURCES)
    weights = {use["name"]: use["weight"] for use in provenance["sources"]}
    assert weights == {"market_research_api": 0.6, "industry_benchmarks_api": 0.4}
    for use in provenance["sources"]:
        assert set(use) == SOURCE_USE_FIELDS
        assert isinstance(use["confidence"], float) and 0 <= use["confidence"] <= 1
        parse_time(use["fetched_at"])
    assert budget_server.calls("/v1/budget-benchmarks") == 1
    assert budget_server.calls("/benchmarks/budget-tiers") == 1

    second = api_client.get(BUDGET_URL, US_RETAIL)

    assert second.status_code == 200
    assert second.json()["provenance"]["tier"] == "l1"
    assert second.json()["value"] == body["value"]
    assert budget_server.calls() == 2  # served from the cache, no new upstream call


@pytest.mark.django_db
def test_value_read_sends_max_age_of_the_remaining_ttl_and_a_weak_etag(budget_server, api_client):
    response = api_client.get(BUDGET_URL, US_RETAIL)

    ttl = ValueType.objects.get(key="budget_thresholds").ttl.total_seconds()
    assert 0 < max_age(response) <= ttl
    expires_at = parse_time(response.json()["provenance"]["expires_at"])
    remaining = (expires_at - datetime.now().astimezone()).total_seconds()
    assert abs(max_age(response) - remaining) <= 2
    assert re.fullmatch(r'W/"[0-9a-f]+"', response["ETag"]), response["ETag"]


@pytest.mark.django_db
def test_value_read_with_matching_if_none_match_answers_304_without_body(budget_server, api_client):
    first = api_client.get(BUDGET_URL, US_RETAIL)
    etag = first["ETag"]

    repeat = api_client.get(BUDGET_URL, US_RETAIL, HTTP_IF_NONE_MATCH=etag)

    assert repeat.status_code == 304
    assert repeat.content == b""
    assert repeat["ETag"] == etag  # the same although this one came from l1, not primary
    assert "max-age=" in repeat["Cache-Control"]


@pytest.mark.django_db
def test_value_read_with_a_list_of_etags_or_strong_form_in_if_none_match_answers_304(budget_server, api_client):
    etag = api_client.get(BUDGET_URL, US_RETAIL)["ETag"]
    strong = etag.removeprefix("W/")

    listed = api_client.get(BUDGET_URL, US_RETAIL, HTTP_IF_NONE_MATCH=f'W/"0000", {etag}')
    weak_comparison = api_client.get(BUDGET_URL, US_RETAIL, HTTP_IF_NONE_MATCH=strong)
    star = api_client.get(BUDGET_URL, US_RETAIL, HTTP_IF_NONE_MATCH="*")

    assert listed.status_code == 304
    assert weak_comparison.status_code == 304  # If-None-Match uses the weak comparison (RFC 9110)
    assert star.status_code == 304


@pytest.mark.django_db
def test_value_read_with_a_stale_etag_answers_200(budget_server, api_client):
    response = api_client.get(BUDGET_URL, US_RETAIL, HTTP_IF_NONE_MATCH='W/"0123456789abcdef0123"')

    assert response.status_code == 200
    assert response.json()["value"] == pytest.approx(BUDGET)


@pytest.mark.django_db
def test_value_read_after_an_override_changes_the_etag_and_old_if_none_match_gets_200(
    budget_server, api_client
):
    old_etag = api_client.get(BUDGET_URL, US_RETAIL)["ETag"]
    overridden = {name: number * 2 for name, number in BUDGET.items()}
    override_create(
        value_type=ValueType.objects.get(key="budget_thresholds"),
        value=overridden,
        reason="campaign season",
        actor="test",
        channel="api",
        context_match={"region": "us"},
    )
    reload_engine()

    response = api_client.get(BUDGET_URL, US_RETAIL, HTTP_IF_NONE_MATCH=old_etag)

    assert response.status_code == 200
    assert response["ETag"] != old_etag
    assert response.json()["value"] == overridden
    assert response.json()["provenance"]["tier"] == "override"
    assert api_client.get(BUDGET_URL, US_RETAIL, HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304


@pytest.mark.django_db
def test_value_read_by_alias_answers_with_the_canonical_key(budget_server, api_client):
    response = api_client.get("/api/v1/values/budget_classification/", US_RETAIL)

    assert response.status_code == 200
    assert response.json()["key"] == "budget_thresholds"
    assert response.json()["value"] == pytest.approx(BUDGET)


@pytest.mark.django_db
def test_value_read_of_two_channels_with_sources_down_answers_exactly_those_channels(sources_down, api_client):
    response = api_client.get(
        "/api/v1/values/channel_performance/", {"channels": "social_media,search_advertising", "region": "us"}
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["context"]["channels"] == ["search_advertising", "social_media"]
    assert set(body["value"]) == {"search_advertising", "social_media"}  # only what was asked
    for channel in ("search_advertising", "social_media"):
        assert set(body["value"][channel]) >= {"ctr_range", "cpc_range", "conversion_rate_range"}
    assert body["provenance"]["tier"] == "fallback"


@pytest.mark.django_db
def test_value_read_with_every_source_down_answers_200_fallback_with_errors_and_zero_confidence(
    sources_down, api_client
):
    response = api_client.get(BUDGET_URL, US_RETAIL)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["value"] == ValueType.objects.get(key="budget_thresholds").fallback_value
    provenance = body["provenance"]
    assert provenance["tier"] == "fallback"
    assert provenance["confidence"] == 0
    assert provenance["sources"] == []
    assert provenance["fetched_at"] is None
    assert provenance["stale"] is False
    assert provenance["errors"], "a fallback answer must say why the sources gave nothing"
    errors = " ".join(provenance["errors"])
    for name in BUDGET_SOURCES:
        assert name in errors
    assert 0 < max_age(response) <= 300


@pytest.mark.django_db
def test_value_read_with_channels_repeated_as_parameters_keeps_every_channel(sources_down, api_client):
    response = api_client.get(
        "/api/v1/values/channel_performance/?channels=search_advertising&channels=social_media"
    )

    assert response.status_code == 200, response.content
    assert response.json()["context"]["channels"] == ["search_advertising", "social_media"]


@pytest.mark.django_db
def test_value_read_with_a_one_name_key_repeated_answers_400(engine, api_client):
    error = assert_json_error(api_client.get(BUDGET_URL + "?region=us&region=eu"), 400)

    assert "region" in " ".join(error["fields"]["context"])


# Errors: one JSON format, never HTML --------------------------------------------------------


@pytest.mark.django_db
def test_value_read_of_unknown_key_answers_404_naming_the_key(engine, api_client):
    error = assert_json_error(api_client.get("/api/v1/values/no_such_value/"), 404, "not_found")

    assert "no_such_value" in error["message"]


@pytest.mark.django_db
def test_value_read_with_unknown_context_key_answers_400_naming_it_and_the_allowed_keys(engine, api_client):
    error = assert_json_error(api_client.get(BUDGET_URL, {"colour": "red"}), 400)

    messages = " ".join(error["fields"]["context"])
    assert "colour" in messages
    assert "region" in messages and "industry" in messages


@pytest.mark.django_db
def test_value_read_with_a_context_value_that_is_not_a_name_answers_400(engine, api_client):
    error = assert_json_error(api_client.get(BUDGET_URL + "?region=%3Cscript%3E"), 400)

    assert "region" in " ".join(error["fields"]["context"])


@pytest.mark.django_db
def test_unknown_url_under_api_answers_404_json(engine, api_client):
    error = assert_json_error(api_client.get("/api/v1/nope/"), 404, "not_found")

    assert "/api/v1/nope/" in error["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", [BUDGET_URL, VALUE_TYPES_URL])
def test_post_to_a_read_endpoint_answers_405_json(engine, api_client, url):
    response = api_client.post(url, {"value": 1}, format="json")

    assert_json_error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


# Who may read -------------------------------------------------------------------------------


def test_anonymous_reads_are_allowed_in_the_test_environment(settings):
    assert settings.DYNCONFIG_ANONYMOUS_READS is True


@pytest.mark.django_db
@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
@pytest.mark.parametrize("url", [BUDGET_URL, VALUE_TYPES_URL])
def test_anonymous_read_without_anonymous_reads_is_refused_with_json_error(engine, api_client, url):
    response = api_client.get(url)

    assert response.status_code in (401, 403)
    assert_json_error(response, response.status_code)


@pytest.mark.django_db
@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_signed_in_read_without_anonymous_reads_answers_200(budget_server, api_client, django_user_model):
    api_client.force_login(django_user_model.objects.create_user("reader", password="not-used-here"))

    response = api_client.get(BUDGET_URL, US_RETAIL)

    assert response.status_code == 200
    assert response.json()["value"] == pytest.approx(BUDGET)
    assert api_client.get(VALUE_TYPES_URL).status_code == 200



@pytest.mark.django_db
@override_settings(DEBUG=True)
def test_unknown_url_under_api_with_debug_on_answers_404_json(engine, api_client):
    response = api_client.get("/api/v2/anything/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_value_read_with_a_source_echoing_its_planted_credential__secret_in_no_response(
    engine, local_server, api_client, monkeypatch
):
    secret = "planted-api-secret-5c1e"
    monkeypatch.setenv("MARKET_RESEARCH_API_KEY", secret)
    monkeypatch.setenv("INDUSTRY_BENCHMARKS_API_KEY", secret)
    # Both sources refuse, echoing every header they got (the Bearer secret included).
    local_server.serve_all(lambda request: (401, {"Content-Type": "application/json"}, {"echo": request.headers}))
    serve_sources(local_server, *BUDGET_SOURCES)

    responses = [
        api_client.get(BUDGET_URL, {"region": "us", "industry": "retail"}),
        api_client.get(VALUE_TYPES_URL),
        api_client.get("/api/v1/values/budget_thresholds/", {"colour": secret}),
    ]

    assert local_server.calls() >= 2  # the sources were really asked
    assert responses[0].json()["provenance"]["tier"] == "fallback"
    for response in responses:
        assert secret not in response.content.decode()
