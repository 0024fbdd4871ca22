"""dynconfig_client (the installed package, client/) against the real application: runserver in
a subprocess on the test database and Redis, anonymous reads off, budget sources on a local
server. Reads with provenance, the local cache, ETag revalidation, token auth, batch reads, and
the server stopped: last-known values (also from a new client on the same store file), defaults,
no exceptions; 20 threads at once. The client's requests are counted on the wire (a recording
transport adapter given as `session_factory`)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from dynconfig_client import (
    AuthenticationError,
    DynConfigClient,
    DynConfigUnavailable,
    InvalidContextError,
    UnknownKeyError,
    Value,
)
from tests.api.conftest import BUDGET_SOURCES
from tests.client.conftest import TOKEN
from tests.values.conftest import BUDGET

pytestmark = pytest.mark.django_db(transaction=True)  # the server process reads committed data

BUDGET_KEY = "budget_thresholds"
US_RETAIL = {"region": "us", "industry": "retail"}
DE_RETAIL = {"region": "de", "industry": "retail"}
US_FINANCE = {"region": "us", "industry": "finance"}
THREADS = 20
MULTIPLIERS_DEFAULT = {"retail": 1.0}


def make_client(server, wire, **options) -> DynConfigClient:
    # Short waits: once the server is stopped, connections are refused at once anyway.
    options = {"token": TOKEN, "timeout": 1.0, "retries": 1, "backoff": 0.05, **options}
    return DynConfigClient(server.url, session_factory=wire.session_factory(), **options)


def assert_budget_answer(value: Value, served_from: str) -> None:
    assert value.served_from == served_from, value
    assert value.key == BUDGET_KEY
    assert value.value == pytest.approx(BUDGET)
    assert value.provenance["tier"] in ("primary", "l1", "l2", "l3")
    assert value.provenance["stale"] is False
    assert value.fetched_at is not None and value.fetched_at.tzinfo is not None


# The server up --------------------------------------------------------------------------------


def test_get__server_up__answers_with_provenance_then_from_cache_without_a_request(app_server, wire):
    with make_client(app_server, wire) as client:
        first = client.get(BUDGET_KEY, **US_RETAIL)
        second = client.get(BUDGET_KEY, region="us", industry="retail")

    assert_budget_answer(first, "server")
    assert first.context == {"industry": "retail", "region": "us"}
    assert first.error is None
    assert first.provenance["tier"] == "primary"
    assert sorted(use["name"] for use in first.provenance["sources"]) == sorted(BUDGET_SOURCES)
    assert datetime.fromisoformat(first.provenance["expires_at"]) > datetime.now(timezone.utc)
    assert_budget_answer(second, "cache")
    assert second.value == first.value
    assert wire.methods() == ["GET"]  # the second read never left the process
    assert wire.exchanges[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_get__cache_ttl_over__revalidates_with_the_etag_and_the_server_answers_304(app_server, wire):
    with make_client(app_server, wire, cache_ttl=0) as client:
        first = client.get(BUDGET_KEY, **US_RETAIL)
        second = client.get(BUDGET_KEY, **US_RETAIL)

    assert_budget_answer(first, "server")
    assert_budget_answer(second, "revalidated")
    assert second.value == first.value
    assert second.fetched_at >= first.fetched_at
    assert [exchange.status for exchange in wire.exchanges] == [200, 304]
    assert "If-None-Match" not in wire.exchanges[0].headers
    assert wire.exchanges[1].headers["If-None-Match"].startswith('W/"')


def test_get__no_token_and_anonymous_reads_off__raises_authentication_error_even_with_a_default(
    app_server, wire
):
    with make_client(app_server, wire, token=None) as anonymous, make_client(app_server, wire) as with_token:
        with pytest.raises(AuthenticationError) as raised:
            anonymous.get(BUDGET_KEY, default={"fallback": True}, **US_RETAIL)
        allowed = with_token.get(BUDGET_KEY, **US_RETAIL)

    assert raised.value.status == 401
    assert raised.value.message  # the server's words
    assert_budget_answer(allowed, "server")
    assert wire.methods() == ["GET", "GET"]  # a 4xx is not retried


def test_get__unknown_key_or_bad_context__raises_the_servers_error_without_retrying(app_server, wire):
    with make_client(app_server, wire, defaults={"no_such_value": 1}) as client:
        with pytest.raises(UnknownKeyError) as unknown:
            client.get("no_such_value", default=0)
        with pytest.raises(InvalidContextError) as invalid:
            client.get(BUDGET_KEY, default=0, planet="mars")

    assert unknown.value.status == 404 and "no_such_value" in str(unknown.value)
    assert invalid.value.status == 400
    assert "planet" in str(invalid.value)  # the server's field message
    assert len(wire.exchanges) == 2


def test_get_many__some_cached__one_batch_request_for_the_rest_in_request_order(app_server, wire):
    with make_client(app_server, wire) as client:
        client.get(BUDGET_KEY, **US_RETAIL)
        values = client.get_many(
            [(BUDGET_KEY, DE_RETAIL), (BUDGET_KEY, US_RETAIL), ("budget_classification", US_FINANCE)]
        )
        again = client.get_many([(BUDGET_KEY, DE_RETAIL), ("budget_classification", US_FINANCE)])

    assert [value.served_from for value in values] == ["server", "cache", "server"]
    assert [value.context["region"] for value in values] == ["de", "us", "us"]
    assert values[2].key == BUDGET_KEY  # the alias, resolved by the server
    assert values[2].context["industry"] == "finance"
    for value in values:
        assert value.value == pytest.approx(BUDGET)
        assert value.provenance["tier"] in ("primary", "l1")
    assert [value.served_from for value in again] == ["cache", "cache"]
    assert wire.methods() == ["GET", "POST"]
    assert wire.exchanges[1].path == "/api/v1/values/batch/"


def test_get_many__one_read_of_an_unknown_key__raises_unknown_key_error(app_server, wire):
    with make_client(app_server, wire) as client, pytest.raises(UnknownKeyError):
        client.get_many([(BUDGET_KEY, US_RETAIL), ("no_such_value", {})])


# The server stopped ---------------------------------------------------------------------------


def test_server_stopped__known_values_last_known_others_defaults_and_nothing_raises(app_server, wire, tmp_path):
    store = tmp_path / "dynconfig.sqlite3"
    defaults = {"industry_multipliers": MULTIPLIERS_DEFAULT}
    with make_client(app_server, wire, store_path=store, defaults=defaults) as client:
        known = client.get(BUDGET_KEY, **US_RETAIL)
        app_server.stop()

        cached = client.get(BUDGET_KEY, **US_RETAIL)  # still fresh: the outage is not noticed
        unknown_with_default = client.get(BUDGET_KEY, default={"micro_threshold": 1}, **DE_RETAIL)
        unknown_from_defaults = client.get("industry_multipliers", region="us")
        batch = client.get_many([(BUDGET_KEY, US_RETAIL), ("industry_multipliers", {"region": "de"})])

    # A new client (a restarted service) on the same store file, the server still down.
    with make_client(app_server, wire, store_path=store, defaults=defaults) as restarted:
        persisted = restarted.get(BUDGET_KEY, **US_RETAIL)
        persisted_in_batch = restarted.get_many([(BUDGET_KEY, US_RETAIL), ("industry_multipliers", {})])
        with pytest.raises(DynConfigUnavailable) as nothing:  # neither known nor defaulted: documented
            restarted.get(BUDGET_KEY, **US_FINANCE)

    assert_budget_answer(known, "server")
    assert_budget_answer(cached, "cache")
    assert unknown_with_default.served_from == "default"
    assert unknown_with_default.value == {"micro_threshold": 1}
    assert unknown_with_default.provenance is None
    assert "ConnectionError" in unknown_with_default.error
    assert unknown_from_defaults.served_from == "default"
    assert unknown_from_defaults.value == MULTIPLIERS_DEFAULT
    assert [value.served_from for value in batch] == ["cache", "default"]

    assert_budget_answer(persisted, "last_known")
    assert persisted.value == known.value
    assert persisted.provenance == known.provenance
    assert persisted.error  # why the server was not used
    assert abs((persisted.fetched_at - known.fetched_at).total_seconds()) < 1
    assert [value.served_from for value in persisted_in_batch] == ["last_known", "default"]
    assert nothing.value.key == BUDGET_KEY and "unavailable" in str(nothing.value)
    assert TOKEN not in str(nothing.value)


def test_server_stopped__expired_answer_in_memory_only__served_as_last_known(app_server, wire):
    with make_client(app_server, wire, cache_ttl=0, cooldown=0) as client:
        known = client.get(BUDGET_KEY, **US_RETAIL)
        app_server.stop()
        sent_before = len(wire.exchanges)

        after = client.get(BUDGET_KEY, **US_RETAIL)

    assert_budget_answer(after, "last_known")
    assert after.value == known.value
    assert "ConnectionError" in after.error
    tried = wire.exchanges[sent_before:]
    assert len(tried) == 2  # the attempt and its one retry
    assert all(exchange.status is None for exchange in tried)


# Threads ----------------------------------------------------------------------------------------


def read_in_threads(client: DynConfigClient) -> list[Value]:
    start = threading.Barrier(THREADS)
    values: list[Value | BaseException] = [RuntimeError("never read")] * THREADS

    def read(index: int) -> None:
        start.wait(timeout=30)
        try:
            values[index] = client.get(BUDGET_KEY, **US_RETAIL)
        except BaseException as error:  # noqa: BLE001 (reported below)
            values[index] = error

    threads = [threading.Thread(target=read, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    errors = [value for value in values if isinstance(value, BaseException)]
    assert not errors, errors
    return values  # type: ignore[return-value]


def test_get__20_threads_before_and_after_the_server_stops__the_same_answer_for_all(app_server, wire, tmp_path):
    with make_client(app_server, wire, cache_ttl=0, store_path=tmp_path / "store.sqlite3") as client:
        up = read_in_threads(client)
        app_server.stop()
        down = read_in_threads(client)

    assert {value.served_from for value in up} <= {"server", "revalidated"}
    assert {value.served_from for value in down} == {"last_known"}
    for value in up + down:
        assert value.value == pytest.approx(BUDGET)
    assert len({repr(value.value) for value in up + down}) == 1
