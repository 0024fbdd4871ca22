"""Upgrading: a database made by the previous landed main migrates with the current code and
serves its values unchanged.

tests/fixtures/previous_main.sql is that database (made by the previous main's own code:
tests/fixtures/make_previous_main_dump.sh, which says when to re-run it), and
tests/fixtures/previous_main.json what the previous main answered from it, with its API token.
The test loads the dump into a database of its own, runs the current `manage.py migrate`, and
reads back through public commands and the HTTP API only, each in a subprocess, so that it keeps
working whatever app a model lives in. Data is compared by SQL on the tables, whose names are
kept when models move between apps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.databases import private_redis
from tests.processes import PROJECT_ROOT, child_environment

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DUMP = FIXTURES / "previous_main.sql"
PREVIOUS_ANSWERS = json.loads((FIXTURES / "previous_main.json").read_text())
SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
# migrate and Django starting, on a loaded 2-core machine: generous, far below a hang.
COMMAND_TIMEOUT = 180.0
RESULT_MARK = "RESULT "

# Rows that no migration and no read may change: the previous main's columns of each table (a
# later column may be added; the tables keep their names when models move between apps). Tokens
# are compared without last_used_at, which a read sets.
UNCHANGED_COLUMNS = {
    "values_auditentry": "id, created_at, actor, channel, action, object_type, object_id, object_repr, before, after, reason",
    "values_override": "id, value_type_id, context_match, value, reason, author, starts_at, expires_at, version, created_at, updated_at",
    "values_resolvedvalue": "id, value_type_id, context_key, context, value, provenance, fingerprint, fetched_at, expires_at",
    "values_valuerecord": "id, value_type_id, context_key, context, value, provenance, fetched_at",
    "access_apitoken": "id, name, prefix, token_hash, scopes, created_by, created_at, revoked_at",
}

# Run in the migrated database's `manage.py shell`: the API through Django's test client (no
# server), with the previous main's token, a wrong one and none (anonymous reads are off).
API_READS = f"""
import json, os
from django.test import Client

client = Client()
token = os.environ["PREVIOUS_MAIN_TOKEN"]

def get(path, token=None):
    headers = {{"HTTP_AUTHORIZATION": f"Bearer {{token}}"}} if token else {{}}
    response = client.get(path, **headers)
    is_json = response.get("Content-Type", "").startswith("application/json")
    return {{"status": response.status_code, "body": response.json() if is_json else None}}

print({RESULT_MARK!r} + json.dumps({{
    "value": get("/api/v1/values/budget_thresholds/?region=us", token),
    "overrides": get("/api/v1/overrides/?key=budget_thresholds", token),
    "history": get("/api/v1/values/budget_thresholds/history/?region=us", token),
    "wrong_token": get("/api/v1/values/budget_thresholds/?region=us", token[:-4] + "xxxx"),
    "no_token": get("/api/v1/values/budget_thresholds/?region=us"),
}}))
"""


@pytest.fixture
def previous_main_database(db):  # `db`: child_environment checks that the suite's database is a test one
    """The dump loaded into a new database of this run; dropped at the end."""
    name = f"test_previous_main_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**SERVER, dbname="postgres", autocommit=True) as administration:
        administration.execute(f'CREATE DATABASE "{name}"')
    try:
        subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", SERVER["host"], "-p", str(SERVER["port"]),
             "-U", SERVER["user"], "-d", name, "-f", str(DUMP)],
            check=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
        )
        yield name
    finally:
        with psycopg.connect(**SERVER, dbname="postgres", autocommit=True) as administration:
            administration.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rows(database: str) -> dict[str, list[tuple]]:
    with psycopg.connect(**SERVER, dbname=database) as connection:
        return {
            table: connection.execute(f"SELECT {columns} FROM {table} ORDER BY id").fetchall()
            for table, columns in UNCHANGED_COLUMNS.items()
        }


def stored_value(database: str, context_key: str):
    with psycopg.connect(**SERVER, dbname=database) as connection:
        return connection.execute(
            "SELECT r.value FROM values_resolvedvalue r JOIN values_valuetype t ON t.id = r.value_type_id"
            " WHERE t.key = 'budget_thresholds' AND r.context_key = %s",
            [context_key],
        ).fetchone()[0]


def recorded_values(database: str, context_key: str) -> list:
    """The history of budget_thresholds in one context, newest first."""
    with psycopg.connect(**SERVER, dbname=database) as connection:
        return [
            value
            for (value,) in connection.execute(
                "SELECT r.value FROM values_valuerecord r JOIN values_valuetype t ON t.id = r.value_type_id"
                " WHERE t.key = 'budget_thresholds' AND r.context_key = %s ORDER BY r.fetched_at DESC, r.id DESC",
                [context_key],
            )
        ]


def manage(environment: dict[str, str], *arguments: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        check=False, cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
    )
    assert result.returncode == 0, f"manage.py {' '.join(arguments)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def common_fields(answer: dict, previous: dict) -> dict:
    """The answer's provenance cut to the fields the previous main had (new ones were added)."""
    return {**answer, "provenance": {name: answer["provenance"][name] for name in previous["provenance"]}}


def test_migrate__database_made_by_previous_main__serves_its_values_unchanged(previous_main_database):
    database = previous_main_database
    before = rows(database)
    assert before["values_auditentry"] and before["values_override"] and before["access_apitoken"]
    assert len(before["values_valuerecord"]) == 2 and len(before["values_resolvedvalue"]) == 1
    previous_us = PREVIOUS_ANSWERS["answers"]["region=us"]
    previous_eu = PREVIOUS_ANSWERS["answers"]["region=eu"]
    assert previous_us["value"] == stored_value(database, "region=us")  # the fixture is consistent

    with private_redis() as redis_url:  # its caches, breakers and token cache start empty
        environment = child_environment(
            DATABASE_URL=f"postgres://{SERVER['user']}@{SERVER['host']}:{SERVER['port']}/{database}",
            REDIS_URL=redis_url,
            CELERY_BROKER_URL=redis_url,  # a refresh a read queues goes nowhere else
            DYNCONFIG_ANONYMOUS_READS="false",
            PREVIOUS_MAIN_TOKEN=PREVIOUS_ANSWERS["api_token"],
        )
        manage(environment, "migrate", "--no-input")
        migrated = rows(database)
        plan = manage(environment, "showmigrations", "--plan").splitlines()
        us = json.loads(manage(environment, "get_value", "budget_thresholds", "--context", "region=us", "--json"))
        eu = json.loads(manage(environment, "get_value", "budget_thresholds", "--context", "region=eu", "--json"))
        api_output = manage(environment, "shell", "-c", API_READS)
        api = json.loads(next(line for line in api_output.splitlines() if line.startswith(RESULT_MARK))[len(RESULT_MARK):])
        after = rows(database)

    # Everything applied, and the migrations rewrote none of the data.
    assert plan and all(line.startswith("[X]") for line in plan), "\n".join(plan)
    assert migrated == before
    # The stored value, served from L3 as the previous main served it: the upgrade left the type's
    # fingerprint as it was, so the stored value is still this configuration's and still fresh.
    assert us["value"] == previous_us["value"] == stored_value(database, "region=us")
    assert (us["provenance"]["tier"], us["provenance"]["origin"]) == ("l3", previous_us["provenance"]["origin"]), us
    assert us["provenance"]["sources"] == previous_us["provenance"]["sources"]
    assert us["provenance"]["fetched_at"] == previous_us["provenance"]["fetched_at"]
    # The override, exactly as the previous main served it.
    assert common_fields(eu, previous_eu) == previous_eu
    # The API: the token still authenticates (and a wrong one does not), the override is still
    # listed, the history holds both fetched values and the audited changes.
    assert api["value"]["status"] == 200 and api["value"]["body"]["value"] == previous_us["value"], api["value"]
    assert api["wrong_token"]["status"] == 401 and api["no_token"]["status"] in (401, 403), api
    assert api["overrides"]["status"] == 200, api["overrides"]
    [override] = api["overrides"]["body"]
    assert (override["context_match"], override["value"], override["is_active"]) == ({"region": "eu"}, previous_eu["value"], True)
    assert api["history"]["status"] == 200, api["history"]
    assert [record["value"] for record in api["history"]["body"]["values"]] == recorded_values(database, "region=us")
    # Reads wrote nothing over the previous main's data (audit entries, values, tokens).
    assert after == before
