"""API tokens through a database outage (issue 17): a token looked up within the grace keeps
working, from this process's lookup or from the shared entry in Redis; an unknown or revoked
token is never accepted; `last_used_at` and Redis errors never fail a request.

Two kinds of test. In this process, with every query refused (the connection pointed at a port
where nothing listens), for the rules one by one. Over HTTP, against the real application
(gunicorn) on a PostgreSQL cluster and a Redis of this module's own, stopped and started for
real: reads under load through a stop and a start, an application started during the outage,
unknown and revoked tokens, and a write.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.test import override_settings

from access import authentication
from access.models import ApiToken
from access.services import api_token_revoke
from tests.access.conftest import PROBE_URL, assert_json_error, bearer
from tests.api.conftest import route_budget
from tests.databases import PrivateCluster, database_unreachable, free_port, private_postgres, private_redis
from tests.processes import PROJECT_ROOT, child_environment
from tests.servers import LocalServer

# Every request asks the database (nothing trusted from memory), as after the cache expired.
lookup_every_request = override_settings(DYNCONFIG_TOKEN_CACHE_SECONDS=0)


@pytest.fixture(autouse=True)
def fresh_outage_state(monkeypatch):
    """No shared cache skipped and no warning held back by an earlier test."""
    monkeypatch.setattr(authentication, "_shared_cache_down_until", 0.0)
    for warning in (
        authentication._warn_outage_authentication,
        authentication._warn_last_used_not_written,
        authentication._warn_shared_cache_unavailable,
    ):
        monkeypatch.setattr(warning, "_next_at", 0.0)


@contextmanager
def shared_cache_at(redis_url: str) -> Iterator[None]:
    """Django's default cache (the shared token entries) in the Redis at `redis_url`."""
    cache = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.25, "SOCKET_TIMEOUT": 0.25},
            "KEY_PREFIX": "dynconfig",
        }
    }
    with override_settings(CACHES=cache, REDIS_URL=redis_url):  # resets django.core.cache.caches
        yield


def assert_database_unavailable(response) -> None:
    assert_json_error(response, 503, "database_unavailable")
    assert response["Retry-After"] == "5"


# In this process: the rules ----------------------------------------------------------------

class TestInThisProcess:
    pytestmark = [
        pytest.mark.django_db(transaction=True),  # the connection is closed mid-test
        pytest.mark.urls("tests.access.urls"),  # PROBE_URL: guarded by scopes, needs no database
    ]

    @pytest.fixture(autouse=True)
    def no_anonymous_reads(self, settings):
        settings.DYNCONFIG_ANONYMOUS_READS = False  # as in production

    @lookup_every_request
    def test_token_read__database_unreachable_after_the_cache_expired__answers(self, api_client, make_token):
        token = make_token("planner", "values:read")
        assert api_client.get(PROBE_URL, **bearer(token)).status_code == 200

        with database_unreachable():
            statuses = [api_client.get(PROBE_URL, **bearer(token)).status_code for _ in range(3)]

        assert statuses == [200, 200, 200]

    @lookup_every_request
    def test_token_read__process_that_never_saw_the_token__authenticated_from_the_shared_entry(
        self, api_client, make_token, caplog
    ):
        token = make_token("planner", "values:read")
        assert api_client.get(PROBE_URL, **bearer(token)).status_code == 200
        authentication.forget_all_tokens()  # this process is now as new as one started now

        with database_unreachable(), caplog.at_level(logging.WARNING, logger="access.authentication"):
            response = api_client.get(PROBE_URL, **bearer(token))

        assert response.status_code == 200
        assert "from the shared cache" in caplog.text
        assert token not in caplog.text

    @lookup_every_request
    def test_token_read__last_lookup_longer_ago_than_the_grace__503_database_unavailable(self, api_client, make_token):
        token = make_token("planner", "values:read")
        with override_settings(DYNCONFIG_TOKEN_OUTAGE_GRACE=timedelta(seconds=0.5)):
            assert api_client.get(PROBE_URL, **bearer(token)).status_code == 200
            time.sleep(0.6)

            with database_unreachable():
                response = api_client.get(PROBE_URL, **bearer(token))

        assert_database_unavailable(response)

    @lookup_every_request
    def test_token_read__grace_zero__503_database_unavailable(self, api_client, make_token):
        token = make_token("planner", "values:read")
        with override_settings(DYNCONFIG_TOKEN_OUTAGE_GRACE=timedelta(0)):
            assert api_client.get(PROBE_URL, **bearer(token)).status_code == 200

            with database_unreachable():
                response = api_client.get(PROBE_URL, **bearer(token))

        assert_database_unavailable(response)

    def test_unknown_token__database_unreachable__503_never_accepted(self, api_client, make_token):
        never_looked_up = make_token("planner", "values:read")

        with database_unreachable():
            unknown = api_client.get(PROBE_URL, **bearer("dct_" + secrets.token_urlsafe(32)))
            valid_but_never_seen = api_client.get(PROBE_URL, **bearer(never_looked_up))

        assert_database_unavailable(unknown)
        assert_database_unavailable(valid_but_never_seen)
        assert authentication._known_tokens == {}

    def test_revoked_token__revoked_here_then_database_unreachable__refused(self, api_client, make_token):
        token = make_token("planner", "values:read")
        assert api_client.get(PROBE_URL, **bearer(token)).status_code == 200
        api_token_revoke(token=ApiToken.objects.get(name="planner"), actor="test", reason="rotated")

        with database_unreachable():
            during = api_client.get(PROBE_URL, **bearer(token))
        after = api_client.get(PROBE_URL, **bearer(token))

        assert_database_unavailable(during)
        assert_json_error(after, 401, "authentication_failed")

    @lookup_every_request
    def test_revoked_token__revoked_by_another_process_then_database_unreachable__refused(
        self, api_client, make_token
    ):
        token = make_token("planner", "values:read")
        assert api_client.get(PROBE_URL, **bearer(token)).status_code == 200  # remembered here
        revoke = subprocess.run(
            [sys.executable, "manage.py", "revoke_api_token", "planner", "--reason", "laptop stolen"],
            cwd=PROJECT_ROOT,
            env=child_environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert revoke.returncode == 0, revoke.stderr

        with database_unreachable():
            response = api_client.get(PROBE_URL, **bearer(token))

        # This process still remembers a lookup within the grace; the revocation reached it only
        # through the shared cache, which no longer vouches for the token.
        assert_database_unavailable(response)

    @lookup_every_request
    def test_token_read__redis_and_database_unreachable__this_process_memory_vouches(self, api_client, make_token):
        token = make_token("planner", "values:read")
        with private_redis() as redis_url, shared_cache_at(redis_url):
            assert api_client.get(PROBE_URL, **bearer(token)).status_code == 200
        # The Redis is gone now (the cache settings still point at it).
        with shared_cache_at(redis_url):
            with database_unreachable():
                remembered = api_client.get(PROBE_URL, **bearer(token))
                authentication.forget_all_tokens()
                forgotten = api_client.get(PROBE_URL, **bearer(token))

        assert remembered.status_code == 200
        assert_database_unavailable(forgotten)

    def test_token_read__redis_unreachable__database_answers_and_one_warning(self, api_client, make_token, caplog):
        token = make_token("planner", "values:read")
        with private_redis() as redis_url:
            pass  # gone: its port refuses connections
        with shared_cache_at(redis_url), lookup_every_request, caplog.at_level(logging.WARNING):
            statuses = [api_client.get(PROBE_URL, **bearer(token)).status_code for _ in range(3)]

        assert statuses == [200, 200, 200]
        assert caplog.text.count("Shared token cache unavailable") == 1

    @lookup_every_request
    def test_last_used_at__database_unreachable__requests_answer_with_one_warning(self, api_client, make_token, caplog):
        token = make_token("planner", "values:read")
        assert api_client.get(PROBE_URL, **bearer(token)).status_code == 200
        ApiToken.objects.update(last_used_at=None)
        authentication.forget_all_tokens()  # a new process: it must write last_used_at

        with database_unreachable(), caplog.at_level(logging.WARNING, logger="access.authentication"):
            statuses = [api_client.get(PROBE_URL, **bearer(token)).status_code for _ in range(3)]

        assert statuses == [200, 200, 200]
        assert caplog.text.count("last_used_at of API tokens not written") == 1

    def test_shared_entry__after_a_lookup__holds_no_token_and_expires_after_the_grace(self, api_client, make_token):
        from django_redis import get_redis_connection

        token = make_token("planner", "values:read")
        assert api_client.get(PROBE_URL, **bearer(token)).status_code == 200

        redis = get_redis_connection("default")
        keys = redis.keys(f"*access:token:v1:{authentication.token_hash(token)}")

        assert len(keys) == 1
        assert redis.keys(f"*{token}*") == []
        assert token.encode() not in redis.get(keys[0])
        assert 590 < redis.ttl(keys[0]) <= 600  # DYNCONFIG_TOKEN_OUTAGE_GRACE: PT10M by default


# Over HTTP, on a PostgreSQL cluster of this module's own ----------------------------------

# Long enough to see several token lookups fail (DYNCONFIG_TOKEN_CACHE_SECONDS is 1 in the app).
OUTAGE_SECONDS = 4.0
BEFORE_OUTAGE_SECONDS = 2.0
AFTER_OUTAGE_SECONDS = 3.0
READER_THREADS = 4
# gunicorn and Django starting on a loaded machine: generous, far below a hang.
STARTUP_TIMEOUT = 60.0
REQUEST_TIMEOUT = 10.0
# How long the application may take to use the database again after it restarts.
RECOVERY_TIMEOUT = 15.0
READ_PATHS = (
    "/api/v1/values/budget_thresholds/?region=us",
    "/api/v1/values/budget_thresholds/?region=de",
    "/api/v1/values/budget_thresholds/?region=us&industry=retail",
)
OVERRIDES_URL = "/api/v1/overrides/"
SOURCE_CREDENTIALS = {"MARKET_RESEARCH_API_KEY": "outage-test-key", "INDUSTRY_BENCHMARKS_API_KEY": "outage-test-key"}
# Variables of this test process that would point the application at the suite's servers.
NOT_INHERITED = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}


@dataclass
class OutageSite:
    """The private cluster, Redis and budget sources, and how to run the application on them."""

    cluster: PrivateCluster
    redis_url: str
    sources_url: str
    log_directory: Path

    def environment(self, **extra: str) -> dict[str, str]:
        inherited = {name: value for name, value in os.environ.items() if name not in NOT_INHERITED}
        return {
            **inherited,
            **SOURCE_CREDENTIALS,
            "DJANGO_SETTINGS_MODULE": "dynconfig_site.settings",
            "DYNCONFIG_ENV": "test",
            "DATABASE_URL": self.cluster.database_url,
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.redis_url,
            "MARKET_RESEARCH_API_URL": self.sources_url,
            "INDUSTRY_BENCHMARKS_API_URL": self.sources_url,
            "DYNCONFIG_ANONYMOUS_READS": "false",
            "DYNCONFIG_TOKEN_CACHE_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def manage(self, *arguments: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *arguments],
            cwd=PROJECT_ROOT,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"manage.py {' '.join(arguments)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def create_token(self, *scopes: str) -> str:
        """A new token, made as operators make them; returns it."""
        name = f"consumer-{secrets.token_hex(4)}"
        return self.create_named_token(name, *scopes)

    def create_named_token(self, name: str, *scopes: str) -> str:
        arguments = [argument for scope in scopes for argument in ("--scope", scope)]
        return self.manage("create_api_token", name, *arguments).strip()

    @contextmanager
    def app(self) -> Iterator[App]:
        """The application under gunicorn (one worker, four threads, as in production but
        smaller), on a free port; killed on leaving."""
        port = free_port()
        log = self.log_directory / f"gunicorn-{port}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "gunicorn", "dynconfig_site.wsgi",
                    "-c", "deploy/gunicorn.conf.py",
                    "--bind", f"127.0.0.1:{port}",
                    "--workers", "1", "--threads", str(READER_THREADS), "--worker-class", "gthread",
                    "--timeout", "30",
                ],
                cwd=PROJECT_ROOT,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its worker is killed with it (the process group)
            )
        app = App(process=process, url=f"http://127.0.0.1:{port}", log=log)
        try:
            app.wait_until_serving()
            yield app
        finally:
            app.stop()

    @contextmanager
    def outage(self) -> Iterator[None]:
        """PostgreSQL stopped (immediate, like a crash) for the block; started again after it."""
        self.cluster.stop()
        try:
            yield
        finally:
            self.cluster.start()


@dataclass
class App:
    process: subprocess.Popen
    url: str
    log: Path

    def get(self, path: str, token: str, session: requests.Session | None = None) -> requests.Response:
        caller = session or requests
        return caller.get(self.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=REQUEST_TIMEOUT)

    def send(self, method: str, path: str, token: str, body: dict) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return requests.request(method, self.url + path, json=body, headers=headers, timeout=REQUEST_TIMEOUT)

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"gunicorn exited with {self.process.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        pytest.fail(f"no /healthz within {STARTUP_TIMEOUT} s:\n{self.output()}")

    def wait_until_database_answers(self, token: str) -> None:
        """Until a read that needs the database (the overrides list) answers 200 again."""
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while self.get(OVERRIDES_URL, token).status_code != 200:
            if time.monotonic() > deadline:
                pytest.fail(f"the application did not use the database again within {RECOVERY_TIMEOUT} s")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # the group of the gunicorn we started: master and worker
        self.process.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[OutageSite]:
    """A migrated, synced DynConfig database on a cluster of its own, a Redis of its own, and the
    budget_thresholds sources answering from a local server."""
    with private_postgres() as cluster, private_redis() as redis_url, LocalServer() as sources:
        route_budget(sources)
        outage_site = OutageSite(cluster, redis_url, sources.url, tmp_path_factory.mktemp("outage"))
        outage_site.manage("migrate", "--noinput")
        outage_site.manage("sync_config", "--env", "test")
        yield outage_site


@dataclass
class ReadRecord:
    """What the readers got, by phase of the outage: (status or the error, whether a value came)."""

    phase: str = "before"
    results: dict[str, list[tuple[int | str, bool]]] = field(default_factory=dict)

    def add(self, outcome: int | str, has_value: bool) -> None:
        self.results.setdefault(self.phase, []).append((outcome, has_value))  # append: atomic

    def failures(self) -> dict[str, Counter]:
        return {
            phase: Counter(outcome for outcome, has_value in results if outcome != 200 or not has_value)
            for phase, results in self.results.items()
        }

    def counts(self) -> dict[str, int]:
        return {phase: len(results) for phase, results in self.results.items()}


def read_continuously(app: App, token: str, record: ReadRecord, stop: threading.Event, offset: int) -> None:
    session = requests.Session()
    index = offset
    while not stop.is_set():
        path = READ_PATHS[index % len(READ_PATHS)]
        index += 1
        try:
            response = app.get(path, token, session)
            has_value = response.status_code == 200 and response.json().get("value") is not None
            record.add(response.status_code, has_value)
        except (requests.RequestException, ValueError) as error:
            record.add(type(error).__name__, False)


def test_token_read__database_stopped_under_load__every_read_answers(site):
    token = site.create_token("values:read")
    with site.app() as app:
        for path in READ_PATHS:  # each context resolved once while the database is up
            assert app.get(path, token).status_code == 200, app.output()
        record = ReadRecord()
        stop = threading.Event()
        readers = [
            threading.Thread(target=read_continuously, args=(app, token, record, stop, offset), daemon=True)
            for offset in range(READER_THREADS)
        ]
        for reader in readers:
            reader.start()
        try:
            time.sleep(BEFORE_OUTAGE_SECONDS)
            with site.outage():
                record.phase = "outage"
                time.sleep(OUTAGE_SECONDS)
            record.phase = "after"
            time.sleep(AFTER_OUTAGE_SECONDS)
        finally:
            stop.set()
            for reader in readers:
                reader.join(timeout=REQUEST_TIMEOUT + 5)

        failures = record.failures()
        assert all(not failed for failed in failures.values()), (failures, record.counts(), app.output())
    counts = record.counts()
    assert set(counts) == {"before", "outage", "after"}
    assert counts["outage"] >= 20, counts  # under load: many lookups past the 1 s token cache


def test_token_read__app_started_during_the_outage__authenticated_from_redis(site):
    token = site.create_token("values:read")
    with site.app() as first:
        assert first.get(READ_PATHS[0], token).status_code == 200  # its lookup shared in Redis

    with site.outage(), site.app() as started_during_outage:
        responses = []
        for _ in range(5):  # over more than the app's token cache (1 s)
            responses.append(started_during_outage.get(READ_PATHS[0], token))
            time.sleep(0.3)

    assert [response.status_code for response in responses] == [200] * 5, started_during_outage.output()
    assert all(response.json()["value"] for response in responses)


def test_unknown_token__database_stopped__401_or_503_never_a_value(site):
    token = site.create_token("values:read")
    unknown = "dct_" + secrets.token_urlsafe(32)
    with site.app() as app:
        assert app.get(READ_PATHS[0], token).status_code == 200
        with site.outage():
            responses = [app.get(path, unknown) for path in READ_PATHS]

    for response in responses:
        assert response.status_code in (401, 503), response.text
        assert set(response.json()) == {"error"}
        assert response.json()["error"]["code"] in ("authentication_failed", "database_unavailable")


def test_revoked_token__revoked_while_up__refused_during_the_outage_and_after(site):
    token = site.create_named_token("revoked-consumer", "values:read")
    with site.app() as app:
        assert app.get(READ_PATHS[0], token).status_code == 200  # remembered there, and in Redis
        site.manage("revoke_api_token", "revoked-consumer", "--reason", "leaked")  # another process
        time.sleep(1.2)  # past the app's DYNCONFIG_TOKEN_CACHE_SECONDS: the documented delay

        with site.outage():
            during = [app.get(path, token) for path in READ_PATHS]
            time.sleep(1.2)  # and once more past it, still during the outage
            during += [app.get(path, token) for path in READ_PATHS]
        app.wait_until_database_answers(site.create_token("values:read"))
        after = app.get(READ_PATHS[0], token)

    assert {response.status_code for response in during} <= {401, 503}, [response.text for response in during]
    assert all("value" not in response.json() for response in during)
    assert after.status_code == 401


def test_override_create__database_stopped__503_database_unavailable_and_nothing_written(site):
    writer = site.create_token("values:write")
    override = {
        "value_type": "budget_thresholds",
        "context_match": {"region": "us"},
        "value": {"micro_threshold": 1, "small_threshold": 2, "medium_threshold": 3, "large_threshold": 4,
                  "enterprise_threshold": 5},
        "reason": "written during an outage",
    }
    with site.app() as app:
        before = app.get(OVERRIDES_URL, writer).json()
        history_before = app.get("/api/v1/values/budget_thresholds/history/", writer).json()

        with site.outage():
            read_during = app.get(READ_PATHS[0], writer)
            write_during = app.send("POST", OVERRIDES_URL, writer, override)
            fallback_during = app.send(
                "PUT", "/api/v1/values/budget_thresholds/fallback/", writer,
                {"value": override["value"], "reason": "written during an outage", "version": 1},
            )
        app.wait_until_database_answers(writer)
        after = app.get(OVERRIDES_URL, writer).json()
        history_after = app.get("/api/v1/values/budget_thresholds/history/", writer).json()

    assert read_during.status_code == 200  # the token itself works: the write needs the database
    for response in (write_during, fallback_during):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert response.headers["Content-Type"] == "application/json"
        error = response.json()["error"]
        assert (set(response.json()), set(error)) == ({"error"}, {"status", "code", "message"})
        assert (error["status"], error["code"]) == (503, "database_unavailable")
        assert "database is unavailable" in error["message"]
    assert after == before
    assert history_after == history_before
