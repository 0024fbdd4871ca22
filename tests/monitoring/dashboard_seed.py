"""Data for the dashboard tests, made through the engine's real paths: sources served by a
local server (calls recorded, values fetched and kept as ValueRecords), channel sources pointed
at a closed port (failed calls, fallback answers), reads that hit the caches. Only the records'
times are moved back afterwards, so that the history spans hours like a real one."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from sources.models import Source
from tests.servers import LocalServer
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
from values.models import ValueRecord, ValueType
from values.refresh import value_refresh

BUDGET_SOURCES = ("market_research_api", "industry_benchmarks_api")
MULTIPLIER_SOURCES = ("economic_intelligence_api", "competitive_analysis_api")
CHANNEL_SOURCES = ("google_ads_api", "facebook_marketing_api", "email_intelligence_api", "semrush_api")

# industry_multipliers as fetched at three refreshes: retail climbs, finance falls.
MULTIPLIER_HISTORY = (
    {"technology": 1.2, "healthcare": 1.1, "finance": 1.3, "manufacturing": 1.0, "retail": 1.0, "services": 1.0},
    {"technology": 1.25, "healthcare": 1.1, "finance": 1.2, "manufacturing": 0.95, "retail": 1.15, "services": 1.0},
    {"technology": 1.3, "healthcare": 1.05, "finance": 1.1, "manufacturing": 0.9, "retail": 1.3, "services": 1.05},
)
# channel_performance as kept at two refreshes (ranges: one band per channel and field).
CHANNEL_HISTORY = (
    {
        "search_advertising": {"ctr_range": [0.02, 0.08], "cpc_range": [1.5, 8.0], "conversion_rate_range": [0.02, 0.12]},
        "social_media": {"ctr_range": [0.005, 0.02], "cpc_range": [0.5, 3.0], "conversion_rate_range": [0.01, 0.06]},
    },
    {
        "search_advertising": {"ctr_range": [0.025, 0.07], "cpc_range": [2.0, 7.0], "conversion_rate_range": [0.03, 0.1]},
        "social_media": {"ctr_range": [0.006, 0.025], "cpc_range": [0.6, 2.5], "conversion_rate_range": [0.01, 0.05]},
    },
)
# How far apart the seeded records are moved, the newest left at its real time.
RECORD_SPACING = timedelta(hours=3)


def seed_dashboard(server: LocalServer) -> None:
    """Source calls, cache lookups, answers of every tier kind, and a moving value history."""
    serve_sources(server, *BUDGET_SOURCES, *MULTIPLIER_SOURCES)
    for multipliers in MULTIPLIER_HISTORY:
        server.route("GET", "/v2/industry-multipliers", json=economic_answer(multipliers))
        server.route("GET", "/multipliers", json=competitive_answer(multipliers))
        value_refresh(key="industry_multipliers")
    for factor in (1.0, 1.1):
        server.route("GET", "/v1/budget-benchmarks", json=market_answer(scaled(BUDGET, factor)))
        server.route("GET", "/benchmarks/budget-tiers", json=benchmarks_answer(scaled(BUDGET, factor)))
        value_refresh(key="budget_thresholds")
    for _ in range(3):  # served from the caches
        get_value("industry_multipliers")
        get_value("budget_thresholds")

    with LocalServer() as closed:
        closed_url = closed.url
    Source.objects.filter(name__in=CHANNEL_SOURCES).update(base_url=closed_url)
    reload_engine()
    for _ in range(2):  # nothing answers: failed calls, then the fallback
        get_value("channel_performance", use_cache=False)

    channel_type = ValueType.objects.get(key="channel_performance")
    for value in CHANNEL_HISTORY:
        ValueRecord.objects.create(value_type=channel_type, context_key="", context={}, value=value, fetched_at=timezone.now())
    spread_history()


def spread_history() -> None:
    """Move each value type's records apart in time, keeping their order (newest stays)."""
    now = timezone.now()
    for key in ("industry_multipliers", "budget_thresholds", "channel_performance"):
        records = list(ValueRecord.objects.filter(value_type__key=key).order_by("-fetched_at", "-id"))
        for age, record in enumerate(records):
            ValueRecord.objects.filter(pk=record.pk).update(fetched_at=now - age * RECORD_SPACING)
