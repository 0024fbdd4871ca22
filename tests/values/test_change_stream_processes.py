"""The change stream across processes: two servers (runserver subprocesses on the test's database
and Redis), an override made through one's API, and a subscriber (this test process) of the
other's stream. It sees the override within a second of the API's answer, and after a disconnect
it resumes with Last-Event-ID and gets every event it missed, once, in order. The same stream
served under ASGI (uvicorn) by an async generator."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from access.authentication import token_hash
from access.models import ApiToken
from tests.client.conftest import AppServer
from tests.values.app_servers import start_asgi_server, start_server
from tests.values.sse import Message, messages
from values.models import ValueType

pytestmark = pytest.mark.django_db(transaction=True)  # the servers read committed data

TOKEN = "dcfg_stream_test_token_0123456789abcdef0123456789abcdef"
KEY = "budget_thresholds"
# The must-show: a subscriber sees an override within a second of the commit (the API's answer).
VISIBLE_WITHIN = 1.0
READ_TIMEOUT = 20.0  # a stuck stream fails the test instead of hanging it


@pytest.fixture
def token(engine) -> str:
    ApiToken.objects.create(
        name="stream-tests", prefix=TOKEN[:8], token_hash=token_hash(TOKEN), scopes=["values:read", "values:write"]
    )
    return TOKEN


@pytest.fixture
def servers(token, tmp_path) -> Iterator[tuple[AppServer, AppServer]]:
    """(writer, streamer): two processes of the application."""
    started: list[AppServer] = []
    try:
        started.append(start_server(tmp_path, "writer"))
        started.append(start_server(tmp_path, "streamer", DYNCONFIG_STREAM_HEARTBEAT="1"))
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()


class Subscriber:
    """A stream read on a thread of this process: its messages in a queue, as they arrive."""

    def __init__(self, server: AppServer, last_event_id: str | None = None):
        headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.response = requests.get(
            f"{server.url}/api/v1/values/stream/", params={"keys": KEY}, headers=headers, stream=True, timeout=(5, READ_TIMEOUT)
        )
        assert self.response.status_code == 200, self.response.text
        self.received: queue.Queue[tuple[float, Message]] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for message in messages(_lines(self.response)):
                self.received.put((time.monotonic(), message))
        except (requests.RequestException, OSError, AttributeError, ValueError):
            pass  # closed by disconnect()

    def next(self, event: str) -> tuple[float, Message]:
        """The next message named `event` (others, heartbeats, skipped)."""
        deadline = time.monotonic() + READ_TIMEOUT
        while True:
            arrived, message = self.received.get(timeout=max(0.0, deadline - time.monotonic()))
            if message.event == event:
                return arrived, message

    def until_heartbeat(self) -> list[Message]:
        """What arrives before the next heartbeat (the stream is quiet for a second then)."""
        deadline = time.monotonic() + READ_TIMEOUT
        before = []
        while True:
            _, message = self.received.get(timeout=max(0.0, deadline - time.monotonic()))
            if message.comments == ("heartbeat",):
                return before
            before.append(message)

    def disconnect(self) -> None:
        self.response.close()
        self._thread.join(timeout=5)


def _lines(response: requests.Response) -> Iterator[str]:
    buffer = bytearray()
    for byte in response.iter_content(chunk_size=1):
        if byte == b"\n":
            yield buffer.decode()
            buffer.clear()
        else:
            buffer += byte


def post_override(server: AppServer, region: str) -> dict:
    fallback = ValueType.objects.get(key=KEY).fallback_value
    response = requests.post(
        f"{server.url}/api/v1/overrides/",
        json={"value_type": KEY, "context_match": {"region": region}, "value": fallback, "reason": f"campaign {region}"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_stream__override_made_through_another_server_s_api__subscriber_sees_it_within_a_second(servers):
    writer, streamer = servers
    subscriber = Subscriber(streamer)
    subscriber.next("ready")

    post_override(writer, "us")
    committed = time.monotonic()  # the API answers after the commit
    arrived, message = subscriber.next("change")
    subscriber.disconnect()

    event = message.json()
    assert (event["kind"], event["key"], event["context_match"]) == ("override.created", KEY, {"region": "us"})
    assert message.id == event["id"]
    assert arrived - committed < VISIBLE_WITHIN, f"seen {arrived - committed:.3f} s after the commit"


def test_stream__disconnected_then_resumed_with_last_event_id__every_missed_event_once_in_order(servers):
    writer, streamer = servers
    subscriber = Subscriber(streamer)
    subscriber.next("ready")
    for region in ("us", "de"):
        post_override(writer, region)
    _, seen = subscriber.next("change")
    subscriber.disconnect()  # after one event of two, and before three more
    for region in ("gb", "fr", "jp"):
        post_override(writer, region)

    resumed = Subscriber(streamer, last_event_id=seen.id)
    resumed.next("ready")
    missed = [resumed.next("change")[1].json() for _ in range(4)]
    afterwards = resumed.until_heartbeat()
    resumed.disconnect()

    assert seen.json()["context_match"] == {"region": "us"}
    assert [event["context_match"]["region"] for event in missed] == ["de", "gb", "fr", "jp"]
    assert len({event["id"] for event in missed} | {seen.id}) == 5
    assert [message.event for message in afterwards] == []  # nothing twice


def test_stream__served_by_uvicorn_under_asgi__subscriber_sees_an_override_made_through_another_server(token, tmp_path):
    writer = start_server(tmp_path, "writer")
    streamer = start_asgi_server(tmp_path, "asgi-streamer", DYNCONFIG_STREAM_HEARTBEAT="1")
    try:
        subscriber = Subscriber(streamer)
        _, ready = subscriber.next("ready")
        post_override(writer, "us")
        _, message = subscriber.next("change")
        quiet = subscriber.until_heartbeat()
        subscriber.disconnect()
    finally:
        writer.stop()
        streamer.stop()

    assert message.json()["context_match"] == {"region": "us"}
    assert ready.json() == {"keys": [KEY], "heartbeat": 1.0}
    assert quiet == []
