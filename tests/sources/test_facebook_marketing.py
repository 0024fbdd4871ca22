"""The Meta Marketing API Insights source, through `call_source` against a local server.

Successes come from the simulator (Meta's wire format) or from canned insights pages; failures
from canned routes in the shapes and statuses Meta really sends (`api-formats.md` section 4).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from sources.adapters.base import ErrorKind, SourceCall, SourceConfig, SourceError
from sources.adapters.facebook_marketing import MAX_PAGES
from sources.calls import call_source
from tests.servers import LocalServer, RecordedRequest
from tests.sources.conftest import serve_simulator
from values.builtins import BUILTIN_VALUE_TYPES

TOKEN_VARIABLE = "FACEBOOK_ACCESS_TOKEN"
ACCOUNT_VARIABLE = "FACEBOOK_AD_ACCOUNT_ID"
TOKEN = "planted-token-EAAB9f3"
ACCOUNT = "4815162342"
PATH = f"/v26.0/act_{ACCOUNT}/insights"
FALLBACK = BUILTIN_VALUE_TYPES["channel_performance"]["fallback"]
# The facebook_marketing_api source of config/environments/base.yaml.
TEMPLATE = {
    "api_version": "v26.0",
    "date_preset": "last_30d",
    "level": "adset",
    "conversion_action_types": ["lead", "purchase"],
}


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    monkeypatch.setenv(TOKEN_VARIABLE, TOKEN)
    monkeypatch.setenv(ACCOUNT_VARIABLE, ACCOUNT)


def make_call(
    server: LocalServer,
    *,
    template: Mapping[str, Any] = TEMPLATE,
    params: Mapping[str, Any] | None = None,
    reference: Any = FALLBACK,
    channels: tuple[str, ...] = ("social_media",),
    budget: float = 3.0,
    read_timeout: float = 1.0,
) -> SourceCall:
    source = SourceConfig(
        name="facebook_marketing_api",
        kind="facebook_marketing",
        base_url=server.url,
        credential_variables={"access_token": TOKEN_VARIABLE, "ad_account_id": ACCOUNT_VARIABLE},
        connect_timeout=1.0,
        read_timeout=read_timeout,
        request_template=template,
    )
    return SourceCall(
        source=source,
        value_type="channel_performance",
        context={"region": "us", "industry": "retail", "channels": ["social_media"]},
        params=params or {},
        channels=channels,
        timeout_budget=budget,
        reference=reference,
    )


def row(impressions: int, clicks: int, ctr: str, cpc: str | None, **actions: int) -> dict[str, Any]:
    """One ad set as Meta sends it: every metric a string, cpc absent without clicks."""
    answer: dict[str, Any] = {
        "impressions": str(impressions),
        "clicks": str(clicks),
        "spend": "100.5",
        "ctr": ctr,
        "cpm": "12.5",
        "date_start": "2026-08-01",
        "date_stop": "2026-08-30",
    }
    if cpc is not None:
        answer["cpc"] = cpc
    if actions:
        answer["actions"] = [{"action_type": name, "value": str(value)} for name, value in actions.items()]
    return answer


def serve_rows(
    server: LocalServer, rows: list[dict[str, Any]], headers: Mapping[str, str] | None = None
) -> None:
    server.route("GET", PATH, json={"data": rows}, headers=headers)


def graph_error(
    code: int, subcode: int | None = None, message: str = "(#0) failed", trace: str = "AbC123"
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = trace
    return {"error": error}


def business_usage(regain_minutes: int) -> dict[str, str]:
    entry = {"type": "ads_insights", "call_count": 100, "total_cputime": 40, "total_time": 60,
             "estimated_time_to_regain_access": regain_minutes}  # fmt: skip
    return {"X-Business-Use-Case-Usage": json.dumps({ACCOUNT: [entry]})}


def fetch_error(call: SourceCall) -> SourceError:
    with pytest.raises(SourceError) as raised:
        call_source(call)
    return raised.value


# Success and derivation ----------------------------------------------------------------------


def test_fetch__simulator_answers__social_media_ranges_and_intensity_from_reference(local_server):
    serve_simulator(local_server, "facebook_marketing")

    result = call_source(make_call(local_server))

    assert set(result.data) == {"social_media"}
    social = result.data["social_media"]
    assert 0.005 <= social["ctr_range"][0] <= social["ctr_range"][1] <= 0.02
    assert 0.5 <= social["cpc_range"][0] <= social["cpc_range"][1] <= 3.0
    assert 0.01 <= social["conversion_rate_range"][0] <= social["conversion_rate_range"][1] <= 0.06
    assert social["competitive_intensity"] == FALLBACK["social_media"]["competitive_intensity"]
    assert result.confidence == pytest.approx(6 / 7)  # six measured numbers, one from the reference


def test_fetch__ctr_percent_strings__p25_p75_of_ratios(local_server):
    serve_rows(
        local_server,
        [
            row(1000, 10, "1.0", "2"),
            row(1000, 20, "2.0", "1"),
            row(1000, 30, "3.0", "4"),
            row(1000, 50, "5.0", "3"),
        ],
    )

    social = call_source(make_call(local_server)).data["social_media"]

    # Ratios 0.01, 0.02, 0.03, 0.05: ranks 0.75 and 2.25 interpolate linearly.
    assert social["ctr_range"] == pytest.approx([0.0175, 0.035])
    # CPCs 1, 2, 3, 4.
    assert social["cpc_range"] == pytest.approx([1.75, 3.25])


def test_fetch__actions_of_conversion_types__summed_per_row_over_clicks(local_server):
    serve_rows(
        local_server,
        [
            row(5000, 100, "2", "1.5", link_click=90, lead=5, purchase=3, omni_purchase=40),  # 8 / 100
            row(5000, 200, "4", "1.5", link_click=180, purchase=4),  # 4 / 200
            row(5000, 50, "1", "1.5", link_click=45),  # 0 / 50
        ],
    )

    social = call_source(make_call(local_server)).data["social_media"]

    # Rates 0, 0.02, 0.08: ranks 0.5 and 1.5.
    assert social["conversion_rate_range"] == pytest.approx([0.01, 0.05])


def test_fetch__more_conversions_than_clicks__rate_capped_at_one(local_server):
    serve_rows(local_server, [row(5000, 10, "0.2", "1", purchase=30), row(5000, 10, "0.2", "1", purchase=30)])

    social = call_source(make_call(local_server)).data["social_media"]

    assert social["conversion_rate_range"] == [1.0, 1.0]


def test_fetch__rows_without_clicks__count_for_ctr_but_not_cpc_or_conversion(local_server):
    serve_rows(local_server, [row(4000, 0, "0", None), row(4000, 80, "2", "1.25", lead=4)])

    social = call_source(make_call(local_server)).data["social_media"]

    assert social["ctr_range"] == pytest.approx([0.005, 0.015])  # 0 and 0.02
    assert social["cpc_range"] == pytest.approx([1.25, 1.25])
    assert social["conversion_rate_range"] == pytest.approx([0.05, 0.05])


def test_fetch__rows_without_impressions__skipped(local_server):
    serve_rows(local_server, [{"impressions": "0", "clicks": "0", "spend": "0"}, row(1000, 10, "1", "2")])

    social = call_source(make_call(local_server)).data["social_media"]

    assert social["ctr_range"] == pytest.approx([0.01, 0.01])


def test_fetch__link_params__override_date_preset_level_and_conversion_types(local_server):
    serve_rows(local_server, [row(5000, 100, "2", "1.5", lead=5, purchase=3)])
    params = {
        "date_preset": "last_7d",
        "level": "campaign",
        "limit": 25,
        "conversion_action_types": ["purchase"],
    }

    social = call_source(make_call(local_server, params=params)).data["social_media"]

    query = parse_qs(urlsplit(local_server.requests[0].path).query)
    assert query["date_preset"] == ["last_7d"] and query["level"] == ["campaign"] and query["limit"] == ["25"]
    assert social["conversion_rate_range"] == pytest.approx([0.03, 0.03])


def test_fetch__request__fields_in_query_and_token_only_in_bearer_header(local_server):
    serve_rows(local_server, [row(1000, 10, "1", "2")])

    call_source(make_call(local_server))

    request = local_server.requests[0]
    parts = urlsplit(request.path)
    assert parts.path == PATH
    assert parse_qs(parts.query) == {
        "fields": ["impressions,clicks,spend,ctr,cpc,cpm,actions"],
        "date_preset": ["last_30d"],
        "level": ["adset"],
        "limit": ["100"],
    }
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in request.path


def test_fetch__reference_without_social_media__only_measured_fields_full_confidence(local_server):
    serve_rows(local_server, [row(1000, 10, "1", "2", lead=1)])

    result = call_source(make_call(local_server, reference=None))

    assert set(result.data["social_media"]) == {"ctr_range", "cpc_range", "conversion_rate_range"}
    assert result.confidence == 1.0


def test_fetch__usage_headers_high_or_malformed__data_returned_unchanged(local_server):
    serve_rows(
        local_server,
        [row(1000, 10, "1", "2")],
        headers={
            "X-App-Usage": '{"call_count": 97, "total_time": 12',  # cut off
            "X-Business-Use-Case-Usage": json.dumps({ACCOUNT: [{"call_count": 99}]}),
        },
    )

    result = call_source(make_call(local_server, reference=None))

    assert result.data["social_media"]["ctr_range"] == pytest.approx([0.01, 0.01])
    assert result.confidence == 1.0


# Pagination ----------------------------------------------------------------------------------


def paged_handler(server: LocalServer, pages: list[list[dict[str, Any]]]):
    """Pages served by the `after` cursor, each but the last with an absolute `paging.next`."""

    def handler(request: RecordedRequest):
        after = parse_qs(urlsplit(request.path).query).get("after", ["0"])[0]
        index = int(after)
        paging: dict[str, Any] = {"cursors": {"before": after, "after": after}}
        body = {"data": pages[index], "paging": paging}
        if index + 1 < len(pages):
            paging["next"] = f"{server.url}{PATH}?limit=1&after={index + 1}"
        return 200, {"Content-Type": "application/json"}, body

    return handler


def test_fetch__three_pages__rows_of_every_page_used(local_server):
    pages = [[row(1000, 10, "1", "1")], [row(1000, 20, "2", "2")], [row(1000, 30, "3", "3")]]
    local_server.route("GET", PATH, handler=paged_handler(local_server, pages))

    social = call_source(make_call(local_server)).data["social_media"]

    assert local_server.calls(PATH) == 3
    assert social["ctr_range"] == pytest.approx([0.015, 0.025])
    assert social["cpc_range"] == pytest.approx([1.5, 2.5])
    assert all(request.headers["Authorization"] == f"Bearer {TOKEN}" for request in local_server.requests)


def test_fetch__simulator_pages_of_five__same_data_as_one_page(local_server):
    serve_simulator(local_server, "facebook_marketing")

    one_page = call_source(make_call(local_server)).data
    single_calls = local_server.calls(PATH)
    paged = call_source(make_call(local_server, params={"limit": 5})).data

    assert single_calls == 1
    assert local_server.calls(PATH) - single_calls >= 4  # 18 to 36 ad sets
    assert paged == one_page  # decimal arithmetic: the order rows arrive in changes nothing


def test_fetch__paging_next_never_ends__stops_after_max_pages_with_their_rows(local_server):
    def endless(request: RecordedRequest):
        paging = {"next": f"{local_server.url}{PATH}?after=again"}
        body = {"data": [row(1000, 10, "1", "1")], "paging": paging}
        return 200, {"Content-Type": "application/json"}, body

    local_server.route("GET", PATH, handler=endless)

    result = call_source(make_call(local_server))

    assert local_server.calls(PATH) == MAX_PAGES
    assert result.data["social_media"]["ctr_range"] == pytest.approx([0.01, 0.01])


@pytest.mark.parametrize(
    "next_url",
    [
        lambda server, other: f"{other.url}{PATH}?after=1",
        lambda server, other: f"{other.url.replace('127.0.0.1', 'localhost')}{PATH}?after=1",
        lambda server, other: f"http://{urlsplit(server.url).netloc}@{urlsplit(other.url).netloc}{PATH}",
        lambda server, other: f"{server.url}/v26.0/me/adaccounts?after=1",
        lambda server, other: f"https://{urlsplit(server.url).netloc}{PATH}?after=1",
    ],
    ids=["other-port", "other-host", "userinfo-trick", "other-path", "other-scheme"],
)
def test_fetch__paging_next_outside_the_endpoint__invalid_data_and_nothing_sent_there(local_server, next_url):
    with LocalServer() as other:
        other.serve_all(lambda request: (200, {"Content-Type": "application/json"}, {"data": []}))
        body = {"data": [row(1000, 10, "1", "1")], "paging": {"next": next_url(local_server, other)}}
        local_server.route("GET", PATH, json=body)

        error = fetch_error(make_call(local_server))

        assert error.kind is ErrorKind.INVALID_DATA
        assert "paging.next" in error.reason
        assert other.calls() == 0
        assert local_server.calls() == 1


# Errors --------------------------------------------------------------------------------------


def test_fetch__throttled_80004_with_http_400__retryable_with_regain_minutes_as_retry_after(local_server):
    local_server.route("GET", PATH, status=400, json=graph_error(80004, 2446079), headers=business_usage(5))

    error = fetch_error(make_call(local_server))

    assert error.kind is ErrorKind.RETRYABLE
    assert error.retry_after == 300
    assert "80004/2446079" in error.reason and "AbC123" in error.reason
    assert local_server.calls(PATH) == 1  # five minutes is past the budget: no second try


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80000, 80014])
def test_fetch__rate_limit_code_without_estimate__retryable_after_a_minute(local_server, code):
    local_server.route("GET", PATH, status=400, json=graph_error(code), headers=business_usage(0))

    error = fetch_error(make_call(local_server))

    assert error.kind is ErrorKind.RETRYABLE
    assert error.retry_after == 60


def test_fetch__throttled_with_malformed_usage_header__retryable_after_a_minute(local_server):
    local_server.route(
        "GET", PATH, status=400, json=graph_error(80004), headers={"X-Business-Use-Case-Usage": "{not json"}
    )

    error = fetch_error(make_call(local_server))

    assert error.kind is ErrorKind.RETRYABLE
    assert error.retry_after == 60


def test_fetch__code_1_with_http_500__retryable_after_three_attempts(local_server):
    body = graph_error(1, 99, "An unknown error occurred. Please reduce the amount of data you're asking for")
    local_server.route("GET", PATH, status=500, json=body)

    error = fetch_error(make_call(local_server))

    assert error.kind is ErrorKind.RETRYABLE
    assert error.retry_after is None
    assert local_server.calls(PATH) == 3


@pytest.mark.parametrize(
    "code, subcode",
    [(190, None), (190, 463), (190, 467), (102, None), (463, None)],
    ids=["190", "190-expired", "190-invalid", "102-session", "463-oauth"],
)
def test_fetch__access_token_refused__terminal_after_one_call(local_server, code, subcode):
    local_server.route("GET", PATH, status=400, json=graph_error(code, subcode))

    error = fetch_error(make_call(local_server))

    assert error.kind is ErrorKind.TERMINAL
    assert "access token refused" in error.reason
    assert local_server.calls(PATH) == 1


def test_fetch__other_graph_error_with_http_400__terminal(local_server):
    local_server.route("GET", PATH, status=400, json=graph_error(100, 1487534, "(#100) Invalid parameter"))

    error = fetch_error(make_call(local_server))

    assert error.kind is ErrorKind.TERMINAL
    assert "Graph API error 100/1487534 (HTTP 400" in error.reason


def test_fetch__graph_error_with_http_200__classified_like_any_graph_error(local_server):
    local_server.route("GET", PATH, json=graph_error(80004), headers=business_usage(2))

    error = fetch_error(make_call(local_server))

    assert error.kind is ErrorKind.RETRYABLE
    assert error.retry_after == 120


@pytest.mark.parametrize(
    "status, expected",
    [
        (401, ErrorKind.TERMINAL),
        (404, ErrorKind.TERMINAL),
        (503, ErrorKind.RETRYABLE),
        (429, ErrorKind.RETRYABLE),
    ],
)
def test_fetch__non_graph_error_page__classified_by_status(local_server, status, expected):
    html = {"Content-Type": "text/html"}
    local_server.route("GET", PATH, status=status, body="<html>proxy says no</html>", headers=html)

    assert fetch_error(make_call(local_server, budget=1.0)).kind is expected


# The simulator's wire format ---------------------------------------------------------------


def test_simulator__no_access_token__graph_error_190_with_http_400_and_usage_headers(local_server):
    serve_simulator(local_server, "facebook_marketing")

    response = requests.get(f"{local_server.url}{PATH}?level=adset", timeout=2)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == 190
    assert response.json()["error"]["type"] == "OAuthException"
    assert json.loads(response.headers["X-App-Usage"])["call_count"] >= 0
    assert ACCOUNT in json.loads(response.headers["X-Business-Use-Case-Usage"])


def test_simulator__first_page__string_metrics_percent_ctr_and_absolute_next(local_server):
    serve_simulator(local_server, "facebook_marketing")
    query = "fields=impressions,clicks,ctr,cpc,actions&date_preset=last_30d&level=adset&limit=5"
    url = f"{local_server.url}{PATH}?{query}"

    response = requests.get(url, headers={"Authorization": "Bearer t"}, timeout=2)

    body = response.json()
    assert len(body["data"]) == 5
    clicked = [item for item in body["data"] if item["clicks"] != "0"]
    metrics = ("impressions", "clicks", "ctr", "cpc")
    assert all(isinstance(item[name], str) for item in clicked for name in metrics)
    assert all(0.3 < float(item["ctr"]) < 2.5 for item in clicked)  # percent, not a ratio
    assert parse_qs(urlsplit(body["paging"]["next"]).query)["after"] == [body["paging"]["cursors"]["after"]]
    assert body["paging"]["next"].startswith(f"{local_server.url}{PATH}?")
    assert {"X-App-Usage", "X-Business-Use-Case-Usage"} <= set(response.headers)


# Malformed answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, content_type",
    [
        ('{"data": [{"impressions": "1000", "clicks": "10"', "application/json"),
        ("<html><body>Sorry, something went wrong.</body></html>", "text/html"),
        ('{"data": [{"impressions": NaN}]}', "application/json"),
        ('{"paging": {}}', "application/json"),
        ('{"data": []}', "application/json"),
        ('{"data": "rows"}', "application/json"),
    ],
    ids=["truncated", "html", "nan-literal", "no-data", "no-rows", "data-not-a-list"],
)
def test_fetch__malformed_answer__invalid_data(local_server, body, content_type):
    local_server.route("GET", PATH, body=body, headers={"Content-Type": content_type})

    error = fetch_error(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert local_server.calls(PATH) == 1


@pytest.mark.parametrize("value", ["abc", "NaN", "Infinity", "-1.5", "1_000", "1e999", "", True])
def test_fetch__metric_not_a_non_negative_decimal__invalid_data_naming_it(local_server, value):
    serve_rows(local_server, [row(1000, 10, "1", "2"), {**row(1000, 10, "1", "2"), "ctr": value}])

    error = fetch_error(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "row 1" in error.reason and "ctr" in error.reason


def test_fetch__action_value_not_a_number__invalid_data(local_server):
    actions = [{"action_type": "lead", "value": "many"}]
    serve_rows(local_server, [{**row(1000, 10, "1", "2"), "actions": actions}])

    error = fetch_error(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "actions value" in error.reason


def test_fetch__clicks_without_cpc__invalid_data(local_server):
    serve_rows(local_server, [row(1000, 10, "1", None)])

    assert fetch_error(make_call(local_server)).kind is ErrorKind.INVALID_DATA


def test_fetch__only_rows_without_clicks__invalid_data(local_server):
    serve_rows(local_server, [row(1000, 0, "0", None)])

    error = fetch_error(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "no insights rows with clicks" in error.reason


def test_fetch__answer_over_1_mib__invalid_data(local_server):
    body = b'{"data": [' + b" " * (1024 * 1024 + 1) + b"]}"
    local_server.route("GET", PATH, body=body, headers={"Content-Type": "application/json"})

    assert fetch_error(make_call(local_server)).kind is ErrorKind.INVALID_DATA


def test_fetch__answer_slower_than_read_timeout__retryable_within_budget(local_server):
    local_server.route("GET", PATH, json={"data": [row(1000, 10, "1", "2")]}, delay=1.5)

    error = fetch_error(make_call(local_server, budget=1.2, read_timeout=0.5))

    assert error.kind is ErrorKind.RETRYABLE


def test_fetch__server_stopped__retryable():
    stopped = LocalServer()
    stopped.stop()

    assert fetch_error(make_call(stopped, budget=0.5)).kind is ErrorKind.RETRYABLE


# Configuration -------------------------------------------------------------------------------


def test_fetch__channels_without_social_media__terminal_without_request(local_server):
    error = fetch_error(make_call(local_server, channels=("search_advertising",)))

    assert error.kind is ErrorKind.TERMINAL
    assert local_server.calls() == 0


@pytest.mark.parametrize(
    "params",
    [
        {"api_version": "../me"},
        {"level": "everything"},
        {"limit": 0},
        {"date_preset": "last 30 days"},
        {"conversion_action_types": "lead"},
    ],
)
def test_fetch__invalid_request_setting__terminal_without_request(local_server, params):
    error = fetch_error(make_call(local_server, params=params))

    assert error.kind is ErrorKind.TERMINAL
    assert local_server.calls() == 0


# Secrets -------------------------------------------------------------------------------------


def test_fetch__graph_error_echoing_the_token__token_not_in_reason_or_logs(local_server, caplog):
    caplog.set_level("DEBUG")
    body = graph_error(190, message=f"Malformed access token {TOKEN}", trace=TOKEN)
    local_server.route("GET", PATH, status=400, json=body, headers={"X-Echo": TOKEN})

    error = fetch_error(make_call(local_server))

    assert TOKEN not in str(error) and TOKEN not in caplog.text
    assert "fbtrace_id" not in error.reason  # the echoed "trace id" is left out


def test_fetch__pages_fetched__token_and_ad_account_not_in_debug_logs(local_server, caplog):
    caplog.set_level("DEBUG")
    pages = [[row(1000, 10, "1", "1")], [row(1000, 20, "2", "2")]]
    local_server.route("GET", PATH, handler=paged_handler(local_server, pages))

    call_source(make_call(local_server))

    assert "/act_[redacted]/insights" in caplog.text  # urllib3 did log the requests
    assert TOKEN not in caplog.text and ACCOUNT not in caplog.text
