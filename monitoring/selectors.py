"""Reads behind the admin dashboard: everything its one JSON endpoint answers.

    dashboard_data(hours=, contexts=)
        sources    one entry per source: its health now (healthy | degraded | down, with
                   reasons, and its breaker: sources.health), and its calls over the window in
                   buckets (calls, errors, error rate, p50 and p95 latency of the successful
                   ones: sources.selectors.source_call_series over SourceCall rows)
        cache      lookups, hits and hit rate per cache tier, from the Prometheus counters
        answers    answers per value type and tier, and the degraded ones (stale, widened, predicted, fallback)
                   per value type, kind and reason, from the Prometheus counters
        histories  per value type, the values fetched over the window for one context, from
                   ValueRecord rows, flattened into numeric series (see `value_history`)

The counters are cumulative since the metrics directory was last cleared (a deploy), summed
over every process; the SourceCall and ValueRecord rows are bounded by the window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count
from django.utils import timezone

from monitoring.metrics import collected
from sources.health import sources_health
from sources.selectors import source_call_series
from core.answers import TIERS
from values.models import ValueRecord, ValueType

# About this many buckets per latency and error-rate line, whatever the window: enough to see
# a trend, few enough that each bucket holds several calls.
BUCKETS_PER_WINDOW = 48
# A bucket shorter than a minute would mostly be empty.
MIN_BUCKET_SECONDS = 60
# The longest window operators can ask for (30 days), bounding each query.
MAX_HOURS = 24 * 30
# The newest records charted per value type: a point per pixel column at most.
MAX_HISTORY_RECORDS = 500
# A leaf whose path is only the value type itself (a value that is one number).
WHOLE_VALUE = ""


def dashboard_data(*, hours: int, contexts: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Everything the dashboard shows for the last `hours` hours. `contexts` picks, per value
    type key, the context key whose history is charted (default: see `history_context`)."""
    now = timezone.now()
    since = now - timedelta(hours=hours)
    bucket_seconds = max(MIN_BUCKET_SECONDS, hours * 3600 // BUCKETS_PER_WINDOW)
    contexts = contexts or {}
    return {
        "generated_at": now.isoformat(),
        "since": since.isoformat(),
        "hours": hours,
        "bucket_seconds": bucket_seconds,
        "sources": source_panels(since=since, bucket_seconds=bucket_seconds),
        **metric_panels(),
        "histories": [
            value_history(value_type=value_type, since=since, context_key=contexts.get(value_type.key))
            for value_type in ValueType.objects.order_by("key")
        ],
    }


# Sources -------------------------------------------------------------------------------------------


def source_panels(*, since: datetime, bucket_seconds: int) -> list[dict[str, Any]]:
    """Per source: its health now (sources.health: status, reasons, breaker, and the numbers of
    its recent calls), its calls and errors over the whole window, and their series."""
    panels = []
    for health in sources_health():
        name = health["name"]
        series = source_call_series(name, since, bucket_seconds)
        panels.append(
            {
                **health,
                "window_calls": sum(bucket["calls"] for bucket in series),
                "window_errors": sum(bucket["errors"] for bucket in series),
                "series": [_bucket_json(bucket) for bucket in series],
            }
        )
    return panels


def _bucket_json(bucket: Mapping[str, Any]) -> dict[str, Any]:
    return {**bucket, "at": _epoch_ms(bucket["at"])}


# Prometheus counters -------------------------------------------------------------------------------


def metric_panels() -> dict[str, Any]:
    """Cache hit rates per tier, answers per value type and tier, degraded answers."""
    samples = list(collected())
    return {
        "cache": cache_hit_rates(samples),
        "answers": answers_by_tier(samples),
        "degraded": degraded_answers(samples),
    }


def _counts(samples: Iterable[Any], name: str, labels: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    """The `name` counter's total per combination of `labels`."""
    totals: dict[tuple[str, ...], float] = {}
    for sample in samples:
        if sample.name != name:
            continue
        key = tuple(sample.labels.get(label, "") for label in labels)
        totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def cache_hit_rates(samples: Iterable[Any]) -> list[dict[str, Any]]:
    """Per cache tier: lookups, hits, and hits / lookups (None before the first lookup)."""
    rows: dict[str, dict[str, float]] = {}
    for (tier, result), count in _counts(samples, "dynconfig_cache_lookups_total", ("tier", "result")).items():
        row = rows.setdefault(tier, {"lookups": 0.0, "hits": 0.0})
        row["lookups"] += count
        if result == "hit":
            row["hits"] += count
    return [
        {
            "tier": tier,
            "lookups": int(row["lookups"]),
            "hits": int(row["hits"]),
            "hit_rate": row["hits"] / row["lookups"] if row["lookups"] else None,
        }
        for tier, row in sorted(rows.items(), key=lambda item: _tier_order(item[0]))
    ]


def answers_by_tier(samples: Iterable[Any]) -> list[dict[str, Any]]:
    """Per value type: how many answers each tier gave (override, l1, ..., stale, widened, predicted, fallback)."""
    rows: dict[str, dict[str, int]] = {}
    for (value_type, tier), count in _counts(samples, "dynconfig_answers_total", ("value_type", "tier")).items():
        rows.setdefault(value_type, {})[tier] = rows.get(value_type, {}).get(tier, 0) + int(count)
    return [
        {"value_type": value_type, "tiers": dict(sorted(tiers.items(), key=lambda item: _tier_order(item[0])))}
        for value_type, tiers in sorted(rows.items())
    ]


def degraded_answers(samples: Iterable[Any]) -> list[dict[str, Any]]:
    """Per value type, kind (stale, widened, predicted, fallback) and reason: how many degraded answers were given."""
    counts = _counts(samples, "dynconfig_degraded_answers_total", ("value_type", "kind", "reason"))
    return [
        {"value_type": value_type, "kind": kind, "reason": reason, "count": int(count)}
        for (value_type, kind, reason), count in sorted(counts.items())
    ]


def _tier_order(tier: str) -> tuple[int, str]:
    return (TIERS.index(tier) if tier in TIERS else len(TIERS), tier)


# Value history -------------------------------------------------------------------------------------


def value_history(*, value_type: ValueType, since: datetime, context_key: str | None = None) -> dict[str, Any]:
    """The values of `value_type` fetched since `since` for one context, as chartable series.

    Each numeric leaf of the value is a series: a number is a line, a range (`[low, high]` or
    `{"min": .., "max": ..}`) a band. Leaves are grouped by their last path segment, so one
    chart compares like with like: `industry_multipliers` is one group (a line per industry);
    `channel_performance` is a group per metric (`cpc_range`: a band per channel), since a
    CTR and a cost per click share no axis.
    """
    contexts = _contexts_in_window(value_type, since)
    chosen = history_context(contexts, context_key)
    records = (
        ValueRecord.objects.filter(value_type=value_type, context_key=chosen, fetched_at__gte=since)
        .order_by("-fetched_at", "-id")
        .values_list("fetched_at", "value")[:MAX_HISTORY_RECORDS]
        if chosen is not None
        else []
    )
    return {
        "value_type": value_type.key,
        "description": value_type.description,
        "context_key": chosen,
        "contexts": contexts,
        "records": len(records),
        "groups": history_groups(reversed(list(records))),
    }


def _contexts_in_window(value_type: ValueType, since: datetime) -> list[dict[str, Any]]:
    """The contexts with records in the window, the most recorded first."""
    rows = (
        ValueRecord.objects.filter(value_type=value_type, fetched_at__gte=since)
        .values("context_key")
        .annotate(records=Count("id"))
        .order_by("-records", "context_key")
    )
    return [{"context_key": row["context_key"], "records": row["records"]} for row in rows]


def history_context(contexts: list[dict[str, Any]], requested: str | None) -> str | None:
    """The context to chart: the one asked for if it has records, else the empty context (the
    value every unspecific read gets), else the most recorded; None when there is none."""
    keys = [context["context_key"] for context in contexts]
    for candidate in (requested, ""):
        if candidate is not None and candidate in keys:
            return candidate
    return keys[0] if keys else None


def history_groups(records: Iterable[tuple[datetime, Any]]) -> list[dict[str, Any]]:
    """[{"name", "series": [{"label", "kind": "line" | "band", "points"}]}] from (fetched_at,
    value) pairs in time order. A line's points are [ms, y]; a band's [ms, low, high]."""
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for fetched_at, value in records:
        at = _epoch_ms(fetched_at)
        for path, kind, numbers in numeric_leaves(value):
            group, label = (path[-1], " / ".join(path[:-1])) if len(path) > 1 else (WHOLE_VALUE, "".join(path))
            series = groups.setdefault(group, {}).setdefault(
                label or group or "value", {"label": label or group or "value", "kind": kind, "points": []}
            )
            if series["kind"] == kind:  # a leaf that changed shape is charted as it first was
                series["points"].append([at, *numbers])
    return [{"name": name, "series": list(series.values())} for name, series in groups.items()]


def numeric_leaves(value: Any, path: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], str, tuple[float, ...]]]:
    """(path, "line" | "band", numbers) for each number and each range inside `value`."""
    if _is_number(value):
        yield path, "line", (float(value),)
    elif isinstance(value, list) and len(value) == 2 and all(_is_number(item) for item in value):
        yield path, "band", (float(value[0]), float(value[1]))
    elif isinstance(value, dict) and set(value) == {"min", "max"} and all(_is_number(item) for item in value.values()):
        yield path, "band", (float(value["min"]), float(value["max"]))
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from numeric_leaves(item, (*path, str(name)))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
