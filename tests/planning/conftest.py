"""Fixtures for planning: known thresholds, multipliers and channel ranges, set the way an
operator sets them (overrides through values.services), then read through the real engine."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.api.conftest import sources_down  # noqa: F401
from tests.values.conftest import engine, local_server, reload_engine  # noqa: F401
from values.models import ValueType
from values.services import override_create

THRESHOLDS = {
    "micro_threshold": 1000,
    "small_threshold": 8000,
    "medium_threshold": 40000,
    "large_threshold": 300000,
    "enterprise_threshold": 1500000,
}
MULTIPLIERS = {"finance": 1.3, "retail": 0.85, "technology": 1.15, "services": 1.0}
SEARCH = {
    "ctr_range": [0.02, 0.08],
    "cpc_range": [1.5, 8.0],
    "conversion_rate_range": [0.02, 0.12],
    "competitive_intensity": 0.75,
}
SOCIAL = {
    "ctr_range": [0.01, 0.04],
    "cpc_range": [0.5, 2.5],
    "conversion_rate_range": [0.01, 0.05],
}
CHANNELS = {"search_advertising": SEARCH, "social_media": SOCIAL}


def set_value(key: str, value, context_match: dict | None = None):
    """An operator's override of `key` (for `context_match`), seen by this process at once."""
    override = override_create(
        value_type=ValueType.objects.get(key=key),
        value=value,
        reason="planning test: known numbers",
        actor="tester",
        channel="test",
        context_match=context_match or {},
    )
    reload_engine()
    return override


@pytest.fixture
def known_values(engine):  # noqa: F811
    """THRESHOLDS, MULTIPLIERS and CHANNELS served for every context."""
    set_value("budget_thresholds", THRESHOLDS)
    set_value("industry_multipliers", MULTIPLIERS)
    set_value("channel_performance", CHANNELS)


@pytest.fixture
def api_client():
    return APIClient()
