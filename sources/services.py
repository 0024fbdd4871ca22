"""Operator actions on sources: each does its work and records itself in the history
(values.history.audit_record), whoever acts (admin, command, API)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sources.adapters.base import SourceError
from sources.breaker import BreakerState, breaker_force_open, breaker_reset, breaker_state
from sources.calls import call_source
from sources.models import Source
from values.history import audit_record

# An operator waiting on a "Test connection" gets an answer within this many seconds.
CONNECTION_TEST_BUDGET = 10.0


def source_breaker_reset(*, source: Source, actor: str, channel: str, reason: str) -> BreakerState:
    """Close the source's breaker now, in every process. Raises sources.breaker.BreakerUnavailable
    (nothing changed, nothing recorded) if Redis is configured but down."""
    return _breaker_changed(source, lambda: breaker_reset(source.name), actor=actor, channel=channel, reason=reason)


def source_breaker_force_open(
    *, source: Source, duration: timedelta, actor: str, channel: str, reason: str
) -> BreakerState:
    """Open the source's breaker for `duration`, in every process: no call reaches the source
    until then (then it goes half-open as usual). Raises BreakerUnavailable like the reset."""
    return _breaker_changed(
        source,
        lambda: breaker_force_open(source.name, duration.total_seconds()),
        actor=actor,
        channel=channel,
        reason=reason,
    )


def _breaker_changed(source: Source, change, *, actor: str, channel: str, reason: str) -> BreakerState:
    """Apply `change` to the source's breaker and record it: before and after are its state."""
    before = breaker_state(source.name)
    change()
    after = breaker_state(source.name)
    audit_record(
        actor=actor,
        channel=channel,
        instance=source,
        before=before.as_dict(),
        after=after.as_dict(),
        reason=reason,
    )
    return after


@dataclass(frozen=True)
class ConnectionTest:
    """What one call to a source answered. Never carries a credential or the data itself."""

    value_type: str | None  # the value type asked for; None: the source feeds none
    is_ok: bool
    confidence: float | None = None
    error_kind: str | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.value_type is None:
            return self.reason
        if self.is_ok:
            return f"ok for {self.value_type}, confidence {self.confidence:.2f}"
        return f"{self.error_kind} for {self.value_type}: {self.reason}"


def source_test_connection(*, source: Source) -> ConnectionTest:
    """Call the source once, through `call_source` (breaker and rate limit included), for its
    first linked value type with an empty context, as the engine has it configured now."""
    from values.fetching import source_call
    from values.registry import load_snapshot

    link = source.value_type_links.select_related("value_type").first()
    if link is None:
        return ConnectionTest(None, False, reason=f"{source.name} feeds no value type: nothing to ask it")
    value_type = load_snapshot().value_type(link.value_type.key)
    [configured] = [each for each in value_type.links if each.source.name == source.name]
    call = source_call(value_type, {}, configured, value_type.fallback, CONNECTION_TEST_BUDGET)
    try:
        result = call_source(call)
    except SourceError as error:
        return ConnectionTest(value_type.key, False, error_kind=error.kind.value, reason=error.reason)
    return ConnectionTest(value_type.key, True, confidence=result.confidence)
