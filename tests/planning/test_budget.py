"""Budget classification from resolved values: every threshold at, one cent below and one cent
above, for several industries (their multiplier scales the thresholds), and the provenance of
both values. The numbers are operators' overrides (tests/planning/conftest.py), so the tests do
not depend on the seed's."""

from __future__ import annotations

from decimal import Decimal

import pytest

from planning.budget import TIERS, budget_classify
from planning.inputs import PlanningInputError
from tests.api.conftest import BUDGET_SOURCES, route_budget
from tests.planning.conftest import MULTIPLIERS, THRESHOLDS, set_value
from tests.values.conftest import BUDGET, serve_sources

CENT = Decimal("0.01")

# Hand-computed: THRESHOLDS × the industry's multiplier (MULTIPLIERS), to the cent.
EFFECTIVE = {
    None: ["1000.00", "8000.00", "40000.00", "300000.00", "1500000.00"],
    "finance": ["1300.00", "10400.00", "52000.00", "390000.00", "1950000.00"],  # × 1.3
    "retail": ["850.00", "6800.00", "34000.00", "255000.00", "1275000.00"],  # × 0.85
    "technology": ["1150.00", "9200.00", "46000.00", "345000.00", "1725000.00"],  # × 1.15
    "aerospace": ["1000.00", "8000.00", "40000.00", "300000.00", "1500000.00"],  # unlisted: × 1
}


@pytest.mark.parametrize("industry", list(EFFECTIVE))
def test_budget_classify__at_and_one_cent_around_every_threshold__tier_changes_exactly_at_it(
    known_values, industry
):
    expected, classified = [], []
    for index, threshold in enumerate(EFFECTIVE[industry]):
        at = Decimal(threshold)
        below_tier = TIERS[index - 1] if index else None
        expected += [(at - CENT, below_tier), (at, TIERS[index]), (at + CENT, TIERS[index])]
        for budget in (at - CENT, at, at + CENT):
            result = budget_classify(monthly_budget=budget, region="us", industry=industry)
            classified.append((budget, result.tier))

    assert classified == expected


@pytest.mark.parametrize("industry", list(EFFECTIVE))
def test_budget_classify__industry__effective_thresholds_are_thresholds_times_its_multiplier(
    known_values, industry
):
    result = budget_classify(monthly_budget=5000, region="us", industry=industry)

    assert [result.effective_thresholds[tier] for tier in TIERS] == [Decimal(t) for t in EFFECTIVE[industry]]
    assert result.thresholds == {tier: Decimal(THRESHOLDS[f"{tier}_threshold"]).quantize(CENT) for tier in TIERS}
    assert result.multiplier == Decimal(str(MULTIPLIERS.get(industry, 1)))


def test_budget_classify__unlisted_industry__multiplier_one_with_a_note_naming_known_industries(known_values):
    result = budget_classify(monthly_budget=9000, region="us", industry="Aerospace")

    assert (result.industry, result.multiplier, result.tier) == ("aerospace", Decimal("1"), "small")
    assert len(result.notes) == 1
    assert "'aerospace'" in result.notes[0] and "finance, retail, services, technology" in result.notes[0]


def test_budget_classify__no_industry__multipliers_not_read_and_their_provenance_none(known_values):
    result = budget_classify(monthly_budget=9000, region=None, industry=None)

    assert result.multiplier == Decimal("1")
    assert result.provenance["industry_multipliers"] is None
    assert result.provenance["budget_thresholds"]["tier"] == "override"
    assert result.notes == ()


def test_budget_classify__below_micro__no_tier_and_a_note(known_values):
    result = budget_classify(monthly_budget=0, region="us", industry="finance")

    assert result.tier is None
    assert result.monthly_budget == Decimal("0.00")
    assert "below the micro threshold 1300.00" in result.notes[0]


def test_budget_classify__sub_cent_threshold__rounded_half_up_before_comparing(known_values):
    set_value("budget_thresholds", {**THRESHOLDS, "small_threshold": 8000.005})

    result = budget_classify(monthly_budget=Decimal("8000.00"), region="us", industry=None)

    assert result.effective_thresholds["small"] == Decimal("8000.01")
    assert result.tier == "micro"
    assert budget_classify(monthly_budget=Decimal("8000.01"), region="us", industry=None).tier == "small"


def test_budget_classify__float_budget__read_by_its_decimal_form_and_rounded_to_the_cent(known_values):
    assert budget_classify(monthly_budget=0.1 + 0.2, industry=None).monthly_budget == Decimal("0.30")
    assert budget_classify(monthly_budget=7999.995, industry=None).tier == "small"  # 8000.00 half up


def test_budget_classify__region_and_industry_overrides__read_for_the_given_context(known_values):
    de_thresholds = {name: amount * 2 for name, amount in THRESHOLDS.items()}
    set_value("budget_thresholds", de_thresholds, {"region": "de"})
    set_value("industry_multipliers", {**MULTIPLIERS, "finance": 2.0}, {"region": "de"})

    de = budget_classify(monthly_budget=3000, region="DE", industry="finance")
    us = budget_classify(monthly_budget=3000, region="us", industry="finance")

    assert (de.region, de.multiplier, de.effective_thresholds["micro"], de.tier) == ("de", Decimal("2.0"), Decimal("4000.00"), None)
    assert (us.multiplier, us.effective_thresholds["micro"], us.tier) == (Decimal("1.3"), Decimal("1300.00"), "micro")


def test_budget_classify__thresholds_from_sources__provenance_of_both_values_returned(engine, local_server):
    route_budget(local_server, BUDGET)
    serve_sources(local_server, *BUDGET_SOURCES)
    set_value("industry_multipliers", MULTIPLIERS)

    result = budget_classify(monthly_budget=6000, region="us", industry="retail")

    thresholds, multipliers = result.provenance["budget_thresholds"], result.provenance["industry_multipliers"]
    assert thresholds["tier"] == "primary"
    assert sorted(use["name"] for use in thresholds["sources"]) == sorted(BUDGET_SOURCES)
    assert thresholds["fetched_at"] and thresholds["expires_at"]
    assert (multipliers["tier"], multipliers["sources"]) == ("override", [])
    assert result.thresholds["small"] == Decimal("6000.00")
    assert result.effective_thresholds["small"] == Decimal("5100.00")  # 6000 × 0.85
    assert result.tier == "small"


@pytest.mark.parametrize(
    "budget",
    [-1, Decimal("-0.01"), float("nan"), float("inf"), Decimal("Infinity"), "5000", True, None, Decimal("1e13")],
)
def test_budget_classify__not_a_usable_amount__refused_naming_monthly_budget(known_values, budget):
    with pytest.raises(PlanningInputError) as refused:
        budget_classify(monthly_budget=budget, region="us", industry="retail")

    assert refused.value.field == "monthly_budget"


@pytest.mark.parametrize(("field", "given"), [("region", "not a name!"), ("industry", ["retail"]), ("region", "x" * 65)])
def test_budget_classify__malformed_name__refused_naming_the_field(known_values, field, given):
    with pytest.raises(PlanningInputError) as refused:
        budget_classify(monthly_budget=100, **{"region": "us", "industry": "retail", field: given})

    assert refused.value.field == field

