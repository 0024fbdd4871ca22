"""Simulators of the generic JSON services that base.yaml configures (kind `http_json`).

Each answers the path and fields its source's request template and mapping expect, with
numbers drawn around the seed's values, deterministic per region and industry.
"""

from __future__ import annotations

from sources.simulators import SimRequest, SimResponse, seeded

INDUSTRIES = ("technology", "healthcare", "finance", "manufacturing", "retail", "services")
SEED_THRESHOLDS = (500, 5000, 50000, 500000, 2000000)
SEED_MULTIPLIERS = {"technology": 1.2, "healthcare": 1.1, "finance": 1.3, "manufacturing": 1.0, "retail": 1.1, "services": 1.0}


def _context(request: SimRequest) -> tuple[str, str]:
    return request.param("region", "global"), request.param("industry", "general")


def _not_found(request: SimRequest) -> SimResponse:
    return SimResponse(404, {"error": f"no such endpoint: {request.path}"})


def _thresholds(name: str, request: SimRequest) -> list[float]:
    rng = seeded(name, *_context(request))
    scale = rng.uniform(0.8, 1.25)  # the same for every tier keeps them ascending
    return [round(threshold * scale * rng.uniform(0.97, 1.03), 2) for threshold in SEED_THRESHOLDS]


def market_research(request: SimRequest) -> SimResponse:
    if request.path.rstrip("/") != "/v1/budget-benchmarks":
        return _not_found(request)
    micro, small, medium, large, enterprise = _thresholds("market_research", request)
    return SimResponse(
        200,
        {
            "micro_business_spending_median": micro,
            "small_business_spending_median": small,
            "medium_business_spending_median": medium,
            "large_business_spending_median": large,
            "enterprise_spending_median": enterprise,
            "confidence": 0.9,
        },
    )


def industry_benchmarks(request: SimRequest) -> SimResponse:
    if request.path.rstrip("/") != "/benchmarks/budget-tiers":
        return _not_found(request)
    tiers = dict(zip(("micro", "small", "medium", "large", "enterprise"), _thresholds("industry_benchmarks", request)))
    return SimResponse(200, {"tiers": tiers, "currency": "USD"})


def _multipliers(name: str, request: SimRequest) -> dict[str, float]:
    rng = seeded(name, request.param("region", "global"))
    return {industry: round(base * rng.uniform(0.9, 1.1), 3) for industry, base in SEED_MULTIPLIERS.items()}


def economic_intelligence(request: SimRequest) -> SimResponse:
    if request.path.rstrip("/") != "/v2/industry-multipliers":
        return _not_found(request)
    return SimResponse(
        200, {f"{industry}_performance_multiplier": value for industry, value in _multipliers("economic", request).items()}
    )


def competitive_analysis(request: SimRequest) -> SimResponse:
    if request.path.rstrip("/") != "/multipliers":
        return _not_found(request)
    return SimResponse(200, {"industries": _multipliers("competitive", request)})


def email_intelligence(request: SimRequest) -> SimResponse:
    if request.path.rstrip("/") != "/v1/email/benchmarks":
        return _not_found(request)
    rng = seeded("email", *_context(request))
    click = rng.uniform(0.015, 0.025)
    cost = rng.uniform(0.05, 0.15)
    conversion = rng.uniform(0.01, 0.02)
    return SimResponse(
        200,
        {
            "click_rate_p25": round(click, 4),
            "click_rate_p75": round(click * 2, 4),
            "cost_per_click_p25": round(cost, 3),
            "cost_per_click_p75": round(cost * 3, 3),
            "conversion_rate_p25": round(conversion, 4),
            "conversion_rate_p75": round(conversion * 2.5, 4),
        },
    )
