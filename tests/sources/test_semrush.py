"""The Semrush source, through `call_source` against a local server speaking Semrush's format.

Success runs against the simulator (`serve_simulator`); the arithmetic, the `ERROR NN` bodies
and the malformed answers are canned tables on `GET /`. The key travels in the query string,
so every failure is also checked for leaking it into errors and logs.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sources.adapters.base import ErrorKind, SourceCall, SourceConfig, SourceError
from sources.adapters.semrush import UNITS_EXHAUSTED_RETRY_SECONDS
from sources.calls import call_source
from sources.simulators import SimRequest
from sources.simulators.semrush import line_ending, simulate
from tests.servers import LocalServer, RecordedRequest
from tests.sources.conftest import serve_simulator
from values.builtins import BUILTIN_VALUE_TYPES
from core.validation import ValueRules, value_problems

KEY_VARIABLE = "SEMRUSH_API_KEY"
SECRET = "planted-semrush-key-5e1f"
DEFAULT_CONTEXT = {"region": "us", "industry": "retail", "channels": ["search_advertising"]}
FALLBACK = BUILTIN_VALUE_TYPES["channel_performance"]["fallback"]
SEARCH_REFERENCE = FALLBACK["search_advertising"]
# Measured: cpc_range (2 numbers) and competitive_intensity (1) of the channel's 7 numbers.
MEASURED_SHARE = 3 / 7

# Sorted by CPC the volumes run 1000, 3000, 4000, 2000 of 10000: the running volume reaches 25 %
# (2500) at CPC 2.00 and 75 % (7500) at CPC 4.00. A plain p25 would be 1.00.
TABLE = (
    "Keyword;Search Volume;CPC;Competition\n"
    "online shopping;4000;4.00;0.60\n"
    "cheap online shopping;3000;2.00;0.40\n"
    "online shopping deals;1000;1.00;0.20\n"
    "best online shopping;2000;8.00;0.80"
)
TABLE_CPC_RANGE = [2.00, 4.00]
TABLE_COMPETITION = (0.6 + 0.4 + 0.2 + 0.8) / 4


def make_call(
    server: LocalServer,
    *,
    context: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    request_template: Mapping[str, Any] | None = None,
    channels: tuple[str, ...] = ("search_advertising",),
    budget: float = 3.0,
    read_timeout: float = 2.0,
    reference: Any = FALLBACK,
) -> SourceCall:
    source = SourceConfig(
        name="semrush_api",
        kind="semrush",
        base_url=server.url,
        credential_variables={"api_key": KEY_VARIABLE},
        connect_timeout=1.0,
        read_timeout=read_timeout,
        request_template={"database": "us", "display_limit": 50} if request_template is None else request_template,
    )
    return SourceCall(
        source=source,
        value_type="channel_performance",
        context=DEFAULT_CONTEXT if context is None else context,
        params=params or {},
        channels=channels,
        timeout_budget=budget,
        reference=reference,
    )


def fail(call: SourceCall) -> SourceError:
    with pytest.raises(SourceError) as caught:
        call_source(call)
    return caught.value


def sent_query(server: LocalServer, index: int = 0) -> dict[str, str]:
    query = parse_qs(urlsplit(server.requests[index].path).query)
    return {name: values[0] for name, values in query.items()}


def channel_rules() -> ValueRules:
    definition = BUILTIN_VALUE_TYPES["channel_performance"]
    return ValueRules(schema=definition["schema"], field_bounds=definition["validation"]["fields"])


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_VARIABLE, SECRET)
    return SECRET


# The request ------------------------------------------------------------------------------------


def test_call__simulator__sends_phrase_related_with_key_phrase_database_columns_and_limit(local_server):
    serve_simulator(local_server, "semrush")

    call_source(make_call(local_server))

    assert urlsplit(local_server.requests[0].path).path == "/"
    assert sent_query(local_server) == {
        "type": "phrase_related",
        "key": SECRET,
        "phrase": "online shopping",
        "database": "us",
        "export_columns": "Ph,Nq,Cp,Co",
        "display_limit": "50",
    }
    assert SECRET not in str(local_server.requests[0].headers)  # the query parameter only


@pytest.mark.parametrize(
    "region, database", [("gb", "uk"), ("GB", "uk"), ("de", "de"), ("FR", "fr"), ("atlantis", "ca"), (None, "ca")]
)
def test_call__region__picks_semrush_database_else_template_default(local_server, region, database):
    serve_simulator(local_server, "semrush")

    call_source(
        make_call(
            local_server,
            context={"region": region, "industry": "retail"},
            request_template={"database": "ca", "display_limit": 20},
        )
    )

    assert sent_query(local_server)["database"] == database
    assert sent_query(local_server)["display_limit"] == "20"


def test_call__empty_template__asks_database_us_with_default_limit(local_server):
    serve_simulator(local_server, "semrush")

    call_source(make_call(local_server, context={"region": "global", "industry": "retail"}, request_template={}))

    assert sent_query(local_server)["database"] == "us"
    assert sent_query(local_server)["display_limit"] == "50"


def test_call__link_phrase_and_database_params__override_industry_and_region(local_server):
    serve_simulator(local_server, "semrush")

    call_source(make_call(local_server, params={"phrase": "running shoes", "database": "uk", "display_limit": 10}))

    query = sent_query(local_server)
    assert (query["phrase"], query["database"], query["display_limit"]) == ("running shoes", "uk", "10")


@pytest.mark.parametrize("industry, phrase", [("finance", "personal loan"), ("pet_supplies", "pet supplies")])
def test_call__industry__seed_phrase_from_table_else_industry_name(local_server, industry, phrase):
    serve_simulator(local_server, "semrush")

    call_source(make_call(local_server, context={"region": "us", "industry": industry}))

    assert sent_query(local_server)["phrase"] == phrase


def test_call__no_industry_with_default_phrase__asks_the_default(local_server):
    serve_simulator(local_server, "semrush")

    call_source(
        make_call(local_server, context={"region": "us"}, request_template={"database": "us", "default_phrase": "digital marketing"})
    )

    assert sent_query(local_server)["phrase"] == "digital marketing"


def test_call__no_industry_and_no_phrase__terminal_without_request(local_server):
    error = fail(make_call(local_server, context={"region": "us"}))

    assert error.kind is ErrorKind.TERMINAL
    assert "seed phrase" in error.reason
    assert local_server.calls() == 0


def test_call__channels_without_search_advertising__terminal_without_request(local_server):
    error = fail(make_call(local_server, channels=("social_media",)))

    assert error.kind is ErrorKind.TERMINAL
    assert local_server.calls() == 0


@pytest.mark.parametrize("limit", [0, "50", 10_001, True])
def test_call__display_limit_not_a_whole_number_in_range__terminal_without_request(local_server, limit):
    error = fail(make_call(local_server, request_template={"display_limit": limit}))

    assert error.kind is ErrorKind.TERMINAL
    assert "display_limit" in error.reason
    assert local_server.calls() == 0


def test_call__credential_variable_unset__disabled_without_request(local_server, monkeypatch):
    monkeypatch.delenv(KEY_VARIABLE)

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.DISABLED
    assert KEY_VARIABLE in error.reason
    assert local_server.calls() == 0


# Success and the derivation ---------------------------------------------------------------------


def test_call__simulator_answer__valid_search_advertising_value_completed_from_reference(local_server):
    serve_simulator(local_server, "semrush")

    result = call_source(make_call(local_server))

    assert set(result.data) == {"search_advertising"}
    channel = result.data["search_advertising"]
    assert value_problems(result.data, channel_rules()) == []
    assert channel["ctr_range"] == SEARCH_REFERENCE["ctr_range"]
    assert channel["conversion_rate_range"] == SEARCH_REFERENCE["conversion_rate_range"]
    assert channel["cpc_range"] != SEARCH_REFERENCE["cpc_range"]
    assert result.confidence == pytest.approx(MEASURED_SHARE)


def test_call__canned_table__volume_weighted_cpc_quartiles_and_mean_competition(local_server):
    local_server.route("GET", "/", body=TABLE)

    result = call_source(make_call(local_server))

    channel = result.data["search_advertising"]
    assert channel["cpc_range"] == TABLE_CPC_RANGE
    assert channel["competitive_intensity"] == pytest.approx(TABLE_COMPETITION)
    assert channel["ctr_range"] == SEARCH_REFERENCE["ctr_range"]
    assert result.confidence == pytest.approx(MEASURED_SHARE)


def test_call__crlf_line_endings_and_trailing_newline__same_result_as_lf(local_server):
    local_server.route("GET", "/", body=TABLE.replace("\n", "\r\n") + "\r\n")

    result = call_source(make_call(local_server))

    assert result.data["search_advertising"]["cpc_range"] == TABLE_CPC_RANGE
    assert result.data["search_advertising"]["competitive_intensity"] == pytest.approx(TABLE_COMPETITION)


def test_call__short_code_header_in_other_order_with_extra_column__same_result(local_server):
    rows = [line.split(";") for line in TABLE.split("\n")[1:]]
    body = "Co;Db;Cp;Ph;Nq\n" + "\n".join(f"{co};us;{cp};{ph};{nq}" for ph, nq, cp, co in rows)
    local_server.route("GET", "/", body=body)

    result = call_source(make_call(local_server))

    assert result.data["search_advertising"]["cpc_range"] == TABLE_CPC_RANGE
    assert result.data["search_advertising"]["competitive_intensity"] == pytest.approx(TABLE_COMPETITION)


def test_call__phrases_without_cpc_or_volume__left_out_of_the_derivation(local_server):
    body = TABLE + "\nonline shopping ideas;90000;0.00;0.00\nonline shopping guide;0;50.00;1.00"
    local_server.route("GET", "/", body=body)

    result = call_source(make_call(local_server))

    assert result.data["search_advertising"]["cpc_range"] == TABLE_CPC_RANGE
    assert result.data["search_advertising"]["competitive_intensity"] == pytest.approx(TABLE_COMPETITION)
    assert result.confidence == pytest.approx(MEASURED_SHARE)


def test_call__two_usable_rows__confidence_scaled_by_two_thirds(local_server):
    body = "Keyword;Search Volume;CPC;Competition\na;100;1.50;0.30\nb;300;3.00;0.50\nc;500;0;0"
    local_server.route("GET", "/", body=body)

    result = call_source(make_call(local_server))

    assert result.data["search_advertising"]["cpc_range"] == [1.50, 3.00]  # 100 and 300 of 400
    assert result.data["search_advertising"]["competitive_intensity"] == pytest.approx(0.4)
    assert result.confidence == pytest.approx(MEASURED_SHARE * 2 / 3)


def test_call__no_reference__measured_fields_only(local_server):
    local_server.route("GET", "/", body=TABLE)

    result = call_source(make_call(local_server, reference=None))

    assert result.data == {
        "search_advertising": {"cpc_range": TABLE_CPC_RANGE, "competitive_intensity": pytest.approx(TABLE_COMPETITION)}
    }


def test_call__no_row_with_cpc__invalid_data(local_server):
    local_server.route("GET", "/", body="Keyword;Search Volume;CPC;Competition\na;100;0.00;0.00")

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "has a CPC" in error.reason


def test_call__same_context_twice__same_data_from_the_simulator(local_server):
    serve_simulator(local_server, "semrush")

    assert call_source(make_call(local_server)).data == call_source(make_call(local_server)).data


# Semrush's error bodies -------------------------------------------------------------------------


ERROR_BODIES = {
    "50_nothing_found": ("ERROR 50 :: NOTHING FOUND", ErrorKind.INVALID_DATA),
    "120_wrong_key": ("ERROR 120 :: WRONG KEY - ID PAIR", ErrorKind.TERMINAL),
    "122_empty_key": ("ERROR 122 :: WRONG FORMAT OR EMPTY KEY", ErrorKind.TERMINAL),
    "130_api_disabled": ("ERROR 130 :: API DISABLED", ErrorKind.TERMINAL),
    "132_units_gone": ("ERROR 132 :: API UNITS BALANCE IS ZERO", ErrorKind.RETRYABLE),
    "999_unknown": ("ERROR 999 :: SOMETHING NEW", ErrorKind.TERMINAL),
}


@pytest.mark.parametrize("status", [200, 403])
@pytest.mark.parametrize("name", ERROR_BODIES, ids=list(ERROR_BODIES))
def test_call__error_body_with_status_200_or_403__classified_on_the_body_after_one_call(local_server, name, status):
    body, kind = ERROR_BODIES[name]
    local_server.route("GET", "/", body=body + "\n", status=status)

    error = fail(make_call(local_server))

    assert error.kind is kind
    assert f"ERROR {name.split('_')[0]}" in error.reason
    assert local_server.calls() == 1  # 132's retry_after is far beyond the budget


def test_call__error_50__invalid_data_naming_phrase_and_database(local_server):
    local_server.route("GET", "/", body="ERROR 50 :: NOTHING FOUND")

    error = fail(make_call(local_server, context={"region": "de", "industry": "retail"}))

    assert error.reason.startswith("no phrases for 'online shopping' in database de")


def test_call__error_132__retryable_after_an_hour(local_server):
    local_server.route("GET", "/", body="ERROR 132 :: API UNITS BALANCE IS ZERO", status=403)

    error = fail(make_call(local_server))

    assert error.retry_after == UNITS_EXHAUSTED_RETRY_SECONDS == 3600


def test_call__unknown_error_code__terminal_quoting_number_and_message(local_server):
    local_server.route("GET", "/", body="ERROR 134 :: TOTAL LIMIT EXCEEDED")

    error = fail(make_call(local_server))

    assert error.reason == "Semrush ERROR 134: TOTAL LIMIT EXCEEDED"


def test_call__error_body_with_status_500__classified_on_the_body(local_server):
    local_server.route("GET", "/", body="ERROR 120 :: WRONG KEY - ID PAIR", status=500)

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.TERMINAL
    assert local_server.calls() == 1


@pytest.mark.parametrize("key", [None, ""], ids=["missing", "empty"])
def test_simulator__missing_or_empty_key__error_120_with_403(key):
    query = {"type": ["phrase_related"], "phrase": ["seo"], "database": ["us"]}
    if key is not None:
        query["key"] = [key]

    response = simulate(SimRequest("GET", "/", query))

    assert (response.status, response.body) == (403, "ERROR 120 :: WRONG KEY - ID PAIR")


def test_simulator__unknown_database__error_50():
    query = {"key": ["k"], "type": ["phrase_related"], "phrase": ["seo"], "database": ["xx"]}

    response = simulate(SimRequest("GET", "/", query))

    assert response.body == "ERROR 50 :: NOTHING FOUND"


def test_simulator__display_offset__pages_through_the_same_rows():
    def page(limit: int, offset: int) -> list[str]:
        query = {"key": ["k"], "type": ["phrase_related"], "phrase": ["seo"], "database": ["de"]}
        query |= {"display_limit": [str(limit)], "display_offset": [str(offset)]}
        lines = simulate(SimRequest("GET", "/", query)).body.split(line_ending("de"))
        assert lines[0] == "Keyword;Search Volume;CPC;Competition"
        return lines[1:]

    assert page(3, 0) + page(3, 3) == page(6, 0)
    assert len(page(6, 0)) == 6


def test_simulator__line_endings__crlf_for_some_databases_lf_for_others():
    endings = {database: line_ending(database) for database in ("us", "uk", "de", "fr", "au", "jp", "br", "ca")}

    assert set(endings.values()) == {"\r\n", "\n"}
    query = {"key": ["k"], "type": ["phrase_related"], "phrase": ["seo"]}
    for database, ending in endings.items():
        body = simulate(SimRequest("GET", "/", {**query, "database": [database]})).body
        assert ("\r\n" in body) == (ending == "\r\n")


# Malformed answers ------------------------------------------------------------------------------

HEADER = "Keyword;Search Volume;CPC;Competition\n"
MALFORMED = {
    "truncated_line": (TABLE[: TABLE.rindex(";")], "line 5 has 3 fields, the header has 4"),
    "extra_field": (HEADER + "a;100;1.00;0.5;x", "line 2 has 5 fields, the header has 4"),
    "cpc_not_a_number": (HEADER + "a;100;abc;0.5", "line 2: CPC is not a number"),
    "cpc_nan": (HEADER + "a;100;NaN;0.5", "line 2: CPC is not a finite number"),
    "volume_infinite": (HEADER + "a;inf;1.00;0.5", "line 2: Search Volume is not a finite number"),
    "cpc_negative": (HEADER + "a;100;-1.00;0.5", "line 2: CPC is negative"),
    "competition_above_1": (HEADER + "a;100;1.00;1.5", "line 2: Competition is above 1"),
    "header_without_cpc": ("Keyword;Search Volume;Competition\na;100;0.5", "the header row lacks CPC"),
    "empty": ("", "the answer is empty"),
    "html_page": ("<!DOCTYPE html><html><body>Maintenance</body></html>", "an HTML page"),
    "not_utf8": (HEADER.encode() + b"caf\xe9;100;1.00;0.5", "not UTF-8"),
}


@pytest.mark.parametrize("name", MALFORMED, ids=list(MALFORMED))
def test_call__malformed_answer_with_200__invalid_data_naming_the_problem(local_server, name):
    body, reason = MALFORMED[name]
    local_server.route("GET", "/", body=body, headers={"Content-Type": "text/html; charset=UTF-8"})

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert reason in error.reason
    assert local_server.calls() == 1


@pytest.mark.parametrize("with_length", [True, False], ids=["content_length", "streamed"])
def test_call__answer_over_1_mib__invalid_data(local_server, with_length):
    body = TABLE + "\nx;1;1.00;0.50" * 100_000  # a valid table, only too long
    local_server.route("GET", "/", body=body, headers={} if with_length else {"Content-Length": None})

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "larger than 1 MiB" in error.reason


@pytest.mark.parametrize("status", [500, 502, 503])
def test_call__server_error_with_html__retryable_three_attempts(local_server, status):
    html = {"Content-Type": "text/html"}
    local_server.route("GET", "/", body="<html>Bad gateway</html>", status=status, headers=html)

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.RETRYABLE
    assert local_server.calls() == 3


def test_call__server_error_then_table__retries_and_succeeds(local_server):
    answers = iter([(503, {}, "<html>busy</html>"), (200, {}, TABLE)])
    local_server.route("GET", "/", handler=lambda request: next(answers))

    result = call_source(make_call(local_server))

    assert result.data["search_advertising"]["cpc_range"] == TABLE_CPC_RANGE


def test_call__slower_than_read_timeout__retryable_within_the_budget(local_server):
    local_server.route("GET", "/", body=TABLE, delay=2.0)

    error = fail(make_call(local_server, read_timeout=0.3, budget=1.0))

    assert error.kind is ErrorKind.RETRYABLE
    assert "timed out" in error.reason


# The key ----------------------------------------------------------------------------------------


def _echo_in_row(request: RecordedRequest) -> tuple[int, dict[str, str], str]:
    # A hostile answer that reflects the request URL, key included, where a number should be.
    return 200, {}, f"{HEADER}a;100;{request.path};0.5"


def _echo_in_error(request: RecordedRequest) -> tuple[int, dict[str, str], str]:
    return 403, {}, f"ERROR 777 :: BAD KEY {SECRET.upper()}"


KEY_FAILURES = {
    "error_120_with_403": dict(body="ERROR 120 :: WRONG KEY - ID PAIR", status=403),
    "error_132_with_200": dict(body="ERROR 132 :: API UNITS BALANCE IS ZERO"),
    "key_echoed_in_a_row": dict(handler=_echo_in_row),
    "key_echoed_in_an_error_message": dict(handler=_echo_in_error),
    "html_200_echoing_key": dict(body=f"<html>{SECRET}</html>"),
    "server_error_echoing_key": dict(body=f"<html>{SECRET}</html>", status=500),
    "timeout": dict(body=TABLE, delay=2.0),
    "connection_refused": None,
}


@pytest.mark.parametrize("failure", KEY_FAILURES, ids=list(KEY_FAILURES))
def test_call__failure__key_never_in_errors_or_logs(local_server, caplog, failure):
    caplog.set_level(logging.DEBUG)  # every logger, urllib3's request lines included
    call = make_call(local_server, read_timeout=0.2, budget=1.0)
    if KEY_FAILURES[failure] is None:
        local_server.stop()
    else:
        local_server.route("GET", "/", **KEY_FAILURES[failure])

    error = fail(call)

    assert SECRET not in str(error)
    assert SECRET.upper() not in str(error).upper()
    assert SECRET not in "".join(traceback.format_exception(error))
    assert SECRET not in caplog.text
    assert any(record.name == "sources.calls" and record.levelno == logging.WARNING for record in caplog.records)
    if KEY_FAILURES[failure] is not None:
        assert SECRET in local_server.requests[0].path  # it was really sent


def test_call__success__key_not_in_urllib3_debug_lines(local_server, caplog):
    caplog.set_level(logging.DEBUG)
    serve_simulator(local_server, "semrush")

    call_source(make_call(local_server))

    urllib3_lines = [record.getMessage() for record in caplog.records if record.name.startswith("urllib3")]
    assert any('"GET /?[redacted]' in line for line in urllib3_lines)
    assert SECRET not in caplog.text
