"""Tests for the environment loader: real files in, a validated Environment (or every problem) out."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings

from core.durations import format_duration, parse_duration
from config.environment import Environment, load_environment
from core.errors import ConfigError, ConfigProblem

# The smallest valid environment: one source, one value type fed by it. Each test below writes
# this shape out in full and breaks it in one place, so that the line numbers can be read off.
MINIMAL = """
    sources:
      alpha_api:
        kind: http_json
        base_url: https://alpha.test
    dynamic_values:
      budget_thresholds:
        sources:
          - api: alpha_api
            weight: 0.5
"""

SHIPPED_ENVIRONMENTS = ("base", "development", "staging", "production", "test")


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        load_environment(path=path, environ=environ or {})
    return caught.value.problems


def only_problem(path: Path, environ: dict[str, str] | None = None) -> ConfigProblem:
    problems = problems_of(path, environ)
    assert len(problems) == 1, problems
    return problems[0]


def assert_reported(problem: ConfigProblem, file: Path, key_path: str, reason: str, line: int | None) -> None:
    """`str(problem)` is `file:line: key.path: reason` (no `:line` when there is none)."""
    where = f"{file}:{line}" if line else f"{file}"
    text = str(problem)
    assert text.startswith(f"{where}: {key_path}: "), text
    assert reason in text, text


# --- a valid file ---------------------------------------------------------------------------


def test_load__minimal_file__builds_builtins_and_the_declared_source(tmp_path):
    path = write(tmp_path, "env.yaml", MINIMAL)

    environment = load_environment(path=path, environ={})

    assert isinstance(environment, Environment)
    assert environment.name == "env"
    assert environment.files == (path,)
    assert list(environment.sources) == ["alpha_api"]
    assert environment.sources["alpha_api"].fields["base_url"] == "https://alpha.test"
    assert set(environment.value_types) == {"budget_thresholds", "industry_multipliers", "channel_performance"}
    (link,) = environment.value_types["budget_thresholds"].links
    assert (link.source, link.fields["weight"], link.fields["tier"]) == ("alpha_api", 0.5, "primary")


# --- interpolation --------------------------------------------------------------------------


def test_load__unset_variable_without_default__reports_file_key_line_and_variable(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: ${ALPHA_URL}
        dynamic_values:
          budget_thresholds:
            sources:
              - api: alpha_api
                weight: 0.5
    """)

    problem = only_problem(path, environ={})

    assert_reported(problem, path, "sources.alpha_api.base_url", "ALPHA_URL is not set and has no default", 4)


def test_load__variable_with_default__default_reaches_the_environment(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: ${ALPHA_URL:-http://a.test}
        dynamic_values:
          budget_thresholds:
            sources:
              - api: alpha_api
                weight: 0.5
    """)

    unset = load_environment(path=path, environ={})
    set_ = load_environment(path=path, environ={"ALPHA_URL": "https://b.test"})

    assert unset.sources["alpha_api"].fields["base_url"] == "http://a.test"
    assert set_.sources["alpha_api"].fields["base_url"] == "https://b.test"


# --- overlays -------------------------------------------------------------------------------


def test_load__overlay_extends_base__overlay_values_win_and_base_values_stay(tmp_path):
    write(tmp_path, "base.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
            timeout: {connect: 2, read: 7}
          beta_api:
            kind: http_json
            base_url: https://beta.test
        dynamic_values:
          budget_classification:
            update_frequency: PT6H
            max_staleness: P3D
            sources:
              - api: alpha_api
                weight: 0.6
              - api: beta_api
                weight: 0.4
          industry_multipliers:
            update_frequency: P1D
    """)
    overlay = write(tmp_path, "overlay.yaml", """
        extends: base
        environment: overlaid
        dynamic_values:
          budget_classification:
            update_frequency: PT5M
        sources:
          alpha_api:
            base_url: http://alpha.local:9000
    """)

    environment = load_environment(path=overlay, environ={})

    assert environment.name == "overlaid"
    assert environment.files == (tmp_path / "base.yaml", overlay)
    budget = environment.value_types["budget_thresholds"]
    assert budget.fields["update_frequency"] == timedelta(minutes=5)  # the overlay's
    assert budget.fields["max_staleness"] == timedelta(days=3)  # the base's
    assert [(link.source, link.fields["weight"]) for link in budget.links] == [("alpha_api", 0.6), ("beta_api", 0.4)]
    alpha = environment.sources["alpha_api"].fields
    assert alpha["base_url"] == "http://alpha.local:9000"  # the overlay's
    assert (alpha["kind"], alpha["connect_timeout"], alpha["read_timeout"]) == ("http_json", 2.0, 7.0)  # the base's
    assert environment.sources["beta_api"].fields["base_url"] == "https://beta.test"
    assert environment.value_types["industry_multipliers"].fields["update_frequency"] == timedelta(days=1)


def test_load__overlay_breaks_a_key__reports_the_overlay_file_and_line(tmp_path):
    write(tmp_path, "base.yaml", MINIMAL)
    overlay = write(tmp_path, "overlay.yaml", """
        extends: base.yaml
        dynamic_values:
          budget_thresholds:
            update_frequency: P1M
    """)

    problem = only_problem(overlay)

    assert_reported(problem, overlay, "dynamic_values.budget_thresholds.update_frequency", "P1M", 4)


# --- malformed files and wrong shapes -------------------------------------------------------


def test_load__malformed_yaml__reports_file_and_line(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: [https://alpha.test
        dynamic_values: {}
    """)

    problem = only_problem(path)

    assert problem.line is not None
    assert_reported(problem, path, "(top level)", "malformed YAML", problem.line)
    assert 4 <= problem.line <= 5


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("PT6X", "bad duration 'PT6X'"),
        ("P1M", "years and months have no fixed length"),
        ("0", "must be positive"),
        ("-3600", "must be positive"),
    ],
)
def test_load__bad_update_frequency__reports_file_key_line_and_reason(tmp_path, written, reason):
    path = write(tmp_path, "env.yaml", f"""
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
        dynamic_values:
          budget_thresholds:
            update_frequency: {written}
            sources:
              - api: alpha_api
                weight: 0.5
    """)

    problem = only_problem(path)

    assert_reported(problem, path, "dynamic_values.budget_thresholds.update_frequency", reason, 7)


def test_load__bad_breaker_recovery_timeout__reports_file_key_line_and_reason(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
            breaker: {recovery_timeout: soon}
        dynamic_values: {}
    """)

    problem = only_problem(path)

    assert_reported(problem, path, "sources.alpha_api.breaker.recovery_timeout", "bad duration 'soon'", 5)


@pytest.mark.parametrize(
    ("written", "reason"),
    [("PT6X", "bad duration 'PT6X'"), ("P1M", "years and months have no fixed length"), ("fast", "one of default, performance")],
)
def test_load__bad_ttl__reports_bad_duration_and_the_named_choices(tmp_path, written, reason):
    path = write(tmp_path, "env.yaml", f"""
        dynamic_values:
          channel_performance:
            ttl: {written}
    """)

    problem = only_problem(path)

    assert_reported(problem, path, "dynamic_values.channel_performance.ttl", reason, 3)


def test_load__duration_too_long_to_represent__reports_instead_of_crashing(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          budget_thresholds:
            max_staleness: P9999999999D
    """)

    problem = only_problem(path)

    assert_reported(problem, path, "dynamic_values.budget_thresholds.max_staleness", "P9999999999D", 3)


@pytest.mark.parametrize("weight", ["0", "1.5", "-0.2"])
def test_load__weight_outside_zero_to_one__reports_file_key_line_and_reason(tmp_path, weight):
    path = write(tmp_path, "env.yaml", f"""
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
        dynamic_values:
          budget_thresholds:
            sources:
              - api: alpha_api
                weight: {weight}
    """)

    problem = only_problem(path)

    assert_reported(
        problem, path, "dynamic_values.budget_thresholds.sources[0].weight", f"weight must be a number in (0, 1], not {weight}", 9
    )


def test_load__weight_not_a_number__reports_not_finite(tmp_path):
    path = write(tmp_path, "env.yaml", MINIMAL.replace("weight: 0.5", "weight: .nan"))

    problem = only_problem(path)

    assert_reported(problem, path, "dynamic_values.budget_thresholds.sources[0].weight", "nan is not a finite number", 9)


@pytest.mark.parametrize("seconds", [".nan", ".inf"])
def test_load__timeout_not_finite__reports_file_key_line_and_reason(tmp_path, seconds):
    path = write(tmp_path, "env.yaml", f"""
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
            timeout: {{connect: 3, read: {seconds}}}
        dynamic_values: {{}}
    """)

    problem = only_problem(path)

    assert_reported(problem, path, "sources.alpha_api.timeout.read", "is not a finite number", 5)


def test_load__weight_of_one__is_accepted(tmp_path):
    path = write(tmp_path, "env.yaml", MINIMAL.replace("weight: 0.5", "weight: 1"))

    environment = load_environment(path=path, environ={})

    assert environment.value_types["budget_thresholds"].links[0].fields["weight"] == 1.0


def test_load__weight_of_wrong_type__reports_file_key_line_and_reason(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
        dynamic_values:
          budget_thresholds:
            sources:
              - api: alpha_api
                weight: "heavy"
    """)

    problem = only_problem(path)

    assert_reported(problem, path, "dynamic_values.budget_thresholds.sources[0].weight", "wrong type", 9)
    assert "'heavy'" in str(problem)


def test_load__timeout_of_wrong_type__reports_file_key_line_and_reason(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
            timeout: {read: "slow"}
        dynamic_values: {}
    """)

    problem = only_problem(path)

    assert_reported(problem, path, "sources.alpha_api.timeout.read", "wrong type: 'slow' is not of type 'number'", 5)


def test_load__durations_and_url_of_wrong_type__each_reported_once_as_wrong_type(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: 5
        dynamic_values:
          budget_thresholds:
            update_frequency: [1]
            ttl: {hours: 1}
            max_staleness: true
    """)

    problems = problems_of(path)

    assert [(problem.path[-1], problem.line) for problem in problems] == [
        ("base_url", 4), ("update_frequency", 7), ("ttl", 8), ("max_staleness", 9),
    ]
    assert all(problem.reason.startswith("wrong type: ") for problem in problems)


def test_load__duplicate_key__reports_file_key_line_and_first_line(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
            kind: imf
        dynamic_values: {}
    """)

    problem = only_problem(path)

    assert_reported(problem, path, "sources.alpha_api.kind", "duplicate key 'kind' (first defined on line 3)", 5)


def test_load__misspelled_key__reports_file_key_line_as_unknown(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
        dynamic_values:
          budget_thresholds:
            update_frequncy: PT1H
            sources:
              - api: alpha_api
                weight: 0.5
    """)

    problem = only_problem(path)

    assert_reported(problem, path, "dynamic_values.budget_thresholds.update_frequncy", "unknown key", 7)


def test_load__credential_holding_a_secret__reports_that_it_must_name_a_variable(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
            credentials:
              api_key: sk-live-1234
        dynamic_values: {}
    """)

    problem = only_problem(path)

    assert_reported(problem, path, "sources.alpha_api.credentials.api_key", "must name an environment variable", 6)


def test_load__source_name_not_an_identifier__reports_the_name_at_its_line(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
          Beta-Api:
            kind: http_json
            base_url: https://beta.test
        dynamic_values: {}
    """)

    problem = only_problem(path)

    assert_reported(problem, path, "sources.Beta-Api", "'Beta-Api' is not a valid name", 5)


# --- min above max ---------------------------------------------------------------------------


def test_load__field_min_above_max__reports_file_key_line_and_reason(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
        dynamic_values:
          budget_thresholds:
            validation:
              fields:
                micro_threshold: {min: 10, max: 1}
    """)

    problem = only_problem(path)

    assert_reported(
        problem, path, "dynamic_values.budget_thresholds.validation.fields", "micro_threshold: min 10 is above max 1", 8
    )


def test_load__min_ratio_above_max_ratio__reports_file_key_line_and_reason(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
        dynamic_values:
          channel_performance:
            validation:
              min_ratio: 5
              max_ratio: 2
    """)

    problem = only_problem(path)

    assert_reported(
        problem, path, "dynamic_values.channel_performance.validation.min_ratio", "min_ratio 5 is above max_ratio 2", 8
    )


def test_load__seed_min_threshold_ratio_above_built_in_max__reports_min_ratio(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          budget_classification:
            validation:
              min_threshold_ratio: 20
    """)

    problem = only_problem(path)

    # Reported under the canonical name, at the line of the validation block that set it.
    assert_reported(
        problem, path, "dynamic_values.budget_classification.validation.min_ratio", "min_ratio 20 is above max_ratio 10.0", 3
    )


def test_load__min_multiplier_above_max_multiplier__reports_file_key_line_and_reason(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          industry_multipliers:
            validation:
              min_multiplier: 5
              max_multiplier: 2
    """)

    problem = only_problem(path)

    assert_reported(problem, path, "dynamic_values.industry_multipliers.validation.fields", "*: min 5 is above max 2", 3)


def test_load__seed_ratio_and_canonical_ratio_both_given__reports_the_repetition(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          budget_thresholds:
            validation:
              min_threshold_ratio: 0.2
              min_ratio: 0.3
    """)

    problem = only_problem(path)

    assert_reported(
        problem, path, "dynamic_values.budget_thresholds.validation.min_threshold_ratio", "same as min_ratio", 4
    )


# --- references between sections ------------------------------------------------------------


def test_load__value_type_names_undefined_source__reports_file_key_line_and_defined_ones(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
        dynamic_values:
          budget_thresholds:
            sources:
              - api: alpha_api
                weight: 0.5
              - api: gamma_api
                weight: 0.5
    """)

    problem = only_problem(path)

    assert_reported(
        problem,
        path,
        "dynamic_values.budget_thresholds.sources[1].api",
        "names no defined source 'gamma_api' (defined under sources: alpha_api)",
        10,
    )


def test_load__source_group_names_undefined_source__reports_file_key_line_and_reason(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
        api_integration:
          market_intelligence:
            primary: alpha_api
            secondary: gamma_api
        dynamic_values: {}
    """)

    problem = only_problem(path)

    assert_reported(
        problem, path, "api_integration.market_intelligence.secondary", "names no defined source 'gamma_api'", 8
    )


def test_load__value_type_names_a_source_twice__reports_the_second(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
        dynamic_values:
          budget_thresholds:
            sources:
              - api: alpha_api
                weight: 0.5
              - api: alpha_api
                weight: 0.5
    """)

    problem = only_problem(path)

    assert_reported(problem, path, "dynamic_values.budget_thresholds.sources[1].api", "names source alpha_api twice", 10)


# --- value types ---------------------------------------------------------------------------


def test_load__fallback_outside_its_own_bounds__reports_file_key_line_and_reason(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          industry_multipliers:
            fallback:
              finance: 5.0
    """)

    problem = only_problem(path)

    assert_reported(
        problem,
        path,
        "dynamic_values.industry_multipliers.fallback",
        "fallback breaks its own rules: finance: 5.0 is above the maximum 3.0",
        3,
    )


def test_load__fallback_thresholds_not_ascending__reports_file_key_line_and_reason(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          budget_thresholds:
            fallback:
              micro_threshold: 500
              small_threshold: 400
              medium_threshold: 50000
              large_threshold: 500000
              enterprise_threshold: 2000000
    """)

    problem = only_problem(path)

    assert_reported(
        problem, path, "dynamic_values.budget_thresholds.fallback", "small_threshold (400) must be above micro_threshold (500)", 3
    )


def test_load__new_value_type_without_schema_and_fallback__reports_what_it_needs(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          greeting_rates:
            update_frequency: PT1H
    """)

    problem = only_problem(path)

    assert_reported(
        problem, path, "dynamic_values.greeting_rates", "greeting_rates is not a built-in value type, so it needs schema, fallback", 2
    )


def test_load__new_value_type_fully_defined__is_added_after_the_builtins(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          conversion_floor:
            aliases: [floor]
            schema: {type: number}
            fallback: 0.02
            update_frequency: P1D
            ttl: performance
            validation:
              fields: {"*": {min: 0, max: 1}}
    """)

    environment = load_environment(path=path, environ={})

    assert list(environment.value_types) == [
        "budget_thresholds", "industry_multipliers", "channel_performance", "conversion_floor",
    ]
    fields = environment.value_types["conversion_floor"].fields
    assert fields["fallback_value"] == 0.02
    assert fields["aliases"] == ["floor"]
    assert fields["ttl"] == environment.performance_ttl
    assert fields["max_staleness"] == timedelta(days=7)


def test_load__new_value_type_alias_naming_a_builtin__reports_the_clash(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          conversion_floor:
            aliases: [industry_multipliers]
            schema: {type: number}
            fallback: 0.02
            update_frequency: P1D
    """)

    problem = only_problem(path)

    assert_reported(
        problem, path, "dynamic_values.conversion_floor.aliases", "industry_multipliers already names industry_multipliers", 3
    )


def test_load__alias_equal_to_its_own_key__reports_it(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          conversion_floor:
            aliases: [conversion_floor]
            schema: {type: number}
            fallback: 0.02
            update_frequency: P1D
    """)

    problem = only_problem(path)

    assert_reported(problem, path, "dynamic_values.conversion_floor.aliases", "conversion_floor is the value type's own key", 3)


def test_load__alias_misspelled_or_repeated__reports_each(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          conversion_floor:
            aliases: [Floor-Rate, floor, floor]
            schema: {type: number}
            fallback: 0.02
            update_frequency: P1D
    """)

    first, second = problems_of(path)

    assert_reported(first, path, "dynamic_values.conversion_floor.aliases[0]", "lowercase letters, digits and underscores", 3)
    assert_reported(second, path, "dynamic_values.conversion_floor.aliases", "non-unique", 3)


def test_load__same_value_type_under_key_and_alias__reports_the_second(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          budget_thresholds:
            update_frequency: PT6H
          budget_classification:
            update_frequency: PT1H
    """)

    problem = only_problem(path)

    assert_reported(
        problem,
        path,
        "dynamic_values.budget_classification",
        "defines budget_thresholds a second time (also as budget_thresholds)",
        4,
    )


# --- several problems at once ----------------------------------------------------------------


def test_load__three_different_problems__all_reported_in_one_error(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
            enabled: maybe
            colour: red
        dynamic_values:
          budget_thresholds:
            sources:
              - api: alpha_api
                weight: 2
    """)

    with pytest.raises(ConfigError) as caught:
        load_environment(path=path, environ={})

    problems = caught.value.problems
    assert len(problems) == 3
    assert_reported(problems[0], path, "sources.alpha_api.enabled", "wrong type", 5)
    assert_reported(problems[1], path, "sources.alpha_api.colour", "unknown key", 6)
    assert_reported(problems[2], path, "dynamic_values.budget_thresholds.sources[0].weight", "(0, 1]", 11)
    message = str(caught.value)
    assert message.startswith("3 problems in the environment configuration:")
    assert all(str(problem) in message for problem in problems)


def test_load__problems_in_different_sections__all_reported_in_one_error(tmp_path):
    path = write(tmp_path, "env.yaml", """
        sources:
          alpha_api:
            kind: http_json
            base_url: https://alpha.test
        api_integration:
          market_intelligence: {primary: gamma_api}
        dynamic_values:
          industry_multipliers:
            fallback: {finance: 9}
          budget_thresholds:
            sources:
              - api: delta_api
                weight: 0.5
    """)

    problems = problems_of(path)

    assert sorted(".".join(map(str, problem.path)) for problem in problems) == [
        "api_integration.market_intelligence.primary",
        "dynamic_values.budget_thresholds.sources.0.api",
        "dynamic_values.industry_multipliers.fallback",
    ]


# --- the shipped environments ----------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED_ENVIRONMENTS)
def test_load__shipped_environment__loads(name):
    environment = load_environment(name, environ={"REDIS_URL": "redis://127.0.0.1:6379/0"})

    assert environment.files[-1] == Path(settings.DYNCONFIG_CONFIG_DIR) / f"{name}.yaml"
    assert set(environment.value_types) == {"budget_thresholds", "industry_multipliers", "channel_performance"}
    assert len(environment.sources) == 10
    assert all(len(spec.links) >= 2 for spec in environment.value_types.values())


def test_load__shipped_base__has_the_seed_settings():
    environment = load_environment("base", environ={})

    assert environment.default_ttl == timedelta(hours=6)
    assert environment.performance_ttl == timedelta(hours=1)
    assert environment.source_groups["market_intelligence"] == {
        "primary": "google_ads_api", "secondary": "facebook_marketing_api", "tertiary": "semrush_api",
    }
    assert environment.sources["google_ads_api"].fields["requests_per_minute"] == 60  # its own limit
    assert environment.sources["market_research_api"].fields["requests_per_minute"] == 1000  # the group default
    budget = environment.value_types["budget_thresholds"]
    assert [(link.source, link.fields["tier"], link.fields["weight"]) for link in budget.links] == [
        ("market_research_api", "primary", 0.6),
        ("industry_benchmarks_api", "primary", 0.4),
        ("world_bank_api", "secondary", 1.0),
    ]


def test_load__shipped_development__overrides_schedule_and_points_sources_at_simulators():
    environment = load_environment("development", environ={})

    assert environment.mock_mode is True
    assert environment.response_delay == timedelta(milliseconds=100)
    assert environment.default_ttl == timedelta(minutes=5)
    assert environment.value_types["budget_thresholds"].fields["update_frequency"] == timedelta(minutes=5)
    assert environment.value_types["industry_multipliers"].fields["update_frequency"] == timedelta(days=1)
    assert environment.sources["imf_api"].fields["base_url"] == "http://127.0.0.1:8000/simulators/imf"
    assert environment.sources["imf_api"].fields["kind"] == "imf"


def test_load__shipped_production_without_redis_url__reports_cache_redis_url():
    problem = only_problem(Path(settings.DYNCONFIG_CONFIG_DIR) / "production.yaml", environ={})

    assert_reported(
        problem,
        Path(settings.DYNCONFIG_CONFIG_DIR) / "production.yaml",
        "cache.redis_url",
        "REDIS_URL is not set and has no default",
        problem.line,
    )
    assert problem.line is not None


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "duration", "canonical"),
    [
        ("PT6H", timedelta(hours=6), "PT6H"),
        ("P1D", timedelta(days=1), "P1D"),
        ("PT1H30M", timedelta(hours=1, minutes=30), "PT1H30M"),
        ("P1DT12H", timedelta(days=1, hours=12), "P1DT12H"),
        (21600, timedelta(hours=6), "PT6H"),
        ("P1W", timedelta(days=7), "P7D"),
        ("PT90M", timedelta(minutes=90), "PT1H30M"),
        ("PT0.5S", timedelta(milliseconds=500), "PT0.5S"),
        ("PT59.123456S", timedelta(seconds=59, microseconds=123456), "PT59.123456S"),
        ("P1DT0.000001S", timedelta(days=1, microseconds=1), "P1DT0.000001S"),
    ],
)
def test_duration__parse_then_format__round_trips(written, duration, canonical):
    assert parse_duration(written) == duration
    assert format_duration(duration) == canonical
    assert parse_duration(canonical) == duration


@pytest.mark.parametrize(
    "written",
    [0, -60, "PT0S", "P0D", "-PT1H", "garbage", "", "P", "PT", "PT6X", "P1M", "P1Y", "6H", 1.5, True, None, [], "P9999999999D"],
)
def test_duration__zero_negative_or_garbage__raises_value_error(written):
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(written)


def test_duration__months__hint_says_use_days():
    with pytest.raises(ValueError, match="years and months have no fixed length"):
        parse_duration("P1M")


# --- the seed's validation names --------------------------------------------------------------


def test_load__seed_threshold_ratio_names__map_to_min_and_max_ratio(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          budget_classification:
            validation:
              min_threshold_ratio: 0.2
              max_threshold_ratio: 5.0
    """)

    fields = load_environment(path=path, environ={}).value_types["budget_thresholds"].fields

    assert (fields["min_ratio"], fields["max_ratio"]) == (0.2, 5.0)
    assert fields["ascending_fields"][0] == "micro_threshold"  # the built-in rules are kept
    assert fields["field_bounds"] == {"*": {"min": 0, "max": 1_000_000_000}}


def test_load__seed_multiplier_names__map_to_bounds_on_every_field(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          industry_multipliers:
            validation:
              min_multiplier: 0.5
              max_multiplier: 2.5
    """)

    fields = load_environment(path=path, environ={}).value_types["industry_multipliers"].fields

    assert fields["field_bounds"] == {"*": {"min": 0.5, "max": 2.5}}
    assert fields["min_ratio"] is None and fields["max_ratio"] is None


def test_load__seed_multiplier_names_and_fields__are_merged(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          industry_multipliers:
            validation:
              min_multiplier: 0.3
              max_multiplier: 3.0
              fields:
                finance: {min: 1.0}
    """)

    fields = load_environment(path=path, environ={}).value_types["industry_multipliers"].fields

    assert fields["field_bounds"] == {"finance": {"min": 1.0}, "*": {"min": 0.3, "max": 3.0}}


# --- when the sources are slow or down: read budget, widening, prediction -----------------------


def test_load__read_budget_widening_and_prediction__reach_the_value_type(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          budget_thresholds:
            read_budget: PT0.25S
            widening: [region]
            prediction: false
    """)

    fields = load_environment(path=path, environ={}).value_types["budget_thresholds"].fields

    assert fields["read_budget"] == timedelta(milliseconds=250)
    assert fields["widening_order"] == ["region"]
    assert fields["is_prediction_enabled"] is False


def test_load__no_widening_given__context_keys_least_significant_first(tmp_path):
    path = write(tmp_path, "env.yaml", "environment: env\n")

    value_types = load_environment(path=path, environ={}).value_types

    assert value_types["budget_thresholds"].fields["widening_order"] == ["industry", "region"]
    assert value_types["channel_performance"].fields["widening_order"] == ["industry", "region", "channels"]
    assert value_types["budget_thresholds"].fields["read_budget"] is None
    assert value_types["budget_thresholds"].fields["is_prediction_enabled"] is True


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("read_budget: PT11S", "at most PT10S"),
        ("read_budget: fast", "bad duration 'fast'"),
        ("widening: [colour]", "names each context key (region, industry) at most once"),
        ("widening: [region, region]", "has non-unique elements"),
        ("prediction: sometimes", "wrong type"),
    ],
)
def test_load__bad_read_budget_widening_or_prediction__reports_file_key_line_and_reason(tmp_path, line, reason):
    path = write(tmp_path, "env.yaml", f"""
        dynamic_values:
          budget_thresholds:
            {line}
    """)

    problem = only_problem(path)

    assert_reported(problem, path, f"dynamic_values.budget_thresholds.{line.split(':')[0]}", reason, 3)


# --- field precision: how a made value is rounded ------------------------------------------------


def test_load__no_precision_given__the_builtin_precision(tmp_path):
    path = write(tmp_path, "env.yaml", "environment: env\n")

    value_types = load_environment(path=path, environ={}).value_types

    assert value_types["budget_thresholds"].fields["field_precision"] == {"*": {"decimals": 2}}
    assert value_types["industry_multipliers"].fields["field_precision"] == {"*": {"significant": 4}}
    assert value_types["channel_performance"].fields["field_precision"]["*.cpc_range"] == {"decimals": 2}


def test_load__precision_given__replaces_the_builtin_whole(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          channel_performance:
            precision:
              "*.cpc_range": {decimals: 1}
          industry_multipliers:
            precision: {}
    """)

    value_types = load_environment(path=path, environ={}).value_types

    assert value_types["channel_performance"].fields["field_precision"] == {"*.cpc_range": {"decimals": 1}}
    assert value_types["industry_multipliers"].fields["field_precision"] == {}


@pytest.mark.parametrize(
    ("precision", "key_path", "reason", "line"),
    [
        ('"*": {decimals: -1}', "precision.*.decimals", "must be a whole number from 0 to 15, not -1", 4),
        ('"*": {significant: 16}', "precision.*.significant", "must be a whole number from 1 to 15, not 16", 4),
        ('"*": {decimals: 2, significant: 4}', "precision.*", "give exactly one of decimals or significant", 4),
        ('"*": {}', "precision.*", "give exactly one of decimals or significant", 4),
        ('"a..b": {decimals: 2}', "precision.a..b", "a field pattern is dotted names or wildcards, none empty", 4),
        ('"*": {digits: 2}', "precision.*.digits", "unknown key", 4),
        ('"*": {decimals: two}', "precision.*.decimals", "wrong type", 4),
        ('"*": 2', "precision.*", "wrong type", 4),
    ],
)
def test_load__bad_precision__reports_file_key_line_and_reason(tmp_path, precision, key_path, reason, line):
    path = write(tmp_path, "env.yaml", f"""
        dynamic_values:
          budget_thresholds:
            precision:
              {precision}
    """)

    problem = only_problem(path)

    assert_reported(problem, path, f"dynamic_values.budget_thresholds.{key_path}", reason, line)
