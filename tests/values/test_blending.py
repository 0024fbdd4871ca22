"""Blending of a tier's source values: pure unit tests, no database."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from core.blending import Blend, Contribution, QuorumNotMet, blend
from values.builtins import BUDGET_THRESHOLD_FIELDS
from core.validation import numeric_leaves

CHANNELS = ["search_advertising", "social_media", "email_marketing"]
RANGE_FIELDS = ["ctr_range", "cpc_range", "conversion_rate_range"]
METHODS = ["mean", "median"]

numbers = st.one_of(
    st.integers(min_value=0, max_value=10**6),
    st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
)
weights = st.floats(min_value=0.01, max_value=1.0)
confidences = st.floats(min_value=0.0, max_value=1.0)
ranges = st.lists(numbers, min_size=2, max_size=2).map(sorted)
# Flat dicts of numbers (budget_thresholds, industry_multipliers), keys sometimes missing.
flat_values = st.dictionaries(st.sampled_from(BUDGET_THRESHOLD_FIELDS), numbers, min_size=1)
channel_entries = st.fixed_dictionaries(
    {name: ranges for name in RANGE_FIELDS},
    optional={"competitive_intensity": st.floats(min_value=0, max_value=1)},
)
channel_values = st.dictionaries(st.sampled_from(CHANNELS), channel_entries, min_size=1)
any_values = st.one_of(flat_values, channel_values)


@st.composite
def contribution_lists(draw: st.DrawFn, values: st.SearchStrategy = any_values) -> list:
    """1-5 contributions; some failed (data None), at least one with data."""
    count = draw(st.integers(min_value=1, max_value=5))
    contributions = [
        Contribution(
            source=f"source_{index}",
            weight=draw(weights),
            data=draw(st.none() | values),
            confidence=draw(confidences),
        )
        for index in range(count)
    ]
    assume(any(contribution.data is not None for contribution in contributions))
    return contributions


def assert_close(actual: Any, expected: Any) -> None:
    """Same structure; numbers equal within float tolerance."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and list(actual) == list(expected)
        for key in expected:
            assert_close(actual[key], expected[key])
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected)
        for actual_item, expected_item in zip(actual, expected):
            assert_close(actual_item, expected_item)
    elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12), (actual, expected)
    else:
        assert actual == expected


def budget(micro: float, small: float, medium: float, large: float, enterprise: float) -> dict:
    return dict(zip(BUDGET_THRESHOLD_FIELDS, (micro, small, medium, large, enterprise)))


SEARCH = {
    "ctr_range": [0.02, 0.08],
    "cpc_range": [1.5, 8.0],
    "conversion_rate_range": [0.02, 0.12],
    "competitive_intensity": 0.75,
}
SOCIAL = {
    "ctr_range": [0.005, 0.02],
    "cpc_range": [0.5, 3.0],
    "conversion_rate_range": [0.01, 0.06],
    "competitive_intensity": 0.6,
}


# Properties


@pytest.mark.parametrize("method", METHODS)
@given(data=any_values, link_weights=st.lists(weights, min_size=1, max_size=5))
def test_blend__identical_inputs__gives_that_input(method, data, link_weights):
    contributions = [Contribution(f"s{i}", weight, data) for i, weight in enumerate(link_weights)]

    result = blend(contributions, method=method)

    assert_close(result.value, data)
    assert math.isclose(result.confidence, 1.0, rel_tol=1e-9)


@pytest.mark.parametrize("method", METHODS)
@given(data=channel_values, link_weights=st.lists(weights, min_size=1, max_size=5))
def test_blend__identical_inputs_in_channel_mode__gives_that_input(method, data, link_weights):
    contributions = [Contribution(f"s{i}", weight, data) for i, weight in enumerate(link_weights)]

    result = blend(contributions, units=list(data), method=method)

    assert_close(result.value, data)


@pytest.mark.parametrize("method", METHODS)
@given(contributions=contribution_lists(), factor=st.floats(min_value=0.01, max_value=100))
def test_blend__all_weights_scaled__value_and_confidence_unchanged(method, contributions, factor):
    scaled = [
        Contribution(c.source, c.weight * factor, c.data, c.confidence) for c in contributions
    ]

    original, rescaled = blend(contributions, method=method), blend(scaled, method=method)

    assert_close(rescaled.value, original.value)
    # Confidence is in [0, 1]: an absolute tolerance is the meaningful one near 0.
    assert math.isclose(rescaled.confidence, original.confidence, rel_tol=1e-9, abs_tol=1e-12)
    assert rescaled.contributors == original.contributors


@pytest.mark.parametrize("method", METHODS)
@given(contributions=contribution_lists())
def test_blend__any_inputs__every_number_within_its_inputs_range(method, contributions):
    inputs: dict[tuple, list[float]] = {}
    for contribution in contributions:
        for path, number in numeric_leaves(contribution.data):
            inputs.setdefault(path, []).append(number)

    result = blend(contributions, method=method)

    for path, number in numeric_leaves(result.value):
        assert min(inputs[path]) <= number <= max(inputs[path]), (path, number, inputs[path])
    assert 0 <= result.confidence <= 1


@pytest.mark.parametrize("method", METHODS)
@given(contributions=contribution_lists(channel_values))
def test_blend__ordered_input_ranges__blended_ranges_ordered(method, contributions):
    wanted = sorted({channel for c in contributions for channel in (c.data or {})})

    result = blend(contributions, units=wanted, method=method)

    for channel in wanted:
        for name in RANGE_FIELDS:
            low, high = result.value[channel][name]
            assert low <= high, (channel, name, low, high)


# Examples


def test_blend__seed_budget_weights_0_6_and_0_4__weighted_mean_of_each_threshold():
    research = budget(600, 6000, 60000, 600000, 2400000)
    benchmarks = budget(400, 4000, 40000, 400000, 1400000)

    result = blend([
        Contribution("market_research_api", 0.6, research),
        Contribution("industry_benchmarks_api", 0.4, benchmarks),
    ])

    assert_close(result.value, budget(520, 5200, 52000, 520000, 2000000))
    assert result.confidence == 1.0
    assert result.contributors == ("market_research_api", "industry_benchmarks_api")


def test_blend__one_source_failed__weights_renormalized_and_confidence_drops():
    research = budget(600, 6000, 60000, 600000, 2400000)

    result = blend([
        Contribution("market_research_api", 0.6, research),
        Contribution("industry_benchmarks_api", 0.4, None),
    ])

    assert result.value == research
    assert math.isclose(result.confidence, 0.6, rel_tol=1e-9)
    assert result.contributors == ("market_research_api",)


def test_blend__source_confidence__scales_the_blend_confidence():
    result = blend([
        Contribution("market_research_api", 0.6, budget(1, 2, 3, 4, 5), confidence=0.5),
        Contribution("industry_benchmarks_api", 0.4, budget(1, 2, 3, 4, 5), confidence=1.0),
    ])

    assert math.isclose(result.confidence, 0.6 * 0.5 + 0.4 * 1.0, rel_tol=1e-9)


def test_blend__valid_weight_below_quorum__raises_with_readable_reason():
    contributions = [
        Contribution("facebook_marketing_api", 0.3, {"social_media": SOCIAL}),
        Contribution("other_social_api", 0.5, None),
    ]

    with pytest.raises(QuorumNotMet) as raised:
        blend(contributions, units=["social_media"], quorum=0.5)

    assert raised.value.reason == (
        "channel social_media: weight 0.3 of valid sources is below the quorum 0.5"
    )
    assert str(raised.value) == raised.value.reason


def test_blend__valid_weight_equals_quorum_after_float_sum__quorum_met():
    contributions = [
        Contribution("a", 0.7, budget(1, 2, 3, 4, 5)),
        Contribution("b", 0.1, budget(1, 2, 3, 4, 5)),
    ]

    assert blend(contributions, quorum=0.8).value == budget(1, 2, 3, 4, 5)


def test_blend__every_source_failed__raises_no_valid_source():
    with pytest.raises(QuorumNotMet, match=r"^value: no valid source$"):
        blend([Contribution("market_research_api", 0.6, None)])


def test_blend__channel_mode_each_source_covers_its_channel__each_channel_from_its_source():
    other_social = {**SOCIAL, "competitive_intensity": 0.1}
    contributions = [
        # Google's data also holds a social_media entry: it does not cover that channel.
        Contribution(
            "google_ads_api",
            0.8,
            {"search_advertising": SEARCH, "social_media": other_social},
            channels=("search_advertising",),
        ),
        Contribution("facebook_marketing_api", 0.8, {"social_media": SOCIAL},
                     channels=("social_media",)),
    ]

    result = blend(contributions, units=["search_advertising", "social_media"])

    assert result.value == {"search_advertising": SEARCH, "social_media": SOCIAL}
    assert result.confidence == 1.0
    assert result.contributors == ("google_ads_api", "facebook_marketing_api")


def test_blend__channel_mode_source_covering_all__blends_into_every_channel():
    half_social = {"ctr_range": [0.015, 0.03], "cpc_range": [1.5, 4.0],
                   "conversion_rate_range": [0.03, 0.07], "competitive_intensity": 0.8}
    contributions = [
        Contribution("facebook_marketing_api", 0.8, {"social_media": SOCIAL},
                     channels=("social_media",)),
        Contribution("semrush_api", 0.8, {"social_media": half_social}),
    ]

    result = blend(contributions, units=["social_media"])

    assert_close(result.value["social_media"]["ctr_range"], [0.01, 0.025])
    assert_close(result.value["social_media"]["competitive_intensity"], 0.7)


def test_blend__channel_mode_channel_without_source__raises_naming_the_channel():
    contributions = [
        Contribution("google_ads_api", 0.8, {"search_advertising": SEARCH},
                     channels=("search_advertising",)),
    ]

    with pytest.raises(QuorumNotMet, match=r"^channel email_marketing: no valid source$"):
        blend(contributions, units=["search_advertising", "email_marketing"])


def test_blend__channel_mode_covering_source_without_the_channel__lowers_confidence():
    contributions = [
        Contribution("google_ads_api", 0.8, {"search_advertising": SEARCH}),
        Contribution("semrush_api", 0.2, {"social_media": SOCIAL}),
    ]

    result = blend(contributions, units=["search_advertising"])

    assert result.value == {"search_advertising": SEARCH}
    assert math.isclose(result.confidence, 0.8, rel_tol=1e-9)  # semrush covers every channel
    assert result.contributors == ("google_ads_api",)


def test_blend__one_outlier_source__median_ignores_it_and_mean_does_not():
    contributions = [
        Contribution("a", 0.4, budget(500, 5000, 50000, 500000, 2000000)),
        Contribution("b", 0.4, budget(520, 5200, 52000, 520000, 2080000)),
        Contribution("c", 0.2, budget(50000, 500000, 5000000, 50000000, 200000000)),
    ]

    median = blend(contributions, method="median").value
    mean = blend(contributions, method="mean").value

    assert median == budget(520, 5200, 52000, 520000, 2080000)
    assert mean["micro_threshold"] > 10000


def test_blend__median_exact_tie__takes_the_lower_value():
    contributions = [
        Contribution("a", 0.5, {"micro_threshold": 500}),
        Contribution("b", 0.5, {"micro_threshold": 600}),
    ]

    assert blend(contributions, method="median").value == {"micro_threshold": 500}


def test_blend__string_and_bool_leaves__come_from_the_heaviest_source():
    contributions = [
        Contribution("light", 0.3, {"currency": "EUR", "is_estimate": True, "rate": 1.0}),
        Contribution("heavy", 0.7, {"currency": "USD", "is_estimate": False, "rate": 2.0}),
        Contribution("tied", 0.7, {"currency": "GBP", "is_estimate": True}),
    ]

    result = blend(contributions)

    assert result.value["currency"] == "USD"  # ties go to the first in input order
    assert result.value["is_estimate"] is False
    assert_close(result.value["rate"], 1.7)


def test_blend__leaf_in_one_source_only__takes_that_value():
    contributions = [
        Contribution("a", 0.6, {"micro_threshold": 500}),
        Contribution("b", 0.4, {"micro_threshold": 600, "small_threshold": 6000}),
    ]

    assert_close(blend(contributions).value, {"micro_threshold": 540, "small_threshold": 6000})


@pytest.mark.parametrize("weight", [-0.1, math.nan, math.inf])
def test_blend__invalid_weight__raises_value_error(weight):
    with pytest.raises(ValueError, match="weight"):
        blend([Contribution("a", weight, budget(1, 2, 3, 4, 5))])


def test_blend__unknown_method__raises_value_error():
    with pytest.raises(ValueError, match="method"):
        blend([Contribution("a", 0.5, budget(1, 2, 3, 4, 5))], method="mode")


def test_blend__returns_a_fresh_value__inputs_not_aliased():
    data = {"labels": {"currency": "USD"}}

    result: Blend = blend([Contribution("a", 0.5, data)])
    result.value["labels"]["currency"] = "EUR"

    assert data == {"labels": {"currency": "USD"}}
