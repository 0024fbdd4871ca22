"""Reads of sources for the API, the admin dashboard and the commands (health: sources.health)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from sources.health import percentile, recorder
from sources.models import CallOutcome, SourceCall

# A series longer than this is a bucket size mistaken for another unit, not a chart.
MAX_SERIES_BUCKETS = 10_000
# The newest calls a source's detail shows.
RECENT_CALL_LIMIT = 20


def source_call_list(name: str, *, limit: int = RECENT_CALL_LIMIT) -> list[SourceCall]:
    """The newest `limit` recorded attempts at source `name`, newest first."""
    recorder.flush()
    return list(SourceCall.objects.filter(source_name=name).order_by("-called_at", "-id")[:limit])


def source_call_series(name: str, since: datetime, bucket_seconds: int) -> list[dict[str, Any]]:
    """Attempts at source `name` from `since` to now, in buckets of `bucket_seconds`, oldest first.

    Each bucket: `at` (its start, a datetime), `calls` (attempts, refusals included), `errors`
    (those that did not succeed), `error_rate` (errors / calls; None without calls), `p50` and
    `p95` (seconds, of its successful attempts; None without any). Empty buckets are included,
    so a chart's time axis has no gaps. Raises ValueError for a bucket under a second or a
    series of more than MAX_SERIES_BUCKETS buckets.
    """
    if bucket_seconds < 1:
        raise ValueError(f"bucket_seconds must be at least 1, not {bucket_seconds}")
    recorder.flush()
    now = timezone.now()
    count = max(1, -(-int((now - since).total_seconds()) // bucket_seconds))
    if count > MAX_SERIES_BUCKETS:
        raise ValueError(f"{count} buckets is more than {MAX_SERIES_BUCKETS}: ask for larger buckets")
    width = timedelta(seconds=bucket_seconds)
    buckets: list[dict[str, Any]] = [
        {"at": since + index * width, "calls": 0, "errors": 0, "seconds": []} for index in range(count)
    ]
    rows = SourceCall.objects.filter(source_name=name, called_at__gte=since).values_list(
        "called_at", "outcome", "seconds"
    )
    for called_at, outcome, seconds in rows.iterator():
        index = min(count - 1, int((called_at - since).total_seconds() // bucket_seconds))
        bucket = buckets[index]
        bucket["calls"] += 1
        if outcome == CallOutcome.SUCCESS:
            bucket["seconds"].append(seconds)
        else:
            bucket["errors"] += 1
    series = []
    for bucket in buckets:
        successful = sorted(bucket.pop("seconds"))
        series.append(
            {
                **bucket,
                "error_rate": bucket["errors"] / bucket["calls"] if bucket["calls"] else None,
                "p50": percentile(successful, 0.50),
                "p95": percentile(successful, 0.95),
            }
        )
    return series
