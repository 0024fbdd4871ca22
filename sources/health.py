"""Source health: how each source has been answering, from a record of calls every process shares.

The record. Every attempt to call a source (`sources.calls._attempt`: retries are attempts of
their own, and so are the breaker's and the rate limit's refusals) ends in `call_observed`,
which classifies it (`call_outcome`), has one `SourceCall` row written (`recorder`: a background
writer, off the call's path; `call_record` writes a row) and reports it to the metrics (`core.metrics.source_call_observed`). The rows live in the database, so
that the web processes and every Celery worker write to one record and read the same health.
Source calls are rare (one per refresh, per context, per source), so one row each is cheap.
Writing fails open: a database error is logged (one warning a minute per process) and the call
goes on as if nothing happened. Rows older than DYNCONFIG_HEALTH_RETENTION (ISO 8601, default
P7D) are deleted at most once an hour per process.

The rules (docs/health.md), over the source's *recent* calls: its last `RECENT_CALLS` attempts
within the last `RECENT_WINDOW`. Any outcome but success counts as a failure.

    down      the source is switched off; or its breaker is open; or its last
              `DOWN_AFTER_FAILURES` attempts all failed (so none succeeded since)
    degraded  its breaker is half-open; or more than `MAX_ERROR_RATE` of its recent attempts
              failed; or its recent successful attempts took more than `SLOW_MEAN_SECONDS` on
              average (the seed's rule)
    healthy   otherwise, including a source with no recent calls (nothing is known against it;
              its reasons say "no calls in the last 15 minutes")

Overall (`health_report`): healthy when every source is; down when some value type has every
one of its sources down (it is then answered from its last good value or its fallback);
degraded otherwise.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, OuterRef, QuerySet, Subquery, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from core import metrics
from core.durations import parse_duration
from sources.adapters.base import ErrorKind, SourceError, SourceResult
from sources.breaker import HALF_OPEN, OPEN, BreakerState, breaker_state
from sources.models import CallOutcome, Source, SourceCall

logger = logging.getLogger(__name__)

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"
_SEVERITY = {HEALTHY: 0, DEGRADED: 1, DOWN: 2}

# Ten attempts say how a source is doing now: enough to see a trend, few enough that a restored
# source shows healthy again after a handful of good calls.
RECENT_CALLS = 10
# ...within a quarter of an hour: older calls describe a source that may have changed since.
RECENT_WINDOW = timedelta(minutes=15)
# Three failed attempts in a row is one call_source that failed all its tries (or three calls
# that each failed at once): the source does not answer now.
DOWN_AFTER_FAILURES = 3
# The seed's rule: a source whose answers take more than a second on average is degraded.
SLOW_MEAN_SECONDS = 1.0
# One failure in five is more than the blips retries are for.
MAX_ERROR_RATE = 0.2
# How long rows are kept when DYNCONFIG_HEALTH_RETENTION is not set: a week of trends.
DEFAULT_RETENTION = timedelta(days=7)
# Pruning is one indexed DELETE; once an hour per process keeps the table bounded for free.
PRUNE_EVERY_SECONDS = 3600.0
# A database that is down must not cost the log a warning per call.
WARN_EVERY_SECONDS = 60.0
# Reasons are sentences from our adapters; a longer one is cut, not stored whole.
MAX_REASON_LENGTH = 500

FAILED_WITHOUT_ANSWER = "the attempt ended without an answer"


# The record ---------------------------------------------------------------------------------------


def call_outcome(result_or_error: SourceResult | SourceError | None) -> str:
    """The outcome of one attempt (a CallOutcome value) from what it returned or raised.

    A timeout (SourceError.is_timeout) is `timeout`; a provider's throttle (HTTP 429, a quota:
    `is_throttled`, or a wait the provider named in `retry_after`) and our own rate limit are
    `rate_limited`; other RETRYABLE and TERMINAL errors (connection refused, 5xx, 4xx, a request
    that could not be made) are `http_error`; None (an attempt that raised something else) too.
    """
    if isinstance(result_or_error, SourceResult):
        return CallOutcome.SUCCESS
    if not isinstance(result_or_error, SourceError):
        return CallOutcome.HTTP_ERROR
    error = result_or_error
    if error.kind is ErrorKind.BREAKER_OPEN:
        return CallOutcome.BREAKER_OPEN
    if error.kind is ErrorKind.DISABLED:
        return CallOutcome.DISABLED
    if error.kind is ErrorKind.RATE_LIMITED:
        return CallOutcome.RATE_LIMITED
    if error.kind is ErrorKind.INVALID_DATA:
        return CallOutcome.INVALID_DATA
    if error.is_timeout:
        return CallOutcome.TIMEOUT
    if error.kind is ErrorKind.RETRYABLE and (error.is_throttled or error.retry_after is not None):
        return CallOutcome.RATE_LIMITED
    return CallOutcome.HTTP_ERROR


def call_observed(source_name: str, result_or_error: SourceResult | SourceError | None, seconds: float) -> None:
    """One attempt at `source_name` ended: record it and count it in the metrics. Never raises."""
    outcome = call_outcome(result_or_error)
    if isinstance(result_or_error, SourceError):
        reason = result_or_error.reason
    else:
        reason = "" if outcome == CallOutcome.SUCCESS else FAILED_WITHOUT_ANSWER
    recorder.add(source_name=source_name, outcome=outcome, seconds=seconds, reason=reason)
    try:
        metrics.source_call_observed(source_name, str(outcome), seconds)
    except Exception as error:  # noqa: BLE001 - metrics must never fail the call they count
        _warn("source call not counted in the metrics", error)


def call_record(*, source_name: str, outcome: str, seconds: float, reason: str = "") -> None:
    """Append one attempt to the shared record (and prune it when due). Never raises.

    The row is written in a savepoint, so that inside a caller's transaction a failure here
    leaves that transaction as it was (and the row shares its fate). Calls are recorded through
    `recorder` (a background writer); this writes at once, on the caller's connection.
    """
    _call_records([dict(source_name=source_name, outcome=outcome, seconds=seconds, reason=reason)])


def _call_records(rows: list[dict[str, Any]]) -> None:
    """Append attempts to the shared record in one statement (and prune it when due). Never raises."""
    now = timezone.now()
    try:
        with transaction.atomic():
            SourceCall.objects.bulk_create(
                [
                    SourceCall(
                        source_name=row["source_name"],
                        outcome=str(row["outcome"]),
                        seconds=max(0.0, float(row["seconds"])),
                        # PostgreSQL text refuses NUL.
                        reason=row.get("reason", "").replace("\x00", "")[:MAX_REASON_LENGTH],
                        called_at=row.get("called_at", now),
                    )
                    for row in rows
                ]
            )
        _prune_if_due()
    # Fails open (the module docstring): a DatabaseError, or anything the database layer raises
    # where database access is not allowed at all.
    except Exception as error:  # noqa: BLE001
        names = ", ".join(sorted({row["source_name"] for row in rows}))
        _warn(f"{'call' if len(rows) == 1 else f'{len(rows)} calls'} to {names} not recorded", error)


class CallRecorder:
    """Writes the record off the call's path: `call_observed` hands each row to one background
    thread per process, which writes what has gathered with `call_record`.

    Why: a source call is answered from a pool of threads, and writing there cost each cold read
    a database connection of its own (opened and closed around one INSERT, ~5 ms); and a database
    that hangs would have held up the call. A process's own reads of the record (`health_report`,
    `source_health`, the selectors) first wait for its pending rows (`flush`), so what it just
    called is in what it reads; other processes see a row once written, within milliseconds.
    """

    # A process that exits (or a reader that flushes) waits no longer than this for the writer.
    FLUSH_TIMEOUT_SECONDS = 2.0

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._pending: list[dict[str, Any]] = []
        self._is_writing = False
        self._pid: int | None = None

    def add(self, **row: Any) -> None:
        with self._condition:
            if self._pid != os.getpid():  # first use in this process (or a forked child): a writer
                self._pending, self._is_writing, self._pid = [], False, os.getpid()
                threading.Thread(target=self._write_forever, name="dynconfig-call-record", daemon=True).start()
            self._pending.append({**row, "called_at": timezone.now()})  # when it happened, not when written
            self._condition.notify_all()

    def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> bool:
        """Wait until every row handed over in this process is written (or failed); False if the
        writer is still busy after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._pid == os.getpid() and (self._pending or self._is_writing):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
        return True

    def _write_forever(self) -> None:
        while True:
            with self._condition:
                while not self._pending:
                    self._condition.wait()
                rows, self._pending, self._is_writing = self._pending, [], True
            try:
                _call_records(rows)  # what gathered meanwhile, in one statement
            finally:
                # No idle connection per process (nor one left open on a test database).
                connection.close()
                with self._condition:
                    self._is_writing = False
                    self._condition.notify_all()


recorder = CallRecorder()
atexit.register(recorder.flush)


def health_retention() -> timedelta:
    """How long call rows are kept (DYNCONFIG_HEALTH_RETENTION, an ISO 8601 duration)."""
    configured = getattr(settings, "DYNCONFIG_HEALTH_RETENTION", None)
    if not configured:
        return DEFAULT_RETENTION
    try:
        return parse_duration(configured)
    except ValueError as error:
        _warn("DYNCONFIG_HEALTH_RETENTION ignored, keeping a week", error)
        return DEFAULT_RETENTION


_prune_lock = threading.Lock()
_next_prune_at = 0.0  # time.monotonic() when this process prunes next
_warned_at: dict[str, float] = {}


def _prune_if_due() -> None:
    global _next_prune_at
    with _prune_lock:
        if time.monotonic() < _next_prune_at:
            return
        _next_prune_at = time.monotonic() + PRUNE_EVERY_SECONDS
    with transaction.atomic():
        SourceCall.objects.filter(called_at__lt=timezone.now() - health_retention()).delete()


def _warn(what: str, error: Exception) -> None:
    now = time.monotonic()
    if now - _warned_at.get(what, -math.inf) >= WARN_EVERY_SECONDS:
        _warned_at[what] = now
        logger.warning("%s (said once a minute): %s: %s", what, type(error).__name__, error)


# Health -------------------------------------------------------------------------------------------


def health_thresholds() -> dict[str, Any]:
    """The rules' numbers, as the API shows them."""
    return {
        "recent_calls": RECENT_CALLS,
        "recent_window_seconds": int(RECENT_WINDOW.total_seconds()),
        "down_after_failures": DOWN_AFTER_FAILURES,
        "slow_mean_seconds": SLOW_MEAN_SECONDS,
        "max_error_rate": MAX_ERROR_RATE,
    }


@dataclass(frozen=True)
class SourceHealth:
    """One source's health now: its status, why, and the numbers behind it."""

    name: str
    status: str  # healthy | degraded | down
    reasons: tuple[str, ...]  # plain sentences, the worst first; empty when healthy with calls
    breaker: BreakerState
    calls: int  # recent attempts (at most RECENT_CALLS, within RECENT_WINDOW)
    errors: int  # ... of which failed
    error_rate: float | None  # errors / calls; None without recent calls
    mean_seconds: float | None  # of the recent successful attempts; None without any
    p50_seconds: float | None
    p95_seconds: float | None
    last_success_at: datetime | None  # over the whole record, not only the recent calls
    last_failure_at: datetime | None
    last_failure_reason: str  # "<outcome>: <reason>"; "" without a failure

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times in ISO 8601, the breaker as sources.breaker.BreakerState.as_dict."""
        return {
            "name": self.name,
            "status": self.status,
            "reasons": list(self.reasons),
            "breaker": self.breaker.as_dict(),
            "calls": self.calls,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "mean_seconds": self.mean_seconds,
            "p50_seconds": self.p50_seconds,
            "p95_seconds": self.p95_seconds,
            "last_success_at": _iso(self.last_success_at),
            "last_failure_at": _iso(self.last_failure_at),
            "last_failure_reason": self.last_failure_reason,
        }


@dataclass(frozen=True)
class HealthReport:
    """Every source's health and the overall status."""

    status: str
    reasons: tuple[str, ...]
    sources: tuple[SourceHealth, ...]
    thresholds: dict[str, Any] = field(default_factory=health_thresholds)

    def as_dict(self) -> dict[str, Any]:
        """What /api/v1/health/ answers."""
        return {
            "status": self.status,
            "reasons": list(self.reasons),
            "sources": {health.name: health.as_dict() for health in self.sources},
            "thresholds": self.thresholds,
        }


def source_health(name: str, *, is_enabled: bool | None = None) -> SourceHealth:
    """The health of source `name` now. `is_enabled` as the caller read it, else looked up (a
    name with no Source row is judged by its calls alone)."""
    recorder.flush()
    if is_enabled is None:
        is_enabled = Source.objects.filter(name=name).values_list("is_enabled", flat=True).first() is not False
    now = timezone.now()
    record = _CallRecord(
        recent=_recent_calls([name], now).get(name, []),
        last_success_at=_newest_calls(name, is_success=True).values_list("called_at", flat=True).first(),
        last_failure=_newest_calls(name, is_success=False).values_list("called_at", "outcome", "reason").first(),
    )
    return _judged(name, is_enabled=is_enabled, record=record)


def sources_health() -> list[dict[str, Any]]:
    """Every source's health, JSON-ready (SourceHealth.as_dict), by name."""
    return [health.as_dict() for health in health_report({}).sources]


def health_report(sources_of: Mapping[str, Sequence[str]]) -> HealthReport:
    """Every source's health and the overall status (module docstring), given the names of the
    sources of each value type (values.selectors.value_type_source_names: sources do not know
    value types). If the database cannot be read, says so as a degraded report with no sources
    rather than failing."""
    recorder.flush()
    try:
        now = timezone.now()
        sources, records = _every_source_and_call_record(now)
        healths = tuple(
            _judged(name, is_enabled=is_enabled, record=records[name]) for name, is_enabled in sources
        )
    except DatabaseError as error:
        _warn("source health not read", error)
        return HealthReport(DEGRADED, ("the database is unavailable: source health cannot be read",), ())
    status_of = {health.name: health.status for health in healths}
    down_types = [
        f"every source of {value_type} is down ({', '.join(sorted(names))}): it is answered from "
        "its last good value or its fallback"
        for value_type, names in sorted(sources_of.items())
        if all(status_of.get(name) == DOWN for name in names)
    ]
    unhealthy = [f"{health.name} is {health.status}" for health in healths if health.status != HEALTHY]
    status = DOWN if down_types else DEGRADED if unhealthy else HEALTHY
    reasons = down_types + unhealthy
    return HealthReport(status, tuple(reasons), healths)


@dataclass(frozen=True)
class _CallRecord:
    """What the record of calls says of one source."""

    recent: list[tuple[str, float, str]]  # (outcome, seconds, reason) of its recent calls, newest first
    last_success_at: datetime | None  # over the whole record
    last_failure: tuple[datetime, str, str] | None  # (called_at, outcome, reason), likewise


def _every_source_and_call_record(now: datetime) -> tuple[list[tuple[str, bool]], dict[str, _CallRecord]]:
    """Every source's (name, is_enabled) by name, and its call record: two queries however many
    sources there are (a page listing them all must not cost queries per source)."""
    newest_success = _newest_calls(OuterRef("name"), is_success=True)
    newest_failure = _newest_calls(OuterRef("name"), is_success=False)
    sources = list(
        Source.objects.order_by("name")
        .annotate(
            last_success_at=Subquery(newest_success.values("called_at")[:1]),
            last_failure_at=Subquery(newest_failure.values("called_at")[:1]),
            last_failure_outcome=Subquery(newest_failure.values("outcome")[:1]),
            last_failure_reason=Subquery(newest_failure.values("reason")[:1]),
        )
        .values_list("name", "is_enabled", "last_success_at", "last_failure_at", "last_failure_outcome", "last_failure_reason")
    )
    recent = _recent_calls([name for name, *_ in sources], now)
    records = {
        name: _CallRecord(
            recent=recent.get(name, []),
            last_success_at=last_success_at,
            last_failure=(failed_at, outcome, reason) if failed_at is not None else None,
        )
        for name, _, last_success_at, failed_at, outcome, reason in sources
    }
    return [(name, is_enabled) for name, is_enabled, *_ in sources], records


def _newest_calls(name: str | OuterRef, *, is_success: bool) -> QuerySet[SourceCall]:
    """A source's successful (or failed) calls, newest first (the index source_call_recent)."""
    calls = SourceCall.objects.filter(source_name=name)
    calls = calls.filter(outcome=CallOutcome.SUCCESS) if is_success else calls.exclude(outcome=CallOutcome.SUCCESS)
    return calls.order_by("-called_at", "-id")


def _recent_calls(names: Sequence[str], now: datetime) -> dict[str, list[tuple[str, float, str]]]:
    """(outcome, seconds, reason) of each named source's recent calls, newest first: its last
    RECENT_CALLS within RECENT_WINDOW, for every name in one query (ranked per source)."""
    rank = Window(RowNumber(), partition_by=[F("source_name")], order_by=[F("called_at").desc(), F("id").desc()])
    rows = (
        SourceCall.objects.filter(source_name__in=list(names), called_at__gte=now - RECENT_WINDOW)
        .annotate(rank=rank)
        .filter(rank__lte=RECENT_CALLS)
        .order_by("source_name", "rank")
        .values_list("source_name", "outcome", "seconds", "reason")
    )
    recent: dict[str, list[tuple[str, float, str]]] = {}
    for name, outcome, seconds, reason in rows:
        recent.setdefault(name, []).append((outcome, seconds, reason))
    return recent


def _judged(name: str, *, is_enabled: bool, record: _CallRecord) -> SourceHealth:
    """The source's health by the rules (module docstring), from its call record and its breaker."""
    breaker = breaker_state(name)
    recent, last_success_at, last_failure = record.recent, record.last_success_at, record.last_failure
    failures = [(outcome, reason) for outcome, _, reason in recent if outcome != CallOutcome.SUCCESS]
    successful_seconds = sorted(seconds for outcome, seconds, _ in recent if outcome == CallOutcome.SUCCESS)
    mean = sum(successful_seconds) / len(successful_seconds) if successful_seconds else None
    error_rate = len(failures) / len(recent) if recent else None

    findings: list[tuple[str, str]] = []  # (status, reason)
    if not is_enabled:
        findings.append((DOWN, "the source is switched off (is_enabled is false): it is not called"))
    if breaker.state == OPEN:
        findings.append((DOWN, f"its breaker is {breaker.summary()}: calls are refused"))
    elif breaker.state == HALF_OPEN:
        findings.append((DEGRADED, "its breaker is half-open: trial calls decide whether it closes"))
    latest = recent[:DOWN_AFTER_FAILURES]
    if len(latest) == DOWN_AFTER_FAILURES and all(outcome != CallOutcome.SUCCESS for outcome, _, _ in latest):
        outcome, _, reason = latest[0]
        findings.append(
            (DOWN, f"its last {DOWN_AFTER_FAILURES} calls failed, the latest with {_failure_text(outcome, reason)}")
        )
    if error_rate is not None and error_rate > MAX_ERROR_RATE:
        findings.append(
            (
                DEGRADED,
                f"{len(failures)} of its last {len(recent)} calls failed ({error_rate:.0%}, over "
                f"{MAX_ERROR_RATE:.0%})",
            )
        )
    if mean is not None and mean > SLOW_MEAN_SECONDS:
        findings.append(
            (
                DEGRADED,
                f"its recent successful calls took {mean:.2f} s on average, over {SLOW_MEAN_SECONDS:g} s",
            )
        )
    if not recent:
        minutes = int(RECENT_WINDOW.total_seconds() // 60)
        findings.append((HEALTHY, f"no calls in the last {minutes} minutes: nothing known against it"))
    findings.sort(key=lambda finding: -_SEVERITY[finding[0]])
    status = findings[0][0] if findings else HEALTHY
    return SourceHealth(
        name=name,
        status=status,
        reasons=tuple(reason for _, reason in findings),
        breaker=breaker,
        calls=len(recent),
        errors=len(failures),
        error_rate=error_rate,
        mean_seconds=mean,
        p50_seconds=percentile(successful_seconds, 0.50),
        p95_seconds=percentile(successful_seconds, 0.95),
        last_success_at=last_success_at,
        last_failure_at=last_failure[0] if last_failure else None,
        last_failure_reason=_failure_text(last_failure[1], last_failure[2]) if last_failure else "",
    )


def percentile(ordered: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile of `ordered` (sorted ascending); None when empty."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _failure_text(outcome: str, reason: str) -> str:
    return f"{outcome}: {reason}" if reason else outcome


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
