"""Reads of value types for the API and the commands (the resolved values: values.get_value)."""

from __future__ import annotations

from django.db.models import QuerySet

from values.models import ValueType


def value_type_list() -> QuerySet[ValueType]:
    return ValueType.objects.prefetch_related("source_links__source").order_by("key")
