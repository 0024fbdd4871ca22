"""Scaling a value type's baseline by a regional factor: what the economic adapters share.

`world_bank` and `imf` each turn a macro figure of the context's region, against a reference
country's, into a factor, and answer the call's baseline (the value type's fallback) with every
number multiplied by it. The baseline, never the last good value: scaling that would compound
the factor refresh after refresh. The helpers here are the part that does not depend on which
figure made the factor: the settings check, the baseline check, the answer for a context without
a region, and the scaling itself.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sources.adapters.base import ErrorKind, SourceError, SourceResult, count_numbers

# Thresholds are dollars and multipliers about 1: 4 significant figures is finer than either needs.
SIGNIFICANT_DIGITS = 4
# The baseline as it is: the right answer for no particular region, but nothing was measured,
# so measured sources outweigh it.
UNSCALED_CONFIDENCE = 0.5


def non_negative_setting(settings: Mapping[str, Any], name: str, default: float) -> float:
    """Setting `name` (else `default`) as a float; TERMINAL naming it unless a finite number >= 0."""
    value = settings.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise SourceError(ErrorKind.TERMINAL, f"setting {name} must be a non-negative number")
    return float(value)


def require_numbers(baseline: Any) -> None:
    """TERMINAL unless the call carries a baseline value with numbers in it to scale."""
    if count_numbers(baseline) == 0:
        raise SourceError(ErrorKind.TERMINAL, "the call has no reference value with numbers to scale")


def unscaled_result(baseline: Any) -> SourceResult:
    """The baseline as it is, at `UNSCALED_CONFIDENCE`: the answer for a context without a region,
    given without a request."""
    return SourceResult(copy.deepcopy(baseline), fetched_at=datetime.now(UTC), confidence=UNSCALED_CONFIDENCE)


def scale_baseline(baseline: Any, factor: float) -> Any:
    """Every number of `baseline` times `factor`, rounded to 4 significant figures; the rest as is.

    A positive factor keeps ascending thresholds ascending: rounding to significant figures never
    reverses an order.
    """
    if isinstance(baseline, bool):
        return baseline
    if isinstance(baseline, (int, float)):
        return _significant(baseline * factor)
    if isinstance(baseline, Mapping):
        return {key: scale_baseline(value, factor) for key, value in baseline.items()}
    if isinstance(baseline, (list, tuple)):
        return [scale_baseline(value, factor) for value in baseline]
    return copy.deepcopy(baseline)


def _significant(number: float) -> float:
    if number == 0 or not math.isfinite(number):
        return number
    return round(number, SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(number))))
