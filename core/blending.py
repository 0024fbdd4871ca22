"""Blending of one tier's source values into one value: pure functions, no I/O.

Each source of a tier gives a `Contribution` (its link weight, its data or None when it failed
or was invalid, its own confidence, the channels it covers); `blend` makes one `Blend` of them.

- Whole-value mode (`units=None`): the value is blended from every contribution with data
  (`channels` is ignored). Channel mode (`units` = the channels wanted): each channel is blended
  on its own from the contributions that cover it (`channels` names it, or is empty) and whose
  data has it as a top-level key; the value is `{channel: blended}` for every channel wanted.
- Numbers: each numeric leaf (by path, list indexes included, so a `[low, high]` range blends per
  end) is combined over the contributions that have it, their weights renormalized over just
  those. `mean`: weighted mean. `median`: the smallest value whose cumulative weight reaches half
  the total (within a relative 1e-9), so at a tie (0.5 / 0.5) the lower value wins (no averaging:
  the result is always a value some source gave). Strings, bools (not numbers) and subtrees whose shapes
  disagree come from the heaviest contribution that has them (ties: input order). Keys and list
  lengths are the union of the contributions'.
- Quorum: per unit, the weight of the contributions with data must be > 0 and >= `quorum`,
  else `QuorumNotMet`; one failing unit fails the whole blend.
- Confidence per unit = sum(weight * confidence, with data) / sum(weight, covering the unit,
  with or without data); overall = mean over units, clamped to [0, 1].

A contribution of weight 0 is accepted and has no say at all. `data` is assumed validated
(`core.validation`): finite numbers only.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

METHODS = ("mean", "median")
# Weights are decimals from configuration and their float sums miss by an ulp (0.7 + 0.1 < 0.8):
# that must neither fail a quorum nor let rescaled weights break a median tie the other way.
_RELATIVE_TOLERANCE = 1e-9

Weighted = list[tuple[float, Any]]  # (weight, node) pairs, one per contribution having the node


@dataclass(frozen=True)
class Contribution:
    """One source's say in a blend."""

    source: str
    weight: float  # the link's weight, in (0, 1]
    data: Mapping[str, Any] | None  # value-shaped data; None = the source failed or was invalid
    confidence: float = 1.0  # the source's own confidence, 0..1
    channels: tuple[str, ...] = ()  # channel mode: channels it covers; () = all it has data for

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"{self.source}: weight {self.weight} must be a finite number >= 0")
        if not 0 <= self.confidence <= 1:  # NaN fails this too
            raise ValueError(f"{self.source}: confidence {self.confidence} must be in [0, 1]")


@dataclass(frozen=True)
class Blend:
    """The blended value, how far to trust it, and who made it."""

    value: dict[str, Any]
    confidence: float  # 0..1
    contributors: tuple[str, ...]  # sources whose data entered the value, in input order


class QuorumNotMet(Exception):
    """Too little weight of valid sources for a unit: the tier counts as failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def blend(
    contributions: Sequence[Contribution],
    *,
    units: Sequence[str] | None = None,
    quorum: float = 0.0,
    method: str = "mean",
) -> Blend:
    """One value from a tier's contributions (see the module docstring for the rules)."""
    if method not in METHODS:
        raise ValueError(f"unknown blending method {method!r}: expected one of {METHODS}")
    if not math.isfinite(quorum):
        raise ValueError(f"quorum {quorum} must be a finite number")
    if units is not None and not units:
        raise ValueError("units must name at least one unit, or be None for the whole value")
    live = [(index, c) for index, c in enumerate(contributions) if c.weight > 0]

    value: dict[str, Any] = {}
    confidences: list[float] = []
    entered: set[int] = set()
    for unit in [None] if units is None else list(dict.fromkeys(units)):
        covering = [(i, c) for i, c in live if unit is None or not c.channels or unit in c.channels]
        with_data = [(i, c, d) for i, c in covering if (d := _unit_data(c, unit)) is not None]
        label = "value" if unit is None else f"channel {unit}"
        _require_quorum(label, [c.weight for _, c, _ in with_data], quorum)
        merged = _merge([(c.weight, d) for _, c, d in with_data], method)
        if unit is None:
            value = merged
        else:
            value[unit] = merged
        confidences.append(
            math.fsum(c.weight * c.confidence for _, c, _ in with_data)
            / math.fsum(c.weight for _, c in covering)
        )
        entered.update(i for i, _, _ in with_data)

    confidence = min(1.0, max(0.0, math.fsum(confidences) / len(confidences)))
    contributors = tuple(dict.fromkeys(c.source for i, c in live if i in entered))
    return Blend(value=value, confidence=confidence, contributors=contributors)


def _unit_data(contribution: Contribution, unit: str | None) -> Any:
    """The contribution's data for the unit (the whole data without one); None when it has none."""
    data = contribution.data
    if unit is None or data is None:
        return data
    return data.get(unit) if isinstance(data, Mapping) else None


def _require_quorum(label: str, weights: list[float], quorum: float) -> None:
    weight = math.fsum(weights)
    if weight <= 0:
        raise QuorumNotMet(f"{label}: no valid source")
    if weight < quorum and not math.isclose(weight, quorum, rel_tol=_RELATIVE_TOLERANCE):
        raise QuorumNotMet(
            f"{label}: weight {weight:g} of valid sources is below the quorum {quorum:g}"
        )


def _merge(items: Weighted, method: str) -> Any:
    """Blend one node of the value from the contributions that have it (never an empty list)."""
    nodes = [node for _, node in items]
    if all(isinstance(node, Mapping) for node in nodes):
        keys = dict.fromkeys(key for node in nodes for key in node)
        return {key: _merge([(w, n[key]) for w, n in items if key in n], method) for key in keys}
    if all(isinstance(node, (list, tuple)) for node in nodes):
        length = max(len(node) for node in nodes)
        return [_merge([(w, n[i]) for w, n in items if i < len(n)], method) for i in range(length)]
    if all(_is_number(node) for node in nodes):
        return _combine(items, method)
    # Strings and bools cannot be averaged, nor can disagreeing shapes: the heaviest source decides.
    return copy.deepcopy(max(items, key=lambda item: item[0])[1])


def _is_number(node: Any) -> bool:
    return isinstance(node, (int, float)) and not isinstance(node, bool)


def _combine(items: Weighted, method: str) -> float:
    numbers = [number for _, number in items]
    low, high = min(numbers), max(numbers)
    if low == high:
        return numbers[0]  # one source, or all agree: keep the number exactly as given
    if method == "median":
        return _weighted_median(items)
    mean = math.fsum(w * x for w, x in items) / math.fsum(w for w, _ in items)
    # Rounding must not push a mean outside its inputs (nor a range's low above its high).
    return min(max(mean, low), high)


def _weighted_median(items: Weighted) -> float:
    ordered = sorted(items, key=lambda item: item[1])
    half = math.fsum(w for w, _ in items) / 2
    for end in range(1, len(ordered) + 1):
        # fsum is exact before its one rounding, so a superset never sums to less: medians of
        # ordered ranges stay ordered.
        if math.fsum(w for w, _ in ordered[:end]) >= half * (1 - _RELATIVE_TOLERANCE):
            return ordered[end - 1][1]
    return ordered[-1][1]  # not reached: the full prefix holds the whole weight
