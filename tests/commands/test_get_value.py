"""`manage.py get_value`: a value as consumers get it, with its provenance; bad input refused
with a CommandError that says why. Sources are local servers; PostgreSQL and Redis are real."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.processes import child_environment
from tests.values.conftest import BUDGET
from values.resolution import get_value

BASE_DIR = Path(__file__).resolve().parents[2]
US = ("--context", "region=us")


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("get_value", *args, stdout=out)
    return out.getvalue()


def subprocess_env() -> dict[str, str]:
    """This process's environment, with DATABASE_URL naming the test database it uses."""
    return child_environment()


def manage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.django_db
def test_get_value_json_prints_the_whole_answer(budget_server):
    answer = json.loads(run("budget_thresholds", *US, "--context", "industry=retail", "--json"))

    assert answer["key"] == "budget_thresholds"
    assert answer["context"] == {"industry": "retail", "region": "us"}
    assert answer["value"] == pytest.approx(BUDGET)
    assert answer["provenance"]["tier"] == "primary"
    assert {use["name"] for use in answer["provenance"]["sources"]} == {
        "market_research_api",
        "industry_benchmarks_api",
    }


@pytest.mark.django_db
def test_get_value_by_alias_prints_the_canonical_key(budget_server):
    answer = json.loads(run("budget_classification", *US, "--json"))

    assert answer["key"] == "budget_thresholds"


@pytest.mark.django_db
def test_get_value_plain_prints_the_value_then_a_tier_line(budget_server):
    output = run("budget_thresholds", *US)

    value_text, separator, rest = output.partition("\ntier: ")
    assert separator, output
    assert json.loads(value_text) == pytest.approx(BUDGET)
    assert rest.startswith("primary (made by primary)")
    assert "sources: " in rest and "market_research_api (0.6)" in rest

    assert "\ntier: l1 (made by primary)" in run("budget_thresholds", *US)


@pytest.mark.django_db
def test_get_value_plain_with_sources_down_prints_fallback_and_why(sources_down):
    output = run("budget_thresholds", *US)

    assert "tier: fallback (made by fallback)  confidence: 0.00" in output
    assert "sources: none" in output
    assert "note: " in output and "market_research_api" in output


@pytest.mark.django_db
def test_get_value_no_cache_calls_the_sources_although_a_value_is_cached(budget_server):
    run("budget_thresholds", *US)
    calls_after_first = budget_server.calls()
    cached = json.loads(run("budget_thresholds", *US, "--json"))
    assert cached["provenance"]["tier"] == "l1"
    assert budget_server.calls() == calls_after_first

    fresh = json.loads(run("budget_thresholds", *US, "--no-cache", "--json"))

    assert fresh["provenance"]["tier"] == "primary"
    assert budget_server.calls("/v1/budget-benchmarks") == 2
    assert budget_server.calls("/benchmarks/budget-tiers") == 2


@pytest.mark.django_db
def test_get_value_with_channels_given_twice_keeps_both(sources_down):
    answer = json.loads(
        run(
            "channel_performance",
            "--context", "channels=social_media",
            "--context", "channels=search_advertising",
            "--json",
        )
    )

    assert answer["context"]["channels"] == ["search_advertising", "social_media"]
    assert {"search_advertising", "social_media"} <= set(answer["value"])


@pytest.mark.django_db
def test_get_value_of_unknown_key_raises_command_error_naming_it(engine):
    with pytest.raises(CommandError, match="nope"):
        run("nope")


@pytest.mark.django_db
@pytest.mark.parametrize("item", ["foo", "=us", " =us"])
def test_get_value_with_malformed_context_raises_command_error(engine, item):
    with pytest.raises(CommandError, match="K=V"):
        run("budget_thresholds", "--context", item)


@pytest.mark.django_db
def test_get_value_with_unknown_context_key_raises_command_error_naming_it(engine):
    with pytest.raises(CommandError, match="colour") as raised:
        run("budget_thresholds", "--context", "colour=red")

    assert "region" in str(raised.value) and "industry" in str(raised.value)


@pytest.mark.django_db
def test_get_value_with_a_context_value_that_is_not_a_name_raises_command_error(engine):
    with pytest.raises(CommandError, match="region"):
        run("budget_thresholds", "--context", "region=<script>")


@pytest.mark.django_db(transaction=True)
def test_manage_py_get_value_of_unknown_key_exits_nonzero_with_message_on_stderr(engine):
    result = manage("get_value", "nope")

    assert result.returncode != 0
    assert "unknown value type 'nope'" in result.stderr
    assert result.stdout == ""


@pytest.mark.django_db(transaction=True)
def test_manage_py_get_value_fetches_in_its_own_process_and_shares_the_answer_through_l2(budget_server):
    result = manage("get_value", "budget_thresholds", "--context", "region=us", "--json")

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["provenance"]["tier"] == "primary"
    assert answer["value"] == pytest.approx(BUDGET)
    assert budget_server.calls() == 2  # counted over TCP, from the other process

    here = get_value("budget_thresholds", {"region": "us"})

    assert here.provenance.tier == "l2"
    assert here.value == answer["value"]
    assert budget_server.calls() == 2
