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
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError(f"bad duration {value!r}: expected ISO 8601 such as PT6H or P1D")
    match = _DURATION.match(value.strip().upper())
    if not match:
        hint = " (years and months have no fixed length: use days)" if re.search(r"\d+[YM]", value.split("T")[0]) else ""
        raise ValueError(f"bad duration {value!r}: expected ISO 8601 such as PT6H or P1D{hint}")
    parts = {name: float(number) for name, number in match.groupdict().items() if number}
    duration = timedelta(**parts)
    if duration <= timedelta(0):
        raise ValueError(f"bad duration {value!r}: must be longer than zero")
    return duration


def format_duration(duration: timedelta) -> str:
    """The shortest ISO 8601 form: `P1D`, `PT6H`, `PT1H30M`, `P1DT12H`, `PT0.5S`."""
    total = duration.total_seconds()
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "P" + (f"{int(days)}D" if days else "")
    clock = (
        (f"{int(hours)}H" if hours else "")
        + (f"{int(minutes)}M" if minutes else "")
        + (f"{seconds:g}S" if seconds else "")
    )
    return text + ("T" + clock if clock else "") if (days or clock) else "PT0S"
