"""The change stream: GET /api/v1/values/stream/, Server-Sent Events of values.events.

A DRF view for what every API endpoint shares (token or session auth, the read scope,
throttling, the one error format), whose body is written by the view itself: an SSE stream, not
a rendered document. Under WSGI each subscriber holds a worker thread for as long as it listens
(gunicorn needs threads for that: docs/deploy.md); under ASGI the stream is an async generator
on the event loop and holds no thread.

The stream, line by line (https://html.spec.whatwg.org/multipage/server-sent-events.html):

    retry: 1000                      reconnect after a second when the connection drops
    event: reset / id / data         only when the Last-Event-ID sent may have missed events
    event: ready / id / data         subscribed: {"keys": [...], "heartbeat": seconds}
    event: change / id / data        one per change event (values.events.ChangeEvent as JSON)
    : heartbeat / id: <position>     every DYNCONFIG_STREAM_HEARTBEAT seconds without an event;
                                     the id moves the client's resume point past events it
                                     filtered out, so a quiet subscription does not fall out of
                                     the retention window
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Iterator

import redis
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from access.permissions import CanReadValues
from dynconfig_site.api_schema import ERROR_DESCRIPTIONS, ERROR_REF, error_responses
from values.events import (
    AsyncChangeStreamReader,
    ChangeEvent,
    ChangeStreamReader,
    InvalidEventId,
    StreamStart,
    is_enabled,
    parse_event_id,
    subscription_keys,
)

# How long an EventSource waits before it reconnects (the `retry:` field), in milliseconds.
RECONNECT_MILLISECONDS = 1000
# The longest bounded stream (`max_seconds`): a day.
MAX_SECONDS_LIMIT = 86_400.0


class StreamUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "change_stream_unavailable"
    default_detail = "The change stream is unavailable: it needs Redis (REDIS_URL), which cannot be reached."


class StreamQuerySerializer(serializers.Serializer):
    keys = serializers.CharField(required=False, allow_blank=True)
    max_seconds = serializers.FloatField(required=False, min_value=0.1, max_value=MAX_SECONDS_LIMIT)


STREAM_DESCRIPTION = """Server-Sent Events (`text/event-stream`): one `change` event whenever an answer a
subscriber could have read changes (an override created, changed, deleted, started or expired;
a value type's fallback or rules edited; its sources changed; a refresh changed a value; a
rollback, which is an override). Each event's `id` is its position in the stream and its
`data` is JSON: `{"id", "kind", "key", "context_match", "config_version", "data_version",
"at"}`; the affected answers are those of `key` whose context holds every name and value of
`context_match` (`{}`: every context).

The stream opens with `retry:`, then `ready` (`{"keys", "heartbeat"}`, its id the current
position). Send the last id you saw as `Last-Event-ID` to resume: the events after it follow,
in order, while it is within the retention window (DYNCONFIG_CHANGE_RETENTION); if it is older
(or unknown to this stream) a `reset` event comes first: drop everything you cached. Heartbeats
(`: heartbeat` comments with an `id:` line) come every DYNCONFIG_STREAM_HEARTBEAT seconds
without an event. The stream never ends by itself unless `max_seconds` is given."""


class ChangeStreamApi(APIView):
    """GET /api/v1/values/stream/: the change events, as Server-Sent Events."""

    permission_classes = [CanReadValues]
    renderer_classes = [JSONRenderer]  # errors only: the stream is written by the view

    def perform_content_negotiation(self, request: Request, force: bool = False):
        # `Accept: text/event-stream` (what EventSource sends) must not be refused as
        # unacceptable: the events are not rendered by DRF, and errors are JSON whatever asked.
        renderer = JSONRenderer()
        return renderer, renderer.media_type

    @extend_schema(
        operation_id="values_stream",
        summary="Change events (Server-Sent Events)",
        description=STREAM_DESCRIPTION,
        parameters=[
            OpenApiParameter(
                "keys", OpenApiTypes.STR, OpenApiParameter.QUERY, required=False,
                description="Value types to hear of, comma-separated (aliases allowed); none: every one.",
            ),
            OpenApiParameter(
                "max_seconds", OpenApiTypes.DOUBLE, OpenApiParameter.QUERY, required=False,
                description="End the stream after this many seconds (0.1 to 86400); none: it stays open.",
            ),
            OpenApiParameter(
                "Last-Event-ID", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
                description="The id of the last event received (`<ms>-<seq>`): resume after it.",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(response=OpenApiTypes.STR, description="The event stream."),
            503: OpenApiResponse(
                response=dict(ERROR_REF),
                description="`change_stream_unavailable`: no Redis configured, or it cannot be reached. "
                + ERROR_DESCRIPTIONS[503],
            ),
            **error_responses(400),
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        query = StreamQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        names = [name.strip() for name in query.validated_data.get("keys", "").split(",") if name.strip()]
        try:
            keys = subscription_keys(names)
        except KeyError as unknown:
            raise ValidationError({"keys": [f"Unknown value type {unknown.args[0]!r}."]}) from None
        last_event_id = request.headers.get("Last-Event-ID") or None
        if last_event_id is not None:
            try:
                parse_event_id(last_event_id)
            except InvalidEventId as error:
                raise ValidationError({"Last-Event-ID": [str(error)]}) from None
        if not is_enabled():
            raise StreamUnavailable("The change stream needs Redis: this deployment has no REDIS_URL.")
        heartbeat = settings.DYNCONFIG_STREAM_HEARTBEAT
        max_seconds = query.validated_data.get("max_seconds")
        reader = ChangeStreamReader(block_seconds=heartbeat)
        try:
            start = reader.start(last_event_id)
        except redis.RedisError:
            reader.close()
            raise StreamUnavailable() from None
        if isinstance(request._request, ASGIRequest):
            reader.close()
            stream = _async_events(AsyncChangeStreamReader(heartbeat), start, keys, heartbeat, max_seconds)
        else:
            stream = _events(reader, start, keys, heartbeat, max_seconds)
        response = StreamingHttpResponse(stream, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once, unbuffered
        return response


def _events(
    reader: ChangeStreamReader, start: StreamStart, keys: frozenset[str], heartbeat: float, max_seconds: float | None
) -> Iterator[bytes]:
    deadline = time.monotonic() + max_seconds if max_seconds else math.inf
    position = start.position
    try:
        yield from _opening(start, keys, heartbeat)
        last_sent = time.monotonic()
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                events = reader.read(position, min(heartbeat, remaining))
            except redis.RedisError:
                return  # the client reconnects and resumes with its Last-Event-ID
            for event in events:
                position = event.id
                if event.affects(keys):
                    yield _change(event)
                    last_sent = time.monotonic()
            if time.monotonic() - last_sent >= heartbeat:
                yield _heartbeat(position)
                last_sent = time.monotonic()
    finally:
        reader.close()  # also when the client went away (the server closes the generator)


async def _async_events(
    reader: AsyncChangeStreamReader,
    start: StreamStart,
    keys: frozenset[str],
    heartbeat: float,
    max_seconds: float | None,
) -> AsyncIterator[bytes]:
    deadline = time.monotonic() + max_seconds if max_seconds else math.inf
    position = start.position
    try:
        for chunk in _opening(start, keys, heartbeat):
            yield chunk
        last_sent = time.monotonic()
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                events = await reader.read(position, min(heartbeat, remaining))
            except redis.RedisError:
                return
            for event in events:
                position = event.id
                if event.affects(keys):
                    yield _change(event)
                    last_sent = time.monotonic()
            if time.monotonic() - last_sent >= heartbeat:
                yield _heartbeat(position)
                last_sent = time.monotonic()
    finally:
        await reader.close()


def _opening(start: StreamStart, keys: frozenset[str], heartbeat: float) -> Iterator[bytes]:
    yield f"retry: {RECONNECT_MILLISECONDS}\n\n".encode()
    if start.is_reset:
        yield _message("reset", start.position, {"reason": start.reason})
    yield _message("ready", start.position, {"keys": sorted(keys), "heartbeat": heartbeat})


def _change(event: ChangeEvent) -> bytes:
    return _message("change", event.id, event.as_dict())


def _heartbeat(position: str) -> bytes:
    return f": heartbeat\nid: {position}\n\n".encode()


def _message(name: str, event_id: str, data: dict) -> bytes:
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
