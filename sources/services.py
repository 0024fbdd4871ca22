"""Operator actions on sources: each does its work and records itself in the history
(audit.history.audit_record), whoever acts (admin, command, API). Testing a source's connection
asks it for a value type, so it is a values service (values.services.source_test_connection)."""

from __future__ import annotations

from datetime import timedelta

from sources.breaker import BreakerState, breaker_force_open, breaker_reset, breaker_state
from sources.models import Source
from audit.history import audit_record


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
