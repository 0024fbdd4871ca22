"""Validation of a value against its value type's rules: pure functions, no I/O.

A value is valid when it matches the type's JSON schema, every number in it is finite, every
numeric leaf lies within the per-field bounds whose pattern matches its path, every `*_range`
pair is ordered (low <= high), and the `ascending` fields are strictly ascending. The ratio
bounds compare a candidate with a reference value (the last known good one, or the fallback).
Each function returns a list of readable problems; an empty list means valid.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import Any

from django.core.validators import RegexValidator
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from core.errors import format_path

# Keys of value types, sources and their aliases.
identifier_validator = RegexValidator(
    r"^[a-z][a-z0-9_]*$", "Use lowercase letters, digits and underscores, starting with a letter."
)
# A consumer's read budget longer than this is no longer "a fast answer": a refresh's job.
MAX_READ_BUDGET = timedelta(seconds=10)

LeafPath = tuple[str | int, ...]


@dataclass(frozen=True)
class ValueRules:
    """What a value of one type must satisfy."""

    schema: Mapping[str, Any]
    # {"*.ctr_range": {"min": 0, "max": 1}}: a pattern of dotted segments (fnmatch per segment)
    # that bounds every number at or below the paths it matches.
    field_bounds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # Top-level fields whose numbers must be strictly ascending, in this order.
    ascending_fields: Sequence[str] = ()
    # Bounds of candidate / reference for every number present in both.
    min_ratio: float | None = None
    max_ratio: float | None = None


def value_problems(value: Any, rules: ValueRules) -> list[str]:
    """Everything wrong with `value` under `rules` (ratio bounds aside: see `ratio_problems`)."""
    problems = [
        f"{format_path(tuple(error.absolute_path))}: {error.message}"
        for error in Draft202012Validator(rules.schema).iter_errors(value)
    ]
    for path, number in numeric_leaves(value):
        if not math.isfinite(number):
            problems.append(f"{format_path(path)}: {number} is not a finite number")
            continue
        for pattern, bounds in rules.field_bounds.items():
            if not _matches(pattern, path):
                continue
            if "min" in bounds and number < bounds["min"]:
                problems.append(f"{format_path(path)}: {number} is below the minimum {bounds['min']}")
            if "max" in bounds and number > bounds["max"]:
                problems.append(f"{format_path(path)}: {number} is above the maximum {bounds['max']}")
    problems.extend(_range_problems(value))
    problems.extend(_ascending_problems(value, rules.ascending_fields))
    return problems


def ratio_problems(candidate: Any, reference: Any, rules: ValueRules) -> list[str]:
    """Numbers of `candidate` whose ratio to the same number in `reference` is out of bounds."""
    if rules.min_ratio is None and rules.max_ratio is None:
        return []
    reference_numbers = dict(numeric_leaves(reference))
    problems = []
    for path, number in numeric_leaves(candidate):
        base = reference_numbers.get(path)
        if not base or not math.isfinite(number):
            continue  # nothing to compare with (absent or zero reference)
        ratio = number / base
        if rules.min_ratio is not None and ratio < rules.min_ratio:
            problems.append(
                f"{format_path(path)}: {number} is {ratio:.3g}x the reference {base},"
                f" below the minimum ratio {rules.min_ratio}"
            )
        if rules.max_ratio is not None and ratio > rules.max_ratio:
            problems.append(
                f"{format_path(path)}: {number} is {ratio:.3g}x the reference {base},"
                f" above the maximum ratio {rules.max_ratio}"
            )
    return problems


def rules_problems(rules: ValueRules) -> dict[str, list[str]]:
    """Problems in the rules themselves, by field name: a bad schema, min above max, ..."""
    problems: dict[str, list[str]] = {}
    try:
        Draft202012Validator.check_schema(rules.schema)
    except SchemaError as error:
        problems.setdefault("schema", []).append(f"not a valid JSON schema: {error.message}")
    if not isinstance(rules.field_bounds, Mapping):
        problems.setdefault("field_bounds", []).append("must be a mapping of pattern to bounds")
    else:
        for pattern, bounds in rules.field_bounds.items():
            for problem in _bounds_problems(bounds):
                problems.setdefault("field_bounds", []).append(f"{pattern}: {problem}")
    for name, ratio in (("min_ratio", rules.min_ratio), ("max_ratio", rules.max_ratio)):
        if ratio is not None and not (math.isfinite(ratio) and ratio > 0):
            problems.setdefault(name, []).append("must be a positive number")
    if (
        rules.min_ratio is not None
        and rules.max_ratio is not None
        and rules.min_ratio > rules.max_ratio
    ):
        problems.setdefault("min_ratio", []).append(
            f"min_ratio {rules.min_ratio} is above max_ratio {rules.max_ratio}"
        )
    return problems


def numeric_leaves(value: Any, path: LeafPath = ()) -> Iterator[tuple[LeafPath, float]]:
    """Every number in a JSON value with its path (booleans are not numbers)."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from numeric_leaves(item, (*path, key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from numeric_leaves(item, (*path, index))


def _bounds_problems(bounds: Any) -> list[str]:
    if not isinstance(bounds, Mapping) or not set(bounds) <= {"min", "max"} or not bounds:
        return ["bounds must be a mapping with 'min' and/or 'max'"]
    numbers = {name: bound for name, bound in bounds.items()}
    for name, bound in numbers.items():
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
            return [f"{name} must be a finite number, not {bound!r}"]
    if "min" in numbers and "max" in numbers and numbers["min"] > numbers["max"]:
        return [f"min {numbers['min']} is above max {numbers['max']}"]
    return []


def _matches(pattern: str, path: LeafPath) -> bool:
    """A pattern matches a path when each of its segments matches the path's leading segments."""
    segments = pattern.split(".")
    keys = [part for part in path if isinstance(part, str)]
    return len(segments) <= len(keys) and all(
        fnmatchcase(key, segment) for key, segment in zip(keys, segments)
    )


def _range_problems(value: Any, path: LeafPath = ()) -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if (
                isinstance(key, str)
                and key.endswith("_range")
                and isinstance(item, (list, tuple))
                and len(item) == 2
                and all(isinstance(end, (int, float)) for end in item)
                and item[0] > item[1]
            ):
                yield f"{format_path((*path, key))}: low {item[0]} is above high {item[1]}"
            yield from _range_problems(item, (*path, key))


def _ascending_problems(value: Any, fields: Sequence[str]) -> Iterator[str]:
    if not fields or not isinstance(value, Mapping):
        return
    present = [(name, value[name]) for name in fields if isinstance(value.get(name), (int, float))]
    for (lower_name, lower), (upper_name, upper) in zip(present, present[1:]):
        if not lower < upper:
            yield f"{upper_name} ({upper}) must be above {lower_name} ({lower})"
