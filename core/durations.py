"""ISO 8601 durations (`PT6H`, `P1D`, `PT1H30M`) as the YAML writes them, and back."""

from __future__ import annotations

import re
from datetime import timedelta

# Weeks, days, hours, minutes and seconds only: years and months have no fixed length.
_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: object) -> timedelta:
    """A positive duration from an ISO 8601 string, or from a whole number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}: expected ISO 8601 such as PT6H or P1D")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"bad duration {value}: a number of seconds must be positive")
        return _timedelta(value, seconds=value)
    if not isinstance(value, str):
        raise ValueError(f"bad duration {value!r}: expected ISO 8601 such as PT6H or P1D")
    match = _DURATION.match(value.strip().upper())
    if not match:
        hint = " (years and months have no fixed length: use days)" if re.search(r"\d+[YM]", value.split("T")[0]) else ""
        raise ValueError(f"bad duration {value!r}: expected ISO 8601 such as PT6H or P1D{hint}")
    parts = {name: float(number) for name, number in match.groupdict().items() if number}
    duration = _timedelta(value, **parts)
    if duration <= timedelta(0):
        raise ValueError(f"bad duration {value!r}: must be longer than zero")
    return duration


def _timedelta(value: object, **parts: float) -> timedelta:
    try:
        return timedelta(**parts)
    except OverflowError:  # beyond timedelta's ~2.7 million years: a typo, not a schedule
        raise ValueError(f"bad duration {value!r}: too long") from None


def format_duration(duration: timedelta) -> str:
    """The shortest ISO 8601 form: `P1D`, `PT6H`, `PT1H30M`, `P1DT12H`, `PT0.5S`."""
    # Whole microseconds (timedelta's resolution), so that no digit is lost to float rounding.
    days, rest = divmod(duration // timedelta(microseconds=1), 86_400_000_000)
    hours, rest = divmod(rest, 3_600_000_000)
    minutes, microseconds = divmod(rest, 60_000_000)
    seconds = f"{microseconds // 1_000_000}.{microseconds % 1_000_000:06d}".rstrip("0").rstrip(".")
    text = "P" + (f"{days}D" if days else "")
    clock = (
        (f"{hours}H" if hours else "")
        + (f"{minutes}M" if minutes else "")
        + (f"{seconds}S" if microseconds else "")
    )
    return text + ("T" + clock if clock else "") if (days or clock) else "PT0S"
