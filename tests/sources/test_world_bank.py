"""The World Bank source, through `call_source` against a local server.

Success runs against the simulator (`serve_simulator`) or canned answers of known numbers, so
that the factor can be asserted exactly; each documented error shape and each malformed answer
is a canned route.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sources.adapters.base import ErrorKind, SourceCall, SourceConfig, SourceError
from sources.calls import call_source
from tests.servers import LocalServer
from tests.sources.conftest import serve_simulator
from values.builtins import BUILTIN_VALUE_TYPES

PATH = "/v2/country/DE;US/indicator/NY.GDP.PCAP.CD"
FALLBACK = BUILTIN_VALUE_TYPES["budget_thresholds"]["fallback"]
NO_DATA = [{"page": 0, "pages": 0, "per_page": 0, "total": 0, "sourceid": None, "lastupdated": None}, None]
INVALID_VALUE = [{"message": [{"id": "120", "key": "Invalid value", "value": "The provided parameter value is not valid"}]}]


def make_call(
    server: LocalServer,
    *,
    region: str | None = "de",
    template: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    baseline: Any = FALLBACK,
    budget: float = 3.0,
    read_timeout: float = 2.0,
) -> SourceCall:
    source = SourceConfig(
        name="world_bank_api",
        kind="world_bank",
        base_url=server.url,
        connect_timeout=1.0,
        read_timeout=read_timeout,
        request_template=template or {},
    )
    context = {"industry": "retail", **({"region": region} if region is not None else {})}
    return SourceCall(
        source=source,
        value_type="budget_thresholds",
        context=context,
        params=params or {},
        timeout_budget=budget,
        baseline=baseline,
    )


def row(iso2: str, iso3: str, date: str, value: Any) -> dict[str, Any]:
    return {
        "indicator": {"id": "NY.GDP.PCAP.CD", "value": "GDP per capita (current US$)"},
        "country": {"id": iso2, "value": iso2},
        "countryiso3code": iso3,
        "date": date,
        "value": value,
        "unit": "",
        "obs_status": "",
        "decimal": 1,
    }


def de(date: str, value: Any) -> dict[str, Any]:
    return row("DE", "DEU", date, value)


def us(date: str, value: Any) -> dict[str, Any]:
    return row("US", "USA", date, value)


def answer(*rows: dict[str, Any], page: int = 1, pages: int = 1, per_page: Any = 50, total: int | None = None) -> list[Any]:
    meta = {
        "page": page,
        "pages": pages,
        "per_page": per_page,
        "total": len(rows) if total is None else total,
        "sourceid": "2",
        "sourcename": "World Development Indicators",
        "lastupdated": "2026-07-01",
    }
    return [meta, list(rows)]


def times(factor: float) -> dict[str, float]:
    return {name: threshold * factor for name, threshold in FALLBACK.items()}


def fail(call: SourceCall) -> SourceError:
    with pytest.raises(SourceError) as caught:
        call_source(call)
    return caught.value


def query(server: LocalServer, index: int = 0) -> dict[str, list[str]]:
    return parse_qs(urlsplit(server.requests[index].path).query)


# Success and the arithmetic ----------------------------------------------------------------------


def test_fetch__simulator_de_against_us__every_threshold_scaled_by_one_factor_below_1(local_server):
    serve_simulator(local_server, "world_bank")

    result = call_source(make_call(local_server))

    ratios = [result.data[name] / FALLBACK[name] for name in FALLBACK]
    assert max(ratios) - min(ratios) < 0.001  # one factor, up to rounding
    assert 0.25 <= ratios[0] < 1  # Germany's GDP per capita is below the United States'
    assert list(result.data.values()) == sorted(result.data.values())
    assert result.confidence in (1.0, 0.8)
    assert urlsplit(local_server.requests[0].path).path == PATH
    assert query(local_server) == {"format": ["json"], "mrnev": ["1"], "per_page": ["50"], "page": ["1"]}


def test_fetch__gdp_a_quarter_of_the_reference_in_the_same_year__factor_0_5_and_confidence_1(local_server):
    local_server.route("GET", PATH, json=answer(de("2023", 20000.0), us("2023", 80000.0)))

    result = call_source(make_call(local_server))

    assert result.data == {
        "micro_threshold": 250,
        "small_threshold": 2500,
        "medium_threshold": 25000,
        "large_threshold": 250000,
        "enterprise_threshold": 1000000,
    }
    assert result.confidence == 1.0


def test_fetch__elasticity_param_1__factor_is_the_gdp_ratio(local_server):
    local_server.route("GET", PATH, json=answer(de("2023", 40000.0), us("2023", 80000.0)))

    result = call_source(make_call(local_server, template={"elasticity": 0.25}, params={"elasticity": 1}))

    assert result.data == times(0.5)


def test_fetch__factor_not_round__numbers_rounded_to_4_significant_figures(local_server):
    local_server.route("GET", PATH, json=answer(de("2023", 50000.0), us("2023", 80000.0)))

    result = call_source(make_call(local_server))  # factor sqrt(0.625) = 0.790569...

    assert result.data == {
        "micro_threshold": 395.3,
        "small_threshold": 3953,
        "medium_threshold": 39530,
        "large_threshold": 395300,
        "enterprise_threshold": 1581000,
    }


@pytest.mark.parametrize(
    "region_gdp, expected_factor",
    [(1000.0, 0.25), (80000.0 * 25, 4.0)],
    ids=["far_poorer_clamped_to_0_25", "far_richer_clamped_to_4"],
)
def test_fetch__gdp_ratio_beyond_16__factor_clamped(local_server, region_gdp, expected_factor):
    local_server.route("GET", PATH, json=answer(de("2023", region_gdp), us("2023", 80000.0)))

    result = call_source(make_call(local_server))

    assert result.data == times(expected_factor)


def test_fetch__latest_years_differ__latest_of_each_with_confidence_0_8(local_server):
    local_server.route("GET", PATH, json=answer(de("2023", 20000.0), us("2024", 80000.0)))

    result = call_source(make_call(local_server))

    assert result.data == times(0.5)
    assert result.confidence == 0.8


def test_fetch__date_range_in_template__latest_year_both_countries_have(local_server):
    rows = [de("2024", None), de("2023", 20000.0), de("2022", 10000.0), us("2024", 1.0), us("2023", 80000.0), us("2022", 1.0)]
    local_server.route("GET", PATH, json=answer(*rows))

    result = call_source(make_call(local_server, template={"date": "2022:2024"}))

    assert result.data == times(0.5)
    assert result.confidence == 1.0
    assert query(local_server)["date"] == ["2022:2024"]
    assert "mrnev" not in query(local_server)


def test_fetch__simulator_date_range__same_year_for_both_and_confidence_1(local_server):
    serve_simulator(local_server, "world_bank")

    result = call_source(make_call(local_server, template={"date": "2019:2023"}))

    assert result.confidence == 1.0


@pytest.mark.parametrize("per_page", [50, "50"], ids=["number", "string"])
def test_fetch__per_page_as_number_or_string__accepted(local_server, per_page):
    local_server.route("GET", PATH, json=answer(de("2023", 20000.0), us("2023", 80000.0), per_page=per_page))

    assert call_source(make_call(local_server)).data == times(0.5)


def test_fetch__no_region_in_context__reference_unchanged_with_confidence_0_5_without_request(local_server):
    result = call_source(make_call(local_server, region=None))

    assert result.data == FALLBACK
    assert result.confidence == 0.5
    assert local_server.calls() == 0


def test_fetch__region_is_the_reference_country__one_country_requested_and_factor_1(local_server):
    path = "/v2/country/US/indicator/NY.GDP.PCAP.CD"
    local_server.route("GET", path, json=answer(us("2023", 80000.0)))

    result = call_source(make_call(local_server, region="us"))

    assert result.data == FALLBACK
    assert result.confidence == 1.0
    assert local_server.calls(path) == 1


def test_fetch__iso3_region__matched_by_countryiso3code(local_server):
    path = "/v2/country/DEU;US/indicator/NY.GDP.PCAP.CD"
    local_server.route("GET", path, json=answer(de("2023", 20000.0), us("2023", 80000.0)))

    assert call_source(make_call(local_server, region="deu")).data == times(0.5)


def test_fetch__indicator_and_reference_country__from_template_with_params_over_it(local_server):
    path = "/v2/country/DE;GB/indicator/NY.GDP.PCAP.PP.CD"
    rows = [de("2023", 20000.0), row("GB", "GBR", "2023", 80000.0)]
    local_server.route("GET", path, json=answer(*rows))

    result = call_source(
        make_call(
            local_server,
            template={"indicator": "NY.GDP.PCAP.CD", "reference_country": "gb"},
            params={"indicator": "NY.GDP.PCAP.PP.CD"},
        )
    )

    assert result.data == times(0.5)
    assert local_server.calls(path) == 1


def test_fetch__nested_reference__every_number_scaled_and_the_rest_kept(local_server):
    local_server.route("GET", PATH, json=answer(de("2023", 20000.0), us("2023", 80000.0)))
    reference = {"tiers": [100, 200], "label": "usd", "is_monthly": True, "nested": {"cap": 10.0}}

    result = call_source(make_call(local_server, baseline=reference))

    assert result.data == {"tiers": [50, 100], "label": "usd", "is_monthly": True, "nested": {"cap": 5.0}}


# Pagination -------------------------------------------------------------------------------------


def test_fetch__two_page_answer__second_page_followed(local_server):
    pages = {
        "1": answer(de("2023", 20000.0), page=1, pages=2, per_page="1", total=2),
        "2": answer(us("2023", 80000.0), page=2, pages=2, per_page="1", total=2),
    }
    local_server.route("GET", PATH, handler=lambda request: (200, {}, pages[parse_qs(urlsplit(request.path).query)["page"][0]]))

    result = call_source(make_call(local_server))

    assert result.data == times(0.5)
    assert [query(local_server, index)["page"] for index in (0, 1)] == [["1"], ["2"]]


def test_fetch__simulator_with_per_page_1__every_page_followed_with_the_same_result(local_server):
    serve_simulator(local_server, "world_bank")
    whole = call_source(make_call(local_server)).data

    paged = call_source(make_call(local_server, params={"per_page": 1})).data

    assert paged == whole
    assert local_server.calls(PATH) == 3  # one page of 50, then two of 1


def test_fetch__more_pages_than_followed__invalid_data(local_server):
    local_server.route("GET", PATH, json=answer(de("2023", 20000.0), pages=500, per_page=1, total=500))

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "500 pages" in error.reason
    assert local_server.calls(PATH) == 1


# The API's error shapes --------------------------------------------------------------------------


def test_fetch__no_data_shape__invalid_data_naming_the_countries(local_server):
    local_server.route("GET", PATH, json=NO_DATA)

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "no data for countries DE, US" in error.reason


def test_fetch__simulator_unknown_but_valid_region__invalid_data_naming_it(local_server):
    serve_simulator(local_server, "world_bank")

    error = fail(make_call(local_server, region="xx"))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "no data for country XX" in error.reason


def test_fetch__every_value_null__invalid_data(local_server):
    local_server.route("GET", PATH, json=answer(de("2023", None), us("2023", None)))

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "no data for countries DE, US" in error.reason


def test_fetch__message_120_with_http_200__terminal_after_one_call(local_server):
    local_server.route("GET", PATH, json=INVALID_VALUE)

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.TERMINAL
    assert "message 120: Invalid value" in error.reason
    assert local_server.calls(PATH) == 1


def test_fetch__simulator_unknown_indicator__terminal_message_120(local_server):
    serve_simulator(local_server, "world_bank")

    error = fail(make_call(local_server, params={"indicator": "NOT.AN.INDICATOR"}))

    assert error.kind is ErrorKind.TERMINAL
    assert "message 120" in error.reason


def test_fetch__message_105_service_unavailable__retryable(local_server):
    unavailable = [{"message": [{"id": "105", "key": "Service currently unavailable", "value": "Try later"}]}]
    local_server.route("GET", PATH, json=unavailable)

    error = fail(make_call(local_server, budget=1.0))

    assert error.kind is ErrorKind.RETRYABLE
    assert local_server.calls(PATH) == 3


@pytest.mark.parametrize("region", ["global", "d/e", "e"])
def test_fetch__region_not_a_country_code__terminal_without_request(local_server, region):
    error = fail(make_call(local_server, region=region))

    assert error.kind is ErrorKind.TERMINAL
    assert "region" in error.reason
    assert local_server.calls() == 0


@pytest.mark.parametrize("elasticity", [-0.5, "half", float("nan")])
def test_fetch__elasticity_not_a_non_negative_number__terminal_without_request(local_server, elasticity):
    error = fail(make_call(local_server, params={"elasticity": elasticity}))

    assert error.kind is ErrorKind.TERMINAL
    assert "elasticity" in error.reason
    assert local_server.calls() == 0


def test_fetch__no_reference_value__terminal_without_request(local_server):
    error = fail(make_call(local_server, baseline=None))

    assert error.kind is ErrorKind.TERMINAL
    assert local_server.calls() == 0


# HTTP failures and malformed answers -------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503])
def test_fetch__html_error_page_502_or_503__retryable_after_three_attempts(local_server, status):
    page = f"<html><body><h1>{status} Service Unavailable</h1></body></html>"
    local_server.route("GET", PATH, status=status, body=page, headers={"Content-Type": "text/html"})

    error = fail(make_call(local_server, budget=1.0))

    assert error.kind is ErrorKind.RETRYABLE
    assert error.reason == f"server error (HTTP {status})"
    assert local_server.calls(PATH) == 3


def _with_nan() -> str:
    return json.dumps(answer(de("2023", "NAN_HERE"), us("2023", 80000.0))).replace('"NAN_HERE"', "NaN")


@pytest.mark.parametrize(
    "body, reason",
    [
        ('[{"page": 1, "pages": 1, "per_page": 50, "total": 2}, [{"country"', "not JSON"),
        ("<html><body>Maintenance</body></html>", "not JSON"),
        ("", "not JSON"),
        (json.dumps(answer(de("2023", "abc"), us("2023", 80000.0))), "value for DE in 2023 is not a number"),
        (json.dumps(answer(de("2023", True), us("2023", 80000.0))), "value for DE in 2023 is not a number"),
        (_with_nan(), "NaN"),
        (json.dumps(answer(de("2023", 0), us("2023", 80000.0))), "not positive"),
        (json.dumps({"page": 1, "rows": []}), "expected a JSON array"),
        (json.dumps([answer()[0], {"rows": []}]), "rows of the page are not an array"),
        (json.dumps(answer(de("2023", 1.0), pages="many")), "pages is not a count"),
        (json.dumps(answer({"country": {"id": "DE"}, "value": 1.0})), "row 0 has no date"),
        (json.dumps(answer("DE 2023 20000")), "row 0 is not an object"),
        (json.dumps([{**answer()[0], "total": 3}, None]), "no rows although the total is 3"),
    ],
    ids=[
        "truncated_json",
        "html_page_with_200",
        "empty_body",
        "value_abc",
        "value_boolean",
        "value_nan",
        "value_zero",
        "object_not_array",
        "rows_not_array",
        "pages_not_a_count",
        "row_without_date",
        "row_not_an_object",
        "rows_null_with_a_total",
    ],
)
def test_fetch__malformed_answer__invalid_data_with_reason(local_server, body, reason):
    local_server.route("GET", PATH, body=body, headers={"Content-Type": "application/json"})

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert reason in error.reason
    assert local_server.calls(PATH) == 1


def test_fetch__answer_over_1_mib__invalid_data(local_server):
    padding = [de(str(year), 1.0) for year in range(20000)]
    local_server.route("GET", PATH, body=json.dumps(answer(*padding)), headers={"Content-Length": None})

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "larger than 1 MiB" in error.reason


def test_fetch__slower_than_the_read_timeout__retryable_within_the_budget(local_server):
    local_server.route("GET", PATH, json=answer(de("2023", 20000.0), us("2023", 80000.0)), delay=3.0)

    started = time.monotonic()
    error = fail(make_call(local_server, read_timeout=0.3, budget=1.0))

    assert error.kind is ErrorKind.RETRYABLE
    assert time.monotonic() - started < 1.5


def test_fetch__second_page_slower_than_the_budget__retryable(local_server):
    first = answer(de("2023", 20000.0), page=1, pages=2, per_page=1, total=2)

    def handler(request):
        if parse_qs(urlsplit(request.path).query)["page"] == ["2"]:
            time.sleep(1.5)
        return 200, {}, first

    local_server.route("GET", PATH, handler=handler)

    started = time.monotonic()
    error = fail(make_call(local_server, read_timeout=2.0, budget=0.8))

    assert error.kind is ErrorKind.RETRYABLE
    assert time.monotonic() - started < 1.3


def test_fetch__server_stopped__connection_failure_is_retryable(local_server):
    call = make_call(local_server, budget=1.0)
    local_server.stop()

    error = fail(call)

    assert error.kind is ErrorKind.RETRYABLE
    assert error.reason == "connection failed"
