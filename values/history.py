"""The history of operator edits: one function writes it, whoever edits (admin, sync, API)."""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from values.models import AuditEntry

# Bookkeeping fields that change on every save and say nothing about the edit.
UNTRACKED_FIELDS = {"created_at", "updated_at"}


def snapshot(instance: models.Model) -> dict[str, Any]:
    """The instance's field values as JSON data (durations as ISO 8601, times as ISO strings)."""
    values = {
        field.attname: getattr(instance, field.attname)
        for field in instance._meta.concrete_fields
        if field.attname not in UNTRACKED_FIELDS
    }
    return json.loads(json.dumps(values, cls=DjangoJSONEncoder))


def audit_record(
    *,
    actor: str,
    channel: str,
    instance: models.Model,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    reason: str = "",
) -> AuditEntry:
    """Append one entry to the history. `before` None means created, `after` None deleted."""
    action = (
        AuditEntry.Action.CREATE
        if before is None
        else AuditEntry.Action.DELETE
        if after is None
        else AuditEntry.Action.UPDATE
    )
    return AuditEntry.objects.create(
        actor=actor,
        channel=channel,
        action=action,
        object_type=instance._meta.label_lower,
        object_id=str(instance.pk),
        object_repr=str(instance)[:200],
        before=before,
        after=after,
        reason=reason,
    )
