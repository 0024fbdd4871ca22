"""Each process's snapshot of what operators configured, kept coherent across processes.

The snapshot holds every value type (with its rules, fallback and sources) and every override
not yet expired, as frozen dataclasses, so a read needs no database query. Coherence: every
operator change bumps the one ConfigVersion row in its own transaction (audit.history). A
process compares that version with its snapshot's at most every CHECK_INTERVAL seconds (one
primary-key query, never on every read) and reloads on a change.

Each value type carries a fingerprint of everything that shapes its resolved values (rules,
fallback, TTLs, sources and weights, field precision). The cache key includes it, so after such a change every
tier misses and the new configuration is applied, while an override change alone keeps caches.

If the database cannot be reached, the process keeps the snapshot it has; if it never had one,
it serves the built-in value types from code (their fallbacks, no sources).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from audit.history import config_versions
from core.context import canonical_context
from core.durations import parse_duration
from core.validation import ValueRules
from sources.adapters.base import SourceConfig
from values.builtins import BUILTIN_VALUE_TYPES, DEFAULT_PERFORMANCE_TTL, DEFAULT_TTL
from values.models import Override, ValueType, ValueTypeSource

logger = logging.getLogger(__name__)

# Every process sees an operator's change within this many seconds (plus one reload).
CHECK_INTERVAL = 0.5


@dataclass(frozen=True)
class LinkConfig:
    source: SourceConfig
    tier: str
    weight: float
    channels: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    field_mapping: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OverrideConfig:
    id: int
    context: Mapping[str, Any]  # normalized, as canonical_context makes it
    value: Any
    reason: str
    author: str
    starts_at: datetime
    expires_at: datetime | None
    updated_at: datetime

    def is_active(self, now: datetime) -> bool:
        return self.starts_at <= now and (self.expires_at is None or now < self.expires_at)

    def matches(self, context: Mapping[str, Any]) -> bool:
        """Every key of the override's context is in the read's context with the same value;
        a list (channels) matches when the read's list holds every name of the override's."""
        for name, wanted in self.context.items():
            given = context.get(name)
            if isinstance(wanted, list):
                if not isinstance(given, list) or not set(wanted) <= set(given):
                    return False
            elif given != wanted:
                return False
        return True


@dataclass(frozen=True)
class ValueTypeConfig:
    key: str
    context_keys: tuple[str, ...]
    ttl: timedelta
    max_staleness: timedelta
    fallback: Any
    rules: ValueRules
    quorum: float = 0.0
    blend_method: str = "mean"
    links: tuple[LinkConfig, ...] = ()
    overrides: tuple[OverrideConfig, ...] = ()
    id: int | None = None  # None: a built-in type the database does not hold (yet)
    fingerprint: str = ""
    read_budget: timedelta | None = None  # how long a consumer's read waits for sources; None: the setting
    widening_order: tuple[str, ...] = ()  # context keys a widened answer drops, least significant first
    is_prediction_enabled: bool = True  # whether a forecast from history may be served
    # How a blend's numbers are rounded when it is made (core.validation.round_value); {}: not at all.
    field_precision: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @property
    def is_channel_keyed(self) -> bool:
        return "channels" in self.context_keys


@dataclass(frozen=True)
class Snapshot:
    version: int | None  # None: built from code alone, the database never answered
    types: Mapping[str, ValueTypeConfig]  # by key and by alias
    data_version: int = 0  # moves when a background refresh changed a value (L1 is dropped)

    def value_type(self, key: str) -> ValueTypeConfig | None:
        return self.types.get(key)


def fingerprint(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def builtin_snapshot() -> Snapshot:
    types: dict[str, ValueTypeConfig] = {}
    for key, definition in BUILTIN_VALUE_TYPES.items():
        validation = definition["validation"]
        config = ValueTypeConfig(
            key=key,
            context_keys=tuple(definition["context_keys"]),
            ttl=DEFAULT_PERFORMANCE_TTL if definition["ttl"] == "performance" else DEFAULT_TTL,
            max_staleness=parse_duration(definition["max_staleness"]),
            fallback=definition["fallback"],
            rules=ValueRules(
                schema=definition["schema"],
                field_bounds=validation.get("fields", {}),
                ascending_fields=tuple(validation.get("ascending", ())),
                min_ratio=validation.get("min_ratio"),
                max_ratio=validation.get("max_ratio"),
            ),
            fingerprint="builtin",
            widening_order=tuple(definition["widening"]),
            field_precision=definition["precision"],
        )
        types.update({name: config for name in (key, *definition["aliases"])})
    return Snapshot(version=None, types=types)


def load_snapshot() -> Snapshot:
    """Read the whole configuration from the database (raises DatabaseError if it cannot)."""
    version, data_version = config_versions()  # first: a change committed meanwhile reloads later
    now = timezone.now()
    is_simulated = registry.is_mock_mode()
    links_by_type: dict[int, list[LinkConfig]] = {}
    for link in ValueTypeSource.objects.select_related("source"):
        source = link.source
        links_by_type.setdefault(link.value_type_id, []).append(
            LinkConfig(
                source=SourceConfig(
                    name=source.name,
                    kind=source.kind,
                    base_url=source.base_url,
                    credential_variables=dict(source.credential_variables),
                    connect_timeout=source.connect_timeout,
                    read_timeout=source.read_timeout,
                    request_template=source.request_template,
                    field_mapping=dict(source.field_mapping),
                    is_enabled=source.is_enabled,
                    requests_per_minute=source.requests_per_minute,
                    burst_allowance=source.burst_allowance,
                    breaker_failure_threshold=source.breaker_failure_threshold,
                    breaker_recovery_timeout=source.breaker_recovery_timeout,
                    breaker_half_open_trials=source.breaker_half_open_trials,
                    is_simulated=is_simulated,
                ),
                tier=link.tier,
                weight=link.weight,
                channels=tuple(link.channels),
                params=link.request_params,
                field_mapping=dict(link.field_mapping),
            )
        )
    overrides_by_type: dict[int, list[OverrideConfig]] = {}
    live_overrides = Override.objects.exclude(expires_at__lte=now).select_related("value_type")
    for override in live_overrides:
        context, _ = canonical_context(
            override.context_match, override.value_type.context_keys, override.value_type.key
        )
        overrides_by_type.setdefault(override.value_type_id, []).append(
            OverrideConfig(
                id=override.pk,
                context=context,
                value=override.value,
                reason=override.reason,
                author=override.author,
                starts_at=override.starts_at,
                expires_at=override.expires_at,
                updated_at=override.updated_at,
            )
        )
    types: dict[str, ValueTypeConfig] = dict(builtin_snapshot().types)
    for value_type in ValueType.objects.all():
        links = tuple(sorted(links_by_type.get(value_type.pk, []), key=lambda link: link.source.name))
        config = ValueTypeConfig(
            id=value_type.pk,
            key=value_type.key,
            context_keys=tuple(value_type.context_keys),
            ttl=value_type.ttl,
            max_staleness=value_type.max_staleness,
            fallback=value_type.fallback_value,
            rules=value_type.rules,
            quorum=value_type.quorum,
            blend_method=value_type.blend_method,
            links=links,
            overrides=tuple(overrides_by_type.get(value_type.pk, [])),
            read_budget=value_type.read_budget,
            widening_order=tuple(value_type.widening_order),
            is_prediction_enabled=value_type.is_prediction_enabled,
            field_precision=value_type.field_precision,
        )
        config = _with_fingerprint(config)
        types.update({name: config for name in (value_type.key, *value_type.aliases)})
    return Snapshot(version=version, types=types, data_version=data_version)


# Settings of a type that shape only its degraded answers, never a fetched value: changing them
# (or adding them, on an upgrade) must not make every stored value look foreign.
SHAPING_ONLY_DEGRADED_ANSWERS = ("read_budget", "widening_order", "is_prediction_enabled")


def _with_fingerprint(config: ValueTypeConfig) -> ValueTypeConfig:
    shaping = asdict(replace(config, overrides=(), fingerprint=""))
    for name in SHAPING_ONLY_DEGRADED_ANSWERS:
        del shaping[name]
    if not config.field_precision:
        # No rounding is how every type was before precision existed: its stored values stay its own.
        del shaping["field_precision"]
    return replace(config, fingerprint=fingerprint(shaping))


class Registry:
    """The process's current snapshot, reloaded when the configuration version moves."""

    def __init__(self, check_interval: float = CHECK_INTERVAL):
        self.check_interval = check_interval
        # Whether this deployment's sources are local simulators (development's `mock_mode`). The
        # environment YAML says so, which values do not read: config's AppConfig.ready() sets
        # this to ask it (config.environment.is_mock_mode). Until then, none is simulated.
        self.is_mock_mode: Callable[[], bool] = lambda: False
        self._snapshot: Snapshot | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and time.monotonic() - self._checked_at < self.check_interval:
            return snapshot
        return self.refresh()

    def refresh(self, *, force: bool = False) -> Snapshot:
        """Compare versions now and reload if they differ (or if `force`)."""
        with self._lock:
            if not force and self._snapshot is not None and time.monotonic() - self._checked_at < self.check_interval:
                return self._snapshot  # another thread just checked
            self._checked_at = time.monotonic()
            try:
                if force or self._snapshot is None:
                    self._snapshot = load_snapshot()
                else:
                    version, data_version = self._current_versions()
                    if version != self._snapshot.version:
                        self._snapshot = load_snapshot()
                    elif data_version != self._snapshot.data_version:
                        self._snapshot = replace(self._snapshot, data_version=data_version)
            except DatabaseError as error:
                # Reads must keep answering with what this process knows.
                logger.warning("configuration not reloaded, database unavailable: %s", error)
                if self._snapshot is None:
                    self._snapshot = builtin_snapshot()
            return self._snapshot

    @staticmethod
    def _current_versions() -> tuple[int, int]:
        return config_versions()


registry = Registry()
