"""L1 is bounded by DYNCONFIG_L1_MAX_ENTRIES: past it the least recently used answer is evicted,
and a read of it is served again from L2 (real Redis), then kept in L1 again."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from values import get_value
from values.cache import l1
from values.models import ResolvedValue, ValueType
from values.registry import registry

ROOT = Path(__file__).resolve().parent.parent.parent
KEY = "budget_thresholds"


def store_fresh_values(regions: list[str]) -> None:
    """A fresh L3 row per region, as a fetch would have left it: every first read is an L3 hit."""
    value_type = ValueType.objects.get(key=KEY)
    fingerprint = registry.refresh(force=True).value_type(KEY).fingerprint
    now = timezone.now()
    provenance = {
        "tier": "primary", "origin": "primary", "sources": [], "confidence": 1.0,
        "fetched_at": now.isoformat(), "expires_at": None, "stale": False,
    }  # fmt: skip
    ResolvedValue.objects.bulk_create(
        ResolvedValue(
            value_type=value_type, context_key=f"region={region}", context={"region": region},
            value=value_type.fallback_value, provenance=provenance, fingerprint=fingerprint,
            fetched_at=now, expires_at=now + timedelta(hours=1),
        )  # fmt: skip
        for region in regions
    )


def tier_of(region: str) -> str:
    return get_value(KEY, {"region": region}).provenance.tier


def test_l1__more_contexts_read_than_its_bound__least_recent_evicted_and_served_from_l2(engine, settings):
    settings.DYNCONFIG_L1_MAX_ENTRIES = 3
    regions = ["de", "fr", "it", "es"]
    store_fresh_values(regions)
    evictions_before = l1.evictions

    first_reads = [tier_of(region) for region in regions]

    assert first_reads == ["l3"] * 4
    assert len(l1) == 3
    assert l1.evictions - evictions_before == 1
    assert tier_of("es") == "l1"  # the most recent ones stay
    assert tier_of("fr") == "l1"
    assert tier_of("de") == "l2"  # the least recently used was evicted, and L2 still has it
    assert tier_of("de") == "l1"  # read from L2, it is kept in L1 again...
    assert tier_of("it") == "l2"  # ...pushing out the least recently used one then
    assert len(l1) == 3


def test_l1__within_its_bound__nothing_evicted(engine, settings):
    settings.DYNCONFIG_L1_MAX_ENTRIES = 10
    regions = ["de", "fr", "it", "es"]
    store_fresh_values(regions)
    evictions_before = l1.evictions

    for region in regions:
        tier_of(region)

    assert [tier_of(region) for region in regions] == ["l1"] * 4
    assert l1.evictions == evictions_before


def test_settings__l1_max_entries_below_one__refuses_to_start():
    environ = {
        "PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "dynconfig_site.settings",
        "DYNCONFIG_ENV": "test", "DYNCONFIG_L1_MAX_ENTRIES": "0",
    }  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=environ, capture_output=True, text=True
    )

    assert result.returncode != 0
    assert "DYNCONFIG_L1_MAX_ENTRIES=0 must be at least 1" in result.stderr
