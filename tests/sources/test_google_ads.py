"""The Google Ads source, through `call_source` against a local server speaking the REST API.

Success runs against the simulator (`serve_simulator`); the derivation's arithmetic, pagination,
errors and malformed answers use canned routes with known numbers.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Mapping
from typing import Any

import pytest

from sources.adapters.base import ErrorKind, SourceCall, SourceConfig, SourceError, SourceResult
from sources.calls import call_source
from sources.simulators import SimRequest
from sources.simulators.google_ads import simulate
from tests.servers import LocalServer, RecordedRequest
from tests.sources.conftest import serve_simulator
from values.builtins import BUILTIN_VALUE_TYPES
from core.validation import ValueRules, value_problems

TOKEN = "ya29.planted-google-token-4d1c"
TOKEN_VARIABLE = "TEST_GOOGLE_ADS_ACCESS_TOKEN"
CUSTOMER_VARIABLE = "TEST_GOOGLE_ADS_CUSTOMER_ID"
LOGIN_VARIABLE = "TEST_GOOGLE_ADS_LOGIN_CUSTOMER_ID"
CUSTOMER_ID = "1234567890"  # configured as 123-456-7890, as the Ads UI shows it
IDEAS_PATH = f"/v25/customers/{CUSTOMER_ID}:generateKeywordIdeas"
SEARCH_PATH = f"/v25/customers/{CUSTOMER_ID}/googleAds:search"
FALLBACK = BUILTIN_VALUE_TYPES["channel_performance"]["fallback"]
CHANNEL_PERFORMANCE = BUILTIN_VALUE_TYPES["channel_performance"]


US_RETAIL = {"region": "us", "industry": "retail", "channels": ["search_advertising"]}


def make_call(
    server: LocalServer,
    *,
    template: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    channels: tuple[str, ...] = ("search_advertising",),
    budget: float = 3.0,
    read_timeout: float = 1.0,
) -> SourceCall:
    source = SourceConfig(
        name="google_ads_api",
        kind="google_ads",
        base_url=server.url,
        credential_variables={"access_token": TOKEN_VARIABLE, "customer_id": CUSTOMER_VARIABLE},
        connect_timeout=1.0,
        read_timeout=read_timeout,
        request_template=template if template is not None else {"login_customer_id_variable": LOGIN_VARIABLE},
    )
    return SourceCall(
        source=source,
        value_type="channel_performance",
        context=context if context is not None else US_RETAIL,
        params=params or {},
        channels=channels,
        timeout_budget=budget,
        reference=FALLBACK,
    )


def fail(call: SourceCall) -> SourceError:
    with pytest.raises(SourceError) as caught:
        call_source(call)
    return caught.value


def idea(low: int | None = None, high: int | None = None, index: int | None = None, level: str | None = None) -> dict:
    """A keyword idea as the API sends it: int64 as strings, absent fields left out."""
    metrics: dict[str, Any] = {"avgMonthlySearches": "1000"}
    if low is not None:
        metrics["lowTopOfPageBidMicros"] = str(low)
    if high is not None:
        metrics["highTopOfPageBidMicros"] = str(high)
    if index is not None:
        metrics["competitionIndex"] = str(index)
    if level is not None:
        metrics["competition"] = level
    return {"text": "running shoes", "keywordIdeaMetrics": metrics}


INT64_METRICS = ("impressions", "clicks", "costMicros")


def row(**metrics: Any) -> dict:
    """A campaign row; int64 metrics (impressions, clicks) as strings, doubles as numbers."""
    encoded = {name: str(value) if name in INT64_METRICS else value for name, value in metrics.items()}
    return {"campaign": {"resourceName": f"customers/{CUSTOMER_ID}/campaigns/1", "id": "1"}, "metrics": encoded}


IDEAS = [idea(620_000, 2_150_000, 100, "HIGH"), idea(480_000, 1_730_000, 58, "MEDIUM")]
ROWS = [row(impressions=1000, clicks=50, ctr=0.05, conversions=4, conversionsFromInteractionsRate=0.08)]


def serve(server: LocalServer, ideas: list | None = None, rows: list | None = None) -> None:
    """One page of each endpoint; an empty list leaves `results` out, as the API does."""
    ideas = IDEAS if ideas is None else ideas
    rows = ROWS if rows is None else rows
    server.route("POST", IDEAS_PATH, json={"results": ideas, "totalSize": str(len(ideas))} if ideas else {})
    server.route("POST", SEARCH_PATH, json={"results": rows, "fieldMask": "metrics.ctr"} if rows else {})


def bodies(server: LocalServer, path: str) -> list[dict]:
    return [json.loads(request.body) for request in server.requests if request.path == path]


def lognormal_quartiles(p20: float, p80: float) -> tuple[float, float]:
    """The expected conversion, computed independently with NormalDist."""
    z80, z75 = statistics.NormalDist().inv_cdf(0.8), statistics.NormalDist().inv_cdf(0.75)
    mu, sigma = (math.log(p20) + math.log(p80)) / 2, (math.log(p80) - math.log(p20)) / (2 * z80)
    return math.exp(mu - z75 * sigma), math.exp(mu + z75 * sigma)


def rpc_error(
    code: int, status: str, *, codes: Mapping[str, str] | None = None, retry_delay: str | None = None
) -> dict:
    error: dict[str, Any] = {"code": code, "message": "Something went wrong.", "status": status}
    if codes or retry_delay:
        failure: dict[str, Any] = {"errorCode": dict(codes or {}), "message": "Details."}
        if retry_delay:
            failure["details"] = {"quotaErrorDetails": {"rateScope": "DEVELOPER", "retryDelay": retry_delay}}
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.ads.googleads.v25.errors.GoogleAdsFailure",
                "errors": [failure],
                "requestId": "xN_KaZRHZuU6Rlgt3cM2uQ",
            }
        ]
    return {"error": error}


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_VARIABLE, TOKEN)
    monkeypatch.setenv(CUSTOMER_VARIABLE, "123-456-7890")
    monkeypatch.delenv(LOGIN_VARIABLE, raising=False)


# Success against the simulator ------------------------------------------------------------------


def test_fetch__simulator__valid_search_advertising_value_with_full_confidence(local_server):
    serve_simulator(local_server, "google_ads")

    result = call_source(make_call(local_server))

    rules = ValueRules(schema=CHANNEL_PERFORMANCE["schema"], field_bounds=CHANNEL_PERFORMANCE["validation"]["fields"])
    assert value_problems(result.data, rules) == []
    fields = {"ctr_range", "cpc_range", "conversion_rate_range", "competitive_intensity"}
    assert set(result.data["search_advertising"]) == fields
    assert result.confidence == 1.0
    assert local_server.calls(IDEAS_PATH) == 1
    assert local_server.calls(SEARCH_PATH) > 1  # the simulator pages campaigns by 10


def test_fetch__simulator_with_small_idea_pages__same_value_as_one_page(local_server):
    serve_simulator(local_server, "google_ads")

    one_page = call_source(make_call(local_server, template={"page_size": 10_000})).data
    small_pages = call_source(make_call(local_server, template={"page_size": 15})).data

    assert small_pages == one_page
    assert local_server.calls(IDEAS_PATH) > 2


# The derivation ---------------------------------------------------------------------------------


def test_fetch__known_bids__cpc_range_is_lognormal_p25_p75_medians_over_ideas(local_server):
    bids = [(0.62, 2.15), (0.48, 1.73), (1.00, 3.00)]
    ideas = [idea(round(low * 1e6), round(high * 1e6), 50) for low, high in bids]
    ideas += [idea(0, 900_000, 50), idea(index=50), {"text": "no metrics"}]  # no log-normal fits these
    serve(local_server, ideas=ideas)

    result = call_source(make_call(local_server))

    quartiles = [lognormal_quartiles(low, high) for low, high in bids]
    expected = [statistics.median(p25 for p25, _ in quartiles), statistics.median(p75 for _, p75 in quartiles)]
    assert result.data["search_advertising"]["cpc_range"] == pytest.approx(expected, abs=1e-4)
    for (low, high), (p25, p75) in zip(bids, quartiles):
        assert low < p25 < p75 < high  # p25-p75 lies inside p20-p80


def test_fetch__competition_index_or_level__mean_over_ideas_with_level_midpoints(local_server):
    ideas = [
        idea(500_000, 1_000_000, 100, "HIGH"),
        idea(500_000, 1_000_000, 58, "MEDIUM"),
        idea(500_000, 1_000_000, level="MEDIUM"),  # no index: the level's mid-point, 0.5
        idea(500_000, 1_000_000, level="UNKNOWN"),  # neither: left out
    ]
    serve(local_server, ideas=ideas)

    result = call_source(make_call(local_server))

    assert result.data["search_advertising"]["competitive_intensity"] == pytest.approx((1.0 + 0.58 + 0.5) / 3, abs=1e-4)


def test_fetch__campaign_rows__ctr_and_conversion_rate_are_p25_p75_of_rows(local_server):
    rows = [
        row(impressions=1000, clicks=10, ctr=0.01, conversions=1, conversionsFromInteractionsRate=0.10),
        row(impressions=1000, clicks=20, ctr=0.02, conversions=1),  # no rate: conversions / clicks = 0.05
        row(impressions=1000, clicks=30, ctr=0.03),  # zero conversions omitted: rate 0
        row(impressions=1000, clicks=40, ctr=0.04, conversions=8, conversionsFromInteractionsRate=0.20),
        row(impressions=1000),  # zero clicks and ctr omitted: CTR 0, no conversion rate
        {"campaign": {"id": "6"}},  # all-zero metrics omitted: no CTR, no conversion rate
    ]
    serve(local_server, rows=rows)

    result = call_source(make_call(local_server))

    # CTRs [0, .01, .02, .03, .04]; rates [0, .05, .10, .20], linear between closest ranks.
    assert result.data["search_advertising"]["ctr_range"] == pytest.approx([0.01, 0.03])
    assert result.data["search_advertising"]["conversion_rate_range"] == pytest.approx([0.0375, 0.125])


def test_fetch__conversion_rate_above_one__counts_as_one(local_server):
    serve(
        local_server,
        rows=[
            row(impressions=100, clicks=10, ctr=0.1, conversions=15, conversionsFromInteractionsRate=1.5),
            row(impressions=100, clicks=10, ctr=0.1, conversions=5, conversionsFromInteractionsRate=0.5),
        ],
    )

    result = call_source(make_call(local_server))

    assert result.data["search_advertising"]["conversion_rate_range"] == pytest.approx([0.625, 0.875])


def test_fetch__no_campaign_rows__ctr_and_conversion_from_reference_with_lower_confidence(local_server):
    serve(local_server, rows=[])

    result = call_source(make_call(local_server))

    channel = result.data["search_advertising"]
    assert channel["ctr_range"] == FALLBACK["search_advertising"]["ctr_range"]
    assert channel["conversion_rate_range"] == FALLBACK["search_advertising"]["conversion_rate_range"]
    assert channel["cpc_range"] != FALLBACK["search_advertising"]["cpc_range"]
    assert result.confidence == pytest.approx(3 / 7, abs=1e-4)  # cpc pair and intensity of 7 numbers


def test_fetch__no_bids_no_competition_and_no_rows__invalid_data(local_server):
    serve(local_server, ideas=[idea(level="UNSPECIFIED"), {"text": "thin"}], rows=[])

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA


def test_fetch__region_without_geo_target__geo_left_out_and_confidence_lowered(local_server):
    serve(local_server)

    result = call_source(make_call(local_server, context={"region": "zz", "industry": "retail"}))

    assert "geoTargetConstants" not in bodies(local_server, IDEAS_PATH)[0]
    assert result.confidence == pytest.approx(0.8)


def test_fetch__ideas_request__language_geo_network_seeds_and_page_size(local_server):
    serve(local_server)
    template = {
        "language": "languageConstants/1001",
        "keyword_plan_network": "GOOGLE_SEARCH_AND_PARTNERS",
        "page_size": 200,
    }

    call_source(make_call(local_server, template=template, context={"region": "de", "industry": "finance"}))

    assert bodies(local_server, IDEAS_PATH) == [
        {
            "language": "languageConstants/1001",
            "keywordPlanNetwork": "GOOGLE_SEARCH_AND_PARTNERS",
            "keywordSeed": {
                "keywords": ["personal loan", "credit card", "financial advisor", "mortgage rates", "business banking"]
            },
            "pageSize": 200,
            "geoTargetConstants": ["geoTargetConstants/2276"],
        }
    ]


def test_fetch__keywords_param__replaces_the_industry_seed(local_server):
    serve(local_server)

    call_source(make_call(local_server, params={"keywords": ["trail running shoes", "hiking boots"]}))

    assert bodies(local_server, IDEAS_PATH)[0]["keywordSeed"] == {"keywords": ["trail running shoes", "hiking boots"]}


def test_fetch__industry_not_in_the_table__its_name_is_the_seed(local_server):
    serve(local_server)

    call_source(make_call(local_server, context={"region": "us", "industry": "pet_care"}))

    assert bodies(local_server, IDEAS_PATH)[0]["keywordSeed"] == {"keywords": ["pet care"]}


def test_fetch__no_industry_with_default_keywords__seeds_with_the_defaults(local_server):
    serve(local_server)

    call_source(make_call(local_server, context={"region": "us"}, template={"default_keywords": ["digital marketing"]}))

    assert bodies(local_server, IDEAS_PATH)[0]["keywordSeed"] == {"keywords": ["digital marketing"]}


def test_fetch__no_industry_and_no_default_keywords__terminal_without_a_request(local_server):
    serve(local_server)

    with pytest.raises(SourceError) as caught:
        call_source(make_call(local_server, context={"region": "us"}))

    assert caught.value.kind is ErrorKind.TERMINAL
    assert "default_keywords" in caught.value.reason
    assert local_server.calls() == 0


def test_fetch__gaql_request__search_campaigns_query_without_page_size(local_server):
    serve(local_server)

    call_source(make_call(local_server))

    [body] = bodies(local_server, SEARCH_PATH)
    assert set(body) == {"query"}
    assert "FROM campaign" in body["query"] and "advertising_channel_type = 'SEARCH'" in body["query"]


def test_fetch__channels_without_search_advertising__terminal_without_a_request(local_server):
    serve(local_server)

    error = fail(make_call(local_server, channels=("social_media",)))

    assert error.kind is ErrorKind.TERMINAL
    assert local_server.calls() == 0


# Pagination -------------------------------------------------------------------------------------


def _paged(pages: list[dict]) -> Any:
    """A handler answering page i for pageToken "page-i" (the first without a token)."""

    def handler(request: RecordedRequest):
        token = json.loads(request.body).get("pageToken", "page-0")
        return 200, {"Content-Type": "application/json"}, pages[int(token.split("-")[1])]

    return handler


def test_fetch__ideas_over_three_pages__follows_next_page_token_and_uses_every_page(local_server):
    pages = [
        {"results": [idea(1_000_000, 2_000_000, 10)], "nextPageToken": "page-1"},
        {"results": [idea(2_000_000, 4_000_000, 20)], "nextPageToken": "page-2"},
        {"results": [idea(3_000_000, 6_000_000, 90)]},  # the last page has no token
    ]
    local_server.route("POST", IDEAS_PATH, handler=_paged(pages))
    local_server.route("POST", SEARCH_PATH, json={"results": ROWS})

    result = call_source(make_call(local_server))

    assert [body.get("pageToken") for body in bodies(local_server, IDEAS_PATH)] == [None, "page-1", "page-2"]
    assert result.data["search_advertising"]["competitive_intensity"] == pytest.approx(0.4)
    expected_cpc = list(lognormal_quartiles(2.0, 4.0))  # the median idea's
    assert result.data["search_advertising"]["cpc_range"] == pytest.approx(expected_cpc, abs=1e-4)


def test_fetch__ideas_pages_never_end__stops_after_five_pages(local_server):
    local_server.route("POST", IDEAS_PATH, json={"results": IDEAS, "nextPageToken": "again"})
    local_server.route("POST", SEARCH_PATH, json={"results": ROWS})

    call_source(make_call(local_server))

    assert local_server.calls(IDEAS_PATH) == 5


def test_fetch__campaign_rows_over_two_pages__follows_next_page_token_without_page_size(local_server):
    pages = [
        {"results": [row(impressions=100, clicks=1, ctr=0.01)], "nextPageToken": "page-1", "fieldMask": "metrics.ctr"},
        {"results": [row(impressions=100, clicks=3, ctr=0.03)], "fieldMask": "metrics.ctr"},
    ]
    local_server.route("POST", IDEAS_PATH, json={"results": IDEAS})
    local_server.route("POST", SEARCH_PATH, handler=_paged(pages))

    result = call_source(make_call(local_server))

    sent = bodies(local_server, SEARCH_PATH)
    assert [body.get("pageToken") for body in sent] == [None, "page-1"]
    assert all("pageSize" not in body for body in sent)
    assert result.data["search_advertising"]["ctr_range"] == pytest.approx([0.015, 0.025])


# Headers and settings ---------------------------------------------------------------------------


def test_fetch__headers__bearer_token_json_and_no_login_customer_id_by_default(local_server):
    serve(local_server)

    call_source(make_call(local_server))

    for request in local_server.requests:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["Content-Type"] == "application/json"
        assert "login-customer-id" not in {name.lower() for name in request.headers}


def test_fetch__login_customer_id_variable_set__header_sent_without_dashes(local_server, monkeypatch):
    monkeypatch.setenv(LOGIN_VARIABLE, "987-654-3210")
    serve(local_server)

    call_source(make_call(local_server))

    assert [request.headers["login-customer-id"] for request in local_server.requests] == ["9876543210", "9876543210"]


def test_fetch__login_customer_id_not_digits__terminal_naming_the_variable_without_a_request(local_server, monkeypatch):
    monkeypatch.setenv(LOGIN_VARIABLE, "manager-account")
    serve(local_server)

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.TERMINAL
    assert LOGIN_VARIABLE in error.reason and "manager-account" not in error.reason
    assert local_server.calls() == 0


def test_fetch__customer_id_with_dashes__digits_only_in_the_path(local_server):
    serve(local_server)

    call_source(make_call(local_server))

    assert [request.path for request in local_server.requests] == [IDEAS_PATH, SEARCH_PATH]


def test_fetch__api_version_v26__used_in_both_paths(local_server):
    serve_simulator(local_server, "google_ads")

    call_source(make_call(local_server, template={"api_version": "v26"}))

    assert {request.path.split("/")[1] for request in local_server.requests} == {"v26"}


@pytest.mark.parametrize("version", ["25", "v25beta", "v", 25, "../v25"])
def test_fetch__api_version_not_v_and_digits__terminal_without_a_request(local_server, version):
    serve_simulator(local_server, "google_ads")

    error = fail(make_call(local_server, template={"api_version": version}))

    assert error.kind is ErrorKind.TERMINAL
    assert local_server.calls() == 0


# Errors -----------------------------------------------------------------------------------------

ERROR_STATUSES = [
    (400, "INVALID_ARGUMENT", ErrorKind.TERMINAL, 1),
    (401, "UNAUTHENTICATED", ErrorKind.TERMINAL, 1),
    (403, "PERMISSION_DENIED", ErrorKind.TERMINAL, 1),
    (500, "INTERNAL", ErrorKind.RETRYABLE, 3),  # call_source tries three times
    (503, "UNAVAILABLE", ErrorKind.RETRYABLE, 3),
]
ERROR_IDS = [status for _, status, *_ in ERROR_STATUSES]


@pytest.mark.parametrize("code, status, kind, attempts", ERROR_STATUSES, ids=ERROR_IDS)
def test_fetch__rpc_status_from_keyword_ideas__classified(local_server, code, status, kind, attempts):
    local_server.route("POST", IDEAS_PATH, status=code, json=rpc_error(code, status))

    error = fail(make_call(local_server))

    assert error.kind is kind
    assert f"HTTP {code} {status}" in error.reason and "generateKeywordIdeas" in error.reason
    assert local_server.calls(IDEAS_PATH) == attempts


@pytest.mark.parametrize("code, status, kind, attempts", ERROR_STATUSES, ids=ERROR_IDS)
def test_fetch__rpc_status_wrapped_in_an_array_as_search_stream_sends__classified(
    local_server, code, status, kind, attempts
):
    local_server.route("POST", IDEAS_PATH, json={"results": IDEAS})
    local_server.route("POST", SEARCH_PATH, status=code, json=[rpc_error(code, status)])

    error = fail(make_call(local_server))

    assert error.kind is kind
    assert f"HTTP {code} {status}" in error.reason and "googleAds:search" in error.reason
    assert local_server.calls(SEARCH_PATH) == attempts


@pytest.mark.parametrize("wrapped", [False, True], ids=["unary", "stream_array"])
def test_fetch__resource_exhausted_with_retry_delay__retryable_with_retry_after_40(local_server, wrapped):
    error_body = rpc_error(429, "RESOURCE_EXHAUSTED", codes={"quotaError": "RESOURCE_EXHAUSTED"}, retry_delay="40s")
    local_server.route("POST", IDEAS_PATH, status=429, json=[error_body] if wrapped else error_body)

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.RETRYABLE
    assert error.retry_after == 40.0
    assert "quotaError=RESOURCE_EXHAUSTED" in error.reason
    assert local_server.calls(IDEAS_PATH) == 1  # 40 s is beyond the budget: no second try


def test_fetch__resource_exhausted_with_short_retry_delay_then_ok__waits_and_succeeds(local_server):
    serve_simulator(local_server, "google_ads")
    throttled = rpc_error(429, "RESOURCE_EXHAUSTED", codes={"quotaError": "RESOURCE_EXHAUSTED"}, retry_delay="0.3s")
    answers = [(429, throttled)]

    def throttled_once(request: RecordedRequest):
        if answers:
            status, body = answers.pop()
            return status, {"Content-Type": "application/json"}, body
        response = simulate(SimRequest.from_url(request.method, request.path, request.headers, request.body))
        return response.status, {"Content-Type": "application/json"}, response.body

    local_server.route("POST", IDEAS_PATH, handler=throttled_once)
    started = time.monotonic()

    result = call_source(make_call(local_server))

    assert time.monotonic() - started >= 0.3
    assert "search_advertising" in result.data
    assert local_server.calls(IDEAS_PATH) == 2


def test_fetch__status_inside_a_200_answer__classified_by_its_code(local_server):
    local_server.route("POST", IDEAS_PATH, json={"results": IDEAS})
    local_server.route(
        "POST", SEARCH_PATH, json=[{"results": []}, rpc_error(429, "RESOURCE_EXHAUSTED", retry_delay="40s")]
    )

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.RETRYABLE
    assert error.retry_after == 40.0


def test_fetch__html_error_page_503__retryable(local_server):
    page = "<html><body>Service Unavailable</body></html>"
    local_server.route("POST", IDEAS_PATH, status=503, body=page, headers={"Content-Type": "text/html"})

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.RETRYABLE
    assert "HTTP 503" in error.reason


def test_fetch__not_found_404__terminal(local_server):
    local_server.route("POST", IDEAS_PATH, status=404, json=rpc_error(404, "NOT_FOUND"))

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.TERMINAL
    assert local_server.calls() == 1


# Malformed answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b'{"results": [{"text": "running shoes", "keywordIdeaMetrics": {"competi', "application/json"),
        (b"<html><body>Google: 502. That's an error.</body></html>", "text/html"),
        (b"", "application/json"),
    ],
    ids=["truncated_json", "html_page", "empty_body"],
)
def test_fetch__answer_not_json__invalid_data(local_server, body, content_type):
    local_server.route("POST", IDEAS_PATH, body=body, headers={"Content-Type": content_type})

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert local_server.calls() == 1


WRONG_TYPES = {
    "ideas_not_an_object": (IDEAS_PATH, [{"text": "running shoes"}]),
    "results_not_a_list": (IDEAS_PATH, {"results": {"text": "running shoes"}}),
    "idea_not_an_object": (IDEAS_PATH, {"results": ["running shoes"]}),
    "metrics_not_an_object": (IDEAS_PATH, {"results": [{"text": "x", "keywordIdeaMetrics": "HIGH"}]}),
    "int64_in_exponent_form": (IDEAS_PATH, {"results": [{"keywordIdeaMetrics": {"lowTopOfPageBidMicros": "6.2e5"}}]}),
    "int64_a_word": (IDEAS_PATH, {"results": [{"text": "x", "keywordIdeaMetrics": {"competitionIndex": "high"}}]}),
    "int64_a_fraction": (IDEAS_PATH, {"results": [{"keywordIdeaMetrics": {"highTopOfPageBidMicros": 620000.5}}]}),
    "competition_index_over_100": (IDEAS_PATH, {"results": [idea(index=140)]}),
    "low_bid_above_high_bid": (IDEAS_PATH, {"results": [idea(2_000_000, 1_000_000)]}),
    "next_page_token_a_number": (IDEAS_PATH, {"results": IDEAS, "nextPageToken": 5}),
    "ctr_a_string": (SEARCH_PATH, {"results": [row(impressions=100, clicks=5, ctr="0.05")]}),
    "ctr_above_one": (SEARCH_PATH, {"results": [row(impressions=100, clicks=5, ctr=1.5)]}),
    "impressions_not_a_number": (SEARCH_PATH, {"results": [row(impressions="1k")]}),
    "conversions_a_bool": (SEARCH_PATH, {"results": [row(impressions=100, clicks=5, conversions=True)]}),
    "row_metrics_a_list": (SEARCH_PATH, {"results": [{"metrics": [0.05]}]}),
}


@pytest.mark.parametrize("path, answer", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_fetch__wrong_types__invalid_data(local_server, path, answer):
    serve(local_server)
    local_server.route("POST", path, json=answer)

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_fetch__non_finite_number__invalid_data(local_server, literal):
    serve(local_server)
    body = '{"results": [{"metrics": {"impressions": "100", "clicks": "5", "ctr": %s}}]}' % literal
    local_server.route("POST", SEARCH_PATH, body=body, headers={"Content-Type": "application/json"})

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert literal in error.reason


@pytest.mark.parametrize("with_length", [True, False], ids=["declared", "undeclared"])
def test_fetch__answer_over_1_mib__invalid_data(local_server, with_length):
    many = {"results": [idea(500_000, 1_000_000, 50)] * 12_000}  # about 1.3 MB
    headers = {"Content-Type": "application/json"}
    if not with_length:
        headers["Content-Length"] = None  # sent without a length, ended by closing
    local_server.route("POST", IDEAS_PATH, body=json.dumps(many), headers=headers)

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "1 MiB" in error.reason


def test_fetch__slower_than_read_timeout__retryable_within_the_budget(local_server):
    local_server.route("POST", IDEAS_PATH, json={"results": IDEAS}, delay=2.5)

    started = time.monotonic()
    error = fail(make_call(local_server, budget=1.5, read_timeout=1.0))

    assert error.kind is ErrorKind.RETRYABLE
    assert time.monotonic() - started < 2.0


def test_fetch__later_page_slower_than_what_is_left__retryable_within_the_budget(local_server):
    # Each request is clamped to what is left of the whole call's budget, not given a fresh one.
    local_server.route("POST", IDEAS_PATH, json={"results": IDEAS}, delay=0.4)
    local_server.route("POST", SEARCH_PATH, hang=True)

    started = time.monotonic()
    error = fail(make_call(local_server, budget=1.0, read_timeout=1.0))

    assert error.kind is ErrorKind.RETRYABLE
    assert time.monotonic() - started < 1.25  # not 0.4 + a whole read timeout


# Secrets ----------------------------------------------------------------------------------------


def _echo(status: int, wrap: bool = False):
    """An error answer that quotes everything the client sent, token and customer id included."""

    def handler(request: RecordedRequest):
        echoed = f"{request.path} {request.headers}"
        error = rpc_error(status, "INVALID_ARGUMENT", codes={"requestError": TOKEN.upper()}, retry_delay="1s")
        error["error"]["message"] = echoed
        error["error"]["details"][0]["errors"][0]["message"] = echoed
        return status, {"Content-Type": "application/json"}, [error] if wrap else error

    return handler


@pytest.mark.parametrize(
    "status, wrap", [(400, False), (401, False), (429, True), (500, False)], ids=["400", "401", "429_stream", "500"]
)
def test_fetch__planted_token__never_in_errors_or_logs(local_server, caplog, status, wrap):
    local_server.route("POST", IDEAS_PATH, handler=_echo(status, wrap))
    caplog.set_level("DEBUG")

    error = fail(make_call(local_server, budget=1.0))

    for text in (str(error), repr(error.__cause__), repr(error.__context__), caplog.text):
        assert TOKEN not in text
        assert TOKEN.upper() not in text
        assert CUSTOMER_ID not in text


def test_fetch__success__token_and_customer_id_not_logged(local_server, caplog):
    serve(local_server)
    caplog.set_level("DEBUG")

    call_source(make_call(local_server))

    assert "googleAds:search" in caplog.text  # urllib3 logged the requests, ...
    assert TOKEN not in caplog.text and CUSTOMER_ID not in caplog.text  # ... redacted


# The simulator's wire format --------------------------------------------------------------------


def _simulate(path: str, body: Any, headers: Mapping[str, str] | None = None):
    headers = {"Authorization": "Bearer sim-token"} if headers is None else headers
    return simulate(SimRequest("POST", path, {}, headers, json.dumps(body).encode()))


IDEAS_BODY = {"language": "languageConstants/1000", "keywordSeed": {"keywords": ["running shoes"]}, "pageSize": 5}
QUERY = {"query": "SELECT campaign.id, metrics.ctr FROM campaign WHERE segments.date DURING LAST_30_DAYS"}


def test_simulator__page_size_sent_to_search__invalid_argument_as_the_real_api():
    response = _simulate(SEARCH_PATH, {**QUERY, "pageSize": 100})

    assert response.status == 400
    assert response.body["error"]["status"] == "INVALID_ARGUMENT"
    assert "pageSize" in response.body["error"]["message"]


@pytest.mark.parametrize("path", [IDEAS_PATH, SEARCH_PATH])
def test_simulator__no_authorization_header__401_unauthenticated(path):
    response = _simulate(path, IDEAS_BODY if path == IDEAS_PATH else QUERY, headers={})

    assert response.status == 401
    assert response.body["error"]["status"] == "UNAUTHENTICATED"


def test_simulator__search_stream_error__one_element_array():
    response = _simulate(SEARCH_PATH + "Stream", QUERY, headers={})

    assert response.status == 401
    assert [item["error"]["code"] for item in response.body] == [401]


def test_simulator__keyword_ideas__int64_as_strings_and_token_absent_on_the_last_page():
    body, ideas, pages = dict(IDEAS_BODY), [], 0
    while True:
        response = _simulate(IDEAS_PATH, body)
        assert response.status == 200
        ideas += response.body["results"]
        pages += 1
        if "nextPageToken" not in response.body:
            break
        body["pageToken"] = response.body["nextPageToken"]

    assert pages > 1 and len(ideas) == int(response.body["totalSize"])
    for metrics in (item["keywordIdeaMetrics"] for item in ideas):
        for name in ("avgMonthlySearches", "competitionIndex", "lowTopOfPageBidMicros", "highTopOfPageBidMicros"):
            assert name not in metrics or (isinstance(metrics[name], str) and metrics[name].isdigit())


def test_simulator__search_and_search_stream__same_rows_int64_as_strings():
    rows, body = [], dict(QUERY)
    while True:
        response = _simulate(SEARCH_PATH, body)
        rows += response.body.get("results", [])
        if "nextPageToken" not in response.body:
            break
        body["pageToken"] = response.body["nextPageToken"]
    streamed = _simulate(SEARCH_PATH + "Stream", QUERY)

    assert [item for batch in streamed.body for item in batch.get("results", [])] == rows
    assert all(isinstance(item["metrics"].get("impressions", ""), str) for item in rows)
    assert all(isinstance(item["metrics"].get("ctr", 0.0), float) for item in rows)


def test_simulator__same_request__same_answer():
    assert _simulate(IDEAS_PATH, IDEAS_BODY).body == _simulate(IDEAS_PATH, IDEAS_BODY).body
