"""Budget classification: which tier a monthly budget falls in, from the dynamic values.

Replaces the planner's hard-coded thresholds and multipliers (the seed design's
`budget_thresholds` and `industry_multipliers` dictionaries) with reads of the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from planning.inputs import UnusableValueError, decimal_of, money, name, to_cents
from planning.reading import read_value

BUDGET_THRESHOLDS = "budget_thresholds"
INDUSTRY_MULTIPLIERS = "industry_multipliers"
# In ascending order; each enters at its `<tier>_threshold` of `budget_thresholds`.
TIERS = ("micro", "small", "medium", "large", "enterprise")
# An industry without a multiplier costs what the average does.
DEFAULT_MULTIPLIER = Decimal("1")


@dataclass(frozen=True)
class BudgetClassification:
    monthly_budget: Decimal  # to the cent
    tier: str | None  # one of TIERS; None below the micro threshold
    region: str | None  # normalized, as read with
    industry: str | None
    multiplier: Decimal  # the industry's multiplier, or DEFAULT_MULTIPLIER
    thresholds: dict[str, Decimal]  # tier -> budget_thresholds' amount, to the cent
    effective_thresholds: dict[str, Decimal]  # tier -> amount × multiplier, to the cent
    notes: tuple[str, ...]  # what a reader should know: a default multiplier, a budget under every tier
    # value key -> its answer's Provenance.as_dict(); industry_multipliers is None when no
    # industry was given (the value was not read).
    provenance: dict[str, dict[str, Any] | None]


def budget_classify(
    *, monthly_budget: Decimal | float, region: str | None = None, industry: str | None = None
) -> BudgetClassification:
    """The tier of `monthly_budget` (USD) for a campaign in `region` and `industry`.

    The rule:
    - `budget_thresholds` is read for the context {region, industry}; its `<tier>_threshold` is
      the monthly budget at which a campaign enters that tier.
    - The industry's multiplier is read from `industry_multipliers` for {region} (the type's
      context keys). Each threshold is multiplied by it, then rounded to the cent (half up): an
      industry whose costs run 1.3x needs 1.3x the budget for the same tier. No industry, or an
      industry the value does not list: multiplier 1 (with a note for the unlisted one).
    - The budget (rounded to the cent, half up) is in the highest tier whose effective threshold
      it reaches: a budget exactly at a threshold belongs to the tier that threshold opens, one
      cent below it to the tier before. Below the micro threshold there is no tier (None).

    Raises planning.inputs.PlanningInputError for a negative, non-finite or non-numeric budget
    or a malformed name, and UnusableValueError when the values read cannot be used.
    """
    budget = money("monthly_budget", monthly_budget)
    region = name("region", region)
    industry = name("industry", industry)
    notes: list[str] = []

    thresholds_answer = read_value(BUDGET_THRESHOLDS, {"region": region, "industry": industry})
    thresholds = _thresholds(thresholds_answer.value)

    multiplier = DEFAULT_MULTIPLIER
    multipliers_provenance = None
    if industry is not None:
        multipliers_answer = read_value(INDUSTRY_MULTIPLIERS, {"region": region})
        multipliers_provenance = multipliers_answer.provenance.as_dict()
        multiplier, note = _multiplier(multipliers_answer.value, industry)
        if note:
            notes.append(note)

    effective = {tier: to_cents(amount * multiplier) for tier, amount in thresholds.items()}
    tier = _tier_of(budget, effective)
    if tier is None:
        notes.append(
            f"{budget} is below the micro threshold {effective['micro']}: it is in no tier"
        )
    return BudgetClassification(
        monthly_budget=budget,
        tier=tier,
        region=region,
        industry=industry,
        multiplier=multiplier,
        thresholds={tier_name: to_cents(amount) for tier_name, amount in thresholds.items()},
        effective_thresholds=effective,
        notes=tuple(notes),
        provenance={
            BUDGET_THRESHOLDS: thresholds_answer.provenance.as_dict(),
            INDUSTRY_MULTIPLIERS: multipliers_provenance,
        },
    )


def _tier_of(budget: Decimal, effective: Mapping[str, Decimal]) -> str | None:
    for tier in reversed(TIERS):
        if budget >= effective[tier]:
            return tier
    return None


def _thresholds(value: Any) -> dict[str, Decimal]:
    if not isinstance(value, Mapping):
        raise UnusableValueError(f"{BUDGET_THRESHOLDS} is not an object: {value!r}")
    thresholds = {}
    for tier in TIERS:
        amount = decimal_of(value.get(f"{tier}_threshold"))
        if amount is None or amount < 0:
            raise UnusableValueError(
                f"{BUDGET_THRESHOLDS}.{tier}_threshold is not an amount: {value.get(f'{tier}_threshold')!r}"
            )
        thresholds[tier] = amount
    return thresholds


def _multiplier(value: Any, industry: str) -> tuple[Decimal, str | None]:
    """(the multiplier of `industry`, a note when the default was used)."""
    if not isinstance(value, Mapping):
        raise UnusableValueError(f"{INDUSTRY_MULTIPLIERS} is not an object: {value!r}")
    if industry not in value:
        known = ", ".join(sorted(value)) or "none"
        return DEFAULT_MULTIPLIER, (
            f"industry {industry!r} has no multiplier in {INDUSTRY_MULTIPLIERS} (known: {known});"
            f" {DEFAULT_MULTIPLIER} used"
        )
    multiplier = decimal_of(value[industry])
    if multiplier is None or multiplier <= 0:
        raise UnusableValueError(f"{INDUSTRY_MULTIPLIERS}.{industry} is not a positive number: {value[industry]!r}")
    return multiplier, None
