"""Structured logs: request ids, context fields in JSON lines, and the redaction safety net.

The JSON test runs a process of its own with DYNCONFIG_LOG_FORMAT=json, so it checks the real
logging configuration (settings.LOGGING) end to end, as production writes it.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from monitoring.logging import JsonFormatter, LogContextFilter, PlainFormatter
from sources.models import Source
from tests.processes import PROJECT_ROOT, child_environment
from tests.values.conftest import reload_engine

PLANTED_SECRET = "planted-secret-7f3a9c"
URL_PASSWORD = "pg-leak-secret"

CHILD = """
import json, logging, os, sys
sys.path.insert(0, os.getcwd())
os.environ["DJANGO_SETTINGS_MODULE"] = "dynconfig_site.settings"
import django
django.setup()
from django.test import Client

response = Client().get("/api/v1/values/budget_thresholds/?region=us", HTTP_X_REQUEST_ID="req-abc-123")
leaky = logging.getLogger("tests.leak")
leaky.warning("calling with key %s", os.environ["MARKET_RESEARCH_API_KEY"])
try:
    raise RuntimeError(f"postgres://app:pg-leak-secret@db/x said no to {os.environ['MARKET_RESEARCH_API_KEY']}")
except RuntimeError:
    leaky.exception("it failed")
print(json.dumps({"status": response.status_code, "request_id": response["X-Request-ID"]}))
"""


@pytest.fixture
def sources_refusing(transactional_db):
    """The test configuration committed (a child process reads it), every source at a closed port."""
    call_command("sync_config", "--env", "test", stdout=StringIO())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    Source.objects.update(base_url=f"http://127.0.0.1:{port}")
    reload_engine()


def test_json_logs__read_with_sources_down__lines_carry_request_id_value_type_source_and_no_secret(sources_refusing):
    environment = child_environment(DYNCONFIG_LOG_FORMAT="json", MARKET_RESEARCH_API_KEY=PLANTED_SECRET, LOG_LEVEL="INFO")
    child = subprocess.run(
        [sys.executable, "-c", CHILD], env=environment, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )

    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result == {"status": 200, "request_id": "req-abc-123"}
    lines = [json.loads(line) for line in child.stderr.splitlines() if line.startswith("{")]
    degraded = [line for line in lines if "serving the fallback value" in line["message"]]
    assert degraded, child.stderr[-3000:]
    assert degraded[0]["request_id"] == "req-abc-123"
    assert degraded[0]["value_type"] == "budget_thresholds"
    assert {"time", "level", "logger"} <= set(degraded[0])
    source_lines = [line for line in lines if line["logger"] == "sources.calls"]
    assert any(line.get("source") == "market_research_api" for line in source_lines), source_lines
    assert all(line["value_type"] == "budget_thresholds" and line["request_id"] == "req-abc-123" for line in source_lines)
    assert PLANTED_SECRET not in child.stderr
    assert URL_PASSWORD not in child.stderr
    leaks = [line for line in lines if line["logger"] == "tests.leak"]
    assert [line["message"] for line in leaks] == ["calling with key ***", "it failed"]
    assert "postgres://app:***@db/x said no to ***" in leaks[1]["exc_info"]


def test_request_id__sane_header__echoed_in_the_response(db):
    response = Client().get("/healthz", HTTP_X_REQUEST_ID="trace-01:ab.CD_9")

    assert response["X-Request-ID"] == "trace-01:ab.CD_9"


@pytest.mark.parametrize("given", ["", "two words", "x" * 129, "line\nbreak", "<script>"])
def test_request_id__missing_or_insane_header__replaced_by_a_new_one(db, given):
    first = Client().get("/healthz", HTTP_X_REQUEST_ID=given)
    second = Client().get("/healthz", HTTP_X_REQUEST_ID=given)

    assert len(first["X-Request-ID"]) == 32
    assert first["X-Request-ID"] != second["X-Request-ID"]
    assert first["X-Request-ID"] != given


def formatted(record: logging.LogRecord) -> str:
    LogContextFilter().filter(record)
    return PlainFormatter("%(context_text)s%(message)s").format(record)


def test_redaction__credential_variable_value_in_args_and_traceback__masked(monkeypatch):
    monkeypatch.setenv("SOME_VENDOR_TOKEN", PLANTED_SECRET)
    try:
        raise ValueError(f"refused {PLANTED_SECRET}")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "token is %s", (PLANTED_SECRET,), exc_info)

    text = formatted(record)

    assert PLANTED_SECRET not in text
    assert "token is ***" in text
    assert "ValueError: refused ***" in text
    assert PLANTED_SECRET in record.getMessage()  # the record itself is left as logged (caplog sees it)


def test_redaction__json_line_with_url_password__masked():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "to %s", ("redis://:s3cret-pass@cache:6379/0",), None)
    LogContextFilter().filter(record)

    line = json.loads(JsonFormatter().format(record))

    assert line["message"] == "to redis://:***@cache:6379/0"
    assert line["request_id"] is None


def test_redaction__short_or_ordinary_variable_values__left_alone(monkeypatch):
    monkeypatch.setenv("FEATURE_KEY", "on")  # too short to be a secret worth masking
    monkeypatch.setenv("SOME_REGION", "retail-region")  # not a credential by its name

    text = formatted(logging.LogRecord("x", logging.INFO, __file__, 1, "on retail-region", (), None))

    assert text == "on retail-region"


def test_plain_format__extra_value_type_and_source__shown_before_the_message():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "failed", (), None)
    record.value_type, record.source = "budget_thresholds", "semrush_api"

    assert formatted(record) == "[value_type=budget_thresholds source=semrush_api] failed"
