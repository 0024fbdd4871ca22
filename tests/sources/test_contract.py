"""The contract every source adapter keeps (one suite, run against each provider).

Each case serves the provider's simulator (its real wire format) from a LocalServer and calls
the adapter through `call_source`, the one way the engine calls a source.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any

import pytest

from sources.adapters import ADAPTERS
from sources.adapters.base import ErrorKind, SourceCall, SourceConfig, SourceError
from sources.calls import call_source
from tests.servers import LocalServer
from tests.sources.conftest import serve_simulator
from values.builtins import BUILTIN_VALUE_TYPES
from core.validation import ValueRules, value_problems

SECRET = "planted-contract-secret-7f3a"


@dataclass(frozen=True)
class Case:
    kind: str
    simulator: str
    value_type: str
    context: dict[str, Any]
    credentials: dict[str, str] = field(default_factory=dict)
    request_template: dict[str, Any] = field(default_factory=dict)
    field_mapping: dict[str, str] = field(default_factory=dict)
    channels: tuple[str, ...] = ()


CASES = [
    Case(
        "http_json",
        "market_research",
        "budget_thresholds",
        {"region": "us", "industry": "retail"},
        credentials={"api_key": "CONTRACT_MARKET_RESEARCH_API_KEY"},
        request_template={
            "method": "GET",
            "path": "/v1/budget-benchmarks",
            "query": {"region": "{region}", "industry": "{industry}"},
            "headers": {"Authorization": "Bearer {api_key}"},
        },
        field_mapping={
            "micro_threshold": "micro_business_spending_median",
            "small_threshold": "small_business_spending_median",
            "medium_threshold": "medium_business_spending_median",
            "large_threshold": "large_business_spending_median",
            "enterprise_threshold": "enterprise_spending_median",
        },
    ),
    Case("world_bank", "world_bank", "budget_thresholds", {"region": "de"}),
    Case("imf", "imf", "industry_multipliers", {"region": "de"}),
    Case(
        "google_ads",
        "google_ads",
        "channel_performance",
        {"region": "us", "industry": "retail", "channels": ["search_advertising"]},
        credentials={"access_token": "CONTRACT_GOOGLE_ADS_ACCESS_TOKEN", "customer_id": "CONTRACT_GOOGLE_ADS_CUSTOMER_ID"},
        channels=("search_advertising",),
    ),
    Case(
        "facebook_marketing",
        "facebook_marketing",
        "channel_performance",
        {"region": "us", "industry": "retail", "channels": ["social_media"]},
        credentials={"access_token": "CONTRACT_FACEBOOK_ACCESS_TOKEN", "ad_account_id": "CONTRACT_FACEBOOK_AD_ACCOUNT_ID"},
        channels=("social_media",),
    ),
    Case(
        "semrush",
        "semrush",
        "channel_performance",
        {"region": "us", "industry": "retail", "channels": ["search_advertising"]},
        credentials={"api_key": "CONTRACT_SEMRUSH_API_KEY"},
        channels=("search_advertising",),
    ),
]


def test_contract__every_adapter_kind__has_a_case():
    assert {case.kind for case in CASES} == set(ADAPTERS)


def _rules(value_type: str) -> ValueRules:
    definition = BUILTIN_VALUE_TYPES[value_type]
    validation = definition["validation"]
    return ValueRules(
        schema=definition["schema"],
        field_bounds=validation.get("fields", {}),
        ascending_fields=tuple(validation.get("ascending", ())),
    )


def _call(case: Case, base_url: str, budget: float = 5.0) -> SourceCall:
    source = SourceConfig(
        name=f"contract_{case.kind}",
        kind=case.kind,
        base_url=base_url,
        credential_variables=case.credentials,
        connect_timeout=1.0,
        read_timeout=1.0,
        request_template=case.request_template,
        field_mapping=case.field_mapping,
    )
    return SourceCall(
        source=source,
        value_type=case.value_type,
        context=case.context,
        channels=case.channels,
        timeout_budget=budget,
        reference=BUILTIN_VALUE_TYPES[case.value_type]["fallback"],
        baseline=BUILTIN_VALUE_TYPES[case.value_type]["fallback"],
    )


@pytest.fixture
def credentials(monkeypatch):
    def set_for(case: Case) -> None:
        for variable in case.credentials.values():
            monkeypatch.setenv(variable, SECRET)

    return set_for


@pytest.fixture
def server():
    with LocalServer() as local:
        yield local


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.kind)
def test_contract__simulator_answers__valid_value_with_provenance(case, server, credentials):
    credentials(case)
    serve_simulator(server, case.simulator)

    result = call_source(_call(case, server.url))

    assert value_problems(result.data, _rules(case.value_type)) == []
    if case.channels:
        assert set(result.data) == set(case.channels)
    assert 0.0 <= result.confidence <= 1.0
    assert result.fetched_at.tzinfo is not None and result.fetched_at.utcoffset() == timezone.utc.utcoffset(None)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.kind)
def test_contract__simulator_answers__same_context_same_data(case, server, credentials):
    credentials(case)
    serve_simulator(server, case.simulator)

    assert call_source(_call(case, server.url)).data == call_source(_call(case, server.url)).data


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.kind)
def test_contract__server_error_500__retryable(case, server, credentials):
    credentials(case)
    server.serve_all(lambda request: (500, {"Content-Type": "text/html"}, "<html>oops</html>"))

    with pytest.raises(SourceError) as raised:
        call_source(_call(case, server.url, budget=1.0))
    assert raised.value.kind is ErrorKind.RETRYABLE


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.kind)
def test_contract__html_page_with_200__invalid_data(case, server, credentials):
    credentials(case)
    server.serve_all(lambda request: (200, {"Content-Type": "text/html"}, "<html><body>Maintenance</body></html>"))

    with pytest.raises(SourceError) as raised:
        call_source(_call(case, server.url))
    assert raised.value.kind is ErrorKind.INVALID_DATA


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.kind)
def test_contract__server_stopped__retryable(case, credentials):
    credentials(case)
    stopped = LocalServer()
    stopped.stop()

    with pytest.raises(SourceError) as raised:
        call_source(_call(case, stopped.url, budget=1.0))
    assert raised.value.kind is ErrorKind.RETRYABLE


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.kind)
def test_contract__slower_than_read_timeout__retryable_within_budget(case, server, credentials):
    credentials(case)
    server.serve_all(_slow_handler)

    started = time.monotonic()
    with pytest.raises(SourceError) as raised:
        call_source(_call(case, server.url, budget=1.5))
    assert raised.value.kind is ErrorKind.RETRYABLE
    assert time.monotonic() - started < 1.5 + 0.5  # the budget holds, retries included


def _slow_handler(request):
    time.sleep(2.5)  # past the 1 s read timeout
    return 200, {"Content-Type": "application/json"}, b"{}"


@pytest.mark.parametrize("case", [case for case in CASES if case.credentials], ids=lambda case: case.kind)
def test_contract__credential_variable_unset__disabled_naming_it(case, server, monkeypatch):
    for variable in case.credentials.values():
        monkeypatch.delenv(variable, raising=False)
    serve_simulator(server, case.simulator)

    with pytest.raises(SourceError) as raised:
        call_source(_call(case, server.url))
    assert raised.value.kind is ErrorKind.DISABLED
    assert any(variable in raised.value.reason for variable in case.credentials.values())
    assert server.calls() == 0


@pytest.mark.parametrize("case", [case for case in CASES if case.credentials], ids=lambda case: case.kind)
def test_contract__planted_secret__never_in_errors_or_logs(case, server, credentials, caplog):
    credentials(case)
    # The server echoes everything it was sent, secret included, in a failing answer.
    server.serve_all(lambda request: (401, {"Content-Type": "application/json"}, {"echo": request.path, "headers": request.headers}))
    caplog.set_level("DEBUG")

    with pytest.raises(SourceError) as raised:
        call_source(_call(case, server.url))
    assert SECRET not in str(raised.value)
    assert SECRET not in caplog.text
