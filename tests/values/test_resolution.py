"""Resolution through the public interface, `values.get_value`, on real parts: the test
PostgreSQL and Redis, sources served by local HTTP servers, and (for the outage tests) a Redis
server of the test's own that it kills, and a database connection pointed at a closed port.
"""

from __future__ import annotations

import math
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection
from django.test import override_settings
from django.utils import timezone
from django_redis import get_redis_connection

from sources.models import Source
from values.models import ValueTypeSource
from tests import databases
from tests.servers import LocalServer, RecordedRequest
from tests.values.conftest import (
    BUDGET,
    benchmarks_answer,
    competitive_answer,
    economic_answer,
    market_answer,
    reload_engine,
    scaled,
    serve_sources,
)
from values import get_value
from core.answers import Answer
from values.cache import L2_RETRY_AFTER, cache_key, l1, l2
from core.context import ContextError, canonical_context
from values.models import Override, ResolvedValue, ValueType
from audit.models import AuditEntry
from values.registry import CHECK_INTERVAL, registry
from values.background import refreshes
from values.resolution import FALLBACK_TTL, UnknownValueType
from values.services import override_create

MARKET = "market_research_api"  # primary, weight 0.6
BENCHMARKS = "industry_benchmarks_api"  # primary, weight 0.4
MARKET_PATH = "/v1/budget-benchmarks"
BENCHMARKS_PATH = "/benchmarks/budget-tiers"
ECONOMIC = "economic_intelligence_api"  # industry_multipliers, weight 0.7
COMPETITIVE = "competitive_analysis_api"  # industry_multipliers, weight 0.3
ECONOMIC_PATH = "/v2/industry-multipliers"
COMPETITIVE_PATH = "/multipliers"

# What industry_benchmarks_api answers, beside BUDGET from market_research_api.
OTHER_BUDGET = {
    "micro_threshold": 800,
    "small_threshold": 7000,
    "medium_threshold": 70000,
    "large_threshold": 700000,
    "enterprise_threshold": 2600000,
}
SEED_FALLBACK = {
    "micro_threshold": 500,
    "small_threshold": 5000,
    "medium_threshold": 50000,
    "large_threshold": 500000,
    "enterprise_threshold": 2000000,
}
MULTIPLIERS = {
    "technology": 1.25,
    "healthcare": 1.05,
    "finance": 1.35,
    "manufacturing": 0.95,
    "retail": 1.15,
    "services": 1.0,
}
US = {"region": "us"}
DE = {"region": "de"}
JSON = {"Content-Type": "application/json"}


# The sources' wire formats (config/environments/base.yaml: request paths and mappings) -------







def blended(weighted: list[tuple[float, dict]]) -> dict:
    total = sum(weight for weight, _ in weighted)
    return {
        name: sum(weight * budget[name] for weight, budget in weighted) / total for name in BUDGET
    }


def region_of(request: RecordedRequest) -> str:
    return parse_qs(urlsplit(request.path).query).get("region", [""])[0]


# Bad answers, each a source's failure (name, route keyword arguments) ---------------------------

NOT_ASCENDING = {**BUDGET, "small_threshold": 400}  # below micro_threshold
BAD_MARKET_ANSWERS = {
    "not_ascending": {"json": market_answer(NOT_ASCENDING)},
    "html_page": {
        "body": "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
        "headers": {"Content-Type": "text/html"},
    },
    "truncated_json": {
        "body": '{"micro_business_spending_median": 600, "small_business_spend',
        "headers": {"Content-Type": "application/json"},
    },
    "nan": {
        "body": (
            '{"micro_business_spending_median": NaN, "small_business_spending_median": 6000,'
            ' "medium_business_spending_median": 60000, "large_business_spending_median": 600000,'
            ' "enterprise_spending_median": 2400000}'
        ),
        "headers": {"Content-Type": "application/json"},
    },
    "hanging": {"hang": True},
}
BAD_BENCHMARKS_ANSWERS = {
    "not_ascending": {"json": benchmarks_answer(NOT_ASCENDING)},
    "html_page": BAD_MARKET_ANSWERS["html_page"],
    "truncated_json": {
        "body": '{"tiers": {"micro": 800, "small": 70',
        "headers": {"Content-Type": "application/json"},
    },
    "nan": {
        "body": '{"tiers": {"micro": 800, "small": NaN, "medium": 70000, "large": 700000, "enterprise": 2600000}}',
        "headers": {"Content-Type": "application/json"},
    },
    "hanging": {"hang": True},
}


# Fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def budget_server(engine, local_server: LocalServer) -> LocalServer:
    """Both budget_thresholds sources served: market_research_api answers BUDGET,
    industry_benchmarks_api OTHER_BUDGET (tests replace routes to make them misbehave)."""
    serve_sources(local_server, MARKET, BENCHMARKS)
    local_server.route("GET", MARKET_PATH, json=market_answer(BUDGET))
    local_server.route("GET", BENCHMARKS_PATH, json=benchmarks_answer(OTHER_BUDGET))
    return local_server


@pytest.fixture
def multiplier_server(engine, local_server: LocalServer) -> LocalServer:
    serve_sources(local_server, ECONOMIC, COMPETITIVE)
    local_server.route("GET", ECONOMIC_PATH, json=economic_answer(MULTIPLIERS))
    local_server.route("GET", COMPETITIVE_PATH, json=competitive_answer(MULTIPLIERS))
    return local_server


def budget_type() -> ValueType:
    return ValueType.objects.get(key="budget_thresholds")


def in_l2(key: str, context: dict) -> Answer | None:
    """What Redis holds for `key` and `context` under the engine's one key function."""
    value_type = registry.snapshot().value_type(key)
    _, context_key = canonical_context(context, value_type.context_keys, value_type.key)
    return l2.get(cache_key(value_type, context_key))


def l2_ttl(key: str, context: dict) -> float:
    value_type = registry.snapshot().value_type(key)
    _, context_key = canonical_context(context, value_type.context_keys, value_type.key)
    return get_redis_connection("default").pttl(cache_key(value_type, context_key)) / 1000


def clear_l1_and_l2() -> None:
    l1.clear()
    caches["default"].clear()


def set_tier(source_name: str, tier: str) -> None:
    ValueTypeSource.objects.filter(value_type__key="budget_thresholds", source__name=source_name).update(tier=tier)
    reload_engine()


def create_override(value, *, context_match=None, starts_at=None, expires_at=None) -> Override:
    return override_create(
        value_type=budget_type(),
        value=value,
        reason="test",
        actor="tester",
        channel="test",
        context_match=context_match,
        starts_at=starts_at,
        expires_at=expires_at,
    )


def wait_for_propagation() -> None:
    """Operators' changes reach a process at its next version check, at most CHECK_INTERVAL away."""
    time.sleep(CHECK_INTERVAL + 0.2)


# 1. Overrides ---------------------------------------------------------------------------------


def test_get_value__active_override__served_with_tier_override(budget_server):
    value = scaled(BUDGET, 2)
    create_override(value, context_match={})
    wait_for_propagation()

    answer = get_value("budget_thresholds", US)

    assert answer.value == value
    assert answer.provenance.tier == "override"
    assert answer.provenance.origin == "override"
    assert answer.provenance.confidence == 1.0
    assert budget_server.calls() == 0


def test_get_value__general_and_region_overrides__most_specific_wins(budget_server):
    general, for_us = scaled(BUDGET, 2), scaled(BUDGET, 3)
    create_override(general, context_match={})
    create_override(for_us, context_match={"region": "US"})
    wait_for_propagation()

    us = get_value("budget_thresholds", {"region": "us", "industry": "retail"})
    de = get_value("budget_thresholds", {"region": "de", "industry": "retail"})

    assert (us.provenance.tier, us.value) == ("override", for_us)
    assert (de.provenance.tier, de.value) == ("override", general)
    assert budget_server.calls() == 0


@pytest.mark.parametrize(
    ("starts_in", "expires_in"),
    [
        pytest.param(timedelta(hours=-2), timedelta(hours=-1), id="expired"),
        pytest.param(timedelta(hours=1), None, id="not_yet_started"),
    ],
)
def test_get_value__expired_or_future_override__ignored(budget_server, starts_in, expires_in):
    now = timezone.now()
    create_override(
        scaled(BUDGET, 2),
        context_match={},
        starts_at=now + starts_in,
        expires_at=now + expires_in if expires_in is not None else None,
    )
    wait_for_propagation()

    answer = get_value("budget_thresholds", US)

    assert answer.provenance.tier == "primary"
    assert answer.value == pytest.approx(blended([(0.6, BUDGET), (0.4, OTHER_BUDGET)]))


def test_get_value__override_window__served_only_between_start_and_expiry(budget_server):
    value = scaled(BUDGET, 2)
    starts_at = timezone.now() + timedelta(seconds=1)
    expires_at = starts_at + timedelta(seconds=2)
    create_override(value, context_match={}, starts_at=starts_at, expires_at=expires_at)
    wait_for_propagation()

    before = get_value("budget_thresholds", US)
    time.sleep(max(0.0, (starts_at - timezone.now()).total_seconds()) + 0.2)
    during = get_value("budget_thresholds", US)
    time.sleep(max(0.0, (expires_at - timezone.now()).total_seconds()) + 0.2)
    after = get_value("budget_thresholds", US)

    assert before.provenance.tier == "primary"
    assert (during.provenance.tier, during.value) == ("override", value)
    assert after.provenance.tier == "l1"  # the sources' value, cached before the override began
    assert after.value == before.value


def test_override_create__value_breaks_bounds__refused_and_nothing_changes(budget_server):
    overrides, history = Override.objects.count(), AuditEntry.objects.count()

    with pytest.raises(ValidationError) as refused:
        create_override(NOT_ASCENDING, context_match={})
    wait_for_propagation()

    assert "value" in refused.value.message_dict
    assert (Override.objects.count(), AuditEntry.objects.count()) == (overrides, history)
    answer = get_value("budget_thresholds", US)
    assert answer.provenance.tier == "primary"
    assert answer.value != NOT_ASCENDING


# 2. Caches ------------------------------------------------------------------------------------


def test_get_value__repeated_reads__primary_then_l1_l2_l3_with_two_source_calls(budget_server):
    budget_server.route("GET", MARKET_PATH, json={**market_answer(BUDGET), "confidence": 0.9})
    before = timezone.now()

    first = get_value("budget_thresholds", US)

    after = timezone.now()
    assert first.key == "budget_thresholds"
    assert first.provenance.tier == first.provenance.origin == "primary"
    assert first.value == pytest.approx(blended([(0.6, BUDGET), (0.4, OTHER_BUDGET)]))
    uses = {use.name: use for use in first.provenance.sources}
    assert set(uses) == {MARKET, BENCHMARKS}
    assert (uses[MARKET].weight, uses[MARKET].confidence) == (0.6, 0.9)
    assert (uses[BENCHMARKS].weight, uses[BENCHMARKS].confidence) == (0.4, 1.0)
    assert all(before <= use.fetched_at <= after for use in uses.values())
    assert first.provenance.confidence == pytest.approx(0.6 * 0.9 + 0.4 * 1.0)
    assert first.provenance.stale is False

    second = get_value("budget_thresholds", US)
    l1.clear()
    third = get_value("budget_thresholds", US)
    clear_l1_and_l2()
    fourth = get_value("budget_thresholds", US)

    assert [answer.provenance.tier for answer in (second, third, fourth)] == ["l1", "l2", "l3"]
    for answer in (second, third, fourth):
        assert answer.value == first.value
        assert answer.provenance.origin == "primary"
        assert answer.provenance.sources == first.provenance.sources
    assert budget_server.calls(MARKET_PATH) == 1
    assert budget_server.calls(BENCHMARKS_PATH) == 1


def test_get_value__l1_hit__no_database_query(budget_server, django_assert_num_queries):
    get_value("budget_thresholds", US)
    registry.refresh(force=True)  # so that the version check falls outside the block

    with django_assert_num_queries(0):
        answer = get_value("budget_thresholds", US)

    assert answer.provenance.tier == "l1"


def test_get_value__l2_hit__no_database_query(budget_server, django_assert_num_queries):
    get_value("budget_thresholds", US)
    l1.clear()
    registry.refresh(force=True)  # so that the version check falls outside the block

    with django_assert_num_queries(0):
        answer = get_value("budget_thresholds", US)

    assert answer.provenance.tier == "l2"


# 3. Contexts ----------------------------------------------------------------------------------


def test_get_value__same_context_other_order_and_case__hits_same_cache(budget_server):
    first = get_value("budget_thresholds", {"region": "US", "industry": "Retail"})
    second = get_value("budget_thresholds", {"industry": "retail", "region": "us"})

    assert first.provenance.tier == "primary"
    assert second.provenance.tier == "l1"
    assert first.context == second.context == {"industry": "retail", "region": "us"}
    assert second.value == first.value
    assert budget_server.calls() == 2


def test_get_value__different_regions__each_served_its_own_value(budget_server):
    factor = {"us": 1, "de": 2}

    def market(request):
        return 200, JSON, market_answer(scaled(BUDGET, factor[region_of(request)]))

    def benchmarks(request):
        return 200, JSON, benchmarks_answer(scaled(OTHER_BUDGET, factor[region_of(request)]))

    budget_server.route("GET", MARKET_PATH, handler=market)
    budget_server.route("GET", BENCHMARKS_PATH, handler=benchmarks)
    expected = {
        region: blended([(0.6, scaled(BUDGET, f)), (0.4, scaled(OTHER_BUDGET, f))]) for region, f in factor.items()
    }

    us, de = get_value("budget_thresholds", US), get_value("budget_thresholds", DE)
    us_l1, de_l1 = get_value("budget_thresholds", US), get_value("budget_thresholds", DE)
    l1.clear()
    us_l2, de_l2 = get_value("budget_thresholds", US), get_value("budget_thresholds", DE)

    assert [a.provenance.tier for a in (us, de, us_l1, de_l1, us_l2, de_l2)] == [
        "primary", "primary", "l1", "l1", "l2", "l2"
    ]
    for answer in (us, us_l1, us_l2):
        assert answer.context == US
        assert answer.value == pytest.approx(expected["us"])
    for answer in (de, de_l1, de_l2):
        assert answer.context == DE
        assert answer.value == pytest.approx(expected["de"])
    assert budget_server.calls() == 4  # two sources, two regions


def test_get_value__unknown_context_key__raises_context_error_naming_allowed_keys(engine):
    with pytest.raises(ContextError) as refused:
        get_value("budget_thresholds", {"region": "us", "country": "us"})

    message = str(refused.value)
    assert "'country'" in message
    assert "allowed: industry, region" in message


def test_get_value__channels_as_text__same_as_sorted_list(engine, local_server):
    serve_sources(local_server, "email_intelligence_api")  # the one http_json channel source
    local_server.route("GET", "/v1/email/benchmarks", status=503, json={"error": "down"})

    as_text = get_value("channel_performance", {"channels": "social_media,email_marketing"})
    assert refreshes.wait_until_idle(10)  # the refresh the degraded read left behind
    calls_of_first_read = local_server.calls()
    as_list = get_value("channel_performance", {"channels": ["email_marketing", "social_media"]})

    assert as_text.context == as_list.context == {"channels": ["email_marketing", "social_media"]}
    assert as_list.provenance.tier == "l1"
    assert as_list.value == as_text.value
    assert local_server.calls() == calls_of_first_read  # the second read called nothing


# 4. Source tiers ------------------------------------------------------------------------------


def test_get_value__primary_down__serves_secondary(budget_server):
    set_tier(BENCHMARKS, "secondary")
    budget_server.route("GET", MARKET_PATH, status=500, json={"error": "down"})

    answer = get_value("budget_thresholds", US)

    assert answer.provenance.tier == answer.provenance.origin == "secondary"
    assert answer.value == OTHER_BUDGET
    assert [use.name for use in answer.provenance.sources] == [BENCHMARKS]
    assert any(
        error.startswith(f"primary: {MARKET}:") and "HTTP 500" in error for error in answer.provenance.errors
    ), answer.provenance.errors


def test_get_value__primary_and_secondary_down__serves_tertiary(budget_server):
    benchmarks = Source.objects.get(name=BENCHMARKS)
    archive = Source.objects.create(
        name="archived_benchmarks_api",
        kind=benchmarks.kind,
        base_url=budget_server.url,
        credential_variables=benchmarks.credential_variables,
        request_template={**benchmarks.request_template, "path": "/archive/budget-tiers"},
        field_mapping=benchmarks.field_mapping,
    )
    ValueTypeSource.objects.create(value_type=budget_type(), source=archive, tier="tertiary", weight=0.5)
    set_tier(BENCHMARKS, "secondary")
    budget_server.route("GET", MARKET_PATH, status=500, json={"error": "down"})
    budget_server.route("GET", BENCHMARKS_PATH, status=503, json={"error": "down"})
    budget_server.route("GET", "/archive/budget-tiers", json=benchmarks_answer(SEED_FALLBACK))

    answer = get_value("budget_thresholds", US)

    assert answer.provenance.tier == "tertiary"
    assert answer.value == SEED_FALLBACK
    assert [use.name for use in answer.provenance.sources] == ["archived_benchmarks_api"]
    errors = " | ".join(answer.provenance.errors)
    assert f"primary: {MARKET}:" in errors and "HTTP 500" in errors
    assert f"secondary: {BENCHMARKS}:" in errors and "HTTP 503" in errors


def test_get_value__one_of_two_primaries_down__other_blended_alone_with_lower_confidence(budget_server):
    def market(request):
        if region_of(request) == "de":
            return 500, {}, {"error": "down"}
        return 200, JSON, market_answer(BUDGET)

    budget_server.route("GET", MARKET_PATH, handler=market)

    both = get_value("budget_thresholds", US)
    one = get_value("budget_thresholds", DE)

    assert both.provenance.tier == one.provenance.tier == "primary"
    assert one.value == OTHER_BUDGET  # its weight renormalized to the whole
    assert [(use.name, use.weight) for use in one.provenance.sources] == [(BENCHMARKS, 0.4)]
    assert one.provenance.confidence < both.provenance.confidence
    assert one.provenance.confidence == pytest.approx(0.4)
    assert any(MARKET in error and "HTTP 500" in error for error in one.provenance.errors)


# 5. Validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", list(BAD_MARKET_ANSWERS))
def test_get_value__one_source_answers_badly__other_source_served(budget_server, bad):
    budget_server.route("GET", MARKET_PATH, **BAD_MARKET_ANSWERS[bad])
    started = time.monotonic()

    answer = get_value("budget_thresholds", US)

    assert time.monotonic() - started < settings.DYNCONFIG_REFRESH_BUDGET + 1
    assert answer.provenance.tier == "primary"
    assert answer.value == OTHER_BUDGET
    assert [use.name for use in answer.provenance.sources] == [BENCHMARKS]
    assert any(error.startswith(f"primary: {MARKET}:") for error in answer.provenance.errors)


@pytest.mark.parametrize("bad", list(BAD_MARKET_ANSWERS))
def test_get_value__every_source_answers_badly__fallback_and_nothing_invalid_cached(budget_server, bad):
    budget_server.route("GET", MARKET_PATH, **BAD_MARKET_ANSWERS[bad])
    budget_server.route("GET", BENCHMARKS_PATH, **BAD_BENCHMARKS_ANSWERS[bad])
    started = time.monotonic()

    answer = get_value("budget_thresholds", US)

    assert time.monotonic() - started < settings.DYNCONFIG_REFRESH_BUDGET + 1
    assert answer.provenance.tier == "fallback"
    assert answer.value == SEED_FALLBACK
    errors = " | ".join(answer.provenance.errors)
    assert MARKET in errors and BENCHMARKS in errors
    assert not ResolvedValue.objects.filter(value_type__key="budget_thresholds").exists()
    cached = in_l2("budget_thresholds", US)
    assert (cached.provenance.origin, cached.value) == ("fallback", SEED_FALLBACK)


def test_get_value__multiplier_above_bound__refused_other_source_served(multiplier_server):
    multiplier_server.route("GET", ECONOMIC_PATH, json=economic_answer({**MULTIPLIERS, "technology": 5.0}))
    other = {industry: round(value * 1.1, 4) for industry, value in MULTIPLIERS.items()}
    multiplier_server.route("GET", COMPETITIVE_PATH, json=competitive_answer(other))

    answer = get_value("industry_multipliers", US)

    assert answer.provenance.tier == "primary"
    assert answer.value == other
    assert [use.name for use in answer.provenance.sources] == [COMPETITIVE]
    assert any(ECONOMIC in error and "5.0 is above the maximum 3.0" in error for error in answer.provenance.errors)


def test_get_value__numbers_20x_last_good__refused_and_the_good_value_kept(budget_server):
    good = get_value("budget_thresholds", US)
    budget_server.route("GET", MARKET_PATH, json=market_answer(scaled(BUDGET, 20)))
    budget_server.route("GET", BENCHMARKS_PATH, json=benchmarks_answer(scaled(OTHER_BUDGET, 20)))

    # A refresh (caches skipped) while the good value is still fresh: it stays as it was.
    kept = get_value("budget_thresholds", US, use_cache=False)

    assert (kept.provenance.tier, kept.provenance.origin, kept.provenance.stale) == ("l3", "primary", False)
    assert kept.value == good.value
    assert "above the maximum ratio 10.0" in " | ".join(kept.provenance.errors)
    row = ResolvedValue.objects.get(value_type__key="budget_thresholds")
    assert row.value == good.value
    assert budget_server.calls() == 4

    # Once it has expired, the same refusal serves it as stale.
    expire_resolved_values(timedelta(minutes=1))
    answer = get_value("budget_thresholds", US, use_cache=False)

    assert (answer.provenance.tier, answer.provenance.stale) == ("stale", True)
    assert answer.value == good.value
    assert ResolvedValue.objects.get(value_type__key="budget_thresholds").value == good.value


# 6. Stale and fallback ------------------------------------------------------------------------


def expire_resolved_values(ago: timedelta) -> None:
    """The resolved values expired `ago`, and gone from L1 and L2 (which would still hold them)."""
    ResolvedValue.objects.filter(value_type__key="budget_thresholds").update(expires_at=timezone.now() - ago)
    clear_l1_and_l2()


def sources_down(server: LocalServer) -> None:
    server.route("GET", MARKET_PATH, status=500, json={"error": "down"})
    server.route("GET", BENCHMARKS_PATH, status=500, json={"error": "down"})


def test_get_value__expired_and_sources_down__serves_last_good_as_stale(budget_server):
    good = get_value("budget_thresholds", US)
    sources_down(budget_server)
    expire_resolved_values(timedelta(hours=1))

    answer = get_value("budget_thresholds", US)

    assert answer.provenance.tier == answer.provenance.origin == "stale"
    assert answer.provenance.stale is True
    assert answer.value == good.value
    assert answer.provenance.sources == good.provenance.sources
    assert any("HTTP 500" in error for error in answer.provenance.errors)


def test_get_value__last_good_older_than_max_staleness__serves_fallback(budget_server):
    get_value("budget_thresholds", US)
    sources_down(budget_server)
    max_staleness = registry.snapshot().value_type("budget_thresholds").max_staleness
    expire_resolved_values(max_staleness + timedelta(hours=1))

    answer = get_value("budget_thresholds", US)

    assert answer.provenance.tier == "fallback"
    assert answer.provenance.stale is False
    assert answer.value == SEED_FALLBACK


def test_get_value__no_last_good_and_sources_down__seed_fallback_with_zero_confidence(budget_server):
    sources_down(budget_server)

    answer = get_value("budget_thresholds", US)

    assert answer.provenance.tier == answer.provenance.origin == "fallback"
    assert answer.value == SEED_FALLBACK
    assert answer.value["micro_threshold"] == 500
    assert answer.provenance.confidence == 0
    assert answer.provenance.sources == ()
    assert not ResolvedValue.objects.exists()


def test_get_value__fallback_answer__cached_at_most_fallback_ttl(budget_server):
    sources_down(budget_server)
    type_ttl = registry.snapshot().value_type("budget_thresholds").ttl
    before = timezone.now()

    answer = get_value("budget_thresholds", US)

    assert answer.provenance.tier == "fallback"
    brief = min(FALLBACK_TTL, type_ttl)
    assert before < answer.provenance.expires_at <= timezone.now() + brief
    assert 0 < l2_ttl("budget_thresholds", US) <= brief.total_seconds()


def test_get_value__fallback_under_short_type_ttl__expires_with_it_and_recovery_shows(budget_server):
    ValueType.objects.filter(key="budget_thresholds").update(ttl=timedelta(seconds=2))
    reload_engine()
    sources_down(budget_server)

    fallback = get_value("budget_thresholds", US)

    assert fallback.provenance.tier == "fallback"
    assert fallback.provenance.expires_at <= timezone.now() + timedelta(seconds=2)
    assert 0 < l2_ttl("budget_thresholds", US) <= 2
    budget_server.route("GET", MARKET_PATH, json=market_answer(BUDGET))
    budget_server.route("GET", BENCHMARKS_PATH, json=benchmarks_answer(OTHER_BUDGET))
    assert get_value("budget_thresholds", US).provenance.tier == "l1"  # still the fallback
    time.sleep(2.5)

    recovered = get_value("budget_thresholds", US)

    assert recovered.provenance.tier == "primary"
    assert recovered.value == pytest.approx(blended([(0.6, BUDGET), (0.4, OTHER_BUDGET)]))


# 7. Our own tiers failing: Redis and the database ---------------------------------------------


@contextmanager
def own_redis(socket_timeout: float = 0.25) -> Iterator[subprocess.Popen]:
    """A redis-server of this test's own, with the Django cache (L2) pointed at it."""
    with databases.redis_server() as (process, location):
        cache = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": location,
                "OPTIONS": {
                    "CLIENT_CLASS": "django_redis.client.DefaultClient",
                    "SOCKET_CONNECT_TIMEOUT": socket_timeout,
                    "SOCKET_TIMEOUT": socket_timeout,
                },
                "KEY_PREFIX": "dynconfig",
            }
        }
        # override_settings resets django.core.cache.caches (setting_changed), on entry and exit.
        with override_settings(CACHES=cache, REDIS_URL=location):
            yield process


def test_get_value__redis_killed_after_read__answers_from_l3_without_raising(budget_server, caplog):
    with own_redis() as redis_server:
        first = get_value("budget_thresholds", US)
        assert first.provenance.tier == "primary"
        assert in_l2("budget_thresholds", US).value == first.value  # L2 is this Redis
        redis_server.kill()
        redis_server.wait()
        l1.clear()

        after_kill = get_value("budget_thresholds", US)
        l1.clear()
        following = get_value("budget_thresholds", US)
        other_context = get_value("budget_thresholds", DE)

    assert after_kill.provenance.tier == following.provenance.tier == "l3"
    assert after_kill.value == following.value == first.value
    assert other_context.provenance.tier == "primary"
    # Only the first read after the kill tried Redis; the others skipped L2 (L2_RETRY_AFTER).
    assert sum("L2 (Redis) unavailable" in record.getMessage() for record in caplog.records) == 1


def test_get_value__redis_killed_before_first_read__answers_from_sources(budget_server):
    with own_redis() as redis_server:
        redis_server.kill()
        redis_server.wait()

        cold = get_value("budget_thresholds", US)
        again = get_value("budget_thresholds", US)

    assert cold.provenance.tier == "primary"
    assert cold.value == pytest.approx(blended([(0.6, BUDGET), (0.4, OTHER_BUDGET)]))
    assert again.provenance.tier == "l1"
    assert ResolvedValue.objects.get(value_type__key="budget_thresholds").value == cold.value
    assert budget_server.calls() == 2


def test_get_value__redis_hanging__timeout_paid_once_then_l2_skipped(budget_server):
    timeout = 2.0  # Redis's socket timeout here: long, so that paying it or not is plain to see
    assert L2_RETRY_AFTER > timeout + 1
    with own_redis(socket_timeout=timeout) as redis_server:
        get_value("budget_thresholds", US)
        redis_server.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing
        l1.clear()

        started = time.monotonic()
        first = get_value("budget_thresholds", US)
        first_took = time.monotonic() - started
        l1.clear()
        started = time.monotonic()
        following = get_value("budget_thresholds", US)
        following_took = time.monotonic() - started

    assert first.provenance.tier == following.provenance.tier == "l3"
    assert first_took >= timeout
    assert following_took < timeout


@pytest.mark.django_db(transaction=True)
def test_get_value__database_unreachable__caches_and_snapshot_keep_answering(budget_server, caplog):
    first = get_value("budget_thresholds", US)
    snapshot = registry.snapshot()
    settings = connection.settings_dict
    port = settings["PORT"]
    connection.close()
    settings["PORT"] = "1"  # nothing listens there: every connection is refused
    try:
        with pytest.raises(DatabaseError):
            ResolvedValue.objects.exists()

        from_l1 = get_value("budget_thresholds", US)
        l1.clear()
        from_l2 = get_value("budget_thresholds", US)
        time.sleep(CHECK_INTERVAL + 0.2)  # the registry's next read polls the database
        from_l1_after_poll = get_value("budget_thresholds", US)
        kept = registry.snapshot()
        never_cached = get_value("budget_thresholds", DE)
    finally:
        settings["PORT"] = port
        connection.close()

    assert first.provenance.tier == "primary"
    assert (from_l1.provenance.tier, from_l2.provenance.tier) == ("l1", "l2")
    assert from_l1_after_poll.provenance.tier == "l1"
    assert from_l1.value == from_l2.value == from_l1_after_poll.value == first.value
    assert kept is snapshot
    assert any("configuration not reloaded" in record.getMessage() for record in caplog.records)
    assert never_cached.provenance.tier == "primary"
    assert never_cached.value == pytest.approx(first.value)
    # The database is back for what follows; the read made while it was away is not in L3.
    assert list(ResolvedValue.objects.values_list("context_key", flat=True)) == ["region=us"]


# 8. Keys --------------------------------------------------------------------------------------


def test_get_value__unknown_key__raises_unknown_value_type(engine):
    with pytest.raises(UnknownValueType):
        get_value("budget_thresholdz", US)


def test_get_value__alias__answers_as_canonical_key(budget_server):
    by_alias = get_value("budget_classification", US)
    by_key = get_value("budget_thresholds", US)

    assert by_alias.key == by_key.key == "budget_thresholds"
    assert by_alias.provenance.tier == "primary"
    assert by_key.provenance.tier == "l1"  # one cache entry for both names
    assert by_key.value == by_alias.value
    assert math.isclose(by_alias.value["micro_threshold"], 0.6 * 600 + 0.4 * 800)


def test_get_value__data_version_bumped_elsewhere__l1_copy_dropped_within_the_poll_interval(budget_server):
    from audit.history import bump_data_version

    first = get_value("budget_thresholds", US)
    assert get_value("budget_thresholds", US).provenance.tier == "l1"

    # What a background refresh in another process does after storing a new value in L3/L2.
    bump_data_version()
    time.sleep(CHECK_INTERVAL + 0.2)

    again = get_value("budget_thresholds", US)
    assert again.provenance.tier == "l2"  # L1 was dropped; the shared tiers answer
    assert again.value == first.value
