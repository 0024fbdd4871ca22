"""Reading the metrics: a scrape of every process's files (`/metrics`, `exposition`), the
dashboard's samples (`collected`), and each source's breaker, read from Redis at scrape time.
The engine records them through core.metrics.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.samples import Sample

from core.metrics import BREAKER_STATE_NUMBERS, flush
from sources.breaker import breaker_state
from sources.models import Source
from values.registry import registry


class BreakerCollector:
    """dynconfig_breaker_state{source}: each known source's breaker, read at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "dynconfig_breaker_state", "Circuit breaker of each source: 0 closed, 1 half-open, 2 open.",
            labels=["source"],
        )
        for name in _known_sources():
            family.add_metric([name], BREAKER_STATE_NUMBERS.get(breaker_state(name).state, 0))
        yield family


def _known_sources() -> list[str]:
    """Every source in the database; the ones this process's configuration links when it is down."""
    try:
        return list(Source.objects.order_by("name").values_list("name", flat=True))
    except DatabaseError:
        snapshot = registry.snapshot()
        return sorted({link.source.name for value_type in snapshot.types.values() for link in value_type.links})


def scrape_registry() -> CollectorRegistry:
    """Every process's metrics (their files) and the breakers, after flushing this process's."""
    flush()
    scraped = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(scraped, path=str(settings.DYNCONFIG_METRICS_DIR))
    scraped.register(BreakerCollector())
    return scraped


def exposition(accept_header: str | None) -> tuple[bytes, str]:
    """The metrics in the format the scraper asked for (Prometheus text, or OpenMetrics): (body,
    content type)."""
    encoder, content_type = choose_encoder(accept_header or "")
    return encoder(scrape_registry()), content_type


def collected() -> list[Sample]:
    """Every sample of every process, merged (counters summed), breakers included: for the admin
    dashboard. Each has `.name` (e.g. dynconfig_cache_lookups_total), `.labels` and `.value`."""
    return [sample for family in scrape_registry().collect() for sample in family.samples]
