"""The record of source calls and the health computed from it (sources.health).

Each outcome is produced by a real call through `call_source` to a local server (or refused by
the real breaker or rate limit), and read back from the rows it wrote. Then: a database that
fails does not fail the call; old rows are pruned; the health rules on recorded calls.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from sources import health
from sources.adapters.base import SourceCall, SourceConfig, SourceError
from sources.breaker import breaker_force_open, breaker_reset, shared_redis
from sources.calls import call_source
from sources.health import DEGRADED, DOWN, HEALTHY, call_record, source_health
from sources.models import SourceCall as SourceCallRow
from sources.selectors import source_call_series
from tests.servers import LocalServer

pytestmark = pytest.mark.django_db

PATH = "/v1/rates"
ANSWER = {"rate": 0.05}


@pytest.fixture(autouse=True)
def redis_answers(monkeypatch):
    monkeypatch.setattr(shared_redis, "_down_until", 0.0)


@pytest.fixture
def name():
    """A source name of its own: a fresh breaker and rate limit in the shared Redis."""
    source_name = f"health_{uuid.uuid4().hex[:10]}"
    yield source_name
    breaker_reset(source_name)


def make_source(server_url: str, name: str, **settings) -> SourceConfig:
    defaults = dict(
        requests_per_minute=60_000,
        burst_allowance=1_000,
        breaker_failure_threshold=50,
        connect_timeout=1.0,
        read_timeout=5.0,
        request_template={"method": "GET", "path": PATH},
    )
    return SourceConfig(name=name, kind="http_json", base_url=server_url, **{**defaults, **settings})


def call(source: SourceConfig, budget: float = 3.0) -> str:
    """"ok", or the kind of the SourceError the call raised."""
    try:
        call_source(SourceCall(source=source, value_type="test", context={}, timeout_budget=budget))
    except SourceError as error:
        return error.kind.value
    return "ok"


def recorded(name: str) -> list[tuple[str, str]]:
    """(outcome, reason) of each recorded attempt at `name`, oldest first."""
    assert health.recorder.flush()
    return list(SourceCallRow.objects.filter(source_name=name).order_by("called_at", "id").values_list("outcome", "reason"))


def outcomes(name: str) -> list[str]:
    return [outcome for outcome, _ in recorded(name)]


# Outcomes, through real calls ---------------------------------------------------------------------


def test_call__source_answers__one_success_row_with_its_time(local_server, name):
    local_server.route("GET", PATH, json=ANSWER)

    assert call(make_source(local_server.url, name)) == "ok"

    assert health.recorder.flush()
    [row] = SourceCallRow.objects.filter(source_name=name)
    assert (row.outcome, row.reason) == ("success", "")
    assert row.seconds > 0
    assert row.called_at <= timezone.now()


def test_call__server_error__each_attempt_recorded_as_http_error(local_server, name):
    local_server.route("GET", PATH, status=500, json={"error": "boom"})

    assert call(make_source(local_server.url, name)) == "retryable"

    assert recorded(name) == [("http_error", "server error (HTTP 500)")] * 3  # the retries too


def test_call__connection_refused__recorded_as_http_error(name):
    with LocalServer() as server:
        url = server.url  # stopped on leaving: the port refuses connections

    assert call(make_source(url, name)) == "retryable"

    assert set(recorded(name)) == {("http_error", "connection failed")}


def test_call__answer_slower_than_the_budget__recorded_as_timeout(local_server, name):
    local_server.route("GET", PATH, json=ANSWER, delay=2.0)

    assert call(make_source(local_server.url, name), budget=0.3) == "retryable"

    [(outcome, reason)] = recorded(name)
    assert outcome == "timeout"
    assert "timed out" in reason


def test_call__html_instead_of_json__recorded_as_invalid_data(local_server, name):
    local_server.route("GET", PATH, body="<html><body>Maintenance</body></html>", headers={"Content-Type": "text/html"})

    assert call(make_source(local_server.url, name)) == "invalid_data"

    [(outcome, reason)] = recorded(name)
    assert outcome == "invalid_data"
    assert "not JSON" in reason


@pytest.mark.parametrize("headers", [{"Retry-After": "0"}, {}], ids=["with_retry_after", "without_retry_after"])
def test_call__provider_answers_429__recorded_as_rate_limited(local_server, name, headers):
    local_server.route("GET", PATH, status=429, json={"error": "slow down"}, headers=headers)

    assert call(make_source(local_server.url, name)) == "retryable"

    assert set(outcomes(name)) == {"rate_limited"}


def test_call__own_rate_limit_spent__refusal_recorded_as_rate_limited(local_server, name):
    local_server.route("GET", PATH, json=ANSWER)
    source = make_source(local_server.url, name, requests_per_minute=1, burst_allowance=1)

    assert [call(source, budget=0.5), call(source, budget=0.5)] == ["ok", "rate_limited"]

    assert outcomes(name) == ["success", "rate_limited"]
    assert local_server.calls(PATH) == 1


def test_call__breaker_open__refusal_recorded_as_breaker_open(local_server, name):
    local_server.route("GET", PATH, json=ANSWER)
    breaker_force_open(name, 60)

    assert call(make_source(local_server.url, name)) == "breaker_open"

    [(outcome, reason)] = recorded(name)
    assert outcome == "breaker_open"
    assert "breaker" in reason
    assert local_server.calls(PATH) == 0


def test_call__credential_variable_unset__recorded_as_disabled(local_server, name, monkeypatch):
    monkeypatch.delenv("HEALTH_TEST_UNSET_KEY", raising=False)
    local_server.route("GET", PATH, json=ANSWER)
    source = make_source(local_server.url, name, credential_variables={"api_key": "HEALTH_TEST_UNSET_KEY"})

    assert call(source) == "disabled"

    assert outcomes(name) == ["disabled"]


# Failing open, pruning ----------------------------------------------------------------------------


class Rollback(Exception):
    """Leaves a transaction block by rolling it back."""


def test_call__caller_transaction_broken__call_answers_and_is_recorded_anyway(local_server, name):
    local_server.route("GET", PATH, json=ANSWER)
    source = make_source(local_server.url, name)

    with pytest.raises(Rollback), transaction.atomic():
        # A failed statement aborts the transaction: PostgreSQL refuses every query after it.
        with pytest.raises(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table_for_health")
        result = call_source(SourceCall(source=source, value_type="test", context={}, timeout_budget=3.0))
        raise Rollback

    assert result.data == ANSWER
    assert local_server.calls(PATH) == 1
    assert outcomes(name) == ["success"]  # written by the recorder, outside the caller's transaction


def test_call_record__database_refuses_the_row__warns_and_does_not_raise(name, caplog):
    with pytest.raises(Rollback), transaction.atomic():
        with pytest.raises(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table_for_health")
        with caplog.at_level(logging.WARNING, logger="sources.health"):
            call_record(source_name=name, outcome="success", seconds=0.1)
        raise Rollback

    assert any(f"call to {name} not recorded" in record.getMessage() for record in caplog.records)


def test_call__inside_a_healthy_transaction__record_leaves_it_usable(local_server, name):
    local_server.route("GET", PATH, json=ANSWER)

    with transaction.atomic():
        assert call(make_source(local_server.url, name)) == "ok"
        assert outcomes(name) == ["success"]  # the transaction goes on working


def test_call_record__prune_due__rows_past_retention_deleted(name, monkeypatch, settings):
    settings.DYNCONFIG_HEALTH_RETENTION = "P1D"
    old = SourceCallRow.objects.create(
        source_name=name, outcome="success", seconds=0.1, called_at=timezone.now() - timedelta(days=2)
    )
    kept = SourceCallRow.objects.create(
        source_name=name, outcome="success", seconds=0.1, called_at=timezone.now() - timedelta(hours=12)
    )
    monkeypatch.setattr(health, "_next_prune_at", 0.0)

    call_record(source_name=name, outcome="success", seconds=0.1)

    remaining = set(SourceCallRow.objects.filter(source_name=name).values_list("id", flat=True))
    assert old.id not in remaining and kept.id in remaining and len(remaining) == 2


def test_call_record__prune_not_due__old_rows_kept(name, monkeypatch):
    old = SourceCallRow.objects.create(
        source_name=name, outcome="success", seconds=0.1, called_at=timezone.now() - timedelta(days=30)
    )
    monkeypatch.setattr(health, "_next_prune_at", float("inf"))

    call_record(source_name=name, outcome="success", seconds=0.1)

    assert SourceCallRow.objects.filter(id=old.id).exists()


# The rules, on recorded calls ---------------------------------------------------------------------


def record(name: str, *outcomes_and_seconds: tuple[str, float], minutes_ago: float = 0.0) -> None:
    at = timezone.now() - timedelta(minutes=minutes_ago)
    for index, (outcome, seconds) in enumerate(outcomes_and_seconds):
        SourceCallRow.objects.create(
            source_name=name,
            outcome=outcome,
            seconds=seconds,
            reason="" if outcome == "success" else "server error (HTTP 503)",
            called_at=at + timedelta(milliseconds=index),
        )


def test_source_health__no_calls__healthy_saying_nothing_is_known(name):
    result = source_health(name)

    assert result.status == HEALTHY
    assert result.reasons == ("no calls in the last 15 minutes: nothing known against it",)
    assert (result.calls, result.error_rate, result.mean_seconds) == (0, None, None)


def test_source_health__fast_successes__healthy_with_latency(name):
    record(name, *[("success", 0.1)] * 4, ("success", 0.3))

    result = source_health(name)

    assert (result.status, result.reasons) == (HEALTHY, ())
    assert (result.calls, result.errors, result.error_rate) == (5, 0, 0.0)
    assert result.mean_seconds == pytest.approx(0.14)
    assert (result.p50_seconds, result.p95_seconds) == (0.1, 0.3)
    assert result.last_success_at is not None and result.last_failure_at is None


def test_source_health__last_three_failed__down_with_the_latest_reason(name):
    record(name, ("success", 0.1), ("http_error", 0.01), ("http_error", 0.01), ("timeout", 3.0))

    result = source_health(name)

    assert result.status == DOWN
    assert result.reasons[0] == "its last 3 calls failed, the latest with timeout: server error (HTTP 503)"
    assert result.last_failure_reason == "timeout: server error (HTTP 503)"


def test_source_health__mean_of_successes_over_a_second__degraded(name):
    record(name, ("success", 1.2), ("success", 1.1))

    result = source_health(name)

    assert result.status == DEGRADED
    assert result.reasons == ("its recent successful calls took 1.15 s on average, over 1 s",)


def test_source_health__error_rate_over_a_fifth__degraded(name):
    record(name, *[("success", 0.1)] * 5, *[("http_error", 0.1)] * 3, ("success", 0.1), ("success", 0.1))

    result = source_health(name)

    assert result.status == DEGRADED
    assert result.reasons == ("3 of its last 10 calls failed (30%, over 20%)",)


def test_source_health__error_rate_at_a_fifth__healthy(name):
    # 2 of the last 10: not over 20 %.
    record(name, *[("success", 0.1)] * 7, ("http_error", 0.1), ("success", 0.1), ("http_error", 0.1))

    result = source_health(name)

    assert (result.calls, result.errors) == (10, 2)
    assert result.status == HEALTHY


def test_source_health__failures_older_than_the_window__not_counted(name):
    record(name, *[("http_error", 0.1)] * 5, minutes_ago=20)

    result = source_health(name)

    assert result.status == HEALTHY
    assert result.calls == 0
    assert result.last_failure_at is not None  # still shown: the record goes further back


def test_source_health__restored_after_failures__healthy_once_failures_leave_the_last_ten(name):
    record(name, *[("http_error", 0.1)] * 3, minutes_ago=1)
    record(name, *[("success", 0.1)] * 7)
    assert source_health(name).status == DEGRADED  # 3 of 10 failed

    record(name, ("success", 0.1))

    assert source_health(name).status == HEALTHY  # 2 of the last 10


def test_source_health__breaker_open__down(name):
    record(name, ("success", 0.1))
    breaker_force_open(name, 60)

    result = source_health(name)

    assert result.status == DOWN
    assert result.breaker.state == "open"
    assert result.reasons[0].startswith("its breaker is open until")


def test_source_health__breaker_half_open__degraded(name):
    record(name, ("success", 0.1))
    breaker_force_open(name, 0.001)
    time.sleep(0.01)  # past its time: the next call is a trial

    result = source_health(name)

    assert result.status == DEGRADED
    assert result.breaker.state == "half_open"


# The series behind the dashboard ------------------------------------------------------------------


def test_source_call_series__calls_in_two_buckets__counted_per_bucket_with_empty_ones(name):
    # Just under 30 minutes ago: three buckets of 10 minutes, however long the test takes.
    since = timezone.now() - timedelta(minutes=30) + timedelta(seconds=30)
    for minutes_ago, outcome, seconds in [(25, "success", 0.2), (25, "http_error", 0.0), (5, "success", 0.4)]:
        SourceCallRow.objects.create(
            source_name=name, outcome=outcome, seconds=seconds, called_at=timezone.now() - timedelta(minutes=minutes_ago)
        )

    series = source_call_series(name, since, 600)

    assert [bucket["at"] for bucket in series] == [since, since + timedelta(minutes=10), since + timedelta(minutes=20)]
    assert [(bucket["calls"], bucket["errors"]) for bucket in series] == [(2, 1), (0, 0), (1, 0)]
    assert [bucket["error_rate"] for bucket in series] == [0.5, None, 0.0]
    assert [(bucket["p50"], bucket["p95"]) for bucket in series] == [(0.2, 0.2), (None, None), (0.4, 0.4)]


def test_source_call_series__bucket_under_a_second__refused(name):
    with pytest.raises(ValueError):
        source_call_series(name, timezone.now() - timedelta(hours=1), 0)
