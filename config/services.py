"""Environment YAML <-> database: `config_sync` (all or nothing) and `config_export`.

Sync makes the database hold what the environment declares: every source of `sources:`, every
value type (built-ins overlaid by `dynamic_values`), and exactly the declared source links of
each value type. Objects the file does not mention are left alone. Each change is validated by
the models' own rules and written to the history; if any change is refused, nothing is written.
Export writes the database back in the file's canonical form, which sync takes back unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction

from core.durations import format_duration
from config.environment import Environment
from sources.models import Source
from values.models import ValueTypeSource
from audit.history import audit_record, snapshot
from values.models import ValueType

SYNC_ACTOR = "sync_config"


@dataclass(frozen=True)
class Change:
    action: str  # create | update | delete
    label: str  # "source google_ads_api", "value type budget_thresholds", ...
    fields: dict[str, tuple[Any, Any]]  # name -> (before, after)

    def render(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-"}[self.action]
        lines = [f"{sign} {self.label}"]
        for name, (before, after) in self.fields.items():
            if self.action == "update":
                lines.append(f"    {name}: {_show(before)} -> {_show(after)}")
            elif self.action == "create":
                lines.append(f"    {name}: {_show(after)}")
        return "\n".join(lines)


@dataclass
class SyncReport:
    environment: str
    dry_run: bool
    changes: list[Change] = field(default_factory=list)

    def render(self) -> str:
        if not self.changes:
            return f"No changes: the database already matches environment {self.environment}."
        verb = "Would apply" if self.dry_run else "Applied"
        body = "\n".join(change.render() for change in self.changes)
        return f"{body}\n{verb} {len(self.changes)} change(s) from environment {self.environment}."


class SyncRefused(Exception):
    """The database refused the environment: every problem, and nothing was changed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "Nothing was changed; the database refused:\n" + "\n".join(f"  - {p}" for p in problems)
        )


def config_sync(*, environment: Environment, dry_run: bool = False, actor: str = SYNC_ACTOR) -> SyncReport:
    """Make the database hold `environment`'s sources and value types, all or nothing.

    With `dry_run`, every change is made and validated inside a transaction that is then rolled
    back, so the report shows exactly what a real run would do, refusals included.
    """
    report = SyncReport(environment=environment.name, dry_run=dry_run)
    with transaction.atomic():
        _Sync(environment, report, actor).run()
        if dry_run:
            transaction.set_rollback(True)
    return report


class _Sync:
    def __init__(self, environment: Environment, report: SyncReport, actor: str):
        self.environment = environment
        self.report = report
        self.actor = actor
        self.problems: list[str] = []

    def run(self) -> None:
        sources = {
            name: self._apply(Source, {"name": name}, spec.fields, f"source {name}")
            for name, spec in self.environment.sources.items()
        }
        for key, spec in self.environment.value_types.items():
            value_type = self._apply(ValueType, {"key": key}, spec.fields, f"value type {key}")
            if value_type is None:
                continue
            existing = {link.source.name: link for link in value_type.source_links.select_related("source")}
            for link in spec.links:
                source = sources.get(link.source) or Source.objects.filter(name=link.source).first()
                if source is None:
                    continue  # the source itself was refused, and said so
                self._apply(
                    ValueTypeSource,
                    {"value_type": value_type, "source": source},
                    link.fields,
                    f"source link {key} <- {link.source}",
                )
                existing.pop(link.source, None)
            for name, stale_link in existing.items():
                self._delete(stale_link, f"source link {key} <- {name}")
        if self.problems:
            raise SyncRefused(self.problems)

    def _apply(self, model: type[models.Model], identity: dict, fields: dict, label: str):
        instance = model.objects.filter(**identity).first()
        if instance is None:
            instance, before, action = model(**identity), None, "create"
            changed = dict(fields)
        else:
            before, action = snapshot(instance), "update"
            changed = {name: value for name, value in fields.items() if getattr(instance, name) != value}
            if not changed:
                return instance
        diff = {name: (getattr(instance, name, None) if before else None, value) for name, value in changed.items()}
        for name, value in changed.items():
            setattr(instance, name, value)
        try:
            instance.full_clean()
        except ValidationError as error:
            for name, messages in error.message_dict.items():
                self.problems.extend(f"{label}: {name}: {message}" for message in messages)
            return None
        instance.save()
        audit_record(
            actor=self.actor,
            channel="sync_config",
            instance=instance,
            before=before,
            after=snapshot(instance),
            reason=f"sync_config from environment {self.environment.name}",
        )
        self.report.changes.append(Change(action, label, diff))
        return instance

    def _delete(self, instance: models.Model, label: str) -> None:
        before = snapshot(instance)
        audit_record(
            actor=self.actor,
            channel="sync_config",
            instance=instance,
            before=before,
            after=None,
            reason=f"not in environment {self.environment.name}",
        )
        instance.delete()
        self.report.changes.append(Change("delete", label, {}))


def config_export(*, environment: Environment) -> dict[str, Any]:
    """The database's sources and value types as an environment document (no secrets in it)."""
    api_integration: dict[str, Any] = dict(environment.source_groups)
    api_integration["mock_mode"] = environment.mock_mode
    api_integration["response_delay"] = int(environment.response_delay.total_seconds() * 1000)
    return _escape_interpolation({
        "environment": environment.name,
        "cache": {
            "default_ttl": format_duration(environment.default_ttl),
            "performance_ttl": format_duration(environment.performance_ttl),
        },
        "api_integration": api_integration,
        "sources": {source.name: _export_source(source) for source in Source.objects.all()},
        "dynamic_values": {
            value_type.key: _export_value_type(value_type)
            for value_type in ValueType.objects.prefetch_related("source_links__source")
        },
    })


def _escape_interpolation(data: Any) -> Any:
    """Strings holding `${` are written as `$${`, so that reading them back does not interpolate."""
    if isinstance(data, str):
        return data.replace("${", "$${")
    if isinstance(data, dict):
        return {key: _escape_interpolation(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_escape_interpolation(item) for item in data]
    return data


def _export_source(source: Source) -> dict[str, Any]:
    return {
        "kind": source.kind,
        "description": source.description,
        "base_url": source.base_url,
        "credentials": source.credential_variables,
        "enabled": source.is_enabled,
        "timeout": {"connect": source.connect_timeout, "read": source.read_timeout},
        "rate_limit": {
            "requests_per_minute": source.requests_per_minute,
            "burst_allowance": source.burst_allowance,
        },
        "breaker": {
            "failure_threshold": source.breaker_failure_threshold,
            "recovery_timeout": format_duration(source.breaker_recovery_timeout),
            "half_open_trials": source.breaker_half_open_trials,
        },
        "request": source.request_template,
        "mapping": source.field_mapping,
    }


def _export_value_type(value_type: ValueType) -> dict[str, Any]:
    return {
        "aliases": value_type.aliases,
        "description": value_type.description,
        "schema": value_type.schema,
        "context_keys": value_type.context_keys,
        "update_frequency": format_duration(value_type.update_frequency),
        "ttl": format_duration(value_type.ttl),
        "max_staleness": format_duration(value_type.max_staleness),
        "fallback": value_type.fallback_value,
        "blend": {"method": value_type.blend_method, "quorum": value_type.quorum},
        **({"read_budget": format_duration(value_type.read_budget)} if value_type.read_budget else {}),
        "widening": value_type.widening_order,
        "prediction": value_type.is_prediction_enabled,
        "validation": {
            "min_ratio": value_type.min_ratio,
            "max_ratio": value_type.max_ratio,
            "fields": value_type.field_bounds,
            "ascending": value_type.ascending_fields,
        },
        "precision": value_type.field_precision,
        "sources": [
            {
                "api": link.source.name,
                "tier": link.tier,
                "weight": link.weight,
                "channels": link.channels,
                "params": link.request_params,
                "mapping": link.field_mapping,
            }
            for link in value_type.source_links.all()
        ],
    }


def _show(value: Any) -> str:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True)
        return text if len(text) <= 120 else text[:117] + "..."
    return repr(value)
