"""dynconfig_client with subscribe=True against the real application (runserver subprocesses on the
test's database and Redis): a change event drops the cached answers it affects, and only those;
a stream that is down leaves the client on its TTLs; the stream reconnects after the server
comes back and resumes with the events it missed.

Changes are made through the services in this process, committed (a transactional test): their
events go to Redis, and the server's stream passes them on, as for a change from any process."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from dynconfig_client import DynConfigClient, Value
from tests.client.conftest import TOKEN
from tests.values.app_servers import start_server
from tests.values.conftest import BUDGET
from values.models import ValueType
from values.services import override_create

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "budget_thresholds"
US_RETAIL = {"region": "us", "industry": "retail"}
DE_RETAIL = {"region": "de", "industry": "retail"}
LONG_TTL = 300.0  # far longer than the tests: an answer that changes before it is dropped by an event
WAIT = 10.0  # a missing event fails the test within this, rather than hanging it


def make_client(server, **options) -> DynConfigClient:
    options = {"token": TOKEN, "timeout": 2.0, "retries": 0, "cache_ttl": LONG_TTL, **options}
    return DynConfigClient(server.url, **options)


def override_for(region: str, small_threshold: int) -> dict:
    value = {**BUDGET, "small_threshold": small_threshold}
    override_create(
        value_type=ValueType.objects.get(key=KEY), value=value, reason="campaign", actor="ops", channel="test",
        context_match={"region": region},
    )  # fmt: skip
    return value


def eventually(read: Callable[[], Value], wanted: Callable[[Value], bool]) -> Value:
    deadline = time.monotonic() + WAIT
    while True:
        value = read()
        if wanted(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_subscribe__override_made__cached_answer_dropped_and_next_read_brings_the_new_value(app_server):
    with make_client(app_server, subscribe=True) as subscribed, make_client(app_server) as unsubscribed:
        assert subscribed.wait_subscribed(WAIT)
        for client in (subscribed, unsubscribed):
            client.get(KEY, **US_RETAIL)
            assert client.get(KEY, **US_RETAIL).served_from == "cache"

        overridden = override_for("us", 7000)
        after = eventually(lambda: subscribed.get(KEY, **US_RETAIL), lambda value: value.value == overridden)
        without_subscription = unsubscribed.get(KEY, **US_RETAIL)

    assert after.value == overridden
    assert after.served_from in ("server", "revalidated")
    assert after.provenance["tier"] == "override"
    assert (without_subscription.served_from, without_subscription.value) == ("cache", pytest.approx(BUDGET))


def test_subscribe__event_for_other_contexts__their_answers_stay_cached(app_server):
    with make_client(app_server, subscribe=True) as client:
        assert client.wait_subscribed(WAIT)
        client.get(KEY, **US_RETAIL)
        client.get(KEY, **DE_RETAIL)

        overridden = override_for("us", 7000)
        eventually(lambda: client.get(KEY, **US_RETAIL), lambda value: value.value == overridden)
        germany = client.get(KEY, **DE_RETAIL)

    assert (germany.served_from, germany.value) == ("cache", pytest.approx(BUDGET))


def test_subscribe__server_without_a_stream__reads_go_on_with_ttl_revalidation(budget_server, api_token, tmp_path):
    server = start_server(tmp_path, "no-redis", REDIS_URL="")  # its stream answers 503
    try:
        with make_client(server, subscribe=True, cache_ttl=0) as client:
            first = client.get(KEY, **US_RETAIL)
            second = client.get(KEY, **US_RETAIL)
            is_subscribed = client.wait_subscribed(0.5)
    finally:
        server.stop()

    assert is_subscribed is False
    assert (first.served_from, second.served_from) == ("server", "revalidated")
    assert second.value == pytest.approx(BUDGET)


def test_subscribe__server_restarted__reconnects_and_gets_the_event_made_while_it_was_down(
    budget_server, api_token, tmp_path
):
    server = start_server(tmp_path, "first")
    port = int(server.url.rsplit(":", 1)[1])
    with make_client(server, subscribe=True, backoff=0.05) as client:
        assert client.wait_subscribed(WAIT)
        client.get(KEY, **US_RETAIL)
        server.stop()
        deadline = time.monotonic() + WAIT
        while client.is_subscribed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not client.is_subscribed

        overridden = override_for("us", 7000)  # while no server streams
        while_down = client.get(KEY, **US_RETAIL)
        server = start_server(tmp_path, "second", port=port)
        try:
            assert client.wait_subscribed(WAIT)
            after = eventually(lambda: client.get(KEY, **US_RETAIL), lambda value: value.value == overridden)
        finally:
            server.stop()

    assert (while_down.served_from, while_down.value) == ("cache", pytest.approx(BUDGET))  # its TTL still runs
    assert after.value == overridden


def test_subscribe__client_closed__stream_thread_ends_and_no_longer_subscribed(app_server):
    client = make_client(app_server, subscribe=True)
    assert client.wait_subscribed(WAIT)

    client.close()  # the server's next heartbeat is 15 s away: the read must be woken, not waited out

    assert not client.is_subscribed
