"""Validation of a value against its value type's rules: pure functions, no I/O.

A value is valid when it matches the type's JSON schema, every number in it is finite, every
numeric leaf lies within the per-field bounds whose pattern matches its path, every `*_range`
pair is ordered (low <= high), and the `ascending` fields are strictly ascending. The ratio
bounds compare a candidate with a reference value (the last known good one, or the fallback).
Each function returns a list of readable problems; an empty list means valid.

A type's field precision is not a rule a value must obey but how a value the engine makes (a
blend) is rounded, once, before it is validated and stored: `round_value`. Its patterns are
those of the field bounds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
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
# {"*": {"decimals": 2}} or {"*.ctr_range": {"significant": 4}}: field pattern -> one precision.
Precision = Mapping[str, Mapping[str, int]]
# The kinds of precision and the digits each allows: a double holds about 15 significant digits,
# so more would round nothing.
PRECISION_DIGITS = {"decimals": (0, 15), "significant": (1, 15)}


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


def bounds_at(path: LeafPath, field_bounds: Mapping[str, Mapping[str, float]]) -> tuple[float | None, float | None]:
    """The (min, max) every pattern of `field_bounds` matching `path` puts on the number there,
    the tightest of each (None: unbounded on that side), as `value_problems` checks them."""
    low = high = None
    for pattern, bounds in field_bounds.items():
        if not _matches(pattern, path):
            continue
        if "min" in bounds and (low is None or bounds["min"] > low):
            low = bounds["min"]
        if "max" in bounds and (high is None or bounds["max"] < high):
            high = bounds["max"]
    return low, high


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


def round_value(value: Any, precision: Precision) -> Any:
    """`value` with each number rounded by the most specific pattern of `precision` matching its
    path, half away from zero on the number as it is written (4892.0380000000005 -> 4892.04 at 2
    decimals, 2.675 -> 2.68, 1.2345678 -> 1.235 at 4 significant digits). Other leaves, booleans,
    non-finite numbers and numbers no pattern matches are returned as they are; an int stays an
    int. Rounding a rounded value changes nothing."""
    if not precision:
        return value
    return _rounded(value, (), _by_specificity(precision))


def precision_problems(precision: Any) -> list[tuple[LeafPath, str]]:
    """Problems in a precision spec, each with where it is within the spec (() for the whole)."""
    if not isinstance(precision, Mapping):
        return [((), 'must be a mapping of field pattern to a precision, e.g. {"*": {"decimals": 2}}')]
    problems: list[tuple[LeafPath, str]] = []
    for pattern, digits in precision.items():
        if not isinstance(pattern, str) or not all(pattern.split(".")):
            problems.append(((str(pattern),), "a field pattern is dotted names or wildcards, none empty"))
            continue
        if not isinstance(digits, Mapping) or len(digits) != 1 or not set(digits) <= set(PRECISION_DIGITS):
            problems.append(((pattern,), "give exactly one of decimals or significant"))
            continue
        [(kind, count)] = digits.items()
        low, high = PRECISION_DIGITS[kind]
        if isinstance(count, bool) or not isinstance(count, int) or not low <= count <= high:
            problems.append(((pattern, kind), f"must be a whole number from {low} to {high}, not {count!r}"))
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


def _by_specificity(precision: Precision) -> list[tuple[str, str, int]]:
    """(pattern, kind, digits), most specific first: more segments, then fewer wildcard
    segments, then by the pattern's text (so the order does not depend on how it was stored)."""
    def specificity(pattern: str) -> tuple[int, int, str]:
        segments = pattern.split(".")
        wildcards = sum(1 for segment in segments if any(char in segment for char in "*?["))
        return (-len(segments), wildcards, pattern)

    return [
        (pattern, *next(iter(precision[pattern].items())))
        for pattern in sorted(precision, key=specificity)
    ]


def _rounded(value: Any, path: LeafPath, rules: list[tuple[str, str, int]]) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        for pattern, kind, digits in rules:
            if _matches(pattern, path):
                return _round_number(value, kind, digits)
        return value
    if isinstance(value, Mapping):
        return {key: _rounded(item, (*path, key), rules) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_rounded(item, (*path, index), rules) for index, item in enumerate(value))
    return value


def _round_number(number: int | float, kind: str, digits: int) -> int | float:
    if not math.isfinite(number):
        return number  # validation refuses it, by its path
    # The shortest text that reads back as this float is what a person sees: round that.
    written = Decimal(repr(number))
    if kind == "decimals":
        exponent = -digits
    else:
        exponent = written.adjusted() - digits + 1
    if written.as_tuple().exponent >= exponent:
        return number  # no more digits than asked for (every int at some decimals, 1e300, ...)
    quantum = Decimal(1).scaleb(exponent)
    rounded = written.quantize(quantum, rounding=ROUND_HALF_UP)
    if isinstance(number, int):
        return int(rounded)
    if not math.isfinite(float(rounded)):  # 1.5e308 to 1 significant digit: no float is 2e308
        rounded = written.quantize(quantum, rounding=ROUND_DOWN)
    return float(rounded) + 0.0  # + 0.0: -0.001 at 2 decimals is 0.0, not -0.0


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
