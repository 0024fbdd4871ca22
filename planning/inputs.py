"""What the planning functions accept, and how they refuse the rest.

Money is `Decimal`, to the cent: an amount given as a float is read through its shortest
decimal form (`0.1` is `Decimal("0.1")`, not the binary fraction), then rounded to the cent,
half up. Names (region, industry, channel) follow the rule of the values' contexts: trimmed,
lower-cased, letters, digits, `_`, `.`, `-`, at most 64 characters.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")
# The largest amount taken: a trillion a month is beyond any campaign, and the bound keeps every
# derived number inside Decimal's default 28 significant digits.
MAX_AMOUNT = Decimal("1000000000000")
# The same rule core.context applies to a context's names (kept here: planning reads values
# only through `values.get_value`).
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")


class PlanningInputError(ValueError):
    """Input the planning functions refuse. `field` names the input (`monthly_budget`, `region`,
    `channels`...); `item` the entry of a mapping (a channel name), when the error is about one."""

    def __init__(self, field: str, message: str, *, item: str | None = None):
        super().__init__(f"{field}{f'[{item!r}]' if item else ''}: {message}")
        self.field = field
        self.item = item
        self.message = message


class UnusableValueError(RuntimeError):
    """A dynamic value, as resolved for this context, cannot be computed with (a zero CPC, a
    channel missing from the answer, a context the value type no longer accepts). Not the
    caller's fault: an operator has to correct the value (an override, the fallback)."""


def money(field: str, amount: Any, *, item: str | None = None) -> Decimal:
    """`amount` (Decimal, int or float) as Decimal cents; refuses negative, non-finite, too large."""
    if isinstance(amount, bool) or not isinstance(amount, (Decimal, int, float)):
        raise PlanningInputError(field, f"{amount!r} is not a number", item=item)
    number = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    if not number.is_finite():
        raise PlanningInputError(field, f"{amount!r} is not a finite number", item=item)
    if number < 0:
        raise PlanningInputError(field, f"{amount} is negative; give zero or more", item=item)
    if number > MAX_AMOUNT:
        raise PlanningInputError(field, f"{amount} is above the maximum {MAX_AMOUNT}", item=item)
    return to_cents(abs(number) if number == 0 else number)  # no "-0.00"


def to_cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def name(field: str, given: Any, *, item: str | None = None) -> str | None:
    """A region, industry or channel name, normalized; None for None or a blank string."""
    if given is None:
        return None
    if not isinstance(given, str):
        raise PlanningInputError(field, f"{given!r} is not a name", item=item)
    normalized = given.strip().lower()
    if not normalized:
        return None
    if not NAME_PATTERN.match(normalized):
        raise PlanningInputError(
            field, f"{given!r} is not a name (letters, digits, '_', '-', '.'; at most 64)", item=item
        )
    return normalized


def decimal_of(number: Any) -> Decimal | None:
    """A number read from a dynamic value as Decimal (floats by their shortest decimal form);
    None when it is not a finite number."""
    if isinstance(number, bool) or not isinstance(number, (int, float, Decimal)):
        return None
    converted = number if isinstance(number, Decimal) else Decimal(str(number))
    return converted if converted.is_finite() else None
