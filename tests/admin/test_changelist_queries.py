"""The admin's changelists cost the same number of database queries with 5 rows as with 50: a
page's figures (the value served now, each source's health, counts) are read for the page at
once, never once per row. (How long the pages take at 100× the data: bench/run.py --scale.)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.history import bump_config_version
from audit.models import AuditEntry
from sources.models import Source, SourceCall
from tests.admin.test_admin import admin_url
from values.cache import l1
from values.models import ContextReads, Override, RefreshSchedule, ResolvedValue, ValueRecord, ValueType, ValueTypeSource
from values.registry import registry

pytestmark = pytest.mark.django_db

KEY = "budget_thresholds"


def page_queries(client, model) -> int:
    """The queries of one GET of `model`'s changelist, every cache tier empty (the page must not
    need them warm to be cheap)."""
    l1.clear()
    caches["default"].clear()
    registry.refresh(force=True)  # a reload here, not inside the counted request
    with CaptureQueriesContext(connection) as queries:
        response = client.get(admin_url(model, "changelist"))
    assert response.status_code == 200
    return len(queries)


# Builders: each adds `count` more rows of its changelist's model --------------------------------


def add_value_types(count: int) -> None:
    template = ValueType.objects.get(key=KEY)
    first = ValueType.objects.filter(key__startswith="qc_").count()
    made = ValueType.objects.bulk_create(
        ValueType(
            key=f"qc_{index:03d}", schema=template.schema, context_keys=template.context_keys,
            update_frequency=template.update_frequency, ttl=template.ttl, max_staleness=template.max_staleness,
            fallback_value=template.fallback_value, field_bounds=template.field_bounds,
            ascending_fields=template.ascending_fields, field_precision=template.field_precision,
            widening_order=template.widening_order,
        )  # fmt: skip
        for index in range(first, first + count)
    )
    source = Source.objects.order_by("name").first()
    ValueTypeSource.objects.bulk_create(
        ValueTypeSource(value_type=value_type, source=source, tier="primary", weight=1.0) for value_type in made
    )
    bump_config_version()
    # Half of them hold a fresh value for the empty context in the database tier.
    now = timezone.now()
    snapshot = registry.refresh(force=True)
    ResolvedValue.objects.bulk_create(
        ResolvedValue(
            value_type=value_type, context_key="", context={}, value=value_type.fallback_value,
            provenance={"tier": "primary", "origin": "primary", "sources": [], "confidence": 1.0,
                        "fetched_at": now.isoformat(), "expires_at": None, "stale": False},
            fingerprint=snapshot.value_type(value_type.key).fingerprint,
            fetched_at=now, expires_at=now + timedelta(hours=1),
        )  # fmt: skip
        for value_type in made[::2]
    )


def add_overrides(count: int) -> None:
    value_type = ValueType.objects.get(key=KEY)
    first = Override.objects.count()
    Override.objects.bulk_create(
        Override(
            value_type=value_type, context_match={"region": f"r{index:03d}"}, value=value_type.fallback_value,
            reason="query count", author="test",
        )  # fmt: skip
        for index in range(first, first + count)
    )
    bump_config_version()


def add_sources(count: int) -> None:
    template = Source.objects.order_by("name").first()
    first = Source.objects.filter(name__startswith="qc_").count()
    now = timezone.now()
    for index in range(first, first + count):
        name = f"qc_source_{index:03d}"
        Source.objects.create(
            name=name, kind=template.kind, base_url=template.base_url,
            credential_variables=template.credential_variables, request_template=template.request_template,
        )  # fmt: skip
        SourceCall.objects.bulk_create(
            [
                SourceCall(source_name=name, outcome="success", seconds=0.2, called_at=now - timedelta(minutes=1)),
                SourceCall(source_name=name, outcome="timeout", seconds=3.0, reason="read timeout",
                           called_at=now - timedelta(hours=1)),
            ]  # fmt: skip
        )


def add_resolved_values(count: int, model=ResolvedValue) -> None:
    value_type = ValueType.objects.get(key=KEY)
    first = model.objects.count()
    now = timezone.now()
    extra = {"expires_at": now + timedelta(hours=1)} if model is ResolvedValue else {}
    model.objects.bulk_create(
        model(
            value_type=value_type, context_key=f"region=r{index:03d}", context={"region": f"r{index:03d}"},
            value=value_type.fallback_value, provenance={"tier": "primary"}, fetched_at=now, **extra,
        )  # fmt: skip
        for index in range(first, first + count)
    )


def add_value_records(count: int) -> None:
    add_resolved_values(count, model=ValueRecord)


def add_context_reads(count: int) -> None:
    value_type = ValueType.objects.get(key=KEY)
    first = ContextReads.objects.count()
    ContextReads.objects.bulk_create(
        ContextReads(
            value_type=value_type, context_key=f"region=r{index:03d}", context={"region": f"r{index:03d}"},
            reads=index, last_read_at=timezone.now(),
        )  # fmt: skip
        for index in range(first, first + count)
    )


def add_audit_entries(count: int) -> None:
    AuditEntry.objects.bulk_create(
        AuditEntry(
            actor="test", channel="admin", action="update", object_type="values.valuetype",
            object_id=str(index), object_repr=f"qc_{index}", before={"ttl": 1}, after={"ttl": 2}, reason="query count",
        )  # fmt: skip
        for index in range(count)
    )


def add_source_links(count: int) -> None:
    add_value_types(count)  # each new type comes with one link


def add_source_calls(count: int) -> None:
    now = timezone.now()
    SourceCall.objects.bulk_create(
        SourceCall(source_name="market_research_api", outcome="success", seconds=0.1, called_at=now - timedelta(seconds=index))
        for index in range(count)
    )


def add_refresh_schedules(count: int) -> None:
    before = set(RefreshSchedule.objects.values_list("value_type_id", flat=True))
    add_value_types(count)
    RefreshSchedule.objects.bulk_create(
        RefreshSchedule(value_type=value_type, last_dispatched_at=timezone.now())
        for value_type in ValueType.objects.exclude(pk__in=before)
    )


CHANGELISTS: list[tuple[type, Callable[[int], None]]] = [
    (ValueType, add_value_types),
    (Override, add_overrides),
    (Source, add_sources),
    (ResolvedValue, add_resolved_values),
    (ValueRecord, add_value_records),
    (ContextReads, add_context_reads),
    (AuditEntry, add_audit_entries),
    (ValueTypeSource, add_source_links),
    (SourceCall, add_source_calls),
    (RefreshSchedule, add_refresh_schedules),
]


@pytest.mark.parametrize(("model", "add_rows"), CHANGELISTS, ids=lambda each: getattr(each, "__name__", ""))
def test_changelist__5_rows_then_50__same_number_of_queries(admin_client, synced, monkeypatch, model, add_rows):
    # The registry checks the configuration version at most every half second: not in the count.
    monkeypatch.setattr(registry, "check_interval", 3600.0, raising=False)
    add_rows(5)
    admin_client.get(admin_url(model, "changelist"))  # the session, content types: once
    with_5 = page_queries(admin_client, model)

    add_rows(45)
    with_50 = page_queries(admin_client, model)

    assert with_50 == with_5, f"{model.__name__}: {with_5} queries with 5 more rows, {with_50} with 50 more"


def test_value_type_changelist__cold_caches__served_now_read_without_calling_a_source(admin_client, synced):
    # The changelist says what is known now; a type nothing is known of is not fetched for it.
    add_value_types(4)
    calls_before = SourceCall.objects.count()

    body = admin_client.get(admin_url(ValueType, "changelist")).content.decode()

    assert SourceCall.objects.count() == calls_before
    assert body.count('<td class="field-current_answer">l3, ') == 2  # the two with a fresh stored value
    assert "not read yet" in body
