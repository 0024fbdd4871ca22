"""IMF DataMapper: the baseline value adjusted by a region's real GDP growth against a reference country's.

What we request: an indicator (default `NGDP_RPCH`, real GDP growth in percent) for the
context's region and a reference country (default `USA`) over the last three years, this one
included: `GET {base}/external/datamapper/api/v1/{INDICATOR}/{ISO3}/{REF_ISO3}?periods=Y-2,Y-1,Y`.
Regions are ISO2 in our contexts and mapped to ISO3 with a small table (`ISO3_BY_ISO2`); ISO3
codes pass as they are. The latest year that both countries have a value for is used (the
DataMapper mixes outturns with projections, and the current year is a projection).

How the number is computed:

    factor = clamp(1 + (growth_region - growth_reference) / 100 * sensitivity, 0.8, 1.25)

with `sensitivity` 1.0 by default, and every number of the call's baseline value (the value
type's fallback: never the last good value, which would compound the factor refresh after
refresh) is multiplied by the factor and rounded to 4 significant figures
(`sources.adapters.scaling`, shared with `world_bank`). A region growing 1.8 points slower
than the reference gets multipliers 1.8 % lower. The clamp [0.8, 1.25] is symmetric on a
log scale (0.8 = 1 / 1.25) and is reached at a growth gap of about 20 points: only crisis and
rebound years (2020, 2021) or bad data differ that much, and one year's macro figure should
not move a performance multiplier by more than a fifth. It also keeps the multipliers of the
fallback (1.0-1.3) inside the type's 0.3-3.0 bounds.

Confidence 1.0. Without a region in the context the baseline is returned unchanged at
confidence 0.5, without a request (as for the World Bank, see `world_bank`).

Errors: an HTTP 200 answer without `values` (the API's answer for an unknown indicator or
country), a country absent from the values or no year shared by both countries are
INVALID_DATA; a region that is neither in the table nor an ISO3 code is TERMINAL, naming it.
`"api": {"version": "2"}`, an extra `indicators` block and a `"": null` entry in the
indicator's values are tolerated. HTTP, size, JSON and timeout failures are classified by the
shared HTTP layer (`sources.adapters.http`).

Settings, from the source's `request` block with the link's `params` laid over it:
`indicator`, `reference_country`, `sensitivity`, `periods` (a list or "2024,2025").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import requests

from sources.adapters.base import ErrorKind, SourceAdapter, SourceCall, SourceError, SourceResult
from sources.adapters.http import parse_json, raise_for_status, send
from sources.adapters.scaling import non_negative_setting, require_numbers, scale_baseline, unscaled_result

DEFAULT_INDICATOR = "NGDP_RPCH"
DEFAULT_REFERENCE_COUNTRY = "USA"
DEFAULT_SENSITIVITY = 1.0
# Symmetric on a log scale; see the module docstring for why these bounds.
MIN_FACTOR = 0.8
MAX_FACTOR = 1.25
# Three years, so that a country whose newest year is missing still shares an earlier one.
DEFAULT_PERIOD_YEARS = 3

# The regions our contexts use, and a few more large advertising markets.
ISO3_BY_ISO2 = {
    "us": "USA", "gb": "GBR", "uk": "GBR", "de": "DEU", "fr": "FRA", "es": "ESP", "it": "ITA",
    "nl": "NLD", "ca": "CAN", "au": "AUS", "jp": "JPN", "in": "IND", "br": "BRA", "mx": "MEX",
    "cn": "CHN", "at": "AUT", "be": "BEL", "ch": "CHE", "se": "SWE", "no": "NOR", "dk": "DNK",
    "fi": "FIN", "ie": "IRL", "pl": "POL", "pt": "PRT", "kr": "KOR", "nz": "NZL", "sg": "SGP",
    "za": "ZAF",
}  # fmt: skip

_ISO3 = re.compile(r"^[A-Za-z]{3}$")
_INDICATOR_CODE = re.compile(r"^[A-Za-z0-9_]+$")
_YEAR = re.compile(r"^[0-9]{4}$")


class ImfAdapter(SourceAdapter):
    """Adjusts the call's baseline value by the region's growth against a reference country's."""

    kind = "imf"

    def fetch(self, call: SourceCall, session: requests.Session) -> SourceResult:
        settings = {**call.source.request_template, **call.params}
        indicator = _indicator(settings.get("indicator", DEFAULT_INDICATOR))
        reference_country = iso3(settings.get("reference_country", DEFAULT_REFERENCE_COUNTRY), "reference_country")
        sensitivity = non_negative_setting(settings, "sensitivity", DEFAULT_SENSITIVITY)
        periods = _periods(settings.get("periods"))
        require_numbers(call.baseline)
        region = call.context.get("region")
        if not region:
            return unscaled_result(call.baseline)
        region_code = iso3(region, "region")

        codes = [region_code] if region_code == reference_country else [region_code, reference_country]
        url = f"{call.source.base_url.rstrip('/')}/external/datamapper/api/v1/{indicator}/{'/'.join(codes)}"
        reply = send(
            session,
            method="GET",
            url=url,
            call=call,
            params={"periods": ",".join(periods)},
            headers={"Accept": "application/json"},
        )
        raise_for_status(reply)
        series = _series(parse_json(reply), indicator, codes)
        common = set(series[region_code]) & set(series[reference_country])
        if not common:
            raise SourceError(ErrorKind.INVALID_DATA, f"no year with data for both {region_code} and {reference_country}")
        year = max(common)
        gap = series[region_code][year] - series[reference_country][year]
        factor = min(max(1 + gap / 100 * sensitivity, MIN_FACTOR), MAX_FACTOR)
        return SourceResult(scale_baseline(call.baseline, factor), fetched_at=datetime.now(UTC), confidence=1.0)


def iso3(value: Any, setting: str) -> str:
    """The ISO3 code of an ISO2 code in the table, or of an ISO3 code; else TERMINAL naming it."""
    if isinstance(value, str) and value.lower() in ISO3_BY_ISO2:
        return ISO3_BY_ISO2[value.lower()]
    if isinstance(value, str) and _ISO3.match(value):
        return value.upper()  # the API itself says whether it knows the country
    raise SourceError(
        ErrorKind.TERMINAL, f"{setting} {str(value)[:40]!r} has no ISO3 code here (an ISO3 code, or one of ISO3_BY_ISO2)"
    )


def _indicator(value: Any) -> str:
    if not isinstance(value, str) or not _INDICATOR_CODE.match(value):
        raise SourceError(ErrorKind.TERMINAL, f"indicator {str(value)[:40]!r} is not an indicator code")
    return value


def _periods(value: Any) -> list[str]:
    if value is None:
        this_year = datetime.now(UTC).year
        return [str(year) for year in range(this_year - DEFAULT_PERIOD_YEARS + 1, this_year + 1)]
    years = value.split(",") if isinstance(value, str) else value
    if not isinstance(years, list) or not years or not all(_YEAR.match(str(year).strip()) for year in years):
        raise SourceError(ErrorKind.TERMINAL, "setting periods must be a list of years, or years joined by commas")
    return [str(year).strip() for year in years]


def _series(payload: Any, indicator: str, codes: list[str]) -> dict[str, dict[str, float]]:
    """Requested ISO3 code -> {year: value}, every country present; else INVALID_DATA."""
    if not isinstance(payload, Mapping):
        raise SourceError(ErrorKind.INVALID_DATA, "expected a JSON object")
    if "values" not in payload:
        raise SourceError(
            ErrorKind.INVALID_DATA, f"the answer has no values: unknown indicator or country ({indicator}, {', '.join(codes)})"
        )
    values = payload["values"]
    by_country = values.get(indicator) if isinstance(values, Mapping) else None
    if not isinstance(by_country, Mapping):
        raise SourceError(ErrorKind.INVALID_DATA, f"the answer has no values for indicator {indicator}")
    series: dict[str, dict[str, float]] = {}
    for code in codes:
        years = by_country.get(code)
        if years is None:
            continue
        if not isinstance(years, Mapping):
            raise SourceError(ErrorKind.INVALID_DATA, f"the values of {code} are not an object keyed by year")
        series[code] = {}
        for year, value in years.items():
            if not _YEAR.match(year):
                raise SourceError(ErrorKind.INVALID_DATA, f"the values of {code} have a key that is not a year")
            if value is None:
                continue  # treated like an absent year
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SourceError(ErrorKind.INVALID_DATA, f"the value of {code} in {year} is not a number")
            series[code][year] = float(value)
    missing = [code for code in codes if not series.get(code)]
    if missing:
        raise SourceError(
            ErrorKind.INVALID_DATA, f"no data for {'country' if len(missing) == 1 else 'countries'} {', '.join(missing)}"
        )
    return series
