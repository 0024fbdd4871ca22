"""The three cache tiers, their one key function, and the lock that stops stampedes.

L1 is this process's memory (bounded LRU, TTL-bound). L2 is Redis through django-redis, when
REDIS_URL is set. L3 is the database's ResolvedValue rows, which also keep the last known good
value of each type and context, and ValueRecord rows, its history. Each tier fails open: an error
is logged and the tier skipped, never raised to the reader.

Expiry: an answer lives in a cache tier until its own `expires_at`, never longer. `store` counts
L1's lifetime from `expires_at` at the moment of storing, L2 is written with an absolute expiry
(Redis `PXAT`: a write that Redis applies late, after a freeze, cannot outlive the answer), and
an answer read back from L2 past its `expires_at` is a miss.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.core.signals import setting_changed
from django.db import DatabaseError, transaction
from django.utils import timezone
from django_redis import get_redis_connection

from core.answers import Answer
from values.models import ResolvedValue, ValueRecord
from values.registry import ValueTypeConfig

logger = logging.getLogger(__name__)

# A degraded answer (stale, widened, predicted, fallback) stays in L1 at most this long, though
# L2 keeps it longer: a process then sees a value that a refresh anywhere stored in L2 soon.
DEGRADED_L1_SECONDS = 5.0
# After a Redis error, skip L2 for this long: a dead Redis must not cost every read a timeout.
L2_RETRY_AFTER = 5.0
# How often a reader waiting for another's fetch looks for the result.
WAIT_POLL_INTERVAL = 0.02


def cache_key(value_type: ValueTypeConfig, context_key: str) -> str:
    """The one key of a value type and a context in every cache tier.

    The fingerprint of the type's configuration is part of it, so that a change of rules,
    fallback or sources makes every tier miss at once in every process. v2: L2 holds an answer's
    JSON (v1 held pickles), so processes of two releases never read each other's entries.
    """
    return f"dynconfig:v2:{value_type.key}:{value_type.fingerprint}:{context_key}"


class LocalCache:
    """L1: answers in this process's memory, least recently used evicted first.

    At most `max_entries` answers, by default the DYNCONFIG_L1_MAX_ENTRIES setting (read when an
    answer is stored, so that a process's memory has a bound whatever it reads); `evictions`
    counts the answers pushed out to make room.
    """

    def __init__(self, max_entries: int | None = None):
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Answer]] = OrderedDict()
        self._lock = threading.Lock()
        self.data_version = 0  # the registry's data version these entries were made under
        self.evictions = 0

    @property
    def max_entries(self) -> int:
        return self._max_entries if self._max_entries is not None else settings.DYNCONFIG_L1_MAX_ENTRIES

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Answer | None:
        # No lock on a hit: each OrderedDict call is one step under the GIL (str keys run no
        # Python code), and an entry evicted or cleared meanwhile only makes move_to_end miss.
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            with self._lock:
                if self._entries.get(key) is entry:  # not replaced meanwhile by a fresh one
                    del self._entries[key]
            return None
        try:
            self._entries.move_to_end(key)
        except KeyError:
            pass
        return entry[1]

    def set(self, key: str, answer: Answer, ttl: float) -> None:
        if ttl <= 0:
            return
        stored = answer.found_in("l1")  # made once here, so a hit costs no copy
        stored.as_json()  # and serialized once here, so serving a hit costs no serializing
        max_entries = self.max_entries
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl, stored)
            self._entries.move_to_end(key)
            while len(self._entries) > max_entries:
                self._entries.popitem(last=False)
                self.evictions += 1

    def clear(self, data_version: int | None = None) -> None:
        with self._lock:
            self._entries.clear()
            if data_version is not None:
                self.data_version = data_version


class RedisCache:
    """L2: answers shared by every process, in Redis through django-redis's connection pool.

    Answers are stored as their JSON (`Answer.as_json()`, the read API's very body), already
    marked as found in L2, and read with the raw client: a hit costs one GET and one orjson
    decode, and the answer keeps those bytes, so serving it serializes nothing. Absent without
    REDIS_URL; skipped for a while after an error.
    """

    def __init__(self):
        self._down_until = 0.0
        self._held = threading.local()  # .connection, .made_for: this thread's connection for GETs
        self._settings_version = 0  # raised when the Redis settings change (tests) or on an error

    @property
    def is_enabled(self) -> bool:
        return bool(settings.REDIS_URL) and time.monotonic() >= self._down_until

    def get(self, key: str) -> Answer | None:
        """The answer under `key`, or None (absent, or past its own `expires_at`)."""
        data = self._get(key)
        if not data:
            return None
        try:
            answer = Answer.from_json(data)
        except ValueError as error:  # orjson.JSONDecodeError is one; a foreign entry is a miss
            logger.warning("L2 entry %s unreadable, ignored: %s", key, error)
            return None
        expires_at = answer.provenance.expires_at
        return answer if expires_at is not None and expires_at > timezone.now() else None

    def set(self, key: str, answer: Answer) -> None:
        """Keep `answer` until its `expires_at`, as an absolute time (PXAT)."""
        expires_at = answer.provenance.expires_at
        if expires_at is not None and expires_at > timezone.now():
            data = answer.found_in("l2").as_json()
            self._call("set", key, data, pxat=int(expires_at.timestamp() * 1000))

    def acquire(self, key: str, ttl: float) -> str | None:
        """A lock token if this process may fetch `key` now, None if another holds it.

        Without a usable Redis every process fetches on its own (the in-process flight still
        stops threads of one process from stampeding).
        """
        if not self.is_enabled:
            return "local"
        token = uuid.uuid4().hex
        taken = self._call("set", f"{key}:lock", token, nx=True, px=int(ttl * 1000))
        if taken is None and not self.is_enabled:
            return "local"  # Redis failed just now: fetch rather than wait on nothing
        return token if taken else None

    def release(self, key: str, token: str) -> None:
        """Free the lock if `token` still holds it: a leader that outlived its lock must not free
        the next leader's (compare and delete in one step)."""
        if token != "local":
            self._call("eval", RELEASE_SCRIPT, 1, f"{key}:lock", token)

    def is_locked(self, key: str) -> bool:
        return bool(self._call("exists", f"{key}:lock"))

    def _get(self, key: str) -> bytes | None:
        """GET `key` on a connection this thread keeps (made as the pool makes its own).

        An L2 hit is mostly this one round trip, and redis-py's client wraps each command in a
        pool checkout (with a poll of the socket), retries and instrumentation that cost more
        than the round trip itself on a local Redis. Reads only: writes and locks go through
        the client (`_call`). The connection has the pool's address, timeouts and credentials
        and is closed when its thread ends. A kept connection that Redis (its `timeout`) or a
        proxy closed while idle gets one more try on a new one; any other error closes it (so
        a late reply cannot be read as the answer to the next GET) and skips L2 for a while,
        as any Redis error does. Never a second try after a timeout: a Redis that hangs costs
        a read one timeout, not two.
        """
        if not self.is_enabled:
            return None
        is_new = True
        try:
            try:
                connection, is_new = self._held_connection()
                connection.send_command("GET", key)
                return connection.read_response()
            except redis.ConnectionError:
                if is_new:
                    raise
                self.forget_connections()
                connection, _ = self._held_connection()
                connection.send_command("GET", key)
                return connection.read_response()
        except Exception as error:  # noqa: BLE001 - the tier fails open, whatever Redis raised
            self.forget_connections()
            self._unavailable(error)
            return None

    def _held_connection(self) -> tuple[redis.Connection, bool]:
        """This thread's connection for GETs, and whether it was made just now."""
        held = self._held
        if getattr(held, "made_for", None) == (os.getpid(), self._settings_version):
            return held.connection, False
        pool = get_redis_connection("default").connection_pool
        connection = pool.connection_class(**pool.connection_kwargs)
        held.connection, held.made_for = connection, (os.getpid(), self._settings_version)
        return connection, True

    def forget_connections(self) -> None:
        """Make every thread's next GET use a new connection (its own is closed now; others'
        when their threads next read or end)."""
        connection = getattr(self._held, "connection", None)
        self._held.connection = self._held.made_for = None
        self._settings_version += 1
        if connection is not None:
            connection.disconnect()

    def _call(self, method: str, *args, **kwargs):
        if not self.is_enabled:
            return None
        try:
            return getattr(get_redis_connection("default"), method)(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - the tier fails open, whatever Redis raised
            self._unavailable(error)
            return None

    def _unavailable(self, error: Exception) -> None:
        self._down_until = time.monotonic() + L2_RETRY_AFTER
        logger.warning("L2 (Redis) unavailable, skipped for %.0fs: %s", L2_RETRY_AFTER, error)


# KEYS[1] the lock; ARGV[1] the releasing leader's token.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class InProcessFlights:
    """One fetch per key per process: other threads wait for its result."""

    def __init__(self):
        self._flights: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def join(self, key: str) -> tuple[bool, threading.Event]:
        """(is_leader, event): the leader fetches and sets the event; the others wait on it."""
        with self._lock:
            event = self._flights.get(key)
            if event is not None:
                return False, event
            event = self._flights[key] = threading.Event()
            return True, event

    def land(self, key: str) -> None:
        with self._lock:
            event = self._flights.pop(key, None)
        if event is not None:
            event.set()


def l3_get(
    value_type: ValueTypeConfig, context_key: str, wider_keys: Sequence[str] = ()
) -> tuple[Answer | None, Answer | None, dict[str, Answer]]:
    """From the database tier, in one query: (the context's fresh answer or None, its last known
    good answer or None, the last known good answers of `wider_keys` that have one)."""
    if value_type.id is None:
        return None, None, {}
    try:
        rows = list(
            ResolvedValue.objects.filter(value_type_id=value_type.id, context_key__in=[context_key, *wider_keys])
        )
    except DatabaseError as error:
        logger.warning("L3 (database) unavailable: %s", error)
        return None, None, {}
    stored = {row.context_key: row for row in rows}
    wider = {key: _answer_of(value_type, row) for key, row in stored.items() if key != context_key}
    row = stored.get(context_key)
    if row is None:
        return None, None, wider
    answer = _answer_of(value_type, row)
    is_fresh = row.fingerprint == value_type.fingerprint and row.expires_at > timezone.now()
    return (answer.found_in("l3") if is_fresh else None), answer, wider


def l3_get_fresh_many(value_types: Sequence[ValueTypeConfig], context_key: str) -> dict[str, Answer]:
    """The still-fresh answers the database tier holds for `context_key`, of each of
    `value_types` that has one, by type key: one query, however many types (empty when the
    database is unavailable)."""
    by_id = {value_type.id: value_type for value_type in value_types if value_type.id is not None}
    if not by_id:
        return {}
    try:
        rows = list(ResolvedValue.objects.filter(value_type_id__in=list(by_id), context_key=context_key))
    except DatabaseError as error:
        logger.warning("L3 (database) unavailable: %s", error)
        return {}
    now = timezone.now()
    return {
        by_id[row.value_type_id].key: _answer_of(by_id[row.value_type_id], row).found_in("l3")
        for row in rows
        if row.fingerprint == by_id[row.value_type_id].fingerprint and row.expires_at > now
    }


def _answer_of(value_type: ValueTypeConfig, row) -> Answer:
    # The row's column is the one expiry: both freshness and staleness (resolution) use it.
    provenance = {**row.provenance, "expires_at": row.expires_at.isoformat()}
    return Answer.from_dict({"key": value_type.key, "context": row.context, "value": row.value, "provenance": provenance})


def l3_set(value_type: ValueTypeConfig, context_key: str, answer: Answer) -> None:
    """Keep a fetched answer as the type's last known good value for this context, and in its
    history."""
    if value_type.id is None:
        return
    fields = {
        "context": answer.context,
        "value": answer.value,
        "provenance": answer.provenance.as_dict(),
        "fetched_at": answer.provenance.fetched_at,
    }
    latest = {**fields, "fingerprint": value_type.fingerprint, "expires_at": answer.provenance.expires_at}
    try:
        with transaction.atomic():
            # One upsert statement (a cold read waits for this write).
            ResolvedValue.objects.bulk_create(
                [ResolvedValue(value_type_id=value_type.id, context_key=context_key, **latest)],
                update_conflicts=True,
                unique_fields=["value_type", "context_key"],
                update_fields=list(latest),
            )
            ValueRecord.objects.create(value_type_id=value_type.id, context_key=context_key, **fields)
    except DatabaseError as error:
        logger.warning("L3 (database) not written: %s", error)


def store(key: str, answer: Answer) -> None:
    """Keep `answer` in L2 and L1 until its `expires_at` (a degraded one in L1 more briefly)."""
    l2.set(key, answer)
    keep_in_l1(key, answer)


def keep_in_l1(key: str, answer: Answer) -> None:
    """Keep `answer` in L1 until its `expires_at` (a degraded one at most DEGRADED_L1_SECONDS)."""
    lifetime = seconds_until(answer.provenance.expires_at, timezone.now())
    if answer.provenance.is_degraded:
        lifetime = min(lifetime, DEGRADED_L1_SECONDS)
    l1.set(key, answer, lifetime)


def l3_history(value_type: ValueTypeConfig, context_key: str, since: datetime, limit: int) -> list[tuple[datetime, Any]]:
    """(fetched_at, value) of the context's fetched values since `since`, newest first, at most
    `limit` (empty when the database is unavailable)."""
    if value_type.id is None:
        return []
    try:
        return list(
            ValueRecord.objects.filter(value_type_id=value_type.id, context_key=context_key, fetched_at__gte=since)
            .order_by("-fetched_at")
            .values_list("fetched_at", "value")[:limit]
        )
    except DatabaseError as error:
        logger.warning("L3 (database) unavailable: %s", error)
        return []


def seconds_until(moment: datetime | None, now: datetime) -> float:
    return (moment - now).total_seconds() if moment else 0.0


l1 = LocalCache()
l2 = RedisCache()
flights = InProcessFlights()


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    # Tests point the cache at another Redis (override_settings): the held connections must
    # follow it, as django-redis's own clients do.
    if setting in ("CACHES", "REDIS_URL"):
        l2.forget_connections()


setting_changed.connect(_settings_changed)
