"""The IMF DataMapper source, through `call_source` against a local server.

Success runs against the simulator (`serve_simulator`) or canned answers of known numbers, so
that the factor can be asserted exactly; each documented answer shape and each malformed answer
is a canned route.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sources.adapters.base import ErrorKind, SourceCall, SourceConfig, SourceError
from sources.calls import call_source
from tests.servers import LocalServer
from tests.sources.conftest import serve_simulator
from values.builtins import BUILTIN_VALUE_TYPES

PATH = "/external/datamapper/api/v1/NGDP_RPCH/DEU/USA"
FALLBACK = BUILTIN_VALUE_TYPES["industry_multipliers"]["fallback"]
API = {"version": "1", "output-method": "json"}


def make_call(
    server: LocalServer,
    *,
    region: str | None = "de",
    template: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    budget: float = 3.0,
    read_timeout: float = 2.0,
) -> SourceCall:
    source = SourceConfig(
        name="imf_api",
        kind="imf",
        base_url=server.url,
        connect_timeout=1.0,
        read_timeout=read_timeout,
        request_template=template or {},
    )
    return SourceCall(
        source=source,
        value_type="industry_multipliers",
        context={"region": region} if region is not None else {},
        params=params or {},
        timeout_budget=budget,
        baseline=FALLBACK,
    )


def answer(deu: dict[str, Any] | None = None, usa: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    countries = {code: years for code, years in (("DEU", deu), ("USA", usa)) if years is not None}
    return {"values": {"NGDP_RPCH": countries}, "api": API, **extra}


def times(factor: float) -> Any:
    return pytest.approx({industry: value * factor for industry, value in FALLBACK.items()}, abs=1e-9)


def fail(call: SourceCall) -> SourceError:
    with pytest.raises(SourceError) as caught:
        call_source(call)
    return caught.value


def query(server: LocalServer) -> dict[str, list[str]]:
    return parse_qs(urlsplit(server.requests[0].path).query)


# Success and the arithmetic ----------------------------------------------------------------------


def test_fetch__simulator_de_against_usa__every_multiplier_adjusted_by_one_clamped_factor(local_server):
    serve_simulator(local_server, "imf")

    result = call_source(make_call(local_server))

    ratios = [result.data[industry] / FALLBACK[industry] for industry in FALLBACK]
    assert max(ratios) - min(ratios) < 0.001  # one factor, up to rounding
    assert 0.8 <= ratios[0] <= 1.25
    assert result.confidence == 1.0
    this_year = datetime.now(UTC).year
    assert urlsplit(local_server.requests[0].path).path == PATH
    assert query(local_server) == {"periods": [f"{this_year - 2},{this_year - 1},{this_year}"]}


def test_fetch__region_growing_1_8_points_slower__multipliers_1_8_percent_lower_to_4_figures(local_server):
    local_server.route("GET", PATH, json=answer({"2024": -0.2, "2025": 0.2}, {"2024": 2.8, "2025": 2.0}))

    result = call_source(make_call(local_server))  # factor 1 + (0.2 - 2.0) / 100 = 0.982

    assert result.data == {
        "technology": 1.178,
        "healthcare": 1.08,
        "finance": 1.277,
        "manufacturing": 0.982,
        "retail": 1.08,
        "services": 0.982,
    }
    assert result.confidence == 1.0


def test_fetch__sensitivity_param_2__gap_counts_twice(local_server):
    local_server.route("GET", PATH, json=answer({"2025": 0.0}, {"2025": 5.0}))

    result = call_source(make_call(local_server, template={"sensitivity": 0.5}, params={"sensitivity": 2}))

    assert result.data == times(0.9)


def test_fetch__years_present_differ__latest_year_both_countries_have(local_server):
    local_server.route("GET", PATH, json=answer({"2024": 9.0, "2025": 1.0}, {"2024": 0.0, "2025": 2.0, "2026": 9.0}))

    result = call_source(make_call(local_server))

    assert result.data == times(0.99)


@pytest.mark.parametrize(
    "region_growth, expected_factor",
    [(-30.0, 0.8), (40.0, 1.25)],
    ids=["far_slower_clamped_to_0_8", "far_faster_clamped_to_1_25"],
)
def test_fetch__growth_gap_beyond_the_clamp__factor_clamped(local_server, region_growth, expected_factor):
    local_server.route("GET", PATH, json=answer({"2025": region_growth}, {"2025": 2.0}))

    result = call_source(make_call(local_server))

    assert result.data == times(expected_factor)


def test_fetch__version_2_indicators_block_and_empty_key__tolerated(local_server):
    body = {
        "values": {"NGDP_RPCH": {"DEU": {"2025": 1.0}, "USA": {"2025": 2.0}, "": None}},
        "indicators": {"NGDP_RPCH": {"label": "Real GDP growth"}},
        "api": {"version": "2", "output-method": "json"},
    }
    local_server.route("GET", PATH, json=body)

    assert call_source(make_call(local_server)).data == times(0.99)


def test_fetch__null_value_for_a_year__treated_as_absent(local_server):
    local_server.route("GET", PATH, json=answer({"2024": 1.0, "2025": None}, {"2024": 2.0, "2025": 9.0}))

    assert call_source(make_call(local_server)).data == times(0.99)


@pytest.mark.parametrize("region, iso3", [("gb", "GBR"), ("uk", "GBR"), ("jp", "JPN"), ("DE", "DEU"), ("deu", "DEU")])
def test_fetch__iso2_or_iso3_region__requested_as_iso3(local_server, region, iso3):
    serve_simulator(local_server, "imf")

    call_source(make_call(local_server, region=region))

    assert urlsplit(local_server.requests[0].path).path == f"/external/datamapper/api/v1/NGDP_RPCH/{iso3}/USA"


def test_fetch__indicator_reference_country_and_periods__from_template_with_params_over_it(local_server):
    path = "/external/datamapper/api/v1/PCPIPCH/DEU/GBR"
    local_server.route("GET", path, json={"values": {"PCPIPCH": {"DEU": {"2020": 1.0}, "GBR": {"2020": 2.0}}}, "api": API})

    result = call_source(
        make_call(
            local_server,
            template={"indicator": "NGDP_RPCH", "reference_country": "gb", "periods": ["2019", "2020"]},
            params={"indicator": "PCPIPCH"},
        )
    )

    assert result.data == times(0.99)
    assert query(local_server) == {"periods": ["2019,2020"]}


def test_fetch__no_region_in_context__reference_unchanged_with_confidence_0_5_without_request(local_server):
    result = call_source(make_call(local_server, region=None))

    assert result.data == FALLBACK
    assert result.confidence == 0.5
    assert local_server.calls() == 0


def test_fetch__region_is_the_reference_country__one_country_requested_and_factor_1(local_server):
    path = "/external/datamapper/api/v1/NGDP_RPCH/USA"
    local_server.route("GET", path, json=answer(usa={"2025": 2.0}))

    result = call_source(make_call(local_server, region="us"))

    assert result.data == FALLBACK
    assert local_server.calls(path) == 1


# The API's answers without data ------------------------------------------------------------------


def test_fetch__http_200_without_values__invalid_data_unknown_indicator_or_country(local_server):
    local_server.route("GET", PATH, json={"api": API})

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "unknown indicator or country" in error.reason
    assert local_server.calls(PATH) == 1


def test_fetch__simulator_unknown_indicator__invalid_data_unknown_indicator_or_country(local_server):
    serve_simulator(local_server, "imf")

    error = fail(make_call(local_server, params={"indicator": "NOT_AN_INDICATOR"}))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "unknown indicator or country" in error.reason


def test_fetch__simulator_unknown_iso3_region__invalid_data_naming_it(local_server):
    serve_simulator(local_server, "imf")

    error = fail(make_call(local_server, region="xyz"))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "no data for country XYZ" in error.reason


def test_fetch__no_year_shared_by_both_countries__invalid_data(local_server):
    local_server.route("GET", PATH, json=answer({"2024": 1.0}, {"2025": 2.0}))

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "no year with data for both DEU and USA" in error.reason


@pytest.mark.parametrize("region", ["zz", "global", "d/e"])
def test_fetch__region_without_an_iso3_code__terminal_naming_it_without_request(local_server, region):
    error = fail(make_call(local_server, region=region))

    assert error.kind is ErrorKind.TERMINAL
    assert repr(region) in error.reason
    assert local_server.calls() == 0


@pytest.mark.parametrize(
    "params, setting",
    [({"sensitivity": -1}, "sensitivity"), ({"sensitivity": "high"}, "sensitivity"), ({"periods": "last year"}, "periods")],
    ids=["negative_sensitivity", "text_sensitivity", "periods_not_years"],
)
def test_fetch__bad_setting__terminal_naming_it_without_request(local_server, params, setting):
    error = fail(make_call(local_server, params=params))

    assert error.kind is ErrorKind.TERMINAL
    assert setting in error.reason
    assert local_server.calls() == 0


# HTTP failures and malformed answers -------------------------------------------------------------


def test_fetch__html_error_page_503__retryable_after_three_attempts(local_server):
    page = "<html><body><h1>503 Service Unavailable</h1></body></html>"
    local_server.route("GET", PATH, status=503, body=page, headers={"Content-Type": "text/html"})

    error = fail(make_call(local_server, budget=1.0))

    assert error.kind is ErrorKind.RETRYABLE
    assert local_server.calls(PATH) == 3


@pytest.mark.parametrize(
    "body, reason",
    [
        ('{"values": {"NGDP_RPCH": {"DEU": {"2025": 0.', "not JSON"),
        ("<html><body>Maintenance</body></html>", "not JSON"),
        ("", "not JSON"),
        (json.dumps(answer({"2025": "abc"}, {"2025": 2.0})), "value of DEU in 2025 is not a number"),
        (json.dumps(answer({"2025": False}, {"2025": 2.0})), "value of DEU in 2025 is not a number"),
        ('{"values": {"NGDP_RPCH": {"DEU": {"2025": NaN}, "USA": {"2025": 2.0}}}}', "NaN"),
        (json.dumps(answer({"latest": 1.0}, {"2025": 2.0})), "key that is not a year"),
        (json.dumps(answer([1.0], {"2025": 2.0})), "values of DEU are not an object"),
        (json.dumps({"values": [], "api": API}), "no values for indicator NGDP_RPCH"),
        (json.dumps({"values": {"PCPIPCH": {}}, "api": API}), "no values for indicator NGDP_RPCH"),
        (json.dumps([answer({"2025": 1.0}, {"2025": 2.0})]), "expected a JSON object"),
        (json.dumps(answer({"2025": 1.0})), "no data for country USA"),
        (json.dumps(answer({}, {})), "no data for countries DEU, USA"),
    ],
    ids=[
        "truncated_json",
        "html_page_with_200",
        "empty_body",
        "value_abc",
        "value_boolean",
        "value_nan",
        "year_key_not_a_year",
        "country_values_not_an_object",
        "values_not_an_object",
        "indicator_missing_from_values",
        "array_not_object",
        "reference_country_absent",
        "both_countries_empty",
    ],
)
def test_fetch__malformed_answer__invalid_data_with_reason(local_server, body, reason):
    local_server.route("GET", PATH, body=body, headers={"Content-Type": "application/json"})

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert reason in error.reason
    assert local_server.calls(PATH) == 1


def test_fetch__answer_over_1_mib__invalid_data(local_server):
    padding = {str(1000 + year % 9000): 1.0 for year in range(9000)}
    body = {"values": {"NGDP_RPCH": {f"C{index:02}": padding for index in range(20)}}, "api": API}
    local_server.route("GET", PATH, body=json.dumps(body), headers={"Content-Length": None})

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "larger than 1 MiB" in error.reason


def test_fetch__slower_than_the_read_timeout__retryable_within_the_budget(local_server):
    local_server.route("GET", PATH, json=answer({"2025": 1.0}, {"2025": 2.0}), delay=3.0)

    started = time.monotonic()
    error = fail(make_call(local_server, read_timeout=0.3, budget=1.0))

    assert error.kind is ErrorKind.RETRYABLE
    assert time.monotonic() - started < 1.5


def test_fetch__server_stopped__connection_failure_is_retryable(local_server):
    call = make_call(local_server, budget=1.0)
    local_server.stop()

    error = fail(call)

    assert error.kind is ErrorKind.RETRYABLE
    assert error.reason == "connection failed"
