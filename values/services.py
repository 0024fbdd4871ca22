"""Operator writes to values: each validates, saves, and records itself in the history, in one
transaction. The history entry is what tells every process to reload (values.registry)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from values.history import audit_record, snapshot
from values.models import Override, ValueType


@transaction.atomic
def override_create(
    *,
    value_type: ValueType,
    value: Any,
    reason: str,
    actor: str,
    channel: str,
    context_match: dict[str, Any] | None = None,
    starts_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> Override:
    """Create an override; raises django.core.exceptions.ValidationError if it is refused."""
    override = Override(
        value_type=value_type,
        context_match=context_match or {},
        value=value,
        reason=reason,
        author=actor,
        starts_at=starts_at or timezone.now(),
        expires_at=expires_at,
    )
    override.full_clean()
    override.save()
    audit_record(actor=actor, channel=channel, instance=override, before=None, after=snapshot(override), reason=reason)
    return override


@transaction.atomic
def override_delete(*, override: Override, actor: str, channel: str, reason: str) -> None:
    before = snapshot(override)
    audit_record(actor=actor, channel=channel, instance=override, before=before, after=None, reason=reason)
    override.delete()


@transaction.atomic
def value_type_update(*, value_type: ValueType, actor: str, channel: str, reason: str, **fields: Any) -> ValueType:
    """Change fields of a value type (fallback, bounds, TTLs, ...), validated as a whole."""
    before = snapshot(ValueType.objects.select_for_update().get(pk=value_type.pk))
    for name, value in fields.items():
        setattr(value_type, name, value)
    value_type.full_clean()
    value_type.save()
    audit_record(actor=actor, channel=channel, instance=value_type, before=before, after=snapshot(value_type), reason=reason)
    return value_type
