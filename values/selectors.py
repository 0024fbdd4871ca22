"""Reads of value types, overrides and history for the API and the commands (the resolved
values: values.get_value)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from audit.models import AuditEntry
from core.context import canonical_context
from sources.models import Source
from values.models import Override, ValueRecord, ValueType, ValueTypeSource
from values.registry import registry


def value_type_list() -> QuerySet[ValueType]:
    return ValueType.objects.prefetch_related("source_links__source").order_by("key")


def value_type_get(*, key: str) -> ValueType | None:
    """The stored value type named by `key` or one of its aliases, or None.

    The name is looked up in this process's registry (a dictionary, at most a second old), so
    no text a caller sends reaches a query; None also for a built-in type the database lacks."""
    config = registry.snapshot().value_type(key)
    if config is None or config.id is None:
        return None
    return ValueType.objects.filter(pk=config.id).first()


def override_list(*, value_type: ValueType | None = None, is_active: bool | None = None) -> QuerySet[Override]:
    """Overrides, optionally of one type, and only the active (or only the inactive) ones:
    active means started and not expired."""
    overrides = Override.objects.select_related("value_type").order_by("value_type__key", "-starts_at", "-id")
    if value_type is not None:
        overrides = overrides.filter(value_type=value_type)
    if is_active is not None:
        now = timezone.now()
        active = Q(starts_at__lte=now) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        overrides = overrides.filter(active) if is_active else overrides.exclude(active)
    return overrides


def override_get(*, override_id: int) -> Override | None:
    return Override.objects.select_related("value_type").filter(pk=override_id).first()


def value_record_get(*, value_type: ValueType, record_id: int) -> ValueRecord | None:
    """A past value of `value_type` (None for another type's record: ids are not a way across)."""
    return ValueRecord.objects.filter(pk=record_id, value_type=value_type).first()


@dataclass(frozen=True)
class ValueHistory:
    context: dict[str, Any]
    values: list[ValueRecord]  # fetched values for the context, newest first
    changes: list[AuditEntry]  # operator changes of the type, its overrides and sources, newest first


def value_history(*, value_type: ValueType, context: dict[str, Any] | None, limit: int) -> ValueHistory:
    """The last `limit` values fetched for `context` and the last `limit` operator changes of
    the type (its configuration and fallback, its overrides, its source links).

    Raises core.context.ContextError for a context the type does not accept."""
    canonical, context_key = canonical_context(context, value_type.context_keys, value_type.key)
    values = ValueRecord.objects.filter(value_type=value_type, context_key=context_key).order_by("-fetched_at", "-id")
    # Overrides and links are found by the type id in their snapshots, so deleted ones count too.
    of_this_type = Q(before__value_type_id=value_type.pk) | Q(after__value_type_id=value_type.pk)
    changes = AuditEntry.objects.filter(
        Q(object_type=ValueType._meta.label_lower, object_id=str(value_type.pk))
        | (Q(object_type__in=(Override._meta.label_lower, ValueTypeSource.audit_object_type)) & of_this_type)
    ).order_by("-created_at", "-id")
    return ValueHistory(context=canonical, values=list(values[:limit]), changes=list(changes[:limit]))


def value_type_source_names() -> dict[str, list[str]]:
    """Each value type's key with the names of the sources feeding it, for the health report
    (sources.health); empty if the database cannot be read (the report then says so itself)."""
    sources_of: dict[str, list[str]] = {}
    try:
        links = list(ValueTypeSource.objects.values_list("value_type__key", "source__name"))
    except DatabaseError:
        return {}
    for value_type, source_name in links:
        sources_of.setdefault(value_type, []).append(source_name)
    return sources_of


def sources_with_links() -> QuerySet[Source]:
    """Every source by name, with the value types it feeds (`value_type_links`) prefetched."""
    return Source.objects.order_by("name").prefetch_related(
        Prefetch(
            "value_type_links",
            queryset=ValueTypeSource.objects.select_related("value_type").order_by("value_type__key", "tier"),
        )
    )


def source_with_links(name: str) -> Source | None:
    """The source named `name` with its links prefetched, or None."""
    return sources_with_links().filter(name=name).first()
