"""The change stream (values.events, GET /api/v1/values/stream/): what makes an event, what the
stream sends, resuming with Last-Event-ID, and its refusals. In-process here, through Django's
test clients (WSGI-style and ASGI), on the real Redis; the cross-process tests (a subscriber of
one server seeing an override made through another's API) are in test_change_stream_processes.py.

Events are published after the commit: these tests run the commit callbacks of their changes
(`django_capture_on_commit_callbacks(execute=True)`), as a commit would."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, override_settings
from django.utils import timezone
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from access.models import Scope
from tests.api.conftest import budget_server  # noqa: F401
from tests.tokens import token_client
from tests.values.conftest import BUDGET
from tests.values.sse import Message, messages_of
from values.events import STREAM_KEY, override_transitions_publish
from audit.history import audit_record
from values.models import Override, ValueType, ValueTypeSource
from values.refresh import REFRESHED, value_refresh
from values.services import (
    override_create,
    override_delete,
    override_update,
    value_type_fallback_update,
    value_type_update,
)

pytestmark = pytest.mark.django_db

KEY = "budget_thresholds"
STREAM = "/api/v1/values/stream/"
SHORT = "0.3"  # seconds a bounded test stream stays open once it has sent what was there


@pytest.fixture
def reader(engine):
    return token_client("stream reader", [Scope.VALUES_READ])


def read_stream(client, *, last_event_id: str | None = None, **query: str) -> list[Message]:
    headers = {"HTTP_LAST_EVENT_ID": last_event_id} if last_event_id else {}
    response = client.get(STREAM, {"max_seconds": SHORT, **query}, **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    return messages_of(b"".join(response.streaming_content))


def changes(stream: list[Message]) -> list[dict]:
    return [message.json() for message in stream if message.event == "change"]


def position(client) -> str:
    """The id a new subscriber starts after (its `ready` event's)."""
    [ready] = [message for message in read_stream(client) if message.event == "ready"]
    return ready.id


def make_override(context_match: dict, **fields) -> Override:
    value_type = ValueType.objects.get(key=KEY)
    return override_create(
        value_type=value_type, value=value_type.fallback_value, reason="campaign", actor="ops", channel="api",
        context_match=context_match, **fields,
    )  # fmt: skip


# What makes an event -----------------------------------------------------------------------------


def test_stream__override_created_updated_deleted__one_event_each_with_key_match_and_versions(
    reader, django_capture_on_commit_callbacks
):
    start = position(reader)
    with django_capture_on_commit_callbacks(execute=True):
        override = make_override({"region": "us"})
    with django_capture_on_commit_callbacks(execute=True):
        override = override_update(
            override=override, expected_version=1, actor="ops", channel="api", reason="wider",
            context_match={"region": "de"},
        )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        override_delete(override=override, expected_version=2, actor="ops", channel="api", reason="done")

    received = changes(read_stream(reader, last_event_id=start))

    assert [(event["kind"], event["key"], event["context_match"]) for event in received] == [
        ("override.created", KEY, {"region": "us"}),
        ("override.updated", KEY, {"region": "us"}),  # the contexts it left...
        ("override.updated", KEY, {"region": "de"}),  # ...and those it now covers
        ("override.deleted", KEY, {"region": "de"}),
    ]
    ids = [event["id"] for event in received]
    assert ids == sorted(ids, key=lambda text: tuple(map(int, text.split("-")))) and len(set(ids)) == 4
    config_versions = [event["config_version"] for event in received]
    assert config_versions[0] < config_versions[1] == config_versions[2] < config_versions[3]


def test_stream__fallback_edited__fallback_event_for_every_context(reader, django_capture_on_commit_callbacks):
    start = position(reader)
    value_type = ValueType.objects.get(key=KEY)
    with django_capture_on_commit_callbacks(execute=True):
        value_type_fallback_update(
            value_type=value_type, value={**value_type.fallback_value, "micro_threshold": 450},
            expected_version=value_type.version, actor="ops", channel="api", reason="lower",
        )  # fmt: skip

    [event] = changes(read_stream(reader, last_event_id=start))

    assert (event["kind"], event["key"], event["context_match"]) == ("fallback.updated", KEY, {})


def test_stream__value_type_rules_edited_and_a_source_link_changed__events_for_every_context(
    reader, django_capture_on_commit_callbacks
):
    start = position(reader)
    value_type = ValueType.objects.get(key=KEY)
    with django_capture_on_commit_callbacks(execute=True):
        value_type_update(value_type=value_type, actor="ops", channel="admin", reason="longer", ttl=timedelta(hours=2))
    link = ValueTypeSource.objects.filter(value_type=value_type).first()
    with django_capture_on_commit_callbacks(execute=True):
        ValueTypeSource.objects.filter(pk=link.pk).update(weight=0.5)
        link.refresh_from_db()
        audit_record(actor="ops", channel="admin", instance=link, before={"weight": 0.6}, after={"weight": 0.5})

    received = changes(read_stream(reader, last_event_id=start))

    assert [(event["kind"], event["key"], event["context_match"]) for event in received] == [
        ("value_type.updated", KEY, {}), ("sources.changed", KEY, {}),
    ]  # fmt: skip


def test_stream__change_rolled_back_with_the_transaction__no_event(reader, django_capture_on_commit_callbacks):
    start = position(reader)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        make_override({"region": "us"})
    assert callbacks  # the publication waits for a commit that, here, never comes

    assert changes(read_stream(reader, last_event_id=start)) == []


def test_stream__refresh_changed_the_value__value_refreshed_event_for_its_context(
    reader, budget_server, django_capture_on_commit_callbacks  # noqa: F811
):
    context = {"region": "us", "industry": "retail"}
    start = position(reader)

    with django_capture_on_commit_callbacks(execute=True):
        outcome = value_refresh(key=KEY, context=context)

    assert outcome.status == REFRESHED and outcome.answer.value == pytest.approx(BUDGET)
    [event] = changes(read_stream(reader, last_event_id=start))
    assert (event["kind"], event["key"], event["context_match"]) == ("value.refreshed", KEY, context)


def test_stream__refresh_brought_the_same_value__no_event(
    reader, budget_server, django_capture_on_commit_callbacks  # noqa: F811
):
    context = {"region": "us", "industry": "retail"}
    with django_capture_on_commit_callbacks(execute=True):
        value_refresh(key=KEY, context=context)
    start = position(reader)

    with django_capture_on_commit_callbacks(execute=True):
        outcome = value_refresh(key=KEY, context=context)

    assert outcome.status == "unchanged"
    assert changes(read_stream(reader, last_event_id=start)) == []


def test_stream__override_expired_and_one_started__announced_once_by_the_periodic_check(reader):
    now = timezone.now()
    override_transitions_publish(now=now - timedelta(minutes=1))  # checked up to a minute ago
    expired = make_override({"region": "us"}, starts_at=now - timedelta(hours=1), expires_at=now - timedelta(seconds=5))
    started = make_override({"region": "de"}, starts_at=now - timedelta(seconds=10))
    Override.objects.filter(pk=started.pk).update(created_at=now - timedelta(minutes=5))  # made earlier, for later
    start = position(reader)

    first = override_transitions_publish(now=now)
    again = override_transitions_publish(now=now + timedelta(seconds=1))

    assert sorted((event.kind, event.context_match["region"]) for event in first) == [
        ("override.expired", "us"), ("override.started", "de"),
    ]  # fmt: skip
    assert again == []
    received = changes(read_stream(reader, last_event_id=start))
    assert sorted(event["kind"] for event in received) == ["override.expired", "override.started"]
    assert expired.pk and started.pk


def test_stream__override_that_starts_when_made__no_started_event_besides_its_creation(reader):
    override_transitions_publish(now=timezone.now() - timedelta(minutes=1))
    make_override({"region": "us"})

    assert override_transitions_publish() == []


# Subscribing -------------------------------------------------------------------------------------


def test_stream__new_subscriber__retry_then_ready_with_the_current_position(reader, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        make_override({"region": "us"})
    newest = get_redis_connection("default").xrevrange(STREAM_KEY, count=1)[0][0].decode()

    stream = read_stream(reader, keys=f"{KEY},industry_multipliers")

    ready = stream[0]
    assert (ready.event, ready.id) == ("ready", newest)  # what came before it is not replayed
    assert ready.json() == {"keys": sorted([KEY, "industry_multipliers"]), "heartbeat": 15.0}
    assert changes(stream) == []


def test_stream__keys_named__only_their_events_and_aliases_resolved(reader, django_capture_on_commit_callbacks):
    start = position(reader)
    multipliers = ValueType.objects.get(key="industry_multipliers")
    with django_capture_on_commit_callbacks(execute=True):
        make_override({"region": "us"})
        override_create(
            value_type=multipliers, value=multipliers.fallback_value, reason="x", actor="ops", channel="api"
        )

    only_budget = changes(read_stream(reader, last_event_id=start, keys=KEY))
    everything = changes(read_stream(reader, last_event_id=start))

    assert [event["key"] for event in only_budget] == [KEY]
    assert sorted(event["key"] for event in everything) == sorted([KEY, "industry_multipliers"])


def test_stream__resumed_with_last_event_id__exactly_the_events_after_it_in_order(
    reader, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        make_override({"region": "us"})
    [first] = changes(read_stream(reader, last_event_id="0-0"))
    with django_capture_on_commit_callbacks(execute=True):
        make_override({"region": "de"})
    with django_capture_on_commit_callbacks(execute=True):
        make_override({"region": "gb"})

    resumed = changes(read_stream(reader, last_event_id=first["id"]))

    assert [event["context_match"] for event in resumed] == [{"region": "de"}, {"region": "gb"}]


@override_settings(DYNCONFIG_STREAM_HEARTBEAT=0.1)
def test_stream__quiet__heartbeat_comments_carrying_the_position(reader):
    start = position(reader)

    stream = read_stream(reader)

    heartbeats = [message for message in stream if message.comments == ("heartbeat",)]
    assert heartbeats and all(message.id == start and message.data == "" for message in heartbeats)


def test_stream__last_event_id_past_the_retention__reset_first_then_new_events(
    reader, django_capture_on_commit_callbacks
):
    for region in ("us", "de", "gb"):
        with django_capture_on_commit_callbacks(execute=True):
            make_override({"region": region})
    redis = get_redis_connection("default")
    [(first, _), (second, _), (third, _)] = redis.xrange(STREAM_KEY)
    redis.xtrim(STREAM_KEY, minid=third, approximate=False)  # the second passed out of the window unseen

    stream = read_stream(reader, last_event_id=first.decode())

    assert [message.event for message in stream[:2]] == ["reset", "ready"]
    assert stream[0].id == third.decode()  # the newest: what follows the reset is new
    assert "retention" in stream[0].json()["reason"]
    assert changes(stream) == []


def test_stream__last_event_id_within_the_retention__no_reset(reader, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        make_override({"region": "us"})
    with django_capture_on_commit_callbacks(execute=True):
        make_override({"region": "de"})
    redis = get_redis_connection("default")
    [(oldest, _), (newest, _)] = redis.xrange(STREAM_KEY)
    redis.xtrim(STREAM_KEY, minid=oldest, approximate=False)  # nothing after the id was trimmed

    stream = read_stream(reader, last_event_id=oldest.decode())

    assert [message.event for message in stream] == ["ready", "change"]


def test_stream__last_event_id_newer_than_the_stream__reset(reader, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        make_override({"region": "us"})

    stream = read_stream(reader, last_event_id="99999999999999-0")

    assert stream[0].event == "reset"


# Under ASGI: the same stream from an async generator ---------------------------------------------


def test_stream__served_under_asgi__async_generator_sends_the_events(reader, django_capture_on_commit_callbacks):
    start = position(reader)
    with django_capture_on_commit_callbacks(execute=True):
        make_override({"region": "us"})
    authorization = reader._credentials["HTTP_AUTHORIZATION"]

    async def read() -> tuple[int, bool, bytes]:
        response = await AsyncClient().get(
            STREAM, {"max_seconds": SHORT}, headers={"Authorization": authorization, "Last-Event-ID": start}
        )
        return response.status_code, response.is_async, b"".join([chunk async for chunk in response.streaming_content])

    status, is_async, body = async_to_sync(read)()

    assert (status, is_async) == (200, True)
    stream = messages_of(body)
    assert [message.event for message in stream] == ["ready", "change"]
    assert stream[1].json()["context_match"] == {"region": "us"}


# Refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "headers", "field"),
    [
        ({"keys": "no_such_type"}, {}, "keys"),
        ({"max_seconds": "0"}, {}, "max_seconds"),
        ({"max_seconds": "forever"}, {}, "max_seconds"),
        ({}, {"HTTP_LAST_EVENT_ID": "yesterday"}, "Last-Event-ID"),
    ],
)
def test_stream__bad_input__400_naming_the_field(reader, query, headers, field):
    response = reader.get(STREAM, query, **headers)

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_stream__no_credential__401(engine):
    response = APIClient().get(STREAM)

    assert response.status_code == 401
    assert response.json()["error"]["status"] == 401


@override_settings(REDIS_URL="")
def test_stream__no_redis_configured__503_change_stream_unavailable(reader):
    response = reader.get(STREAM)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "change_stream_unavailable"


def test_stream__no_redis_configured__changes_publish_nothing_and_fail_nothing(
    reader, django_capture_on_commit_callbacks
):
    start = position(reader)
    with override_settings(REDIS_URL=""), django_capture_on_commit_callbacks(execute=True):
        override = make_override({"region": "us"})

    assert Override.objects.filter(pk=override.pk).exists()
    assert changes(read_stream(reader, last_event_id=start)) == []
