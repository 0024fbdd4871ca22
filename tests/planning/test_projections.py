"""Channel projections from resolved channel_performance: the arithmetic against hand-computed
numbers for known ranges (an operator's override), zero and refused spends, unknown channels,
values that cannot be projected with, and the provenance."""

from __future__ import annotations

from decimal import Decimal

import pytest

from planning.inputs import PlanningInputError, UnusableValueError
from planning.projections import Span, channel_project
from tests.planning.conftest import CHANNELS, SEARCH, SOCIAL, set_value

D = Decimal


def test_channel_project__search_1000__hand_computed_ranges(known_values):
    projection = channel_project(budget_by_channel={"search_advertising": D("1000")}, region="us")

    search = projection.channels["search_advertising"]
    assert search.spend == D("1000.00")
    assert search.clicks == Span(125, 666)  # 1000 / 8.0 = 125; 1000 / 1.5 = 666.67 → 666
    assert search.impressions == Span(1562, 33300)  # 125 / 0.08 = 1562.5 → 1562; 666 / 0.02
    assert search.conversions == Span(D("2.50"), D("79.92"))  # 125 × 0.02; 666 × 0.12
    assert search.cost_per_conversion == Span(D("12.51"), D("400.00"))  # 1000 / 79.92 = 12.5125; 1000 / 2.50
    assert search.performance == {
        "cpc_range": [D("1.5"), D("8.0")],
        "ctr_range": [D("0.02"), D("0.08")],
        "conversion_rate_range": [D("0.02"), D("0.12")],
    }


def test_channel_project__two_channels__each_hand_computed_and_totals_added(known_values):
    projection = channel_project(
        budget_by_channel={"search_advertising": 1000, "Social_Media": 333.33}, region="us", industry="retail"
    )

    social = projection.channels["social_media"]
    assert social.clicks == Span(133, 666)  # 333.33 / 2.5 = 133.33; 333.33 / 0.5 = 666.66
    assert social.impressions == Span(3325, 66600)  # 133 / 0.04; 666 / 0.01
    assert social.conversions == Span(D("1.33"), D("33.30"))  # 133 × 0.01; 666 × 0.05
    assert social.cost_per_conversion == Span(D("10.01"), D("250.62"))  # 333.33 / 33.30 = 10.0099; / 1.33 = 250.624
    totals = projection.totals
    assert totals.spend == D("1333.33")
    assert totals.clicks == Span(258, 1332)
    assert totals.impressions == Span(4887, 99900)
    assert totals.conversions == Span(D("3.83"), D("113.22"))
    assert totals.cost_per_conversion == Span(D("11.78"), D("348.13"))  # 1333.33 / 113.22 = 11.776; / 3.83 = 348.128
    assert list(projection.channels) == ["search_advertising", "social_media"]
    assert (projection.region, projection.industry) == ("us", "retail")


def test_channel_project__zero_spend__zeros_and_no_cost_per_conversion(known_values):
    projection = channel_project(budget_by_channel={"search_advertising": 0})

    search = projection.channels["search_advertising"]
    assert (search.spend, search.clicks, search.impressions) == (D("0.00"), Span(0, 0), Span(0, 0))
    assert search.conversions == Span(D("0.00"), D("0.00"))
    assert search.cost_per_conversion == Span(None, None)
    assert projection.totals.cost_per_conversion == Span(None, None)


def test_channel_project__too_little_for_a_conversion_at_the_low_end__that_cost_is_none(known_values):
    search = channel_project(budget_by_channel={"search_advertising": 8}).channels["search_advertising"]

    assert search.clicks == Span(1, 5)  # 8 / 8.0; 8 / 1.5 = 5.33
    assert search.conversions == Span(D("0.02"), D("0.60"))
    assert search.cost_per_conversion == Span(D("13.33"), D("400.00"))

    tiny = channel_project(budget_by_channel={"search_advertising": 7.99}).channels["search_advertising"]
    assert (tiny.clicks, tiny.conversions.low, tiny.cost_per_conversion.high) == (Span(0, 5), D("0.00"), None)


@pytest.mark.parametrize("spend", [-1, D("-0.01"), float("nan"), float("-inf"), D("NaN"), "100", None, True])
def test_channel_project__negative_or_non_finite_spend__refused_naming_the_channel(known_values, spend):
    with pytest.raises(PlanningInputError) as refused:
        channel_project(budget_by_channel={"search_advertising": spend})

    assert (refused.value.field, refused.value.item) == ("channels", "search_advertising")


def test_channel_project__unknown_channel__refused_listing_the_channels_the_value_has(known_values):
    with pytest.raises(PlanningInputError) as refused:
        channel_project(budget_by_channel={"search_advertising": 10, "billboards": 10})

    assert refused.value.item == "billboards"
    assert "allowed: search_advertising, social_media" in refused.value.message


@pytest.mark.parametrize(
    "channels",
    [{}, {"not a name": 1}, {"  ": 1}, {"search_advertising": 1, "SEARCH_ADVERTISING": 2}],
    ids=["none", "malformed", "blank", "twice"],
)
def test_channel_project__no_malformed_or_repeated_channels__refused(known_values, channels):
    with pytest.raises(PlanningInputError) as refused:
        channel_project(budget_by_channel=channels)

    assert refused.value.field == "channels"


@pytest.mark.parametrize(
    "broken",
    [{"ctr_range": [0, 0.05]}, {"cpc_range": [0, 2.0]}],
    ids=["zero_ctr", "zero_cpc"],
)
def test_channel_project__zero_ctr_or_cpc_in_the_value__unusable_value_naming_it(known_values, broken):
    set_value("channel_performance", {**CHANNELS, "social_media": {**SOCIAL, **broken}})

    with pytest.raises(UnusableValueError) as refused:
        channel_project(budget_by_channel={"social_media": 100})

    assert f"social_media.{next(iter(broken))}" in str(refused.value)
    # The other channels still project.
    assert channel_project(budget_by_channel={"search_advertising": 100}).totals.clicks == Span(12, 66)


def test_channel_project__override_for_these_channels__used_with_its_provenance(known_values):
    cheaper = {**SEARCH, "cpc_range": [1.0, 4.0]}
    set_value("channel_performance", {"search_advertising": cheaper}, {"channels": "search_advertising"})

    projection = channel_project(budget_by_channel={"search_advertising": 100})

    assert projection.channels["search_advertising"].clicks == Span(25, 100)
    provenance = projection.provenance["channel_performance"]
    assert (provenance["tier"], provenance["confidence"], provenance["stale"]) == ("override", 1.0, False)


def test_channel_project__sources_down__fallback_ranges_and_provenance_says_so(sources_down):
    projection = channel_project(budget_by_channel={"email_marketing": 100})

    assert projection.provenance["channel_performance"]["tier"] in ("fallback", "stale")
    assert projection.provenance["channel_performance"]["errors"]
    assert projection.channels["email_marketing"].clicks == Span(200, 2000)  # seed: cpc 0.05-0.5
