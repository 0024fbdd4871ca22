"""Tests for the low-level environment file reader: parsing, interpolation, extends, origins."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from core.errors import ConfigError, ConfigProblem
from config.yaml_reader import read_environment


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        read_environment(path, environ or {})
    return caught.value.problems


# --- plain reading ---------------------------------------------------------------------------


def test_read__plain_and_nested_values__builds_python_values(tmp_path):
    path = write(tmp_path, "development.yaml", """
        debug: true
        ttl: 300
        ratio: 0.5
        title: DynConfig
        nothing: ~
        dynamic_values:
          greeting:
            sources: [{weight: 1}, {weight: 2}]
    """)

    result = read_environment(path, {})

    assert result.name == "development"
    assert result.files == (path,)
    assert result.data == {
        "debug": True, "ttl": 300, "ratio": 0.5, "title": "DynConfig", "nothing": None,
        "dynamic_values": {"greeting": {"sources": [{"weight": 1}, {"weight": 2}]}},
    }


def test_read__empty_file__is_an_empty_mapping(tmp_path):
    assert read_environment(write(tmp_path, "empty.yaml", ""), {}).data == {}


def test_read__merge_keys_and_aliases__are_resolved(tmp_path):
    path = write(tmp_path, "env.yaml", """
        defaults: &defaults
          weight: 1
          enabled: true
        first:
          <<: *defaults
          weight: 5
        second: *defaults
    """)

    data = read_environment(path, {}).data

    assert data["first"] == {"weight": 5, "enabled": True}
    assert data["second"] == {"weight": 1, "enabled": True}


def test_read__overriding_a_merged_key_through_an_alias__is_not_a_duplicate(tmp_path):
    path = write(tmp_path, "env.yaml", """
        base: &base {x: 1}
        child: &child
          <<: *base
          x: 2
        again: *child
    """)

    assert read_environment(path, {}).data["again"] == {"x": 2}


def test_read__environ_defaults_to_os_environ(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNCONFIG_TEST_HOST", "db.internal")
    path = write(tmp_path, "env.yaml", "host: ${DYNCONFIG_TEST_HOST}\n")

    assert read_environment(path).data == {"host": "db.internal"}


# --- interpolation -----------------------------------------------------------------------------


def test_read__set_var__is_substituted_inside_text(tmp_path):
    path = write(tmp_path, "env.yaml", "url: https://${HOST}:8080/api\n")

    assert read_environment(path, {"HOST": "example.org"}).data == {"url": "https://example.org:8080/api"}


def test_read__unset_var_with_default__uses_default(tmp_path):
    path = write(tmp_path, "env.yaml", "region: ${REGION:-eu-west-1}\n")

    assert read_environment(path, {}).data == {"region": "eu-west-1"}


def test_read__var_set_to_empty__uses_default_but_counts_as_set_without_one(tmp_path):
    path = write(tmp_path, "env.yaml", """
        with_default: "${EMPTY:-fallback}"
        without_default: "${EMPTY}"
    """)

    assert read_environment(path, {"EMPTY": ""}).data == {"with_default": "fallback", "without_default": ""}


def test_read__empty_default__gives_empty_string_when_quoted_and_null_when_plain(tmp_path):
    path = write(tmp_path, "env.yaml", """
        quoted: "${PASSWORD:-}"
        plain: ${PASSWORD:-}
    """)

    assert read_environment(path, {}).data == {"quoted": "", "plain": None}


def test_read__plain_scalar__is_retyped_after_substitution(tmp_path):
    path = write(tmp_path, "env.yaml", """
        ttl: ${TTL:-300}
        flag: ${FLAG:-true}
        ratio: ${RATIO}
        name: ${NAME}
    """)

    data = read_environment(path, {"RATIO": "0.25", "NAME": "300x"}).data

    assert data == {"ttl": 300, "flag": True, "ratio": 0.25, "name": "300x"}


def test_read__quoted_and_explicitly_tagged_scalars__stay_strings(tmp_path):
    path = write(tmp_path, "env.yaml", """
        single: '${TTL:-300}'
        double: "${FLAG:-true}"
        tagged: !!str ${TTL:-300}
        block: |
          ${TTL:-300}
    """)

    data = read_environment(path, {}).data

    assert data == {"single": "300", "double": "true", "tagged": "300", "block": "300\n"}


def test_read__keys__are_not_interpolated(tmp_path):
    path = write(tmp_path, "env.yaml", "${KEY}: value\n")

    assert read_environment(path, {"KEY": "other"}).data == {"${KEY}": "value"}


def test_read__dollar_dollar_brace__escapes_a_literal_reference(tmp_path):
    path = write(tmp_path, "env.yaml", "template: 'Hello $${USER}, I am ${ME}'\n")

    assert read_environment(path, {"USER": "x", "ME": "bot"}).data == {"template": "Hello ${USER}, I am bot"}


def test_read__unset_var_without_default__reports_file_key_line(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          greeting:
            sources:
              - weight: 1
                url: ${SOURCE_URL}
    """)

    [problem] = problems_of(path)

    assert problem == ConfigProblem(
        path, ("dynamic_values", "greeting", "sources", 0, "url"),
        "environment variable SOURCE_URL is not set and has no default", 5,
    )
    assert str(problem) == (
        f"{path}:5: dynamic_values.greeting.sources[0].url: "
        "environment variable SOURCE_URL is not set and has no default"
    )


def test_read__malformed_reference__is_reported(tmp_path):
    path = write(tmp_path, "env.yaml", "url: ${NOT CLOSED\n")

    [problem] = problems_of(path)

    assert (problem.path, problem.line) == (("url",), 1)
    assert "malformed ${...} reference" in problem.reason


# --- problems ----------------------------------------------------------------------------------


def test_read__several_problems__are_all_collected(tmp_path):
    path = write(tmp_path, "env.yaml", """
        host: ${HOST}
        port: ${PORT}
        weight: 1
        weight: 2
    """)

    with pytest.raises(ConfigError) as caught:
        read_environment(path, {})

    problems = caught.value.problems
    assert [(p.path, p.line) for p in problems] == [(("weight",), 4), (("host",), 1), (("port",), 2)]
    message = str(caught.value)
    assert message.startswith("3 problems in the environment configuration:")
    for problem in problems:
        assert f"  - {problem}" in message


def test_read__malformed_yaml__reports_the_line(tmp_path):
    path = write(tmp_path, "env.yaml", """
        first: 1
        second: 2
        third: oops: here
    """)

    [problem] = problems_of(path)

    assert (problem.file, problem.path, problem.line) == (path, (), 3)
    assert problem.reason == "malformed YAML: mapping values are not allowed here"


def test_read__duplicate_key__reports_both_lines(tmp_path):
    path = write(tmp_path, "env.yaml", """
        dynamic_values:
          greeting:
            weight: 1
            default: hi
            weight: 2
    """)

    [problem] = problems_of(path)

    assert problem == ConfigProblem(
        path, ("dynamic_values", "greeting", "weight"), "duplicate key 'weight' (first defined on line 3)", 5,
    )


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("just text\n", "a single value")])
def test_read__top_level_not_a_mapping__is_a_problem(tmp_path, text, kind):
    path = write(tmp_path, "env.yaml", text)

    [problem] = problems_of(path)

    assert (problem.path, problem.line, problem.reason) == ((), 1, f"the file must hold a mapping, not {kind}")


def test_read__missing_file__is_a_problem(tmp_path):
    path = tmp_path / "production.yaml"

    assert problems_of(path) == [ConfigProblem(path, (), "file not found")]


def test_read__explicit_tag_that_does_not_fit_the_value__is_a_problem(tmp_path):
    path = write(tmp_path, "env.yaml", "port: !!int ${PORT:-eighty}\n")

    [problem] = problems_of(path)

    assert (problem.path, problem.line) == (("port",), 1)
    assert problem.reason.startswith("invalid value:")


def test_read__python_tags__are_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    path = write(tmp_path, "env.yaml", f"""
        call: !!python/object/apply:os.system ["touch {marker}"]
        name: !!python/name:os.system
        module: !!python/module:os
        object: !!python/object:pathlib.PurePath {{}}
        !!python/name:os.system : key
    """)

    problems = problems_of(path)

    assert [(p.path, p.line) for p in problems] == [
        ((), 5), (("call",), 1), (("name",), 2), (("module",), 3), (("object",), 4),
    ]
    assert problems[0].reason.startswith("invalid key: could not determine a constructor for the tag")
    assert problems[1].reason == "unsupported YAML tag tag:yaml.org,2002:python/object/apply:os.system"
    assert problems[2].reason.startswith("invalid value: could not determine a constructor for the tag")
    assert problems[4].reason == "unsupported YAML tag tag:yaml.org,2002:python/object:pathlib.PurePath"
    assert not marker.exists()


# --- extends -----------------------------------------------------------------------------------


def test_read__extends__deep_merges_the_base(tmp_path):
    base = write(tmp_path, "base.yaml", """
        debug: false
        cache: {ttl: 60, backend: redis}
        hosts: [a, b, c]
        extra: kept
    """)
    overlay = write(tmp_path, "development.yaml", """
        extends: base
        debug: true
        cache: {ttl: 5}
        hosts: [local]
        extra: null
    """)

    result = read_environment(overlay, {})

    assert result.name == "development"
    assert result.files == (base, overlay)
    assert result.data == {
        "debug": True, "cache": {"ttl": 5, "backend": "redis"}, "hosts": ["local"], "extra": None,
    }


def test_read__two_level_extends_chain__merges_in_order(tmp_path):
    common = write(tmp_path, "common.yaml", "a: 1\nb: 1\nc: 1\n")
    base = write(tmp_path, "base.yaml", "extends: common.yaml\nb: 2\nc: 2\n")
    top = write(tmp_path, "staging.yaml", "extends: base\nc: 3\n")

    result = read_environment(top, {})

    assert result.files == (common, base, top)
    assert result.data == {"a": 1, "b": 2, "c": 3}


def test_read__extends_in_a_subdirectory__is_relative_to_the_extending_file(tmp_path):
    (tmp_path / "shared").mkdir()
    write(tmp_path / "shared", "base.yaml", "a: 1\n")
    top = write(tmp_path, "env.yaml", "extends: shared/base\nb: 2\n")

    assert read_environment(top, {}).data == {"a": 1, "b": 2}


@pytest.mark.parametrize("base_name", ["../outside", "../outside.yaml", "shared/../../outside", "(absolute)"])
def test_read__extends_outside_the_directory__is_refused_and_not_read(tmp_path, base_name):
    (tmp_path / "environments" / "shared").mkdir(parents=True)
    outside = write(tmp_path, "outside.yaml", "secret: ${NEVER_READ}\n")
    base_name = str(outside) if base_name == "(absolute)" else base_name
    path = write(tmp_path / "environments", "env.yaml", f"x: 1\nextends: {base_name}\n")

    [problem] = problems_of(path)

    directory = path.parent.resolve()
    assert (problem.file, problem.path, problem.line) == (path, ("extends",), 2)
    assert problem.reason.startswith(f"extends must name a file in {directory} (or below it), not ")


def test_read__base_in_a_subdirectory_extending_back_up__is_allowed(tmp_path):
    (tmp_path / "shared").mkdir()
    write(tmp_path, "common.yaml", "a: 1\n")
    write(tmp_path / "shared", "base.yaml", "extends: ../common\nb: 2\n")
    top = write(tmp_path, "env.yaml", "extends: shared/base\nc: 3\n")

    assert read_environment(top, {}).data == {"a": 1, "b": 2, "c": 3}


def test_read__extends_cycle__is_a_problem(tmp_path):
    write(tmp_path, "a.yaml", "extends: b\nx: 1\n")
    b = write(tmp_path, "b.yaml", "y: 2\nextends: a.yaml\n")

    [problem] = problems_of(tmp_path / "a.yaml")

    assert problem == ConfigProblem(b, ("extends",), "extends cycle: a.yaml -> b.yaml -> a.yaml", 2)


def test_read__missing_base__is_a_problem(tmp_path):
    path = write(tmp_path, "env.yaml", "x: 1\nextends: base\n")

    assert problems_of(path) == [
        ConfigProblem(path, ("extends",), "extends names a file that does not exist: base.yaml", 2),
    ]


def test_read__extends_not_a_string__is_a_problem(tmp_path):
    path = write(tmp_path, "env.yaml", "extends: [a, b]\n")

    [problem] = problems_of(path)

    assert (problem.path, problem.line) == (("extends",), 1)
    assert problem.reason.startswith("extends must be a file name")


def test_read__problems_in_base__name_the_base_file_and_its_lines(tmp_path):
    base = write(tmp_path, "base.yaml", "a: 1\nb: ${MISSING}\n")
    top = write(tmp_path, "env.yaml", "extends: base\nc: ${ALSO_MISSING}\n")

    problems = problems_of(top)

    assert [(p.file, p.path, p.line) for p in problems] == [(base, ("b",), 2), (top, ("c",), 2)]


# --- locate ------------------------------------------------------------------------------------


def test_locate__points_into_base_or_overlay(tmp_path):
    base = write(tmp_path, "base.yaml", """
        cache:
          ttl: 60
          backend: redis
        hosts:
          - a
          - b
    """)
    top = write(tmp_path, "env.yaml", """
        extends: base
        cache:
          ttl: 5
        hosts:
          - local
    """)

    result = read_environment(top, {})

    assert result.locate(("cache", "backend")) == (base, 3)
    assert result.locate(("cache", "ttl")) == (top, 3)
    assert result.locate(("cache",)) == (top, 2)
    assert result.locate(("hosts", 0)) == (top, 5)
    assert result.locate(("hosts", 1)) == (top, 4)  # the base's second host is gone: falls back to `hosts`


def test_locate__undefined_path__falls_back_to_prefix_then_requested_file(tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text("# comment\n\ncache:\n  ttl: 60\n", encoding="utf-8")

    result = read_environment(path, {})

    assert result.locate(("cache", "ttl", "deeper")) == (path, 4)
    assert result.locate(("cache", "missing")) == (path, 3)
    assert result.locate(("nowhere",)) == (path, None)
    assert result.locate(()) == (path, None)
