"""Rounding of made values by their type's field precision: the pure rounding (no database),
then the engine, which rounds a blend once, when it is made, so that every tier and the history
hold what is served."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from core.blending import Contribution, blend
from core.validation import numeric_leaves, precision_problems, round_value
from tests.servers import LocalServer
from tests.values.conftest import (
    benchmarks_answer,
    market_answer,
    reload_engine,
    serve_sources,
)
from tests.values.test_resolution import (
    BENCHMARKS,
    BENCHMARKS_PATH,
    MARKET,
    MARKET_PATH,
    US,
    in_l2,
)
from values import get_value
from values.builtins import BUILTIN_VALUE_TYPES
from values.cache import l1
from values.models import ResolvedValue, ValueRecord, ValueType
from values.registry import registry

CENTS = {"*": {"decimals": 2}}
FOUR_SIGNIFICANT = {"*": {"significant": 4}}

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
numbers = st.one_of(st.integers(min_value=-(10**18), max_value=10**18), finite_floats)
json_values = st.recursive(
    st.one_of(numbers, st.booleans(), st.none(), st.text(max_size=5)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.sampled_from(["a", "b", "c_range"]), children, max_size=3)
    ),
    max_leaves=12,
)
precisions = st.dictionaries(
    st.sampled_from(["*", "a", "b", "*.c_range", "a.*", "c_range"]),
    st.one_of(
        st.builds(lambda n: {"decimals": n}, st.integers(min_value=0, max_value=15)),
        st.builds(lambda n: {"significant": n}, st.integers(min_value=1, max_value=15)),
    ),
    max_size=3,
)


def digits_after_point(number: float) -> int:
    return max(0, -Decimal(repr(number)).normalize().as_tuple().exponent)


def significant_digits(number: float) -> int:
    return len(Decimal(repr(number)).normalize().as_tuple().digits)


@pytest.mark.parametrize(
    "number, precision, expected",
    [
        (4892.0380000000005, CENTS, 4892.04),
        (0.1 + 0.2, CENTS, 0.3),
        (2.675, CENTS, 2.68),  # as written, half away from zero (the float itself is 2.67499...)
        (-2.675, CENTS, -2.68),
        (1.2345678, FOUR_SIGNIFICANT, 1.235),
        (0.012345678, FOUR_SIGNIFICANT, 0.01235),
        (123456.7, FOUR_SIGNIFICANT, 123500.0),
        (9.99996, FOUR_SIGNIFICANT, 10.0),
        (-0.001, CENTS, 0.0),
        (1e300, CENTS, 1e300),
        (500, CENTS, 500),
        (123456, FOUR_SIGNIFICANT, 123500),
    ],
)
def test_round_value__a_number__what_a_person_expects(number, precision, expected):
    rounded = round_value({"x": number}, precision)["x"]

    assert rounded == expected and type(rounded) is type(expected)
    assert repr(rounded) == repr(expected)  # no -0.0, no float noise left


def test_round_value__ranges__rounded_end_by_end():
    value = {"search": {"ctr_range": [0.021234567, 0.0798765], "cpc_range": [1.5049999, 8.0000001]}}
    precision = {"*.ctr_range": {"significant": 4}, "*.cpc_range": {"decimals": 2}}

    assert round_value(value, precision) == {"search": {"ctr_range": [0.02123, 0.07988], "cpc_range": [1.5, 8.0]}}


def test_round_value__other_leaves__untouched():
    value = {"on": True, "off": False, "name": "4892.0380000000005", "nothing": None, "n": 4892.0380000000005}

    assert round_value(value, CENTS) == {**value, "n": 4892.04}
    assert round_value(value, CENTS)["on"] is True


def test_round_value__numbers_no_pattern_matches__untouched():
    value = {"rates": {"ctr": 0.0123456}, "cpc": 1.23456}

    assert round_value(value, {"rates": {"significant": 2}}) == {"rates": {"ctr": 0.012}, "cpc": 1.23456}


def test_round_value__no_precision__the_value_itself():
    value = {"x": 4892.0380000000005}

    assert round_value(value, {}) is value


def test_round_value__patterns_overlap__the_most_specific_wins():
    value = {"search": {"ctr_range": [0.0212345, 0.05], "competitive_intensity": 0.7512345}}
    precision = {"*": {"decimals": 1}, "*.ctr_range": {"significant": 3}, "search.ctr_range": {"significant": 2}}

    assert round_value(value, precision) == {"search": {"ctr_range": [0.021, 0.05], "competitive_intensity": 0.8}}


def test_round_value__non_finite__left_for_validation_to_refuse():
    rounded = round_value({"a": math.inf, "b": math.nan}, CENTS)

    assert rounded["a"] == math.inf and math.isnan(rounded["b"])


@given(json_values, precisions)
def test_round_value__rounded_twice__same_as_once(value, precision):
    once = round_value(value, precision)

    assert round_value(once, precision) == once


@given(json_values, precisions)
def test_round_value__shape_and_non_numbers__kept(value, precision):
    rounded = round_value(value, precision)

    assert [path for path, _ in numeric_leaves(rounded)] == [path for path, _ in numeric_leaves(value)]
    assert [type(number) for _, number in numeric_leaves(rounded)] == [type(n) for _, n in numeric_leaves(value)]


@given(finite_floats, st.integers(min_value=0, max_value=15))
def test_round_value__to_n_decimals__at_most_n_digits_after_the_point(number, decimals):
    rounded = round_value({"x": number}, {"*": {"decimals": decimals}})["x"]

    assert digits_after_point(rounded) <= decimals
    assert abs(rounded - number) <= 0.5 * 10**-decimals * (1 + 1e-9) + abs(number) * 1e-15


# Far from the largest float, so that rounding half up never needs a number no float holds.
@given(finite_floats.filter(lambda number: 0 < abs(number) < 1e300), st.integers(min_value=1, max_value=15))
def test_round_value__to_n_significant__at_most_n_significant_digits(number, digits):
    rounded = round_value({"x": number}, {"*": {"significant": digits}})["x"]

    assert significant_digits(rounded) <= digits
    assert math.isclose(rounded, number, rel_tol=0.5 * 10 ** (1 - digits) * (1 + 1e-9))


@given(st.floats(min_value=1e307, allow_infinity=False), st.integers(min_value=1, max_value=15))
def test_round_value__near_the_largest_float__stays_finite(number, digits):
    rounded = round_value({"x": number}, {"*": {"significant": digits}})["x"]

    assert math.isfinite(rounded) and significant_digits(rounded) <= digits


@pytest.mark.parametrize("key", sorted(BUILTIN_VALUE_TYPES))
def test_builtin_precisions__valid_and_leave_the_fallback_as_written(key):
    definition = BUILTIN_VALUE_TYPES[key]

    assert precision_problems(definition["precision"]) == []
    assert round_value(definition["fallback"], definition["precision"]) == definition["fallback"]


@pytest.mark.parametrize(
    "precision, problem",
    [
        ([], ((), 'must be a mapping of field pattern to a precision, e.g. {"*": {"decimals": 2}}')),
        ({"a..b": {"decimals": 2}}, (("a..b",), "a field pattern is dotted names or wildcards, none empty")),
        ({"*": {"decimals": 2, "significant": 4}}, (("*",), "give exactly one of decimals or significant")),
        ({"*": {"digits": 2}}, (("*",), "give exactly one of decimals or significant")),
        ({"*": 2}, (("*",), "give exactly one of decimals or significant")),
        ({"*": {"decimals": -1}}, (("*", "decimals"), "must be a whole number from 0 to 15, not -1")),
        ({"*": {"significant": 0}}, (("*", "significant"), "must be a whole number from 1 to 15, not 0")),
        ({"*": {"decimals": 2.5}}, (("*", "decimals"), "must be a whole number from 0 to 15, not 2.5")),
        ({"*": {"decimals": True}}, (("*", "decimals"), "must be a whole number from 0 to 15, not True")),
    ],
)
def test_precision_problems__bad_spec__says_where_and_why(precision, problem):
    assert precision_problems(precision) == [problem]


# The engine: a blend is rounded once, when it is made ------------------------------------------

# Two answers whose weighted mean (0.6 / 0.4) a float cannot hold exactly: 549.8689999999999, ...
NOISY_MARKET = {
    "micro_threshold": 551.871,
    "small_threshold": 5134.585,
    "medium_threshold": 62781.363,
    "large_threshold": 626972.132,
    "enterprise_threshold": 2402846.885,
}
NOISY_BENCHMARKS = {
    "micro_threshold": 546.866,
    "small_threshold": 4990.541,
    "medium_threshold": 53012.328,
    "large_threshold": 673609.061,
    "enterprise_threshold": 2038418.863,
}
# What a person expects to read: the blend to the cent.
TO_THE_CENT = {
    "micro_threshold": 549.87,
    "small_threshold": 5076.97,
    "medium_threshold": 58873.75,
    "large_threshold": 645626.9,
    "enterprise_threshold": 2257075.68,
}


@pytest.fixture
def noisy_budget_server(engine, local_server: LocalServer) -> LocalServer:
    serve_sources(local_server, MARKET, BENCHMARKS)
    local_server.route("GET", MARKET_PATH, json=market_answer(NOISY_MARKET))
    local_server.route("GET", BENCHMARKS_PATH, json=benchmarks_answer(NOISY_BENCHMARKS))
    return local_server


def test_blend_of_the_noisy_answers__has_float_noise():
    raw = blend([Contribution(MARKET, 0.6, NOISY_MARKET), Contribution(BENCHMARKS, 0.4, NOISY_BENCHMARKS)]).value

    assert raw["micro_threshold"] == 549.8689999999999
    assert all(raw[name] != TO_THE_CENT[name] for name in raw)


def test_get_value__blend_with_float_noise__served_and_stored_to_the_cent(noisy_budget_server):
    answer = get_value("budget_thresholds", US)

    assert answer.provenance.tier == "primary"
    assert answer.value == TO_THE_CENT
    assert in_l2("budget_thresholds", US).value == TO_THE_CENT
    assert ResolvedValue.objects.get(value_type__key="budget_thresholds", context_key="region=us").value == TO_THE_CENT
    assert [record.value for record in ValueRecord.objects.filter(value_type__key="budget_thresholds")] == [TO_THE_CENT]
    l1.clear()
    assert get_value("budget_thresholds", US).value == TO_THE_CENT  # from L2, as stored


def test_get_value__type_without_precision__blend_served_as_made(noisy_budget_server):
    ValueType.objects.filter(key="budget_thresholds").update(field_precision={})
    reload_engine()

    answer = get_value("budget_thresholds", US)

    assert answer.value["micro_threshold"] == 549.8689999999999


def test_registry__precision_changed__fingerprint_changes_and_stored_values_are_foreign(engine):
    before = registry.snapshot().value_type("budget_thresholds").fingerprint
    ValueType.objects.filter(key="budget_thresholds").update(field_precision={"*": {"decimals": 0}})
    reload_engine()

    assert registry.snapshot().value_type("budget_thresholds").fingerprint != before


def test_value_type_clean__bad_precision__refused_with_where_and_why(engine):
    value_type = ValueType.objects.get(key="budget_thresholds")
    value_type.field_precision = {"*": {"decimals": 2, "significant": 4}, "micro_threshold": {"decimals": 99}}

    with pytest.raises(ValidationError) as caught:
        value_type.full_clean()

    assert caught.value.message_dict["field_precision"] == [
        "*: give exactly one of decimals or significant",
        "micro_threshold.decimals: must be a whole number from 0 to 15, not 99",
    ]
