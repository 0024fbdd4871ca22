"""A forecast of a value from its own history: the engine's `predicted` answer (the seed's "ML
prediction" for its emergency fallback).

Pure functions over plain data. The forecast of each number in the value (every numeric leaf:
a threshold, a multiplier, each end of a range) is the weighted median of that number across
the recent values, newest weighing most (weights halve every HALF_LIFE values back): a median,
so that one bad fetch in the history does not move it, and weighted, so that a trend shows.
The value's shape (and anything not a number) is the newest value's. Its confidence is how
closely the history agrees: one minus the weighted median absolute deviation relative to the
median, averaged over the numbers, and scaled by PREDICTION_CONFIDENCE_CAP, because a forecast
is never as good as a measurement.

Why not statsmodels (exponential smoothing, ARIMA): a few dozen irregularly spaced values per
context do not support a fitted model, and a median is what stays sane when one of them is
wrong; a 60 MB dependency would buy nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Fewer values than this are no history to forecast from.
MIN_POINTS = 3
# Weights halve every this many values back: the last week of daily values dominates.
HALF_LIFE = 5
# A forecast's confidence is at most this (a measurement's can reach 1).
PREDICTION_CONFIDENCE_CAP = 0.5


@dataclass(frozen=True)
class Forecast:
    value: Any
    confidence: float  # 0..PREDICTION_CONFIDENCE_CAP
    points: int  # how many past values it came from


def forecast(history: Sequence[Any]) -> Forecast | None:
    """The forecast from `history` (past values, newest first), or None when there are fewer
    than MIN_POINTS values of the newest one's shape."""
    if not history:
        return None
    newest = history[0]
    shaped = [value for value in history if _same_shape(value, newest)]
    if len(shaped) < MIN_POINTS:
        return None
    weights = [0.5 ** (index / HALF_LIFE) for index in range(len(shaped))]
    agreements: list[float] = []

    def predict(template: Any, path: tuple) -> Any:
        if isinstance(template, dict):
            return {name: predict(item, (*path, name)) for name, item in template.items()}
        if isinstance(template, list):
            return [predict(item, (*path, index)) for index, item in enumerate(template)]
        if not _is_number(template):
            return template
        numbers = [float(_at(value, path)) for value in shaped]
        middle = weighted_median(numbers, weights)
        spread = weighted_median([abs(number - middle) for number in numbers], weights)
        agreements.append(1.0 - min(1.0, spread / abs(middle)) if middle else (1.0 if spread == 0 else 0.0))
        return middle

    value = predict(newest, ())
    agreement = sum(agreements) / len(agreements) if agreements else 0.0
    return Forecast(value=value, confidence=round(agreement * PREDICTION_CONFIDENCE_CAP, 4), points=len(shaped))


def weighted_median(numbers: Sequence[float], weights: Sequence[float]) -> float:
    """The number at which half the total weight lies on each side (the lower one on a tie)."""
    pairs = sorted(zip(numbers, weights))
    half = sum(weights) / 2
    running = 0.0
    for number, weight in pairs:
        running += weight
        if running >= half:
            return number
    return pairs[-1][0]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_shape(value: Any, template: Any) -> bool:
    """Whether `value` has a number wherever `template` has one (and the same keys and lengths)."""
    if isinstance(template, dict):
        return isinstance(value, dict) and value.keys() == template.keys() and all(
            _same_shape(value[name], item) for name, item in template.items()
        )
    if isinstance(template, list):
        return isinstance(value, list) and len(value) == len(template) and all(
            _same_shape(got, item) for got, item in zip(value, template)
        )
    return _is_number(value) if _is_number(template) else True


def _at(value: Any, path: tuple) -> Any:
    for step in path:
        value = value[step]
    return value
