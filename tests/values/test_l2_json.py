"""L2 holds an answer's JSON (Answer.as_json), the read API's very body: a hit decodes it once
and keeps the bytes, so serving it serializes nothing. Redis is real."""

from __future__ import annotations

from datetime import timedelta

import redis
from django.conf import settings
from django.test import override_settings
from django_redis import get_redis_connection
from rest_framework.renderers import JSONRenderer

from core.answers import Answer, answer_json
from tests.values.test_expiry import an_answer
from values.cache import l1, l2


def test_l2_set__answer__stored_as_its_json_marked_l2(engine):
    key = "dynconfig:test:json"
    answer = an_answer(expires_in=timedelta(seconds=30))

    l2.set(key, answer)

    stored = get_redis_connection("default").get(key)
    assert stored == answer.found_in("l2").as_json()


def test_l2_get__hit__same_answer_carrying_the_stored_bytes(engine):
    key = "dynconfig:test:json-hit"
    answer = an_answer(expires_in=timedelta(seconds=30))
    l2.set(key, answer)

    found = l2.get(key)

    assert found == answer.found_in("l2")
    assert found.as_json() is found.as_json()  # the bytes read, not made again
    assert found.as_json() == answer.found_in("l2").as_json()
    assert found.as_dict() == answer.found_in("l2").as_dict()
    assert found.version() == answer.version()


def test_l2_get__json_past_its_expiry_written_late_with_a_long_lifetime__a_miss(engine):
    key = "dynconfig:test:json-late-write"
    expired = an_answer(expires_in=-timedelta(seconds=1))
    get_redis_connection("default").set(key, expired.found_in("l2").as_json(), px=60_000)

    assert l2.get(key) is None


def test_l2_get__entry_not_an_answers_json__a_miss(engine):
    key = "dynconfig:test:garbage"
    get_redis_connection("default").set(key, b"\x80\x05not json", px=60_000)
    get_redis_connection("default").set(f"{key}:2", b'{"key": 1}', px=60_000)

    assert l2.get(key) is None
    assert l2.get(f"{key}:2") is None


def test_l1_set__answer__serialized_once_when_stored(engine):
    answer = an_answer(expires_in=timedelta(seconds=30))

    l1.set("dynconfig:test:l1", answer, 30)

    stored = l1.get("dynconfig:test:l1")
    assert "_json" in stored.__dict__  # made when it entered L1, not on the first request
    assert Answer.from_json(stored.as_json()) == stored


def test_answer_json__non_ascii_and_line_separators__as_drfs_json_renderer_makes_them():
    data = {"name": "Zürich \u2028 \u2029 ☃", "amount": 4892.038, "count": 3, "none": None, "list": [1.5, "x"]}

    assert answer_json(data) == JSONRenderer().render(data)


def test_l1_copy_of_an_l2_hit__json_retiered_byte_for_byte_as_made_from_scratch(engine):
    key = "dynconfig:test:json-retier"
    l2.set(key, an_answer(expires_in=timedelta(seconds=30)))
    found = l2.get(key)

    in_l1 = found.found_in("l1")

    assert in_l1.provenance.tier == "l1"
    assert in_l1.as_json() == answer_json(in_l1.as_dict())
    assert b'"tier":"l1"' in in_l1.as_json()


def _kill_this_tests_redis_connections() -> None:
    """Close this test's connections to its Redis database, as a Redis `timeout` or a proxy
    closes idle ones (only this database's: other runs share the server)."""
    killer = redis.Redis.from_url(settings.REDIS_URL)
    own_id, database = killer.client_id(), killer.connection_pool.connection_kwargs.get("db", 0)
    ours = [c["id"] for c in killer.client_list() if int(c["db"]) == database and int(c["id"]) != own_id]
    assert ours
    for client_id in ours:
        killer.client_kill_filter(_id=client_id)


def test_l2_get__its_kept_connection_closed_by_redis__read_again_on_a_new_connection(engine):
    key = "dynconfig:test:json-reconnect"
    answer = an_answer(expires_in=timedelta(seconds=60))
    l2.set(key, answer)
    assert l2.get(key) == answer.found_in("l2")  # this thread's GET connection is made now

    _kill_this_tests_redis_connections()

    assert l2.get(key) == answer.found_in("l2")  # on a new connection, without skipping L2
    assert l2.is_enabled


def test_l2_get__redis_gone__fails_open_and_skips_l2_a_while(engine, monkeypatch):
    key = "dynconfig:test:json-gone"
    answer = an_answer(expires_in=timedelta(seconds=60))
    l2.set(key, answer)
    assert l2.get(key) == answer.found_in("l2")
    # Redis moved away: every connection to the old address is refused from now on.
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0", CACHES=_caches_at("redis://127.0.0.1:1/0")):
        assert l2.get(key) is None  # refused: L2 fails open
        assert not l2.is_enabled  # and is skipped for L2_RETRY_AFTER
    monkeypatch.setattr(l2, "_down_until", 0.0)  # as L2_RETRY_AFTER later
    assert l2.get(key) == answer.found_in("l2")  # back at its address


def _caches_at(location: str) -> dict:
    return {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": location,
        }
    }
