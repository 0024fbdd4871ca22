"""The generic JSON-over-HTTP source, through `call_source` against a local server.

Each test sets up one answer of the fake service and checks what the engine gets: data, or a
SourceError of the right kind; retries and the time budget; and that no credential leaks.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sources.adapters.base import ErrorKind, SourceCall, SourceConfig, SourceError
from sources.calls import call_source
from tests.servers import LocalServer, RecordedRequest

PATH = "/v1/email/benchmarks"
KEY_VARIABLE = "EMAIL_INTELLIGENCE_API_KEY"
SECRET = "planted-secret-abc"

# The email source of config/environments/base.yaml, in the shape the engine hands over.
TEMPLATE = {
    "method": "GET",
    "path": PATH,
    "query": {"region": "{region}", "industry": "{industry}"},
    "headers": {"Authorization": "Bearer {api_key}"},
}
EMAIL_MAPPING = {
    "email_marketing.ctr_range": "[click_rate_p25, click_rate_p75]",
    "email_marketing.cpc_range": "[cost_per_click_p25, cost_per_click_p75]",
}
EMAIL_ANSWER = {
    "click_rate_p25": 0.021,
    "click_rate_p75": 0.043,
    "cost_per_click_p25": 0.4,
    "cost_per_click_p75": 1.1,
    "confidence": 0.8,
}


def make_call(
    server: LocalServer,
    *,
    request: Mapping[str, Any] = TEMPLATE,
    mapping: Mapping[str, str] | None = None,
    link_mapping: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    credentials: Mapping[str, str] | None = None,
    channels: tuple[str, ...] = (),
    budget: float = 3.0,
    read_timeout: float = 2.0,
    kind: str = "http_json",
    is_enabled: bool = True,
) -> SourceCall:
    source = SourceConfig(
        name="email_intelligence_api",
        kind=kind,
        base_url=server.url,
        credential_variables={"api_key": KEY_VARIABLE} if credentials is None else credentials,
        connect_timeout=1.0,
        read_timeout=read_timeout,
        request_template=request,
        field_mapping=EMAIL_MAPPING if mapping is None else mapping,
        is_enabled=is_enabled,
        breaker_recovery_timeout=timedelta(seconds=60),
    )
    return SourceCall(
        source=source,
        value_type="channel_performance",
        context={"region": "DE", "industry": "retail", "channels": ["email_marketing", "social_media"]},
        params=params or {},
        field_mapping=link_mapping or {},
        channels=channels,
        timeout_budget=budget,
    )


def fail(call: SourceCall) -> SourceError:
    with pytest.raises(SourceError) as caught:
        call_source(call)
    return caught.value


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_VARIABLE, SECRET)
    return SECRET


# Success ----------------------------------------------------------------------------------------


def test_call__mapping_with_dotted_targets_and_list_expressions__returns_nested_data(local_server):
    local_server.route("GET", PATH, json=EMAIL_ANSWER)

    result = call_source(make_call(local_server))

    assert result.data == {
        "email_marketing": {"ctr_range": [0.021, 0.043], "cpc_range": [0.4, 1.1]},
    }
    assert result.confidence == 0.8  # the answer's own top-level confidence
    assert result.fetched_at.utcoffset() == timedelta(0)


def test_call__link_mapping__overrides_the_source_mapping(local_server):
    local_server.route("GET", PATH, json={"ctr": {"low": 0.01, "high": 0.02}})

    result = call_source(
        make_call(
            local_server,
            mapping={"email_marketing.ctr_range": "[click_rate_p25, click_rate_p75]"},
            link_mapping={"email_marketing.ctr_range": "[ctr.low, ctr.high]"},
        )
    )

    assert result.data == {"email_marketing": {"ctr_range": [0.01, 0.02]}}
    assert result.confidence == 1.0


def test_call__no_mapping__returns_the_json_as_is(local_server):
    answer = {"micro_threshold": "12.5", "confidence": 0.3}  # strings are the schema's business
    local_server.route("GET", PATH, json=answer)

    result = call_source(make_call(local_server, mapping={}))

    assert result.data == answer
    assert result.confidence == 1.0  # without a mapping, `confidence` is part of the data


def test_call__placeholders__filled_from_context_value_type_and_credentials(local_server):
    local_server.route("GET", "/v1/channel_performance", json={"ok": True})
    request = {
        "path": "/v1/{value_type}",
        "query": {"region": "{region}", "channels": "{channels}", "key": "{api_key}"},
        "headers": {"Authorization": "Bearer {api_key}", "X-Industry": "{industry}"},
    }

    call_source(make_call(local_server, request=request, mapping={}))

    [received] = local_server.requests
    assert parse_qs(urlsplit(received.path).query) == {
        "region": ["DE"],
        "channels": ["email_marketing,social_media"],
        "key": [SECRET],
    }
    assert received.headers["Authorization"] == f"Bearer {SECRET}"
    assert received.headers["X-Industry"] == "retail"


def test_call__link_params__override_template_keys_and_merge_query(local_server):
    local_server.route("GET", "/v2/benchmarks", json={"ok": True})

    call_source(
        make_call(
            local_server,
            mapping={},
            params={"path": "/v2/benchmarks", "query": {"industry": "all", "period": "30d"}},
        )
    )

    [received] = local_server.requests
    assert parse_qs(urlsplit(received.path).query) == {
        "region": ["DE"],
        "industry": ["all"],
        "period": ["30d"],
    }
    assert received.headers["Authorization"] == f"Bearer {SECRET}"


def test_call__query_placeholder_without_value__parameter_is_dropped(local_server):
    local_server.route("GET", PATH, json={"ok": True})
    request = {**TEMPLATE, "query": {"region": "{region}", "segment": "{segment}"}}

    call_source(make_call(local_server, request=request, mapping={}))

    [received] = local_server.requests
    assert parse_qs(urlsplit(received.path).query) == {"region": ["DE"]}


def test_call__header_placeholder_without_value__terminal_naming_it(local_server):
    request = {**TEMPLATE, "headers": {"X-Segment": "{segment}"}}

    error = fail(make_call(local_server, request=request))

    assert error.kind is ErrorKind.TERMINAL
    assert "{segment}" in error.reason
    assert local_server.calls() == 0


def test_call__post_template__sends_the_filled_json_body(local_server):
    local_server.route("POST", "/query", json={"ok": True})
    request = {
        "method": "post",
        "path": "/query",
        "body": {"filter": {"region": "{region}"}, "types": ["{value_type}"], "limit": 5},
    }

    call_source(make_call(local_server, request=request, mapping={}))

    [received] = local_server.requests
    assert received.method == "POST"
    assert json.loads(received.body) == {
        "filter": {"region": "DE"},
        "types": ["channel_performance"],
        "limit": 5,
    }


# Refused before any request ---------------------------------------------------------------------


def test_call__credential_variable_unset__disabled_naming_the_variable(local_server, monkeypatch):
    monkeypatch.delenv(KEY_VARIABLE)
    local_server.route("GET", PATH, json=EMAIL_ANSWER)

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.DISABLED
    assert KEY_VARIABLE in error.reason
    assert local_server.calls() == 0


def test_call__source_switched_off__disabled_without_a_request(local_server):
    local_server.route("GET", PATH, json=EMAIL_ANSWER)

    error = fail(make_call(local_server, is_enabled=False))

    assert error.kind is ErrorKind.DISABLED
    assert local_server.calls() == 0


def test_call__unknown_kind__disabled_naming_the_kind(local_server):
    error = fail(make_call(local_server, kind="carrier_pigeon"))

    assert error.kind is ErrorKind.DISABLED
    assert error.reason == "no adapter for kind carrier_pigeon"


# HTTP errors and retries ------------------------------------------------------------------------


def test_call__server_500_then_200__retries_and_succeeds(local_server):
    answers = iter([(500, {}, {"error": "boom"}), (200, {}, EMAIL_ANSWER)])
    local_server.route("GET", PATH, handler=lambda request: next(answers))

    result = call_source(make_call(local_server))

    assert result.data["email_marketing"]["ctr_range"] == [0.021, 0.043]
    assert local_server.calls(PATH) == 2


def test_call__server_500_forever__retryable_after_three_attempts_within_the_budget(local_server):
    local_server.route("GET", PATH, status=503, json={"error": "unavailable"})

    started = time.monotonic()
    error = fail(make_call(local_server, budget=1.0))

    assert error.kind is ErrorKind.RETRYABLE
    assert local_server.calls(PATH) == 3
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("status", [401, 403])
def test_call__authentication_refused__terminal_after_one_call(local_server, status):
    local_server.route("GET", PATH, status=status, json={"error": "bad key"})

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.TERMINAL
    assert error.reason == f"authentication refused (HTTP {status})"
    assert local_server.calls(PATH) == 1


def test_call__server_404__terminal_after_one_call(local_server):
    error = fail(make_call(local_server))  # no route: the server answers 404

    assert error.kind is ErrorKind.TERMINAL
    assert "HTTP 404" in error.reason
    assert local_server.calls() == 1


def test_call__server_429_with_retry_after_beyond_budget__retryable_at_once(local_server):
    local_server.route("GET", PATH, status=429, json={"error": "slow down"}, headers={"Retry-After": "30"})

    started = time.monotonic()
    error = fail(make_call(local_server, budget=2.0))

    assert error.kind is ErrorKind.RETRYABLE
    assert error.retry_after == 30.0  # passed on, so the caller can honour it
    assert local_server.calls(PATH) == 1
    assert time.monotonic() - started < 0.5  # no sleep that the budget cannot cover


def test_call__server_429_then_200__waits_retry_after_and_succeeds(local_server):
    answers = iter([(429, {"Retry-After": "1"}, {"error": "slow down"}), (200, {}, EMAIL_ANSWER)])
    local_server.route("GET", PATH, handler=lambda request: next(answers))

    started = time.monotonic()
    call_source(make_call(local_server, budget=3.0))

    assert local_server.calls(PATH) == 2
    assert time.monotonic() - started >= 1.0


def test_call__server_slower_than_read_timeout__retryable_quickly(local_server):
    local_server.route("GET", PATH, json=EMAIL_ANSWER, delay=5.0)

    started = time.monotonic()
    error = fail(make_call(local_server, read_timeout=0.2, budget=2.0))

    assert error.kind is ErrorKind.RETRYABLE
    assert local_server.calls(PATH) == 3
    assert time.monotonic() - started < 1.5  # 3 × 0.2 s plus backoff, not 5 s


def test_call__server_never_answers__retryable_within_the_budget(local_server):
    # The read timeout (2 s) is clamped to the budget, so one attempt uses it all.
    local_server.route("GET", PATH, hang=True)

    started = time.monotonic()
    error = fail(make_call(local_server, read_timeout=2.0, budget=0.5))

    assert error.kind is ErrorKind.RETRYABLE
    assert local_server.calls(PATH) == 1
    assert time.monotonic() - started < 1.0


def test_call__server_stopped__connection_refused_is_retryable(local_server):
    call = make_call(local_server, budget=1.0)
    local_server.stop()

    error = fail(call)

    assert error.kind is ErrorKind.RETRYABLE
    assert error.reason == "connection failed"


# Answers that are not usable data ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body, content_type",
    [
        ("<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"),
        ('{"click_rate_p25": 0.021, "click_rate_p7', "application/json"),
        ("", "application/json"),
    ],
    ids=["html_error_page", "truncated_json", "empty_body"],
)
def test_call__answer_not_json__invalid_data(local_server, body, content_type):
    local_server.route("GET", PATH, body=body, headers={"Content-Type": content_type})

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "not JSON" in error.reason
    assert "<html>" not in error.reason and "click_rate" not in error.reason  # a reason, not the body
    assert local_server.calls(PATH) == 1


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_call__non_finite_number_in_answer__invalid_data(local_server, literal):
    local_server.route("GET", PATH, body=f'{{"click_rate_p25": {literal}, "click_rate_p75": 0.04}}')

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert literal in error.reason


@pytest.mark.parametrize("with_length", [True, False], ids=["content_length", "streamed"])
def test_call__answer_over_1_mib__invalid_data(local_server, with_length):
    body = json.dumps({"padding": "x" * (2 * 1024 * 1024)})
    local_server.route("GET", PATH, body=body, headers={} if with_length else {"Content-Length": None})

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "larger than 1 MiB" in error.reason


def test_call__mapped_field_missing__invalid_data_naming_field_and_expression(local_server):
    answer = {key: value for key, value in EMAIL_ANSWER.items() if key != "cost_per_click_p75"}
    local_server.route("GET", PATH, json=answer)

    error = fail(make_call(local_server))

    assert error.kind is ErrorKind.INVALID_DATA
    assert "email_marketing.cpc_range" in error.reason
    assert "[cost_per_click_p25, cost_per_click_p75]" in error.reason


def test_call__channel_keyed_data__keeps_only_the_sources_channels(local_server):
    local_server.route(
        "GET",
        PATH,
        json={"email_marketing": {"ctr": 0.03}, "social_media": {"ctr": 0.01}, "tv": {"ctr": 0.5}},
    )
    channels = ("email_marketing", "search_advertising")

    result = call_source(make_call(local_server, mapping={}, channels=channels))

    assert result.data == {"email_marketing": {"ctr": 0.03}}


def test_call__no_data_for_the_sources_channels__invalid_data(local_server):
    local_server.route("GET", PATH, json={"social_media": {"ctr": 0.01}})

    error = fail(make_call(local_server, mapping={}, channels=("email_marketing",)))

    assert error.kind is ErrorKind.INVALID_DATA
    assert error.reason == "no data for channels email_marketing"


# Secrets ----------------------------------------------------------------------------------------


def _echo_secret(request: RecordedRequest) -> tuple[int, dict[str, str], str]:
    # A hostile or careless service that reflects the credential in an unparseable answer.
    return 400, {"Content-Type": "text/plain"}, f"bad request: {request.path} {request.headers}"


FAILURES = {
    "unauthorized": dict(status=401, json={"error": f"key {SECRET} refused"}),
    "server_error": dict(status=500, body=f"<html>{SECRET}</html>"),
    "reflecting_400": dict(handler=_echo_secret),
    "html_200": dict(body=f"<html>{SECRET}</html>", headers={"Content-Type": "text/html"}),
    "missing_field": dict(json={"echo": SECRET}),
    "timeout": dict(json=EMAIL_ANSWER, delay=2.0),
    "connection_refused": None,
}


@pytest.mark.parametrize("failure", FAILURES, ids=list(FAILURES))
def test_call__planted_secret__never_in_errors_or_logs(local_server, caplog, failure):
    caplog.set_level(logging.DEBUG)  # every logger, urllib3's request lines included
    # The secret goes in the query string and in a header.
    request = {**TEMPLATE, "query": {"region": "{region}", "key": "{api_key}"}}
    call = make_call(local_server, request=request, read_timeout=0.2, budget=1.0)
    if FAILURES[failure] is None:
        local_server.stop()
    else:
        local_server.route("GET", PATH, **FAILURES[failure])

    error = fail(call)

    assert SECRET not in str(error)
    assert SECRET not in "".join(traceback.format_exception(error))
    assert SECRET not in caplog.text
    assert any(
        record.name == "sources.calls" and record.levelno == logging.WARNING for record in caplog.records
    )
    if FAILURES[failure] is not None:
        assert SECRET in local_server.requests[0].path  # it was really sent


def test_call__successful_call_with_secret_in_query__not_in_debug_logs(local_server, caplog):
    caplog.set_level(logging.DEBUG)
    local_server.route("GET", PATH, json=EMAIL_ANSWER)
    request = {**TEMPLATE, "query": {"key": "{api_key}"}}

    call_source(make_call(local_server, request=request))

    assert "urllib3" in {record.name.split(".")[0] for record in caplog.records}
    assert SECRET not in caplog.text


def test_call__credential_placeholder_in_path__terminal_without_request(local_server):
    error = fail(make_call(local_server, request={**TEMPLATE, "path": "/v1/{api_key}/benchmarks"}))

    assert error.kind is ErrorKind.TERMINAL
    assert "{api_key}" in error.reason
    assert SECRET not in str(error)
    assert local_server.calls() == 0
