"""Operator writes to values: each validates, saves, and records itself in the history, in one
transaction. The history entry is what tells every process to reload (values.registry).

Optimistic concurrency: value types and overrides carry a `version`, raised by every edit
(audit.history.audit_record). An update or delete names the version its author read; the row
is locked, the version compared, and a stale one refused with VersionConflict, so that two
operators editing the same object at once cannot silently overwrite each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from audit.history import UNTRACKED_FIELDS, audit_record, snapshot
from audit.models import AuditEntry
from core.context import LIST_KEYS
from sources.adapters.base import SourceError
from sources.calls import call_source
from sources.models import Source
from values.fetching import source_call
from values.models import Override, ValueRecord, ValueType, ValueTypeSource
from values.registry import load_snapshot

# What an override update may change; its type is fixed, and its author is who created it.
OVERRIDE_UPDATABLE_FIELDS = frozenset({"context_match", "value", "starts_at", "expires_at"})


class VersionConflict(Exception):
    """An update or delete named a version that is no longer the current one."""

    def __init__(self, current_version: int):
        self.current_version = current_version
        super().__init__(f"It changed since it was read: the current version is {current_version}.")


def override_unsaved(
    *,
    value_type: ValueType,
    value: Any,
    reason: str,
    actor: str,
    context_match: dict[str, Any] | None = None,
    starts_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> Override:
    """The override `override_create` makes, neither validated nor saved (a change request
    proposes it instead)."""
    return Override(
        value_type=value_type,
        context_match=context_match or {},
        value=value,
        reason=reason,
        author=actor,
        starts_at=starts_at or timezone.now(),
        expires_at=expires_at,
    )


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
    override = override_unsaved(
        value_type=value_type,
        value=value,
        reason=reason,
        actor=actor,
        context_match=context_match,
        starts_at=starts_at,
        expires_at=expires_at,
    )
    _validate_override(override)
    override.save()
    audit_record(actor=actor, channel=channel, instance=override, before=None, after=snapshot(override), reason=reason)
    return override


@transaction.atomic
def override_update(
    *, override: Override, expected_version: int, actor: str, channel: str, reason: str, **fields: Any
) -> Override:
    """Change an override's context_match, value, starts_at or expires_at.

    `reason` says why this change was made (it goes to the history; the override's own
    `reason`, why it exists, stays). Raises VersionConflict if `expected_version` is not the
    current one, ValidationError if the result is refused; nothing changes then."""
    unknown = set(fields) - OVERRIDE_UPDATABLE_FIELDS
    if unknown:
        raise TypeError(f"override_update cannot change {', '.join(sorted(unknown))}")
    locked = _locked_at_version(Override.objects.select_related("value_type"), override.pk, expected_version)
    _require_reason(reason)
    before = snapshot(locked)
    for name, value in fields.items():
        setattr(locked, name, value)
    _validate_override(locked)
    locked.save()
    audit_record(actor=actor, channel=channel, instance=locked, before=before, after=snapshot(locked), reason=reason)
    return locked


@transaction.atomic
def override_delete(*, override: Override, expected_version: int, actor: str, channel: str, reason: str) -> None:
    """Delete an override; raises VersionConflict if `expected_version` is not the current one."""
    locked = _locked_at_version(Override.objects.all(), override.pk, expected_version)
    _require_reason(reason)
    audit_record(actor=actor, channel=channel, instance=locked, before=snapshot(locked), after=None, reason=reason)
    locked.delete()


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


@transaction.atomic
def value_type_fallback_update(
    *, value_type: ValueType, value: Any, expected_version: int, actor: str, channel: str, reason: str
) -> ValueType:
    """Replace a type's emergency fallback, validated against its schema and bounds.

    Raises VersionConflict if `expected_version` is not the type's current version (any edit
    of the type raises it, not only fallback edits), ValidationError if the value is refused."""
    locked = _locked_at_version(ValueType.objects.all(), value_type.pk, expected_version)
    _require_reason(reason)
    return value_type_update(value_type=locked, actor=actor, channel=channel, reason=reason, fallback_value=value)


@transaction.atomic
def value_rollback(
    *,
    value_type: ValueType,
    record: ValueRecord,
    actor: str,
    channel: str,
    reason: str,
    expires_at: datetime | None = None,
) -> Override:
    """Serve a past value again, as an override matching the context it was fetched for.

    An override rather than a rewrite of the last known good value: the next refresh would
    overwrite that, while an override stays until it expires or is deleted, shows in the
    admin and the API, and is audited like any operator write. The value must still satisfy
    the type's current rules (ValidationError otherwise)."""
    if record.value_type_id != value_type.pk:
        raise ValueError(f"value record {record.pk} is not of value type {value_type.key}")
    _require_reason(reason)
    fetched_at = record.fetched_at.isoformat(timespec="seconds")
    return override_create(
        value_type=value_type,
        value=record.value,
        reason=f"Rollback to the value fetched at {fetched_at} (value record {record.pk}): {reason}",
        actor=actor,
        channel=channel,
        context_match=context_match_of(record.context),
        expires_at=expires_at,
    )


def _locked_at_version(queryset: models.QuerySet, pk: int, expected_version: int) -> models.Model:
    """The row locked until the transaction ends, if it is still at `expected_version`."""
    locked = queryset.select_for_update(of=("self",)).get(pk=pk)
    if locked.version != expected_version:
        raise VersionConflict(locked.version)
    return locked


def _require_reason(reason: str) -> None:
    if not (reason or "").strip():
        raise ValidationError({"reason": ["A reason is required."]})


def _validate_override(override: Override) -> None:
    override.full_clean()  # schema, bounds, and a context_match every process can read back


def context_match_of(context: dict[str, Any]) -> dict[str, Any]:
    """A canonical context as an override's context_match (lists written as "a,b")."""
    return {
        name: ",".join(value) if name in LIST_KEYS and isinstance(value, list) else value
        for name, value in context.items()
    }


# Testing a source ------------------------------------------------------------------------------

# An operator waiting on a "Test connection" gets an answer within this many seconds.
CONNECTION_TEST_BUDGET = 10.0


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


# Reverting a history entry ---------------------------------------------------------------------
#
# What a revert does, by the entry's action:
#   update → the fields the entry changed get its `before` values back, if none of them changed
#            since (else it is refused, naming what would be overwritten);
#   create → the object is deleted, if it is as the entry left it; never a value type (consumers
#            read it by key: deleting one is an explicit admin delete, not an undo), nor a source
#            that value types still use;
#   delete → the object is made again from `before`, with its id, if nothing took its place.
# Each passes the model's full_clean() like any edit and is recorded through audit_record, with
# the reason "revert of entry N: <reason>". A refusal is a ValidationError; nothing changes then.

# The objects whose history can be reverted, by the name the history gives their kind.
REVERTIBLE_MODELS: dict[str, type[models.Model]] = {
    "values.valuetype": ValueType,
    "values.override": Override,
    "sources.source": Source,
    "sources.valuetypesource": ValueTypeSource,
}
# Never restored from a snapshot: the identity, and the version that every edit raises itself.
NOT_RESTORED_FIELDS = frozenset({"id", "version"})


@dataclass(frozen=True)
class FieldChange:
    """One field a revert changes, as JSON data; None where the object does not exist."""

    name: str
    current: Any
    restored: Any


@dataclass(frozen=True)
class RevertPlan:
    """What reverting an entry would do, or why it cannot (`problems`, empty when it can)."""

    action: str  # "restore", "delete" or "re-create"; "" when the entry cannot be reverted at all
    changes: tuple[FieldChange, ...]
    problems: tuple[str, ...]

    @property
    def is_possible(self) -> bool:
        return not self.problems


def audit_entry_revert_plan(*, entry: AuditEntry) -> RevertPlan:
    """What `audit_entry_revert` would do now (for a confirmation page); changes nothing."""
    model = REVERTIBLE_MODELS.get(entry.object_type)
    current = _revert_target(model, entry, lock=False) if model else None
    return _revert_plan(entry, model, current)


@transaction.atomic
def audit_entry_revert(
    *, entry: AuditEntry, actor: str, channel: str, reason: str, expected_version: int | None = None
) -> AuditEntry:
    """Undo one history entry as a new, audited change (see the rules above); returns its entry.

    `expected_version`, for value types and overrides, is the version the caller read: another
    one raises VersionConflict. Raises ValidationError when the entry cannot be reverted (its
    object changed or vanished since, or the restored state is invalid); nothing changes then."""
    _require_reason(reason)
    model = REVERTIBLE_MODELS.get(entry.object_type)
    current = _revert_target(model, entry, lock=True) if model else None
    if current is not None and expected_version is not None and hasattr(current, "version"):
        if current.version != expected_version:
            raise VersionConflict(current.version)
    plan = _revert_plan(entry, model, current)
    if not plan.is_possible:
        raise ValidationError(list(plan.problems))
    revert_reason = f"revert of entry {entry.pk}: {reason.strip()}"
    if plan.action == "restore":
        before = snapshot(current)
        for change in plan.changes:
            setattr(current, change.name, _field_value(model, change.name, change.restored))
        current.full_clean()
        current.save()
        return audit_record(
            actor=actor, channel=channel, instance=current, before=before, after=snapshot(current), reason=revert_reason
        )
    if plan.action == "delete":
        recorded = audit_record(
            actor=actor, channel=channel, instance=current, before=snapshot(current), after=None, reason=revert_reason
        )
        current.delete()
        return recorded
    restored = model(pk=_field_value(model, "id", entry.object_id))
    for change in plan.changes:
        setattr(restored, change.name, _field_value(model, change.name, change.restored))
    if hasattr(restored, "version"):
        # Past the version it had: a client still holding that one must read it again.
        restored.version = int(entry.before.get("version") or 0) + 1
    restored.full_clean()
    restored.save(force_insert=True)
    return audit_record(
        actor=actor, channel=channel, instance=restored, before=None, after=snapshot(restored), reason=revert_reason
    )


def _revert_target(model: type[models.Model], entry: AuditEntry, *, lock: bool) -> models.Model | None:
    queryset = model._default_manager.all()
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    try:
        return queryset.filter(pk=entry.object_id).first()
    except (ValueError, TypeError):  # an id this model cannot have names no object of it
        return None


def _revert_plan(entry: AuditEntry, model: type[models.Model] | None, current: models.Model | None) -> RevertPlan:
    if model is None:
        return RevertPlan("", (), (f"Changes of {entry.object_type} cannot be reverted.",))
    names = {field.attname for field in model._meta.concrete_fields}
    recorded = {**(entry.before or {}), **(entry.after or {})}
    if set(recorded) - names - UNTRACKED_FIELDS:
        # e.g. a breaker reset, recorded against its source: not a change of the source's fields
        return RevertPlan("", (), ("This entry records an action, not a change of the object's fields.",))
    label = f"{model._meta.verbose_name} {entry.object_repr!r}"
    if entry.action == AuditEntry.Action.UPDATE:
        return _update_revert_plan(entry, current, label)
    if entry.action == AuditEntry.Action.CREATE:
        return _create_revert_plan(entry, model, current, label)
    return _delete_revert_plan(entry, current, label)


def _update_revert_plan(entry: AuditEntry, current: models.Model | None, label: str) -> RevertPlan:
    before, after = entry.before, entry.after
    changed = [name for name in _restorable(before) if before.get(name) != after.get(name)]
    if not changed:
        return RevertPlan("restore", (), ("This entry changed no field that a revert could restore.",))
    if current is None:
        return RevertPlan("restore", (), (f"The {label} was deleted since this entry: nothing to restore.",))
    now = snapshot(current)
    changes = tuple(FieldChange(name, now.get(name), before[name]) for name in changed)
    moved = [name for name in changed if now.get(name) != after.get(name)]
    problems = tuple(
        f"{name} changed since this entry: reverting would overwrite its current value "
        f"{_shown(now.get(name))} (this entry left {_shown(after.get(name))}). Revert the later change first."
        for name in moved
    )
    return RevertPlan("restore", changes, problems)


def _create_revert_plan(
    entry: AuditEntry, model: type[models.Model], current: models.Model | None, label: str
) -> RevertPlan:
    if model is ValueType:
        return RevertPlan("delete", (), (
            "A revert does not delete a value type: consumers read it by key. Delete it in the "
            "admin if it must go.",
        ))  # fmt: skip
    if current is None:
        return RevertPlan("delete", (), (f"The {label} was deleted since: nothing to delete.",))
    now = snapshot(current)
    changes = tuple(FieldChange(name, now[name], None) for name in _restorable(now))
    moved = [name for name in _restorable(now) if now[name] != entry.after.get(name)]
    problems = []
    if moved:
        problems.append(
            f"The {label} changed since it was created ({', '.join(moved)}): revert those changes "
            "first, or delete it explicitly."
        )
    if isinstance(current, Source) and current.value_type_links.exists():
        problems.append(f"The {label} still feeds value types: remove its links first.")
    return RevertPlan("delete", changes, tuple(problems))


def _delete_revert_plan(entry: AuditEntry, current: models.Model | None, label: str) -> RevertPlan:
    changes = tuple(FieldChange(name, None, entry.before[name]) for name in _restorable(entry.before))
    if current is not None:
        return RevertPlan("re-create", changes, (f"The {label} exists again: nothing to re-create.",))
    return RevertPlan("re-create", changes, ())


def _restorable(values: dict[str, Any]) -> list[str]:
    return [name for name in values if name not in NOT_RESTORED_FIELDS | UNTRACKED_FIELDS]


def _field_value(model: type[models.Model], attname: str, data: Any) -> Any:
    """Snapshot data (durations and times as ISO 8601 text) back as the field's Python value."""
    [field] = [field for field in model._meta.concrete_fields if field.attname == attname]
    return None if data is None else field.to_python(data)


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
