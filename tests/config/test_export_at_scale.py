"""An export of as many value types as the product is built for (300, bench/run.py --scale) is
taken back by sync_config: the YAML reader's limits leave room for it."""

from __future__ import annotations

import io

from django.core.management import call_command

from values.models import ValueType, ValueTypeSource

TYPES = 300


def test_export_then_sync_dry_run__300_value_types__no_changes(synced, tmp_path):
    builtins = list(ValueType.objects.order_by("key"))
    links = {model.pk: list(model.source_links.all()) for model in builtins}
    skipped = {"id", "key", "aliases", "created_at", "updated_at", "version"}
    copies = ValueType.objects.bulk_create(
        ValueType(
            key=f"copy_{index:03d}_{model.key}", aliases=[],
            **{field.name: getattr(model, field.name) for field in ValueType._meta.concrete_fields if field.name not in skipped},
        )  # fmt: skip
        for index, model in ((index, builtins[index % len(builtins)]) for index in range(TYPES - len(builtins)))
    )
    ValueTypeSource.objects.bulk_create(
        ValueTypeSource(value_type=copy, source_id=link.source_id, tier=link.tier, weight=link.weight, channels=link.channels)
        for index, copy in enumerate(copies)
        for link in links[builtins[index % len(builtins)].pk]
    )
    path = tmp_path / "exported.yaml"
    call_command("export_config", "--env", "test", "-o", str(path), stderr=io.StringIO())
    output = io.StringIO()

    call_command("sync_config", "--file", str(path), "--dry-run", stdout=output)

    assert ValueType.objects.count() == TYPES
    assert "No changes" in output.getvalue()
