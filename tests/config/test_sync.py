"""Tests for `sync_config` and `export_config`, through the management commands, on the test database."""

from __future__ import annotations

import io
import shutil
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.test import override_settings
from django.utils.duration import duration_iso_string

from sources.models import Source
from values.models import ValueTypeSource
from values.models import ValueType
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db

TABLES = (ValueType, Source, ValueTypeSource, AuditEntry)

# The links the shipped environments declare (base.yaml): value type, source, weight.
SHIPPED_LINKS = {
    ("budget_thresholds", "market_research_api", 0.6),
    ("budget_thresholds", "industry_benchmarks_api", 0.4),
    ("industry_multipliers", "economic_intelligence_api", 0.7),
    ("industry_multipliers", "competitive_analysis_api", 0.3),
    ("channel_performance", "google_ads_api", 0.8),
    ("channel_performance", "facebook_marketing_api", 0.8),
    ("channel_performance", "email_intelligence_api", 0.9),
    ("budget_thresholds", "world_bank_api", 1.0),
    ("industry_multipliers", "imf_api", 1.0),
    ("channel_performance", "semrush_api", 0.6),
}
SHIPPED_SOURCES = {
    "google_ads_api", "facebook_marketing_api", "semrush_api", "world_bank_api", "imf_api",
    "market_research_api", "industry_benchmarks_api", "economic_intelligence_api",
    "competitive_analysis_api", "email_intelligence_api",
}


def sync(*args: str) -> str:
    out = io.StringIO()
    call_command("sync_config", *args, stdout=out)
    return out.getvalue()


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("export_config", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def database_rows() -> dict[str, list[dict]]:
    """Every row of every table that sync writes, all fields included."""
    return {model._meta.label: list(model.objects.order_by("pk").values()) for model in TABLES}


def links() -> set[tuple[str, str, float]]:
    return {
        (link.value_type.key, link.source.name, link.weight)
        for link in ValueTypeSource.objects.select_related("value_type", "source")
    }


@pytest.fixture
def environments(tmp_path) -> Path:
    """A copy of the shipped environment files, for overlays that `extends: test.yaml`."""
    return Path(shutil.copytree(settings.DYNCONFIG_CONFIG_DIR, tmp_path / "environments"))


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# --- first and second run ----------------------------------------------------------------


def test_sync__first_run__creates_builtins_sources_and_weighted_links():
    output = sync("--env", "test")

    assert set(ValueType.objects.values_list("key", flat=True)) == {
        "budget_thresholds", "industry_multipliers", "channel_performance",
    }
    budget = ValueType.objects.get(key="budget_thresholds")
    assert budget.fallback_value["micro_threshold"] == 500
    assert budget.fallback_value["enterprise_threshold"] == 2_000_000
    assert budget.aliases == ["budget_classification"]
    assert (budget.min_ratio, budget.max_ratio) == (0.1, 10.0)
    assert budget.update_frequency == timedelta(hours=6)
    assert budget.ttl == timedelta(minutes=5)  # test.yaml's default_ttl
    assert ValueType.objects.get(key="industry_multipliers").fallback_value["finance"] == 1.3
    channels = ValueType.objects.get(key="channel_performance")
    assert channels.fallback_value["search_advertising"]["cpc_range"] == [1.5, 8.0]
    assert channels.ttl == timedelta(minutes=1)  # test.yaml's performance_ttl
    assert set(Source.objects.values_list("name", flat=True)) == SHIPPED_SOURCES
    assert Source.objects.get(name="semrush_api").credential_variables == {"api_key": "SEMRUSH_API_KEY"}
    assert links() == SHIPPED_LINKS
    google = ValueTypeSource.objects.get(source__name="google_ads_api")
    assert google.channels == ["search_advertising"]
    assert google.tier == "primary"
    created = 3 + len(SHIPPED_SOURCES) + len(SHIPPED_LINKS)
    assert AuditEntry.objects.filter(actor="sync_config", action="create").count() == created
    assert AuditEntry.objects.count() == created
    assert "+ value type budget_thresholds" in output
    assert "+ source google_ads_api" in output
    assert "+ source link industry_multipliers <- competitive_analysis_api" in output
    assert f"Applied {created} change(s) from environment test." in output


def test_sync__second_run__prints_no_changes_and_writes_nothing(synced):
    before = database_rows()

    output = sync("--env", "test")

    assert "No changes" in output
    assert database_rows() == before


# --- dry run ---------------------------------------------------------------------------------


def test_sync__dry_run_on_empty_database__prints_the_diff_and_writes_nothing():
    output = sync("--env", "test", "--dry-run")

    assert "+ value type budget_thresholds" in output
    assert "+ source link channel_performance <- google_ads_api" in output
    assert "Would apply" in output
    assert all(rows == [] for rows in database_rows().values())


def test_sync__dry_run_of_a_change__prints_it_and_writes_nothing(synced, environments):
    path = write(environments, "changed.yaml", """
        extends: test.yaml
        dynamic_values:
          budget_classification:
            update_frequency: PT2H
          industry_multipliers:
            sources:
              - api: economic_intelligence_api
                weight: 1
        sources:
          extra_api:
            kind: http_json
            base_url: https://extra.test
    """)
    before = database_rows()

    output = sync("--file", str(path), "--dry-run")

    assert "~ value type budget_thresholds" in output
    assert "    update_frequency: PT6H -> PT2H" in output
    assert "+ source extra_api" in output
    assert "- source link industry_multipliers <- competitive_analysis_api" in output
    assert "- source link industry_multipliers <- imf_api" in output
    assert "Would apply 5 change(s)" in output
    assert database_rows() == before


def test_sync__env_and_file_together__command_error():
    with pytest.raises(CommandError, match="Give --env or --file, not both"):
        sync("--env", "test", "--file", "elsewhere.yaml")


def test_sync__missing_file__command_error_names_it_and_nothing_is_written(tmp_path):
    with pytest.raises(CommandError) as caught:
        sync("--file", str(tmp_path / "absent.yaml"))

    assert f"{tmp_path / 'absent.yaml'}: (top level): file not found" in str(caught.value)
    assert all(rows == [] for rows in database_rows().values())


# --- refusals: all or nothing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_entry", "reason"),
    [
        ("- {api: email_intelligence_api, channels: [email_marketing], weight: 2}", "weight must be a number in (0, 1], not 2"),
        ("- {api: email_intellegence_api, channels: [email_marketing], weight: 0.9}", "names no defined source 'email_intellegence_api'"),
    ],
    ids=["weight_of_two", "undefined_source"],
)
def test_sync__one_bad_entry_among_many__command_error_and_database_unchanged(synced, environments, bad_entry, reason):
    path = write(environments, "broken.yaml", f"""
        extends: test.yaml
        dynamic_values:
          budget_classification:
            update_frequency: PT2H
          channel_performance:
            sources:
              - {{api: google_ads_api, channels: [search_advertising], weight: 0.8}}
              - {{api: facebook_marketing_api, channels: [social_media], weight: 0.8}}
              - {{api: semrush_api, channels: [search_advertising], tier: tertiary, weight: 0.5}}
              {bad_entry}
        sources:
          extra_api:
            kind: http_json
            base_url: https://extra.test
    """)
    before = database_rows()

    with pytest.raises(CommandError) as caught:
        sync("--file", str(path))

    message = str(caught.value)
    assert f"{path}:10: dynamic_values.channel_performance.sources[3]" in message
    assert reason in message
    assert database_rows() == before


def test_sync__alias_clashing_with_a_database_only_value_type__command_error_names_it_and_nothing_changes(
    synced, environments
):
    ValueType.objects.create(
        key="greeting_rates",
        schema={"type": "number"},
        update_frequency=timedelta(days=1),
        ttl=timedelta(hours=1),
        max_staleness=timedelta(days=7),
        fallback_value=0.5,
    )
    path = write(environments, "clash.yaml", """
        extends: test.yaml
        dynamic_values:
          budget_classification:
            update_frequency: PT2H
          salutation_rates:
            aliases: [greeting_rates]
            schema: {type: number}
            fallback: 0.5
            update_frequency: P1D
            sources:
              - api: extra_api
                weight: 1
        sources:
          extra_api:
            kind: http_json
            base_url: https://extra.test
    """)
    before = database_rows()

    with pytest.raises(CommandError) as caught:
        sync("--file", str(path))

    message = str(caught.value)
    assert "Nothing was changed" in message
    assert "value type salutation_rates: aliases: greeting_rates already names value type greeting_rates" in message
    assert database_rows() == before


def test_sync__refusal_in_dry_run__command_error_and_nothing_changes(synced, environments):
    ValueType.objects.create(
        key="greeting_rates",
        aliases=["salutation_rates"],
        schema={"type": "number"},
        update_frequency=timedelta(days=1),
        ttl=timedelta(hours=1),
        max_staleness=timedelta(days=7),
        fallback_value=0.5,
    )
    path = write(environments, "clash.yaml", """
        extends: test.yaml
        dynamic_values:
          salutation_rates:
            schema: {type: number}
            fallback: 0.5
            update_frequency: P1D
    """)
    before = database_rows()

    with pytest.raises(CommandError, match="salutation_rates is already an alias of value type greeting_rates"):
        sync("--file", str(path), "--dry-run")

    assert database_rows() == before


# --- changes after a first sync ----------------------------------------------------------------


def test_sync__changed_update_frequency__shows_old_to_new_and_writes_one_audit_entry(synced, environments):
    path = write(environments, "changed.yaml", """
        extends: test.yaml
        dynamic_values:
          budget_classification:
            update_frequency: PT2H
    """)
    audit_before = AuditEntry.objects.count()

    output = sync("--file", str(path))

    assert output.splitlines() == [
        "~ value type budget_thresholds",
        "    update_frequency: PT6H -> PT2H",
        "Applied 1 change(s) from environment test.",
    ]
    assert ValueType.objects.get(key="budget_thresholds").update_frequency == timedelta(hours=2)
    assert AuditEntry.objects.count() == audit_before + 1
    entry = AuditEntry.objects.first()
    assert (entry.action, entry.actor, entry.channel) == ("update", "sync_config", "sync_config")
    assert (entry.object_type, entry.object_repr) == ("values.valuetype", "budget_thresholds")
    assert entry.before["update_frequency"] == duration_iso_string(timedelta(hours=6))
    assert entry.after["update_frequency"] == duration_iso_string(timedelta(hours=2))
    assert {name for name in entry.before if entry.before[name] != entry.after[name]} == {"update_frequency", "version"}  # every edit raises the version
    assert "No changes" in sync("--file", str(path))


def test_sync__link_removed_from_file__deletes_the_link_and_keeps_the_source(synced, environments):
    path = write(environments, "fewer.yaml", """
        extends: test.yaml
        dynamic_values:
          industry_multipliers:
            sources:
              - api: economic_intelligence_api
                weight: 0.7
    """)

    output = sync("--file", str(path))

    assert "- source link industry_multipliers <- competitive_analysis_api" in output
    assert links() == SHIPPED_LINKS - {
        ("industry_multipliers", "competitive_analysis_api", 0.3),
        ("industry_multipliers", "imf_api", 1.0),
    }
    assert Source.objects.filter(name="competitive_analysis_api").exists()
    deleted = AuditEntry.objects.filter(action="delete", object_type="sources.valuetypesource")
    assert {entry.after for entry in deleted} == {None}
    assert sorted(entry.before["weight"] for entry in deleted) == [0.3, 1.0]


def test_sync__objects_the_file_does_not_mention__are_kept(synced, environments):
    ValueType.objects.create(
        key="greeting_rates",
        schema={"type": "number"},
        update_frequency=timedelta(days=1),
        ttl=timedelta(hours=1),
        max_staleness=timedelta(days=7),
        fallback_value=0.5,
    )
    Source.objects.create(name="operator_api", kind="http_json", base_url="https://operator.test")

    assert "No changes" in sync("--env", "test")

    assert ValueType.objects.filter(key="greeting_rates").exists()
    assert Source.objects.filter(name="operator_api").exists()


# --- export -> sync ----------------------------------------------------------------------------


def test_export__then_sync_of_the_export__no_changes(synced, tmp_path):
    path = tmp_path / "exported.yaml"
    before = database_rows()

    export("--env", "test", "-o", str(path))
    output = sync("--file", str(path))

    assert "No changes" in output
    assert database_rows() == before


def test_export__after_operator_edits__sync_of_the_export_is_a_no_op(synced, tmp_path):
    link = ValueTypeSource.objects.get(value_type__key="industry_multipliers", source__name="competitive_analysis_api")
    link.weight = 0.45
    link.save(update_fields=["weight"])
    multipliers = ValueType.objects.get(key="industry_multipliers")
    multipliers.fallback_value = {**multipliers.fallback_value, "finance": 1.45, "energy": 0.95}
    multipliers.read_budget = timedelta(milliseconds=400)
    multipliers.widening_order = []
    multipliers.is_prediction_enabled = False
    multipliers.save(update_fields=["fallback_value", "read_budget", "widening_order", "is_prediction_enabled"])
    Source.objects.filter(name="imf_api").update(
        read_timeout=22.5, is_enabled=False, breaker_recovery_timeout=timedelta(seconds=12, microseconds=345678)
    )
    path = tmp_path / "exported.yaml"
    before = database_rows()

    export("--env", "test", "-o", str(path))
    output = sync("--file", str(path))

    assert "No changes" in output
    assert database_rows() == before
    exported = yaml.safe_load(path.read_text())
    assert exported["dynamic_values"]["industry_multipliers"]["fallback"]["finance"] == 1.45
    assert exported["dynamic_values"]["industry_multipliers"]["read_budget"] == "PT0.4S"
    assert exported["dynamic_values"]["industry_multipliers"]["widening"] == []
    assert exported["dynamic_values"]["industry_multipliers"]["prediction"] is False
    assert {"api": "competitive_analysis_api", "weight": 0.45}.items() <= next(
        entry for entry in exported["dynamic_values"]["industry_multipliers"]["sources"]
        if entry["api"] == "competitive_analysis_api"
    ).items()


def test_export__with_a_secret_in_the_environment__writes_variable_names_never_the_secret(synced, monkeypatch):
    monkeypatch.setenv("SEMRUSH_API_KEY", "planted-secret-xyz")
    monkeypatch.setenv("GOOGLE_ADS_ACCESS_TOKEN", "planted-secret-xyz")

    text = export("--env", "test")

    assert "planted-secret-xyz" not in text
    assert "SEMRUSH_API_KEY" in text
    exported = yaml.safe_load(text)
    assert exported["sources"]["semrush_api"]["credentials"] == {"api_key": "SEMRUSH_API_KEY"}
    assert exported["sources"]["google_ads_api"]["credentials"]["access_token"] == "GOOGLE_ADS_ACCESS_TOKEN"
    assert "planted-secret-xyz" not in repr(database_rows())


def test_export__string_holding_interpolation_syntax__survives_export_then_sync(synced, tmp_path):
    description = "Costs ${CURRENCY} per call; literal $${ and a lone $ stay as written."
    Source.objects.filter(name="imf_api").update(description=description)
    ValueTypeSource.objects.filter(source__name="imf_api").delete()
    link = ValueTypeSource.objects.get(source__name="google_ads_api")
    link.request_params = {"query": "${keyword}"}
    link.save(update_fields=["request_params"])
    path = tmp_path / "exported.yaml"
    before = database_rows()

    export("--env", "test", "-o", str(path))
    output = sync("--file", str(path))

    assert "No changes" in output
    assert database_rows() == before
    assert Source.objects.get(name="imf_api").description == description


def test_export__operator_edited_precision__exported_and_sync_of_the_export_is_a_no_op(synced, tmp_path):
    ValueType.objects.filter(key="industry_multipliers").update(field_precision={"finance": {"decimals": 3}})
    ValueType.objects.filter(key="budget_thresholds").update(field_precision={})
    path = tmp_path / "exported.yaml"
    before = database_rows()

    export("--env", "test", "-o", str(path))
    output = sync("--file", str(path))

    assert "No changes" in output
    assert database_rows() == before
    exported = yaml.safe_load(path.read_text())["dynamic_values"]
    assert exported["industry_multipliers"]["precision"] == {"finance": {"decimals": 3}}
    assert exported["budget_thresholds"]["precision"] == {}
    assert exported["channel_performance"]["precision"]["*.cpc_range"] == {"decimals": 2}


def test_sync__precision_changed_in_the_file__shows_old_to_new(synced, environments):
    path = write(environments, "overlay.yaml", """
        extends: test.yaml
        dynamic_values:
          budget_classification:  # the name test.yaml gives budget_thresholds
            precision: {"*": {decimals: 0}}
    """)

    output = sync("--file", str(path))

    assert "field_precision: {\"*\": {\"decimals\": 2}} -> {\"*\": {\"decimals\": 0}}" in output
    assert ValueType.objects.get(key="budget_thresholds").field_precision == {"*": {"decimals": 0}}


# --- manage.py check and migrations ----------------------------------------------------------


@override_settings(DYNCONFIG_ENV="test")
def test_check__shipped_test_environment__passes():
    call_command("check", stdout=io.StringIO(), stderr=io.StringIO())


def test_check__broken_environment_file__reports_dynconfig_e001_per_problem(tmp_path):
    write(tmp_path, "test.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
        dynamic_values:
          budget_thresholds:
            update_frequency: P1M
            sources:
              - api: gamma_api
                weight: 2
    """)

    with (
        override_settings(DYNCONFIG_ENV="test", DYNCONFIG_CONFIG_DIR=tmp_path),
        pytest.raises(SystemCheckError) as caught,
    ):
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())

    message = str(caught.value)
    assert message.count("(dynconfig.E001)") == 2  # the shape problems; the unknown source would repeat them
    assert "dynamic_values.budget_thresholds.update_frequency" in message
    assert "dynamic_values.budget_thresholds.sources[0].weight" in message
    assert str(tmp_path / "test.yaml") in message


def test_makemigrations__check__models_and_migrations_agree():
    call_command("makemigrations", "--check", "--dry-run", stdout=io.StringIO(), stderr=io.StringIO())
