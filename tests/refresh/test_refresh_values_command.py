"""`manage.py refresh_values`: refreshes in-process, progress on stderr, a closing table on
stdout (refreshed / unchanged / failed with reasons), exit status 1 when one failed."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.refresh.celery_processes import PROJECT_ROOT, celery_environment
from tests.refresh.conftest import BUDGET, fail_budget, scaled, serve_budget
from values import get_value, popularity
from values.models import ContextReads


def refresh_values(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("refresh_values", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def table_rows(out: str) -> list[list[str]]:
    """The table's rows as cells (split on runs of two spaces), without header and summary."""
    lines = out.strip().splitlines()
    return [[cell.strip() for cell in line.split("  ") if cell.strip()] for line in lines[1:-1]]


@pytest.mark.django_db
def test_refresh_values__one_key_and_context__refreshed_then_unchanged(sources, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        out, err = refresh_values("budget_thresholds", "--context", "region=us")

    assert out.splitlines()[0].split() == ["key", "context", "status", "tier", "reason"]
    assert table_rows(out) == [["budget_thresholds", "region=us", "refreshed", "primary", "first value"]]
    assert out.strip().splitlines()[-1] == "1 refreshed, 0 unchanged, 0 failed"
    assert "[##############################] 1/1 done" in err

    with django_capture_on_commit_callbacks(execute=True):
        out, _ = refresh_values("budget_classification", "--context", "region=us")  # an alias
    assert table_rows(out) == [["budget_thresholds", "region=us", "unchanged", "primary", "same value"]]
    assert get_value("budget_thresholds", {"region": "us"}).value == BUDGET


@pytest.mark.django_db
def test_refresh_values__all_contexts__every_recorded_context_and_the_empty_one(
    sources, django_capture_on_commit_callbacks
):
    for region in ("us", "de", "us"):
        get_value("budget_thresholds", {"region": region})
    popularity.flush()
    serve_budget(sources, scaled(BUDGET, 1.5))  # the sources moved since those reads

    with django_capture_on_commit_callbacks(execute=True):
        out, err = refresh_values("budget_thresholds", "--all-contexts")

    rows = table_rows(out)
    assert [row[:3] for row in rows] == [
        ["budget_thresholds", "{}", "refreshed"],
        ["budget_thresholds", "region=us", "refreshed"],  # most read first
        ["budget_thresholds", "region=de", "refreshed"],
    ]
    assert [row[4] for row in rows[1:]] == ["value changed", "value changed"]
    assert err.count("budget_thresholds") == 3  # one progress step each


@pytest.mark.django_db
def test_refresh_values__a_refresh_fails__reason_in_table_and_exit_status_1(sources):
    fail_budget(sources)

    with pytest.raises(CommandError) as raised:
        refresh_values("budget_thresholds", "--context", "region=de")

    assert raised.value.returncode == 1
    assert "1 of 1 refreshes failed" in str(raised.value)
    assert ContextReads.objects.get(context_key="region=de").failures == 1  # backoff, as for the worker


@pytest.mark.django_db
def test_refresh_values__bad_input__refused_before_refreshing(sources):
    with pytest.raises(CommandError, match="unknown value type 'nope'"):
        refresh_values("nope")
    with pytest.raises(CommandError, match="not both"):
        refresh_values("--context", "region=us", "--all-contexts")
    with pytest.raises(CommandError, match="K=V"):
        refresh_values("--context", "region")
    assert sources.calls() == 0


@pytest.mark.django_db(transaction=True)
def test_refresh_values__manage_py__progress_on_stderr_table_on_stdout_exit_1_on_failure(sources):
    """Run as an operator runs it: every value type in one region; budget_thresholds' sources
    answer, the others' answer 404 (industry_multipliers fails), so the exit status is 1."""
    result = subprocess.run(
        [sys.executable, "manage.py", "refresh_values", "--context", "region=de"],
        cwd=PROJECT_ROOT,
        env=celery_environment(LOG_LEVEL="ERROR"),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1, result.stderr
    rows = {row[0]: row for row in table_rows(result.stdout)}
    assert list(rows) == ["budget_thresholds", "channel_performance", "industry_multipliers"]
    assert rows["budget_thresholds"][2:4] == ["refreshed", "primary"]
    assert rows["industry_multipliers"][2:4] == ["failed", "fallback"]
    assert "HTTP 404" in rows["industry_multipliers"][4]
    assert "refreshed" not in result.stderr.replace("refreshes", "")  # the table is on stdout only
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert progress[0].endswith("0/3 budget_thresholds region=de")
    assert progress[-1].endswith("3/3 done")
    assert "CommandError: " in result.stderr and "refreshes failed" in result.stderr
    print(result.stdout)
