"""The history of operator edits: one function writes it, whoever edits (admin, sync, API),
and in the same transaction moves the configuration version that every process watches."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F

from audit.models import AuditEntry, ConfigVersion

# Bookkeeping fields that change on every save and say nothing about the edit.
UNTRACKED_FIELDS = {"created_at", "updated_at"}

# Told of each change recorded, in its transaction, with `instance`, `before` and `after`:
# values.events publishes the change events after the commit. Set by values' AppConfig.ready()
# (audit cannot import values, the layer above it).
after_record: Callable[..., None] = lambda **change: None
# Told of each bump of the configuration or data version, in its transaction: values' registry
# makes this process read its own change at once (values.registry.Registry.version_bumped).
# Set by values' AppConfig.ready().
after_version_bump: Callable[[], None] = lambda: None


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
    """Append one entry to the history. `before` None means created, `after` None deleted.

    An update of a versioned object (one with a `version` field: value types, overrides) also
    raises its version here, so that every edit, whoever makes it, invalidates a version that
    an API client read before (values.services refuses an update naming an old one)."""
    action = (
        AuditEntry.Action.CREATE
        if before is None
        else AuditEntry.Action.DELETE
        if after is None
        else AuditEntry.Action.UPDATE
    )
    if action == AuditEntry.Action.UPDATE and _is_versioned(instance):
        after = {**after, "version": _next_version(instance)}
    bump_config_version()
    entry = AuditEntry.objects.create(
        actor=actor,
        channel=channel,
        action=action,
        object_type=object_type_of(instance),
        object_id=str(instance.pk),
        object_repr=str(instance)[:200],
        before=before,
        after=after,
        reason=reason,
    )
    after_record(instance=instance, before=before, after=after)
    return entry


def object_type_of(instance: models.Model) -> str:
    """How the history names the kind of `instance`: `app_label.model`, or the name a model that
    moved between apps keeps (its `audit_object_type`), so that its history reads as one."""
    return getattr(type(instance), "audit_object_type", instance._meta.label_lower)


def _is_versioned(instance: models.Model) -> bool:
    return any(field.name == "version" for field in instance._meta.concrete_fields)


def _next_version(instance: models.Model) -> int:
    manager = type(instance)._default_manager
    manager.filter(pk=instance.pk).update(version=F("version") + 1)
    instance.version = manager.values_list("version", flat=True).get(pk=instance.pk)
    return instance.version


def bump_config_version() -> None:
    """Tell every process the configuration changed (they reload within a second)."""
    if not ConfigVersion.objects.filter(pk=1).update(version=F("version") + 1):
        ConfigVersion.objects.get_or_create(pk=1, defaults={"version": 1})
    after_version_bump()


def bump_data_version() -> None:
    """Tell every process that a refreshed value replaced what their L1 may hold."""
    if not ConfigVersion.objects.filter(pk=1).update(data_version=F("data_version") + 1):
        ConfigVersion.objects.get_or_create(pk=1, defaults={"data_version": 1})
    after_version_bump()


def config_versions() -> tuple[int, int]:
    """(configuration version, data version), in one query."""
    row = ConfigVersion.objects.filter(pk=1).values_list("version", "data_version").first()
    return row or (0, 0)
