"""dynconfig_client against a stand-in of the server (tests/servers.py LocalServer) for what the
real one cannot be made to do on demand: 5xx, 429 with Retry-After, hanging, a body that is not
an answer, a server without the batch endpoint. Retries are bounded and only for outages; 4xx
is never retried; the token never appears in a repr, an error or a log line."""

from __future__ import annotations

import itertools
import logging
import threading

import pytest

from dynconfig_client import DynConfigClient, DynConfigUnavailable, InvalidContextError, UnknownKeyError
from tests.servers import LocalServer

KEY = "budget_thresholds"
PATH = f"/api/v1/values/{KEY}/"
BATCH_PATH = "/api/v1/values/batch/"
TOKEN = "dcfg_secret_token_that_must_never_be_logged_0123456789"
VALUE = {"micro_threshold": 600}


def answer(key: str = KEY, context: dict | None = None, value: dict = VALUE) -> dict:
    return {
        "key": key,
        "context": context if context is not None else {"region": "us"},
        "value": value,
        "provenance": {"tier": "primary", "sources": [], "confidence": 0.9, "stale": False,
                       "fetched_at": "2030-01-01T00:00:00+00:00", "expires_at": "2030-01-01T00:05:00+00:00"},
    }


ANSWER_HEADERS = {"Content-Type": "application/json", "ETag": 'W/"abc"', "Cache-Control": "max-age=300"}


def statuses_then_answer(*statuses: int, headers: dict | None = None):
    """A route handler answering `statuses` in turn (error bodies), then the answer for good."""
    sequence = itertools.chain(statuses, itertools.repeat(200))
    lock = threading.Lock()

    def handler(request):
        with lock:
            status = next(sequence)
        if status == 200:
            return 200, ANSWER_HEADERS, answer()
        error = {"error": {"status": status, "code": "error", "message": f"status {status}"}}
        return status, {"Content-Type": "application/json", **(headers or {})}, error

    return handler


def make_client(server: LocalServer, **options) -> DynConfigClient:
    options = {"token": TOKEN, "timeout": 1.0, "retries": 2, "backoff": 0.01, "cooldown": 0, **options}
    return DynConfigClient(server.url, **options)


@pytest.fixture
def server():
    with LocalServer() as local:
        yield local


# Retries ---------------------------------------------------------------------------------------


def test_get__two_503s_then_an_answer__retried_and_served_from_server(server):
    server.route("GET", PATH, handler=statuses_then_answer(503, 503))

    with make_client(server) as client:
        value = client.get(KEY, region="us")

    assert value.served_from == "server"
    assert value.value == VALUE
    assert server.calls(PATH) == 3


def test_get__500_every_time__retries_bounded_then_the_default(server):
    server.route("GET", PATH, status=500, json={"error": {"status": 500, "code": "server_error", "message": "x"}})

    with make_client(server, retries=2) as client:
        value = client.get(KEY, default={"micro_threshold": 1}, region="us")

    assert value.served_from == "default"
    assert value.value == {"micro_threshold": 1}
    assert "HTTP 500" in value.error
    assert server.calls(PATH) == 3  # the attempt and 2 retries


def test_get__429_with_a_short_retry_after__waits_and_retries(server):
    server.route("GET", PATH, handler=statuses_then_answer(429, headers={"Retry-After": "1"}))

    with make_client(server) as client:
        value = client.get(KEY, region="us")

    assert value.served_from == "server"
    assert server.calls(PATH) == 2


def test_get__429_with_a_retry_after_beyond_the_cap__no_retry_and_server_left_alone_meanwhile(server):
    server.route("GET", PATH, handler=statuses_then_answer(429, headers={"Retry-After": "120"}))

    with make_client(server, cooldown=0) as client:
        first = client.get(KEY, default=1, region="us")
        second = client.get(KEY, default=2, region="us")

    assert (first.served_from, first.value) == ("default", 1)
    assert (second.served_from, second.value) == ("default", 2)
    assert "HTTP 429" in second.error and "not tried again" in second.error
    assert server.calls(PATH) == 1  # Retry-After 120 s: not retried, not asked again


@pytest.mark.parametrize(("status", "error_class"), [(404, UnknownKeyError), (400, InvalidContextError)])
def test_get__4xx__raises_with_the_servers_message_and_never_retries(server, status, error_class):
    server.route("GET", PATH, handler=statuses_then_answer(status, status, status))

    with make_client(server) as client, pytest.raises(error_class) as raised:
        client.get(KEY, default=0, region="us")

    assert raised.value.status == status
    assert raised.value.message == f"status {status}"
    assert server.calls(PATH) == 1


def test_get__server_hangs__each_attempt_times_out_then_the_default(server):
    server.route("GET", PATH, hang=True)

    with make_client(server, timeout=0.2, retries=1) as client:
        value = client.get(KEY, default=0, region="us")

    assert value.served_from == "default"
    assert "Timeout" in value.error
    assert server.calls(PATH) == 2


def test_get__server_down_within_the_cooldown__not_tried_again(server):
    url = server.url
    server.stop()

    with DynConfigClient(url, retries=0, cooldown=60) as client:
        first = client.get(KEY, default=0)
        second = client.get(KEY, default=0)

    assert "ConnectionError" in first.error
    assert "not tried again" in second.error


# Bodies that are not answers --------------------------------------------------------------------


def test_get__200_with_an_html_page_after_a_good_answer__serves_the_last_known_value(server):
    server.route("GET", PATH, headers=ANSWER_HEADERS, json=answer())
    with make_client(server, cache_ttl=0) as client:
        good = client.get(KEY, region="us")
        server.route("GET", PATH, body="<html>proxy error</html>", headers={"Content-Type": "text/html"})

        after = client.get(KEY, region="us")

    assert good.served_from == "server"
    assert after.served_from == "last_known"
    assert after.value == good.value
    assert "not JSON" in after.error


def test_get__nothing_known_and_no_default__raises_unavailable(server):
    server.route("GET", PATH, status=503, json={})

    with make_client(server, retries=0) as client, pytest.raises(DynConfigUnavailable) as raised:
        client.get(KEY, region="us")

    assert raised.value.key == KEY and raised.value.context == {"region": "us"}
    assert "HTTP 503" in raised.value.reason


# Batch --------------------------------------------------------------------------------------------


def test_get_many__sends_the_contracts_body_and_maps_results_in_order(server):
    import json

    results = [answer(context={"region": "us"}), answer(context={"region": "de"}, value={"micro_threshold": 7})]
    server.route("POST", BATCH_PATH, json={"results": results})

    with make_client(server) as client:
        values = client.get_many([(KEY, {"region": "us"}), (KEY, {"region": "de"}), (KEY, {"region": "us"})])

    body = json.loads(server.requests[0].body)
    assert body == {"reads": [{"key": KEY, "context": {"region": "us"}}, {"key": KEY, "context": {"region": "de"}}]}
    assert [value.value for value in values] == [VALUE, {"micro_threshold": 7}, VALUE]
    assert [value.served_from for value in values] == ["server", "server", "server"]
    assert server.calls() == 1


def test_get_many__server_without_the_batch_endpoint__reads_one_by_one(server):
    server.route("POST", BATCH_PATH, status=405, json={"error": {"status": 405, "code": "x", "message": "x"}})
    server.route("GET", PATH, headers=ANSWER_HEADERS, json=answer())

    with make_client(server) as client:
        values = client.get_many([(KEY, {"region": "us"})])

    assert values[0].served_from == "server"
    assert server.calls(BATCH_PATH) == 1 and server.calls(PATH) == 1


# Several clients on one store file, secrets ------------------------------------------------------


def test_store__ten_clients_in_threads_on_one_file__every_write_lands_and_is_read_back(server, tmp_path, caplog):
    server.route("GET", PATH, headers=ANSWER_HEADERS, json=answer())
    store = tmp_path / "shared.sqlite3"
    caplog.set_level(logging.WARNING, logger="dynconfig_client")
    clients = [make_client(server, cache_ttl=0, store_path=store) for _ in range(10)]

    def read_many(client: DynConfigClient) -> None:
        for index in range(10):
            client.get(KEY, region=f"r{index}")

    threads = [threading.Thread(target=read_many, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for client in clients:
        client.close()
    server.stop()

    with DynConfigClient(server.url, store_path=store, retries=0) as reader:
        values = [reader.get(KEY, region=f"r{index}") for index in range(10)]

    assert [value.served_from for value in values] == ["last_known"] * 10
    assert not [record.getMessage() for record in caplog.records if "store" in record.getMessage()]


def test_token__never_in_repr_errors_or_logs(server, caplog):
    server.route("GET", PATH, status=503, json={})
    caplog.set_level(logging.DEBUG)

    with make_client(server, retries=1) as client:
        text = repr(client)
        with pytest.raises(DynConfigUnavailable) as raised:
            client.get(KEY)

    assert "token='********'" in text
    assert TOKEN not in text and TOKEN[:8] not in text
    assert TOKEN not in str(raised.value)
    assert caplog.records  # the outage was logged
    assert not [record for record in caplog.records if TOKEN in record.getMessage()]
    assert server.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
