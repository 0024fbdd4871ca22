"""Hostile YAML is refused quickly, naming file, line and reason, instead of being expanded (issue 17).

Each hostile file is refused by the reader itself, so `sync_config`, `manage.py check` and every
server start refuse it the same way. Timings and memory are asserted generously: they are
milliseconds and a few MB; unbounded, the alias bomb took minutes and gigabytes.
"""

from __future__ import annotations

import io
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.test import override_settings

from core.errors import ConfigError, ConfigProblem
from config.yaml_reader import MAX_ALIASES, MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES, read_environment
from sources.models import Source
from values.models import ValueTypeSource
from values.models import ValueType
from audit.models import AuditEntry

MB = 1024 * 1024

# The issue's 12 lines: nine levels of ten aliases each, 10^9 strings once expanded.
ALIAS_BOMB = """
# billion laughs
lol: hostile
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]
lols: *i
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def write_large(directory: Path, size: int) -> Path:
    """A well-formed file of `size` bytes, written a MB at a time."""
    path = directory / "large.yaml"
    line = b"key_%09d: a value that is long enough to fill the file quickly, and harmless\n"
    chunk = b"".join(line % number for number in range(MB // len(line % 0)))
    with path.open("wb") as stream:
        for _ in range(size // len(chunk) + 1):
            stream.write(chunk)
    return path


def peak_memory(path: Path) -> int:
    """Peak bytes allocated (tracemalloc) while reading `path`, refused or not."""
    tracemalloc.start()
    try:
        try:
            read_environment(path, {})
        except ConfigError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def refused_quickly(path: Path) -> ConfigProblem:
    """Read `path`: the one problem it is refused with, after asserting it took under a second and
    under 100 MB more than reading an empty file."""
    start = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        read_environment(path, {})
    seconds = time.monotonic() - start
    extra_memory = peak_memory(path) - peak_memory(write(path.parent, "empty.yaml", ""))

    assert seconds < 1, f"refused in {seconds:.3f} s"
    assert extra_memory < 100 * MB, f"peak memory {extra_memory / MB:.1f} MB above an empty file"
    [problem] = caught.value.problems
    return problem


def nested(depth: int, style: str) -> str:
    """A value `depth` collections deep, to follow `key:`."""
    if style == "flow list":
        return " " + "[" * depth + "]" * depth
    if style == "flow mapping":
        return " " + "{a: " * (depth - 1) + "{a: 1" + "}" * depth
    return "".join(f"\n{'  ' * level}a:" for level in range(1, depth + 1)) + " 1"  # block mapping


def depth(value: object) -> int:
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
    return 0 if children is None else 1 + max(map(depth, children), default=0)


# --- the reader ----------------------------------------------------------------------------------


def test_read_environment__alias_bomb__refused_quickly_naming_line(tmp_path):
    path = write(tmp_path, "bomb.yaml", ALIAS_BOMB)

    problem = refused_quickly(path)

    # 12,351 values up to d's end, then 11,111 more for each *d: the eighth in e passes 100,000.
    assert (problem.file, problem.line, problem.path) == (path, 7, ("e", 7))
    assert problem.reason == (
        f"more than {MAX_VALUES:,} values with aliases expanded (the limit): "
        "the alias *d stands for 11,111 values, 4 levels deep (anchor on line 6)"
    )
    assert str(problem).startswith(f"{path}:7: e[7]: more than")


def test_read_environment__merge_key_bomb__refused_quickly_naming_line(tmp_path):
    # `<<` copies the merged mappings' pairs: nested merges of merges grow exponentially too.
    lines = ["a: &a {" + ", ".join(f"k{n}: lol" for n in range(10)) + "}"]
    for previous, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} {{<<: [" + ", ".join([f"*{previous}"] * 10) + "]}")
    path = write(tmp_path, "merges.yaml", "\n".join(lines) + "\n")

    problem = refused_quickly(path)

    assert (problem.line, problem.path[0]) == (5, "e")  # the first merge that passes the limit
    assert problem.reason.startswith(f"more than {MAX_VALUES:,} values with aliases expanded (the limit)")


def test_read_environment__50_mb_file__refused_quickly_without_reading_it(tmp_path):
    path = write_large(tmp_path, 50 * MB)

    problem = refused_quickly(path)

    assert problem == ConfigProblem(path, (), "the file is larger than 1 MiB (the limit)")
    assert str(problem) == f"{path}: (top level): the file is larger than 1 MiB (the limit)"


def test_read_environment__file_of_exactly_the_limit__is_read(tmp_path):
    path = tmp_path / "env.yaml"
    path.write_bytes(b"x: 1\n" + b"#" * (MAX_FILE_BYTES - 6) + b"\n")

    assert read_environment(path, {}).data == {"x": 1}


@pytest.mark.parametrize("style", ["flow list", "flow mapping"])
def test_read_environment__10000_deep_nesting__refused_quickly_naming_line(tmp_path, style):
    path = write(tmp_path, "deep.yaml", "name: deep\nnested:" + nested(10_000, style) + "\n")

    problem = refused_quickly(path)

    # The top-level mapping is level 1, so the 64th collection under `nested` is level 65.
    assert (problem.file, problem.line) == (path, 2)
    assert problem.path == ("nested",) + ((0,) if style == "flow list" else ("a",)) * 63
    assert problem.reason == f"nested more than {MAX_DEPTH} levels deep (the limit)"


def test_read_environment__block_nesting_past_the_limit__refused_naming_line_and_path(tmp_path):
    path = write(tmp_path, "deep.yaml", "nested:" + nested(100, "block mapping") + "\n")

    problem = refused_quickly(path)

    # The top-level mapping is level 1; the mapping of the n-th `a:` (line n + 1) is level n + 1.
    assert problem == ConfigProblem(
        path, ("nested",) + ("a",) * 63, f"nested more than {MAX_DEPTH} levels deep (the limit)", 65,
    )


@pytest.mark.parametrize("style", ["flow list", "flow mapping", "block mapping"])
def test_read_environment__nesting_at_the_limit__is_read(tmp_path, style):
    path = write(tmp_path, "deep.yaml", "nested:" + nested(MAX_DEPTH - 1, style) + "\n")

    assert depth(read_environment(path, {}).data) == MAX_DEPTH


def test_read_environment__aliases_nesting_past_the_limit__refused_naming_the_alias(tmp_path):
    # Neither passes the limit as written, but b holds *a 39 levels down: 1 + 39 + 40 = 80 levels.
    path = write(tmp_path, "deep.yaml", f"""
        a: &a {"[" * 40 + "]" * 40}
        b: {"[" * 39 + "*a" + "]" * 39}
    """)

    problem = refused_quickly(path)

    assert (problem.line, problem.path) == (2, ("b",) + (0,) * 39)
    assert problem.reason == (
        f"nested more than {MAX_DEPTH} levels deep (the limit): "
        "the alias *a stands for 40 values, 40 levels deep (anchor on line 1)"
    )


def test_read_environment__more_aliases_than_the_limit__refused_naming_line(tmp_path):
    aliases = "\n".join(f"- *x  # {n}" for n in range(MAX_ALIASES + 1))
    path = write(tmp_path, "aliases.yaml", "x: &x 1\nmany:\n" + aliases + "\n")

    problem = refused_quickly(path)

    reason = "more than 1,000 aliases (the limit)"
    assert problem == ConfigProblem(path, ("many", MAX_ALIASES), reason, MAX_ALIASES + 3)


def test_read_environment__hostile_base__refused_naming_the_base_file(tmp_path):
    base = write(tmp_path, "base.yaml", ALIAS_BOMB)
    top = write(tmp_path, "env.yaml", "extends: base\nx: 1\n")

    problem = refused_quickly(top)

    assert (problem.file, problem.line) == (base, 7)


def test_read_environment__anchors_aliases_and_merge_keys__still_read_correctly(tmp_path):
    write(tmp_path, "base.yaml", """
        timeouts: &timeouts {connect: 3, read: 10}
        sources:
          alpha: &source
            timeout: *timeouts
            rate_limit: &limit {requests_per_minute: 60, burst_allowance: 1}
          beta:
            <<: *source
            rate_limit:
              <<: *limit
              burst_allowance: 5
    """)
    top = write(tmp_path, "env.yaml", """
        extends: base
        channels: &channels [search, social]
        dynamic_values:
          first: {channels: *channels}
          second: {channels: *channels, weights: &weights [0.5, 0.5]}
          third: {<<: [{a: 1}, {b: 2}], weights: *weights}
    """)

    data = read_environment(top, {}).data

    timeouts = {"connect": 3, "read": 10}
    assert data["sources"] == {
        "alpha": {"timeout": timeouts, "rate_limit": {"requests_per_minute": 60, "burst_allowance": 1}},
        "beta": {"timeout": timeouts, "rate_limit": {"requests_per_minute": 60, "burst_allowance": 5}},
    }
    assert data["dynamic_values"] == {
        "first": {"channels": ["search", "social"]},
        "second": {"channels": ["search", "social"], "weights": [0.5, 0.5]},
        "third": {"a": 1, "b": 2, "weights": [0.5, 0.5]},
    }


# --- through the commands ----------------------------------------------------------------------


def database_rows() -> dict[str, list[dict]]:
    return {model._meta.label: list(model.objects.order_by("pk").values()) for model in TABLES}


TABLES = (ValueType, Source, ValueTypeSource, AuditEntry)

# kind: (writes the file in a directory, what the message says after the file's path)
HOSTILE = {
    "alias bomb": (
        lambda directory: write(directory, "bomb.yaml", ALIAS_BOMB),
        f":7: e[7]: more than {MAX_VALUES:,} values",
    ),
    "50 MB": (
        lambda directory: write_large(directory, 50 * MB),
        ": (top level): the file is larger than 1 MiB",
    ),
    "10,000 deep": (
        lambda directory: write(directory, "deep.yaml", "nested:" + nested(10_000, "flow list") + "\n"),
        ":1: nested" + "[0]" * (MAX_DEPTH - 1) + ": nested more than 64 levels deep",
    ),
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_sync_config__hostile_file__command_error_names_file_line_reason_and_nothing_changes(
    synced, tmp_path, kind
):
    make, expected = HOSTILE[kind]
    path = make(tmp_path)
    before = database_rows()

    start = time.monotonic()
    with pytest.raises(CommandError) as caught:
        call_command("sync_config", "--file", str(path), stdout=io.StringIO())

    assert time.monotonic() - start < 1
    assert f"{path}{expected}" in str(caught.value)
    assert database_rows() == before


@pytest.mark.django_db
def test_check__alias_bomb_as_the_active_environment__reports_dynconfig_e001_quickly(tmp_path):
    path = write(tmp_path, "test.yaml", ALIAS_BOMB)

    start = time.monotonic()
    with (
        override_settings(DYNCONFIG_ENV="test", DYNCONFIG_CONFIG_DIR=tmp_path),
        pytest.raises(SystemCheckError) as caught,
    ):
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())

    assert time.monotonic() - start < 1
    assert f"{path}:7: e[7]: more than {MAX_VALUES:,} values" in str(caught.value)
    assert "(dynconfig.E001)" in str(caught.value)
