"""Each process's snapshot of what operators configured, kept coherent across processes.

The snapshot holds every value type (with its rules, fallback and sources) and every override
not yet expired, as frozen dataclasses, so a read needs no database query. Coherence: every
operator change bumps the one ConfigVersion row in its own transaction (audit.history). Each
process has a watcher, a daemon thread started by its first read (again in a forked child:
gunicorn and Celery prefork), that compares the committed version with its snapshot's every
CHECK_INTERVAL seconds (one primary-key query, on a connection it closes after each check) and
swaps in a new snapshot on a change. No read ever waits for it: a read takes the snapshot the
watcher last made (`Registry.current`), and works as well inside an event loop, where Django
allows no query. A change made by this process itself is seen at once by the next read of the
thread that made it (the version bump tells the registry: `version_bumped`), also inside the
change's own transaction; the other threads see it when it commits (the watcher checks then).

Each value type carries a fingerprint of everything that shapes its resolved values (rules,
fallback, TTLs, sources and weights, field precision). The cache key includes it, so after such a change every
tier misses and the new configuration is applied, while an override change alone keeps caches.

If the database cannot be reached, the process keeps the snapshot it has (the watcher retries at
each interval); if it never had one, it serves the built-in value types from code (their
fallbacks, no sources).
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from audit.history import config_versions
from audit.models import ConfigVersion
from core.context import canonical_context
from core.durations import parse_duration
from core.validation import ValueRules
from sources.adapters.base import SourceConfig
from values.builtins import BUILTIN_VALUE_TYPES, DEFAULT_PERFORMANCE_TTL, DEFAULT_TTL
from values.models import Override, ValueType, ValueTypeSource

logger = logging.getLogger(__name__)

# Every process sees an operator's change within this many seconds (plus one reload).
CHECK_INTERVAL = 0.5
# A first read inside an event loop (no query allowed there) waits this long for the watcher's
# first snapshot, once per process, before serving the built-in types.
FIRST_LOAD_WAIT = 10.0


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
    """The process's current snapshot, kept up to date by a watcher thread (see the module).

    `current` is the snapshot a read may use as it is, or None while a change made by this
    process is not yet in it, or before this process's watcher runs; `snapshot()` gives one in
    every case.
    """

    def __init__(self, check_interval: float = CHECK_INTERVAL):
        # Whether this deployment's sources are local simulators (development's `mock_mode`). The
        # environment YAML says so, which values do not read: config's AppConfig.ready() sets
        # this to ask it (config.environment.is_mock_mode). Until then, none is simulated.
        self.is_mock_mode: Callable[[], bool] = lambda: False
        self._snapshot: Snapshot | None = None
        self.current: Snapshot | None = None
        self._start_process_state()
        self._check_interval = check_interval
        self._is_exiting = False
        os.register_at_fork(after_in_child=self._start_process_state)
        atexit.register(self._exit)

    def _exit(self) -> None:
        self._is_exiting = True
        self._wake.set()

    def _start_process_state(self) -> None:
        """What a process does not share with its parent: locks, the watcher (a forked child has
        none of the parent's threads). The snapshot is kept; the child's first read starts its
        own watcher."""
        self.current = None
        # Threads that changed a version inside a transaction and have not read since: each
        # reloads at its next read, on its own connection, to read its own change (thread id ->
        # how many changes it made, so that a check clears only what ended before it began).
        self._changed_in: dict[int, int] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()  # a check now: after a commit of this process, or a new interval
        self._loaded = threading.Event()  # set once a snapshot exists
        if self._snapshot is not None:
            self._loaded.set()
        self._is_watching = False
        self._is_failing = False  # the last check failed (logged once per run of failures)

    @property
    def check_interval(self) -> float:
        return self._check_interval

    @check_interval.setter
    def check_interval(self, seconds: float) -> None:
        self._check_interval = seconds
        self._wake.set()  # the watcher waits the new interval from now, not the old one

    def snapshot(self) -> Snapshot:
        """The snapshot to read with. Never queries the database, except for a process's first
        read and a thread's first read after a change it made (read-your-writes), and never
        inside an event loop."""
        current = self.current
        if current is not None:
            return current
        if _is_in_event_loop():
            return self._snapshot_in_event_loop()
        with self._lock:
            if self._snapshot is None:
                self._reload(force=True)
            elif self._changed_in.pop(threading.get_ident(), None) is not None:
                self._reload(force=False)  # this thread's own change, maybe not committed yet
            elif self._changed_in:
                # Another thread's change, maybe not committed: not visible from here; the
                # watcher brings it once it is.
                return self._snapshot
            return self._mark_current()

    def refresh(self, *, force: bool = False) -> Snapshot:
        """Compare versions now, on this thread's connection (so within its transaction), and
        reload if they differ (or if `force`)."""
        with self._lock:
            self._changed_in.clear()
            self._reload(force=force)
            return self._mark_current()

    def version_bumped(self) -> None:
        """This process changed the configuration or data version (audit.history calls it).
        Inside the change's transaction, the thread that made it reloads at its next read, so
        that it reads its own change; once the change commits, the watcher checks at once."""
        if not transaction.get_connection().in_atomic_block:
            self._wake.set()  # committed already: the watcher reloads now, no read waits
            return
        writer = threading.get_ident()
        with self._lock:
            self._changed_in[writer] = self._changed_in.get(writer, 0) + 1
            self.current = None
        transaction.on_commit(self._wake.set)

    def _snapshot_in_event_loop(self) -> Snapshot:
        """No query here (Django raises SynchronousOnlyOperation): the watcher loads instead."""
        with self._lock:
            self._start_watching()
        self._wake.set()
        if self._snapshot is None:
            self._loaded.wait(FIRST_LOAD_WAIT)
        with self._lock:
            if self._snapshot is None:
                logger.warning("configuration not loaded in time: serving the built-in value types meanwhile")
                self._set(builtin_snapshot())
            return self._snapshot

    def _reload(self, *, force: bool) -> None:
        """Under the lock: compare versions on the caller's connection, reload if they moved."""
        try:
            if force or self._snapshot is None:
                self._set(load_snapshot())
            else:
                version, data_version = self._current_versions()
                if version != self._snapshot.version:
                    self._set(load_snapshot())
                elif data_version != self._snapshot.data_version:
                    self._set(replace(self._snapshot, data_version=data_version))
        except DatabaseError as error:
            # Reads must keep answering with what this process knows.
            logger.warning("configuration not reloaded, database unavailable: %s", error)
            if self._snapshot is None:
                self._set(builtin_snapshot())

    def _set(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._loaded.set()
        if self.current is not None:
            self.current = snapshot

    def _mark_current(self) -> Snapshot:
        """Under the lock: reads may use the snapshot as it is, from now on."""
        self._start_watching()
        if not self._changed_in:
            self.current = self._snapshot
        return self._snapshot

    # The watcher -------------------------------------------------------------------------------

    def _start_watching(self) -> None:
        if self._is_watching:
            return
        self._is_watching = True
        self._watcher = threading.Thread(target=self._watch_forever, name="dynconfig-registry-watcher", daemon=True)
        self._watcher.start()

    def stop_watching(self, timeout: float = 5.0) -> None:
        """Stop this process's watcher and wait for it (a test run, before its database is
        dropped: a check must not be connecting then). The next read starts a new one."""
        watcher = getattr(self, "_watcher", None)
        self._is_exiting = True
        self._wake.set()
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout)
        self._watcher = None
        self._is_watching = False
        self._is_exiting = False

    def _watch_forever(self) -> None:
        wake = self._wake
        while True:
            wake.wait(self._check_interval)
            wake.clear()
            if self._is_exiting:
                return  # the interpreter is ending: no more queries, no more log lines
            try:
                self._check_committed()
            except Exception as error:  # noqa: BLE001 - the watcher must outlive any error; logged
                # Once per run of failures, not at every check: a database down for an hour
                # is one warning (and one line when it is back).
                if not self._is_failing:
                    if isinstance(error, DatabaseError):
                        logger.warning("configuration not reloaded, database unavailable: %s", error)
                    else:
                        logger.exception("configuration version check failed")
                self._is_failing = True
                with self._lock:
                    if self._snapshot is None:  # a first read waits for this one (event loop)
                        self._set(builtin_snapshot())
            else:
                if self._is_failing:
                    logger.info("configuration version check works again")
                self._is_failing = False
            finally:
                connections.close_all()  # this thread's own: it holds no connection between checks

    def _check_committed(self) -> None:
        """One check: reload if a newer configuration committed, or if this snapshot holds a
        change no committed state has (made inside a transaction that has since rolled back).
        Once no transaction holds the version row, this process's own changes have ended
        (committed, and now in the snapshot, or rolled back): reads use the snapshot again."""
        changed_in = dict(self._changed_in)
        has_ended = bool(changed_in) and _is_version_row_free()
        seen = self._snapshot
        version, data_version = self._current_versions()
        made = None
        if (
            seen is None
            or seen.version is None
            or version > seen.version
            or (version < seen.version and (has_ended or _is_version_row_free()))
        ):
            made = load_snapshot()
        elif data_version > seen.data_version:
            made = replace(seen, data_version=data_version)
        with self._lock:
            # Unless a reader reloaded meanwhile (on its own connection, maybe within its
            # transaction): its snapshot is at least as new as this one.
            if made is not None and self._snapshot is seen:
                self._set(made)
            if has_ended:
                for writer, changes in changed_in.items():
                    if self._changed_in.get(writer) == changes:  # none made since this check began
                        del self._changed_in[writer]
                if not self._changed_in and self._snapshot is not None:
                    self.current = self._snapshot

    @staticmethod
    def _current_versions() -> tuple[int, int]:
        return config_versions()


def _is_version_row_free() -> bool:
    """Whether the configuration version row is committed and no transaction holds it. A
    snapshot ahead of the committed version was loaded inside the transaction of a change:
    while that transaction holds the row (or has inserted it, uncommitted) it may still commit;
    once the row is free, it rolled back (or the table was emptied and counts again)."""
    with transaction.atomic():
        return bool(list(ConfigVersion.objects.select_for_update(skip_locked=True).filter(pk=1).values_list("pk", flat=True)))


def _is_in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


registry = Registry()
