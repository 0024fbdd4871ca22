"""Change events: one for every change of an answer a consumer could have read, in one stream.

What makes an event, and from where (each is published after its transaction commits):
  - an operator's change of an override, a value type (its fallback among others), a source or
    a source link: `operator_change_publish`, which audit.history.audit_record calls for every
    change it records (the hook is set in values' AppConfig.ready), whoever made it: admin, API,
    sync_config, a revert, a rollback (an override), an approved change request;
  - an override starting or expiring: nobody edits anything then, so `override_transitions_publish`
    runs every DYNCONFIG_CHANGE_CHECK_INTERVAL seconds (beat, values.tasks) and announces the
    starts and expiries that fell since its last run;
  - a refresh that changed a value (values.refresh): `value_refreshed_publish`.

The stream is a Redis Stream (XADD, trimmed to DYNCONFIG_CHANGE_RETENTION by MINID): every
process of every host appends to it and reads it, each entry's id is the event id, and a reader
resumes after the id it saw last, in order and without loss while that id is retained. Chosen
over pub/sub, which forgets what a disconnected subscriber missed, and over PostgreSQL
LISTEN/NOTIFY, which has no replay and no place in the embedded SQLite default; Redis is already
what every process shares (L2, breakers, the broker). Without REDIS_URL there are no events.

Delivery is at most once from the publisher: an event lost because Redis was unreachable at that
moment (logged) or the process died between the commit and the XADD is covered by the consumers'
TTLs, which stay the safety net (dynconfig_client revalidates on its TTL whatever the stream says).

An event: `kind`, `key` (the value type), `context_match` (the answers it affects are those whose
context holds every name and value of it, as an override matches; {} for all of the type's
contexts), `config_version` and `data_version` (audit.models.ConfigVersion after the change),
`at`, and `id` (the stream entry id, "<ms>-<seq>").
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import redis
import redis.asyncio
from django.conf import settings
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone
from django_redis import get_redis_connection

from audit.history import config_versions
from core.durations import parse_duration
from sources.models import Source
from values.models import Override, ValueType, ValueTypeSource
from values.registry import registry

logger = logging.getLogger(__name__)

STREAM_KEY = "dynconfig:changes:v1"
# The time up to which override starts and expiries were announced (ms since the epoch).
TRANSITIONS_CHECKED_KEY = "dynconfig:changes:transitions-checked-until"
# On the very first check (or after Redis lost the key), how far back starts and expiries are
# announced: an extra event only makes subscribers re-read, a missing one leaves them on TTLs.
FIRST_TRANSITIONS_WINDOW = timedelta(minutes=5)
# Events read from Redis in one call by a stream reader.
READ_BATCH = 100
EVENT_ID_PATTERN = re.compile(r"^\d{1,20}-\d{1,20}$")
START = "0-0"  # before every entry

# Kinds of event.
OVERRIDE_CREATED = "override.created"
OVERRIDE_UPDATED = "override.updated"
OVERRIDE_DELETED = "override.deleted"
OVERRIDE_STARTED = "override.started"
OVERRIDE_EXPIRED = "override.expired"
VALUE_TYPE_CREATED = "value_type.created"
VALUE_TYPE_UPDATED = "value_type.updated"
VALUE_TYPE_DELETED = "value_type.deleted"
FALLBACK_UPDATED = "fallback.updated"
SOURCES_CHANGED = "sources.changed"
VALUE_REFRESHED = "value.refreshed"


@dataclass(frozen=True)
class ChangeEvent:
    kind: str
    key: str
    context_match: dict[str, Any]
    config_version: int
    data_version: int
    at: str  # ISO 8601, when it was published
    id: str = ""  # the stream entry id, set when it was appended

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def affects(self, keys: frozenset[str]) -> bool:
        """Whether a subscriber to `keys` (empty: every key) wants this event."""
        return not keys or self.key in keys


class ChangePublisher:
    """Where published events go besides the stream: `on_published` is called with each event
    appended (its id set), in the publishing process, after the commit. The webhooks app sets it
    (its AppConfig.ready) to queue their deliveries; webhooks sit above values, which cannot
    import them. It must not block: a slow consumer would slow the edit that published."""

    def __init__(self) -> None:
        self.on_published: Callable[[ChangeEvent], None] = lambda event: None


publisher = ChangePublisher()


def is_enabled() -> bool:
    """Change events need Redis (REDIS_URL); the embedded default has none."""
    return bool(settings.REDIS_URL)


# Publishing ------------------------------------------------------------------------------------


def operator_change_publish(*, instance: models.Model, before: dict | None, after: dict | None) -> None:
    """Called by audit_record for each operator change, in its transaction: the events it makes
    (none for objects that shape no answer: tokens, webhooks) are published after the commit."""
    if not is_enabled():
        return
    made = _operator_events(instance, before, after)
    if made:
        _publish_after_commit(made)


def value_refreshed_publish(*, key: str, context: dict[str, Any]) -> None:
    """A refresh stored a new value for `key` in `context`: publish it after the commit (the
    answers of wider reads made from it, widened ones, are covered: they hold `context`)."""
    if not is_enabled():
        return
    match = _match_of(context)
    # Versions read after the commit, where the refresh's data_version bump (registered on
    # commit before this) has run.
    transaction.on_commit(lambda: _publish([_event(VALUE_REFRESHED, key, match, config_versions())]), robust=True)


def override_transitions_publish(*, now: datetime | None = None) -> list[ChangeEvent]:
    """Announce the overrides that started or expired since the last call (any process's: the
    time checked up to is kept in Redis and swapped atomically, so two beats announce nothing
    twice). Returns the events published."""
    if not is_enabled():
        return []
    now = now or timezone.now()
    now_ms = int(now.timestamp() * 1000)
    try:
        previous = get_redis_connection("default").set(TRANSITIONS_CHECKED_KEY, now_ms, get=True)
    except redis.RedisError as error:
        logger.warning("override starts and expiries not announced, Redis unavailable: %s", error)
        return []
    since = datetime.fromtimestamp(int(previous) / 1000, tz=now.tzinfo) if previous else now - FIRST_TRANSITIONS_WINDOW
    if since >= now:
        return []
    overrides = Override.objects.select_related("value_type")
    # An override that started when it was made was announced by its creation.
    started = overrides.filter(starts_at__gt=since, starts_at__lte=now).filter(starts_at__gt=F("created_at"))
    expired = overrides.filter(expires_at__gt=since, expires_at__lte=now)
    made = [(OVERRIDE_STARTED, each.value_type.key, each.context_match) for each in started]
    made += [(OVERRIDE_EXPIRED, each.value_type.key, each.context_match) for each in expired]
    versions = config_versions()
    return _publish([_event(kind, key, match, versions) for kind, key, match in made])


def _operator_events(instance: models.Model, before: dict | None, after: dict | None) -> list[tuple[str, str, dict]]:
    action = "created" if before is None else "deleted" if after is None else "updated"
    if isinstance(instance, Override):
        key = instance.value_type.key
        matches = _distinct([(before or {}).get("context_match"), (after or {}).get("context_match")])
        return [(f"override.{action}", key, match) for match in matches]
    if isinstance(instance, ValueType):
        changed = {name for name in (before or {}) if (before or {}).get(name) != (after or {}).get(name)}
        kind = FALLBACK_UPDATED if action == "updated" and "fallback_value" in changed else f"value_type.{action}"
        return [(kind, instance.key, {})]
    if isinstance(instance, ValueTypeSource):
        keys = ValueType.objects.filter(pk=instance.value_type_id).values_list("key", flat=True)
        return [(SOURCES_CHANGED, key, {}) for key in keys]
    if isinstance(instance, Source):
        keys = ValueTypeSource.objects.filter(source_id=instance.pk).values_list("value_type__key", flat=True)
        return [(SOURCES_CHANGED, key, {}) for key in sorted(set(keys))]
    return []


def _distinct(matches: Iterable[dict | None]) -> list[dict]:
    found: list[dict] = []
    for match in matches:
        if match is not None and match not in found:
            found.append(match)
    return found


def _match_of(context: dict[str, Any]) -> dict[str, Any]:
    return {name: ",".join(value) if isinstance(value, list) else value for name, value in context.items()}


def _publish_after_commit(made: list[tuple[str, str, dict]]) -> None:
    # The versions now, inside the change's transaction: its own (audit_record bumped them, and
    # the row stays locked until the commit).
    versions = config_versions()
    events = [_event(kind, key, match, versions) for kind, key, match in made]
    # Robust: a failure to publish must never fail or undo the change that committed.
    transaction.on_commit(lambda: _publish(events), robust=True)


def _event(kind: str, key: str, match: dict[str, Any] | None, versions: tuple[int, int]) -> ChangeEvent:
    config_version, data_version = versions
    return ChangeEvent(kind, key, dict(match or {}), config_version, data_version, at="")


def _publish(events: Sequence[ChangeEvent]) -> list[ChangeEvent]:
    """Append each event to the stream; hand each appended one to `publisher.on_published`."""
    published = []
    minimum_id = f"{int((timezone.now() - retention()).timestamp() * 1000)}-0"
    for event in events:
        event = replace(event, at=timezone.now().isoformat())
        fields = {name: value for name, value in event.as_dict().items() if name != "id"}
        try:
            # MINID ~: drop entries older than the retention window, by whole blocks (cheap).
            event_id = get_redis_connection("default").xadd(
                STREAM_KEY, {"event": json.dumps(fields)}, minid=minimum_id, approximate=True
            )
        except redis.RedisError as error:
            logger.warning("change event %s of %s not published, Redis unavailable: %s", event.kind, event.key, error)
            continue
        event = replace(event, id=event_id.decode())
        published.append(event)
        try:
            publisher.on_published(event)
        except Exception as error:  # noqa: BLE001 - a consumer's failure must not undo the publication
            logger.warning("change event %s: a consumer failed: %s", event.id, error)
    return published


def retention() -> timedelta:
    """How long events stay in the stream: a subscriber away for less resumes without loss."""
    return parse_duration(settings.DYNCONFIG_CHANGE_RETENTION)


# Reading ---------------------------------------------------------------------------------------


class InvalidEventId(ValueError):
    """A Last-Event-ID that is not a stream entry id."""


@dataclass(frozen=True)
class StreamStart:
    """Where a reader starts: after `position`; `is_reset` when events it asked to resume after
    may be lost (past the retention, or from another stream): it must drop what it cached."""

    position: str
    is_reset: bool
    reason: str = ""


def subscription_keys(raw: Iterable[str]) -> frozenset[str]:
    """The canonical keys of a subscription (aliases resolved); raises KeyError naming an
    unknown one. Empty: every key."""
    snapshot = registry.snapshot()
    keys = set()
    for name in raw:
        value_type = snapshot.value_type(name)
        if value_type is None:
            raise KeyError(name)
        keys.add(value_type.key)
    return frozenset(keys)


def parse_event_id(text: str) -> tuple[int, int]:
    if not EVENT_ID_PATTERN.match(text):
        raise InvalidEventId(f"{text!r} is not an event id (<milliseconds>-<sequence>)")
    milliseconds, sequence = text.split("-")
    return int(milliseconds), int(sequence)


def stream_start(info: dict[str, Any] | None, last_event_id: str | None) -> StreamStart:
    """Where to start, from XINFO STREAM's answer (None: no stream yet) and the id the reader
    saw last (None: a new reader, who starts after the newest event)."""
    last_generated = _text(info.get("last-generated-id")) if info else START
    if last_event_id is None:
        return StreamStart(last_generated, False)
    last_seen = parse_event_id(last_event_id)
    if info is None:
        if last_seen == (0, 0):
            return StreamStart(START, False)
        return StreamStart(START, True, "the stream holds no events (Redis was emptied or replaced)")
    if last_seen > parse_event_id(last_generated):
        return StreamStart(last_generated, True, "that id is newer than the stream's (Redis was replaced)")
    if _may_have_lost_after(info, last_seen, parse_event_id(last_generated)):
        return StreamStart(last_generated, True, "events after that id are past the retention window")
    return StreamStart(last_event_id, False)


def _may_have_lost_after(info: dict[str, Any], last_seen: tuple[int, int], last_generated: tuple[int, int]) -> bool:
    """Whether an entry after `last_seen` was trimmed (or deleted). Trimming leaves no record of
    the ids it removed, so this errs on the safe side: a reader whose last id is older than the
    oldest retained entry is told to reset, though the one trimmed may have been its own."""
    if info.get("entries-added") == info.get("length"):
        return False  # nothing was ever removed
    if last_seen < parse_event_id(_text(info.get("max-deleted-entry-id") or START)):
        return True  # XDEL'd after it
    first = info.get("first-entry")
    if not first:
        return last_seen < last_generated  # all trimmed: any entry after it is gone
    return last_seen < parse_event_id(_text(first[0]))


def events_of(entries: Sequence[tuple[Any, dict]]) -> list[ChangeEvent]:
    """The events of XREAD/XRANGE entries (id, fields); an entry that is not one is skipped."""
    events = []
    for entry_id, fields in entries:
        try:
            data = json.loads(fields.get(b"event") or fields.get("event"))
            events.append(ChangeEvent(**{**data, "id": _text(entry_id)}))
        except (TypeError, ValueError) as error:
            logger.warning("stream entry %s is not a change event, skipped: %s", _text(entry_id), error)
    return events


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ChangeStreamReader:
    """Blocking reads of the stream for one subscriber (a connection of its own: a read may
    block for seconds, longer than the cache connection's socket timeout allows)."""

    def __init__(self, block_seconds: float):
        self.block_seconds = block_seconds
        self._redis = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1.0, socket_timeout=block_seconds + 5)

    def start(self, last_event_id: str | None) -> StreamStart:
        return stream_start(_stream_info(self._redis), last_event_id)

    def read(self, position: str, block_seconds: float) -> list[ChangeEvent]:
        """The events after `position`, waiting up to `block_seconds` for one."""
        answer = self._redis.xread({STREAM_KEY: position}, count=READ_BATCH, block=max(1, int(block_seconds * 1000)))
        return events_of(answer[0][1]) if answer else []

    def close(self) -> None:
        self._redis.close()


class AsyncChangeStreamReader:
    """ChangeStreamReader for an event loop (the stream served under ASGI)."""

    def __init__(self, block_seconds: float):
        self._redis = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=1.0, socket_timeout=block_seconds + 5
        )

    async def start(self, last_event_id: str | None) -> StreamStart:
        try:
            info = await self._redis.xinfo_stream(STREAM_KEY)
        except redis.ResponseError:  # no such key: nothing was ever published
            info = None
        return stream_start(info, last_event_id)

    async def read(self, position: str, block_seconds: float) -> list[ChangeEvent]:
        answer = await self._redis.xread({STREAM_KEY: position}, count=READ_BATCH, block=max(1, int(block_seconds * 1000)))
        return events_of(answer[0][1]) if answer else []

    async def close(self) -> None:
        await self._redis.aclose()


def _stream_info(connection: redis.Redis) -> dict[str, Any] | None:
    try:
        return connection.xinfo_stream(STREAM_KEY)
    except redis.ResponseError:  # no such key: nothing was ever published
        return None
