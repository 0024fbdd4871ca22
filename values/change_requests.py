"""Change requests: four eyes on the numbers production serves.

Where DYNCONFIG_CHANGE_REQUESTS is on (production, by default), an operator's edit of a value
type (fallback, bounds, TTLs, ...), a source link (tier, weight, channels) or an override,
from the admin or the API, is not applied: it becomes a pending `ChangeRequest` holding the
edit, the state of each object it touches and the reason. Another operator, one holding the
right to approve (the `values.approve_changerequest` permission in the admin, the
`values:approve` scope over the API), approves it, and it is applied at once or at the time
they give (scheduled; `values.tasks.apply_due_change_requests` applies it), or rejects it.

The rules, all enforced here:
- validation runs twice: at the proposal (the models' `full_clean()` on the edited objects,
  as a direct edit would) and again at the apply, against the rules in force then;
- the proposer never approves their own request;
- a request applies only onto the objects as they were proposed: if one changed since (its
  version, or for a source link any field), the apply refuses it as stale, names what changed,
  changes nothing, and the request ends `failed`;
- the apply is one transaction over every item, recorded in the history once per object, by
  "<proposer> (approved by <approver>)", with the reason "change request N: <reason>";
- deciding and applying lock the request's row, so that two workers or two approvers cannot
  apply one request twice: a request is applied at most once.

A revert from the history of an edit of one of those objects is a change request too
(`revert_propose`): it proposes what `values.services.audit_entry_revert` would apply.

Not change requests: sources (and reverts of their entries), `sync_config`, breaker actions, and
deleting a value type (refused here: docs/change-requests.md says why).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import OperationalError, models, transaction
from django.utils import timezone

from audit.history import UNTRACKED_FIELDS, audit_record, object_type_of, snapshot
from audit.models import AuditEntry
from values.models import ChangeRequest, Override, ValueRecord, ValueType, ValueTypeSource
from values.services import (
    OVERRIDE_UPDATABLE_FIELDS,
    VersionConflict,
    audit_entry_revert_plan,
    context_match_of,
    override_unsaved,
)

logger = logging.getLogger(__name__)

# The objects whose edits wait for approval, by the name the history gives their kind.
CHANGE_REQUEST_MODELS: dict[str, type[models.Model]] = {
    "values.valuetype": ValueType,
    "values.override": Override,
    "sources.valuetypesource": ValueTypeSource,
}
# Never proposed: the identity, and the version that every applied edit raises itself.
NOT_PROPOSED_FIELDS = frozenset({"id", "version"})
# How many due requests one run of the scheduler applies: the rest wait for the next tick.
APPLY_BATCH = 50


def change_requests_enabled() -> bool:
    """Whether operators' edits wait for approval here (DYNCONFIG_CHANGE_REQUESTS)."""
    return settings.DYNCONFIG_CHANGE_REQUESTS


@dataclass(frozen=True)
class ProposedEdit:
    """One object as the proposer wants it: `instance` holds the edit (not saved); `before` is
    its stored snapshot (None: it is new); `is_delete`: the proposer wants it gone.
    `parent_item`: for a new type's source link, the index of the edit that creates the type."""

    instance: models.Model
    before: dict[str, Any] | None
    is_delete: bool = False
    parent_item: int | None = None


@dataclass(frozen=True)
class DiffLine:
    """One field of one object a request changes, as JSON data (None where there is no object)."""

    object_label: str
    field: str
    before: Any
    after: Any


# Proposing ---------------------------------------------------------------------------------


@transaction.atomic
def change_request_propose(
    *, edits: Sequence[ProposedEdit], reason: str, actor: str, channel: str
) -> ChangeRequest:
    """Hold `edits` for approval. Raises ValidationError if the reason is missing, nothing
    would change, or an edited object breaks its rules (as the direct edit would)."""
    if not (reason or "").strip():
        raise ValidationError({"reason": ["A reason is required."]})
    items = [_item(edit) for edit in edits]
    items = [item for item in items if item["action"] == "delete" or item["fields"]]
    if not items:
        raise ValidationError("This edit changes nothing: there is nothing to propose.")
    first = edits[0].instance
    return ChangeRequest.objects.create(
        summary=_summary(items)[:200],
        value_type_key=_value_type_key(first),
        items=items,
        reason=reason.strip(),
        proposed_by=actor,
        channel=channel,
    )


def edit_of(instance: models.Model, *, is_delete: bool = False, parent_item: int | None = None) -> ProposedEdit:
    """A ProposedEdit of `instance` (edited in memory, or new): its `before` read from the database."""
    before = None
    if instance.pk is not None:
        stored = type(instance)._default_manager.filter(pk=instance.pk).first()
        before = snapshot(stored) if stored is not None else None
    return ProposedEdit(instance=instance, before=before, is_delete=is_delete, parent_item=parent_item)


def fallback_update_edit(*, value_type: ValueType, value: Any, expected_version: int) -> ProposedEdit:
    """The edit `values.services.value_type_fallback_update` would make, to propose instead."""
    stored = ValueType.objects.get(pk=value_type.pk)
    if stored.version != expected_version:
        raise VersionConflict(stored.version)
    before = snapshot(stored)
    stored.fallback_value = value
    return ProposedEdit(instance=stored, before=before)


def override_create_edit(
    *,
    value_type: ValueType,
    value: Any,
    reason: str,
    actor: str,
    context_match: dict[str, Any] | None = None,
    starts_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> ProposedEdit:
    """The override `values.services.override_create` would make, to propose instead."""
    override = override_unsaved(
        value_type=value_type,
        value=value,
        reason=reason,
        actor=actor,
        context_match=context_match,
        starts_at=starts_at,
        expires_at=expires_at,
    )
    return ProposedEdit(instance=override, before=None)


def override_update_edit(*, override: Override, expected_version: int, **fields: Any) -> ProposedEdit:
    """The edit `values.services.override_update` would make, to propose instead."""
    unknown = set(fields) - OVERRIDE_UPDATABLE_FIELDS
    if unknown:
        raise TypeError(f"an override update cannot change {', '.join(sorted(unknown))}")
    stored = Override.objects.select_related("value_type").get(pk=override.pk)
    if stored.version != expected_version:
        raise VersionConflict(stored.version)
    before = snapshot(stored)
    for name, value in fields.items():
        setattr(stored, name, value)
    return ProposedEdit(instance=stored, before=before)


def override_delete_edit(*, override: Override, expected_version: int) -> ProposedEdit:
    """The delete `values.services.override_delete` would make, to propose instead."""
    stored = Override.objects.select_related("value_type").get(pk=override.pk)
    if stored.version != expected_version:
        raise VersionConflict(stored.version)
    return ProposedEdit(instance=stored, before=snapshot(stored), is_delete=True)


def rollback_edit(
    *, value_type: ValueType, record: ValueRecord, reason: str, actor: str, expires_at: datetime | None = None
) -> ProposedEdit:
    """The override `values.services.value_rollback` would make, to propose instead."""
    if record.value_type_id != value_type.pk:
        raise ValueError(f"value record {record.pk} is not of value type {value_type.key}")
    fetched_at = record.fetched_at.isoformat(timespec="seconds")
    return override_create_edit(
        value_type=value_type,
        value=record.value,
        reason=f"Rollback to the value fetched at {fetched_at} (value record {record.pk}): {reason}",
        actor=actor,
        context_match=context_match_of(record.context),
        expires_at=expires_at,
    )


def revert_is_proposed(entry: AuditEntry) -> bool:
    """Whether reverting `entry` waits for approval: change requests are on and its object is one
    whose edits wait (a source's revert applies at once, as an edit of the source does)."""
    return change_requests_enabled() and entry.object_type in CHANGE_REQUEST_MODELS


def revert_edits(*, entry: AuditEntry, expected_version: int | None = None) -> list[ProposedEdit]:
    """The edits `values.services.audit_entry_revert` would make, to propose instead.

    Refused as the direct revert is: VersionConflict if `expected_version` is not the object's
    version; ValidationError with the revert plan's own messages if the plan refuses."""
    model = CHANGE_REQUEST_MODELS.get(entry.object_type)
    current = _revert_target(model, entry)
    # Read before the plan: if the object moves in between, the apply finds it stale and refuses.
    before = snapshot(current) if current is not None else None
    if current is not None and expected_version is not None and hasattr(current, "version"):
        if current.version != expected_version:
            raise VersionConflict(current.version)
    plan = audit_entry_revert_plan(entry=entry)
    if not plan.is_possible:
        raise ValidationError(list(plan.problems))
    if model is None:
        raise TypeError(f"reverts of {entry.object_type} are not change requests")
    if plan.action == "delete":
        return [ProposedEdit(instance=current, before=before, is_delete=True)]
    # "restore" sets the restored fields on the object as it is; "re-create" makes it anew (with a
    # new id: a change request creates, it does not bring back an id).
    instance = current if plan.action == "restore" else model()
    for change in plan.changes:
        setattr(instance, change.name, _python_value(model, change.name, change.restored))
    return [ProposedEdit(instance=instance, before=before if plan.action == "restore" else None)]


def revert_propose(
    *, entry: AuditEntry, reason: str, actor: str, channel: str, expected_version: int | None = None
) -> ChangeRequest:
    """Propose the revert of `entry` (see `revert_edits`) with the reason "revert of entry N:
    <reason>", the direct revert's wording. Raises what `revert_edits` and the proposal raise."""
    if not (reason or "").strip():
        raise ValidationError({"reason": ["A reason is required."]})
    edits = revert_edits(entry=entry, expected_version=expected_version)
    return change_request_propose(
        edits=edits, reason=f"revert of entry {entry.pk}: {reason.strip()}", actor=actor, channel=channel
    )


def _revert_target(model: type[models.Model] | None, entry: AuditEntry) -> models.Model | None:
    if model is None:
        return None
    try:
        return model._default_manager.filter(pk=entry.object_id).first()
    except (ValueError, TypeError):  # an id this model cannot have names no object of it
        return None


def _item(edit: ProposedEdit) -> dict[str, Any]:
    instance = edit.instance
    object_type = object_type_of(instance)
    if object_type not in CHANGE_REQUEST_MODELS:
        raise TypeError(f"edits of {object_type} are not change requests")
    if edit.is_delete:
        if isinstance(instance, ValueType):
            # Its links, overrides and history of values go with it: deleting a type is done with
            # change requests off, deliberately, not approved in passing.
            raise ValidationError("A value type is not deleted through a change request.")
        if edit.before is None:
            raise ValidationError(f"The {_label(instance)} does not exist: nothing to delete.")
        action, fields = "delete", {}
    else:
        exclude = ["value_type"] if edit.parent_item is not None else None  # made by the apply
        instance.full_clean(exclude=exclude)
        after = snapshot(instance)
        action = "update" if edit.before is not None else "create"
        fields = {
            name: value
            for name, value in after.items()
            if name not in NOT_PROPOSED_FIELDS
            and not (edit.parent_item is not None and name == "value_type_id")
            and (edit.before is None or edit.before.get(name) != value)
        }
    item = {
        "object_type": object_type,
        "object_id": None if edit.before is None else str(instance.pk),
        "object_repr": str(instance)[:200],
        "action": action,
        "before": edit.before,
        "fields": fields,
    }
    if edit.parent_item is not None:
        item["parent_item"] = edit.parent_item
    return item


def _summary(items: list[dict[str, Any]]) -> str:
    first = items[0]
    model = CHANGE_REQUEST_MODELS[first["object_type"]]
    text = f"{first['action']} {model._meta.verbose_name} {first['object_repr']}"
    if first["action"] == "update":
        text += f" ({', '.join(first['fields'])})"
    if len(items) > 1:
        text += f" and {len(items) - 1} more"
    return text


def _value_type_key(instance: models.Model) -> str:
    if isinstance(instance, ValueType):
        return instance.key
    value_type_id = getattr(instance, "value_type_id", None)
    key = ValueType.objects.filter(pk=value_type_id).values_list("key", flat=True).first()
    return key or ""


def _label(instance: models.Model) -> str:
    return f"{instance._meta.verbose_name} {str(instance)!r}"


# What a request changes ----------------------------------------------------------------------


def edits_diff(edits: Sequence[ProposedEdit]) -> list[DiffLine]:
    """What proposing (or saving) `edits` would change; validates them as a proposal does
    (ValidationError if one is refused). Changes nothing."""
    return change_request_diff(ChangeRequest(items=[_item(edit) for edit in edits]))


def change_request_diff(change_request: ChangeRequest) -> list[DiffLine]:
    """Each field each item changes, from what it was when proposed to what is proposed."""
    lines = []
    for item in change_request.items:
        model = CHANGE_REQUEST_MODELS[item["object_type"]]
        label = f"{item['action']} {model._meta.verbose_name} {item['object_repr']}"
        before = item["before"] or {}
        if item["action"] == "delete":
            names = [name for name in before if name not in NOT_PROPOSED_FIELDS | UNTRACKED_FIELDS]
            lines += [DiffLine(label, name, before[name], None) for name in names]
        else:
            lines += [DiffLine(label, name, before.get(name), value) for name, value in item["fields"].items()]
    return lines


# Deciding ----------------------------------------------------------------------------------


@transaction.atomic
def change_request_approve(
    *, change_request: ChangeRequest, actor: str, note: str = "", apply_at: datetime | None = None
) -> ChangeRequest:
    """Approve a pending request: applied now, or scheduled when `apply_at` is in the future.

    Raises ValidationError if it is not pending or `actor` proposed it. An apply that fails
    (stale, or invalid under today's rules) is not an error of the approval: the request is
    returned `failed`, its `failure` saying why, and nothing else changed."""
    locked = _locked_pending(change_request)
    if actor == locked.proposed_by:
        raise SelfApproval("A change request must be approved by someone other than its proposer.")
    now = timezone.now()
    locked.decided_by, locked.decided_at, locked.decision_note = actor, now, (note or "").strip()
    if apply_at is not None and apply_at > now:
        locked.state, locked.apply_at = ChangeRequest.State.SCHEDULED, apply_at
        locked.save()
        return locked
    return _apply_locked(locked)


@transaction.atomic
def change_request_reject(*, change_request: ChangeRequest, actor: str, note: str) -> ChangeRequest:
    """Reject a pending request (anyone who may approve, the proposer too: withdrawing it).
    Raises ValidationError if it is not pending or the note (why) is missing."""
    if not (note or "").strip():
        raise ValidationError({"note": ["Say why it is rejected."]})
    locked = _locked_pending(change_request)
    locked.state = ChangeRequest.State.REJECTED
    locked.decided_by, locked.decided_at, locked.decision_note = actor, timezone.now(), note.strip()
    locked.save()
    return locked


def change_request_apply_due(*, now: datetime | None = None) -> list[ChangeRequest]:
    """Apply the scheduled requests whose time has come (the periodic task); returns them.

    Each in its own transaction, its row locked and skipped if another worker holds it, and
    applied only if still scheduled: running this twice, or in two workers at once, applies
    each request once."""
    now = now or timezone.now()
    due = ChangeRequest.objects.filter(state=ChangeRequest.State.SCHEDULED, apply_at__lte=now)
    done = []
    for pk in due.order_by("apply_at", "pk").values_list("pk", flat=True)[:APPLY_BATCH]:
        try:
            with transaction.atomic():
                locked = (
                    ChangeRequest.objects.select_for_update(skip_locked=True)
                    .filter(pk=pk, state=ChangeRequest.State.SCHEDULED)
                    .first()
                )
                if locked is not None:
                    done.append(_apply_locked(locked))
        except OperationalError:
            # Retryable (a deadlock with a concurrent edit, a lost connection): rolled back whole,
            # still scheduled, applied by a later run.
            logger.warning("change request %s: apply interrupted, left for the next run", pk, exc_info=True)
    return done


def _locked_pending(change_request: ChangeRequest) -> ChangeRequest:
    locked = ChangeRequest.objects.select_for_update().get(pk=change_request.pk)
    if locked.state != ChangeRequest.State.PENDING:
        raise NotPending(f"Change request {locked.pk} is {locked.state}: only a pending one can be decided.")
    return locked


# Applying ----------------------------------------------------------------------------------


class NotPending(ValidationError):
    """A decision on a request that was already decided."""


class SelfApproval(ValidationError):
    """An approval by the request's own proposer."""


class StaleChange(Exception):
    """An object the request edits changed since the request was proposed."""


def _apply_locked(locked: ChangeRequest) -> ChangeRequest:
    """Apply a locked, approved request's items in one savepoint; record the outcome on it."""
    actor = f"{locked.proposed_by} (approved by {locked.decided_by})"[:150]
    reason = f"change request {locked.pk}: {locked.reason}"
    try:
        with transaction.atomic():
            made: list[models.Model] = []
            for item in locked.items:
                made.append(_apply_item(item, made, actor=actor, channel=locked.channel, reason=reason))
    except StaleChange as error:
        locked.state, locked.failure = ChangeRequest.State.FAILED, f"Stale: {error} Nothing was applied; propose it again."
    except ValidationError as error:
        locked.state = ChangeRequest.State.FAILED
        locked.failure = f"Refused by today's rules: {_messages(error)} Nothing was applied."
    else:
        locked.state, locked.applied_at, locked.failure = ChangeRequest.State.APPLIED, timezone.now(), ""
    locked.save()
    return locked


def _apply_item(
    item: dict[str, Any], made: list[models.Model | None], *, actor: str, channel: str, reason: str
) -> models.Model | None:
    model = CHANGE_REQUEST_MODELS[item["object_type"]]
    label = f"{model._meta.verbose_name} {item['object_repr']!r}"
    if item["action"] == "create":
        instance = model()
        for name, data in item["fields"].items():
            setattr(instance, name, _python_value(model, name, data))
        if item.get("parent_item") is not None:
            instance.value_type_id = made[item["parent_item"]].pk
        instance.full_clean()
        instance.save(force_insert=True)
        audit_record(actor=actor, channel=channel, instance=instance, before=None, after=snapshot(instance), reason=reason)
        return instance
    current = model._default_manager.select_for_update(of=("self",)).filter(pk=item["object_id"]).first()
    if current is None:
        raise StaleChange(f"the {label} was deleted since this request was proposed.")
    before = snapshot(current)
    _refuse_if_changed(before, item["before"], label)
    if item["action"] == "delete":
        audit_record(actor=actor, channel=channel, instance=current, before=before, after=None, reason=reason)
        current.delete()
        return None
    for name, data in item["fields"].items():
        setattr(current, name, _python_value(model, name, data))
    current.full_clean()
    current.save()
    audit_record(actor=actor, channel=channel, instance=current, before=before, after=snapshot(current), reason=reason)
    return current


def _refuse_if_changed(now: dict[str, Any], proposed_on: dict[str, Any], label: str) -> None:
    if "version" in now and now["version"] != proposed_on.get("version"):
        raise StaleChange(
            f"the {label} changed since this request was proposed "
            f"(proposed on version {proposed_on.get('version')}, now version {now['version']})."
        )
    moved = sorted(name for name in now if now[name] != proposed_on.get(name))
    if moved:
        raise StaleChange(f"the {label} changed since this request was proposed ({', '.join(moved)}).")


def _python_value(model: type[models.Model], attname: str, data: Any) -> Any:
    """Snapshot data (durations and times as ISO 8601 text) back as the field's Python value."""
    [field] = [field for field in model._meta.concrete_fields if field.attname == attname]
    return None if data is None else field.to_python(data)


def _messages(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return " ".join(f"{name}: {' '.join(messages)}" for name, messages in error.message_dict.items())
    return " ".join(error.messages)


def changed_keys(before: Any, after: Any) -> str:
    """For a value that is an object, which of its keys an edit changes, e.g.
    "retail: 1.1 → 1.4; toys: added 1.2"; "" for anything else (the whole value is shown)."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return ""
    parts = []
    for name in sorted(set(before) | set(after), key=str):
        if name not in after:
            parts.append(f"{name}: removed")
        elif name not in before:
            parts.append(f"{name}: added {_compact(after[name])}")
        elif before[name] != after[name]:
            parts.append(f"{name}: {_compact(before[name])} → {_compact(after[name])}")
    return "; ".join(parts)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def shown(value: Any) -> str:
    """A value of a diff as a person reads it: JSON, indented; "-" where there is none."""
    return "-" if value is None else json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
