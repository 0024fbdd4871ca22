"""The built-in value types: the numbers the campaign planner used to hard-code.

Each definition is plain data in the shape of a `dynamic_values:` entry of the environment YAML,
so an environment file only has to say what differs (a schedule, its sources). The emergency
fallbacks are the seed design's numbers; `social_media` and `email_marketing` in
`channel_performance` are not in the seed and carry published industry-average ranges instead
(see docs/configuration.md), so that every channel the planner offers has an answer.
`precision` rounds each blended value once, when it is made: money to the cent, rates and
multipliers to 4 significant digits.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

# A type's TTL when the environment says `default` or `performance` without giving cache TTLs.
DEFAULT_TTL = timedelta(hours=6)  # the seed's cache.default_ttl
DEFAULT_PERFORMANCE_TTL = timedelta(hours=1)  # the seed's cache.performance_ttl

NUMBER = {"type": "number"}
RANGE = {
    "type": "array",
    "items": NUMBER,
    "minItems": 2,
    "maxItems": 2,
    "description": "[low, high]",
}

BUDGET_THRESHOLD_FIELDS = [
    "micro_threshold",
    "small_threshold",
    "medium_threshold",
    "large_threshold",
    "enterprise_threshold",
]

BUILTIN_VALUE_TYPES: dict[str, dict[str, Any]] = {
    "budget_thresholds": {
        "aliases": ["budget_classification"],
        "description": "Monthly budget (USD) at which a campaign enters each tier.",
        "schema": {
            "type": "object",
            "properties": {name: NUMBER for name in BUDGET_THRESHOLD_FIELDS},
            "required": BUDGET_THRESHOLD_FIELDS,
            "additionalProperties": False,
        },
        "context_keys": ["region", "industry"],
        "widening": ["industry", "region"],
        "update_frequency": "PT6H",
        "ttl": "default",
        "max_staleness": "P7D",
        "fallback": {
            "micro_threshold": 500,
            "small_threshold": 5000,
            "medium_threshold": 50000,
            "large_threshold": 500000,
            "enterprise_threshold": 2000000,
        },
        "validation": {
            "min_ratio": 0.1,
            "max_ratio": 10.0,
            "fields": {"*": {"min": 0, "max": 1_000_000_000}},
            "ascending": BUDGET_THRESHOLD_FIELDS,
        },
        "precision": {"*": {"decimals": 2}},  # money, to the cent
    },
    "industry_multipliers": {
        "aliases": [],
        "description": "Performance multiplier per industry (1.0 = average).",
        "schema": {
            "type": "object",
            "additionalProperties": NUMBER,
            "minProperties": 1,
        },
        "context_keys": ["region"],
        "widening": ["region"],
        "update_frequency": "P1D",
        "ttl": "default",
        "max_staleness": "P7D",
        "fallback": {
            "technology": 1.2,
            "healthcare": 1.1,
            "finance": 1.3,
            "manufacturing": 1.0,
            "retail": 1.1,
            "services": 1.0,
        },
        "validation": {"fields": {"*": {"min": 0.3, "max": 3.0}}},
        "precision": {"*": {"significant": 4}},
    },
    "channel_performance": {
        "aliases": [],
        "description": "Per channel: CTR, CPC (USD) and conversion-rate ranges, competitive intensity.",
        "schema": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "ctr_range": RANGE,
                    "cpc_range": RANGE,
                    "conversion_rate_range": RANGE,
                    "competitive_intensity": NUMBER,
                },
                "required": ["ctr_range", "cpc_range", "conversion_rate_range"],
                "additionalProperties": False,
            },
        },
        "context_keys": ["channels", "region", "industry"],
        # Without channels, a value holds every channel: the channels asked for are taken from it.
        "widening": ["industry", "region", "channels"],
        "update_frequency": "PT1H",
        "ttl": "performance",
        "max_staleness": "P1D",
        "fallback": {
            "search_advertising": {
                "ctr_range": [0.02, 0.08],
                "cpc_range": [1.5, 8.0],
                "conversion_rate_range": [0.02, 0.12],
                "competitive_intensity": 0.75,
            },
            "social_media": {
                "ctr_range": [0.005, 0.02],
                "cpc_range": [0.5, 3.0],
                "conversion_rate_range": [0.01, 0.06],
                "competitive_intensity": 0.6,
            },
            "email_marketing": {
                "ctr_range": [0.015, 0.05],
                "cpc_range": [0.05, 0.5],
                "conversion_rate_range": [0.01, 0.05],
                "competitive_intensity": 0.3,
            },
        },
        "validation": {
            "min_ratio": 0.1,
            "max_ratio": 10.0,
            "fields": {
                "*.ctr_range": {"min": 0, "max": 1},
                "*.conversion_rate_range": {"min": 0, "max": 1},
                "*.competitive_intensity": {"min": 0, "max": 1},
                "*.cpc_range": {"min": 0, "max": 1000},
            },
        },
        "precision": {
            "*.ctr_range": {"significant": 4},
            "*.conversion_rate_range": {"significant": 4},
            "*.competitive_intensity": {"significant": 4},
            "*.cpc_range": {"decimals": 2},  # money, to the cent
        },
    },
}
