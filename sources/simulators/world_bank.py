"""Simulator of the World Bank Indicators API v2 (`api-formats.md` section 1).

`GET /v2/country/{codes}/indicator/{INDICATOR}?format=json` with `date` (`2020` or
`2019:2023`), `mrv`, `mrnev`, `per_page` and `page`; `{codes}` ISO2 or ISO3 joined by `;`, or
`all`. Answers `[page_meta, rows]`, each country's rows newest year first; `per_page` comes
back as the string the request sent, or as the number 50 by default. A code that looks valid
but is not in `COUNTRIES` has no rows (the no-data shape when no country has any); a malformed
code, an unknown indicator or a bad parameter gets the API's message-120 error with HTTP 200.

Values are the countries' 2023 GDP per capita, about as published, with the other years
derived by a growth that is deterministic per country and year (`seeded`); for some countries
the latest year is still null, as in the real data.
"""

from __future__ import annotations

import math
import re
from typing import Any

from sources.simulators import SimRequest, SimResponse, seeded

FIRST_YEAR = 2000
ANCHOR_YEAR = 2023
LATEST_YEAR = 2024
DEFAULT_PER_PAGE = 50

# ISO2 -> (ISO3, name, GDP per capita in current US$ in 2023, rounded).
COUNTRIES: dict[str, tuple[str, str, float]] = {
    "US": ("USA", "United States", 82769),
    "DE": ("DEU", "Germany", 52746),
    "GB": ("GBR", "United Kingdom", 48867),
    "FR": ("FRA", "France", 44461),
    "ES": ("ESP", "Spain", 33509),
    "IT": ("ITA", "Italy", 38373),
    "NL": ("NLD", "Netherlands", 62537),
    "CA": ("CAN", "Canada", 53431),
    "AU": ("AUS", "Australia", 64712),
    "JP": ("JPN", "Japan", 33834),
    "IN": ("IND", "India", 2484),
    "BR": ("BRA", "Brazil", 10043),
    "MX": ("MEX", "Mexico", 13926),
    "CN": ("CHN", "China", 12614),
    "AT": ("AUT", "Austria", 56506),
    "BE": ("BEL", "Belgium", 53475),
    "CH": ("CHE", "Switzerland", 89000),
    "SE": ("SWE", "Sweden", 55517),
    "PL": ("POL", "Poland", 22113),
    "KR": ("KOR", "Korea, Rep.", 33121),
    "ZA": ("ZAF", "South Africa", 6023),
    "NG": ("NGA", "Nigeria", 1597),
    "1W": ("WLD", "World", 13138),
    "EU": ("EUU", "European Union", 40824),
}
_BY_ISO3 = {iso3: iso2 for iso2, (iso3, _, _) in COUNTRIES.items()}

# Indicator -> its label in the answer.
INDICATORS: dict[str, str] = {
    "NY.GDP.PCAP.CD": "GDP per capita (current US$)",
    "NY.GDP.PCAP.PP.CD": "GDP per capita, PPP (current international $)",
    "PA.NUS.PPP": "PPP conversion factor, GDP (LCU per international $)",
}

_CODE = re.compile(r"^[A-Za-z0-9]{2,3}$")
_PATH = re.compile(r"^/v2/(?:[a-z]{2}/)?countr(?:y|ies)/([^/]+)/indicators?/([^/]+)/?$", re.IGNORECASE)
_DATE = re.compile(r"^([0-9]{4})(?::([0-9]{4}))?$")

SOURCE_META = {"sourceid": "2", "sourcename": "World Development Indicators", "lastupdated": "2026-07-01"}
NO_DATA = [{"page": 0, "pages": 0, "per_page": 0, "total": 0, "sourceid": None, "lastupdated": None}, None]


class _InvalidValue(Exception):
    """A parameter the API answers with its message 120."""


def invalid_value() -> SimResponse:
    return SimResponse(
        200,
        [{"message": [{"id": "120", "key": "Invalid value", "value": "The provided parameter value is not valid"}]}],
    )


def simulate(request: SimRequest) -> SimResponse:
    match = _PATH.match(request.path)
    if request.method != "GET" or not match:
        return SimResponse(404, "<html><body><h1>404 Not Found</h1></body></html>", {"Content-Type": "text/html"})
    if (request.param("format") or "").lower() != "json":
        # XML is the API's default; our adapter always asks for JSON.
        xml = '<?xml version="1.0" encoding="utf-8"?><wb:data xmlns:wb="http://www.worldbank.org"/>'
        return SimResponse(200, xml, {"Content-Type": "application/xml; charset=utf-8"})
    codes_text, indicator = match.group(1), match.group(2).upper()
    try:
        if indicator not in INDICATORS:
            raise _InvalidValue
        countries = _countries(codes_text)
        years = _years(request)
        per_page = _positive(request.param("per_page"), DEFAULT_PER_PAGE)
        page = _positive(request.param("page"), 1)
        most_recent = _positive(request.param("mrv"), 0)
        most_recent_non_empty = _positive(request.param("mrnev"), 0)
    except _InvalidValue:
        return invalid_value()

    rows: list[dict[str, Any]] = []
    for iso2 in countries:
        series = [(year, _value(iso2, indicator, year)) for year in reversed(years)]
        if most_recent_non_empty:
            series = [item for item in series if item[1] is not None][:most_recent_non_empty]
        elif most_recent:
            series = series[:most_recent]
        rows.extend(_row(iso2, indicator, year, value) for year, value in series)
    if not rows:
        return SimResponse(200, NO_DATA)

    pages = math.ceil(len(rows) / per_page)
    meta = {
        "page": page,
        "pages": pages,
        # The real API echoes the parameter as a string, and sends its default as a number.
        "per_page": request.param("per_page") or DEFAULT_PER_PAGE,
        "total": len(rows),
        **SOURCE_META,
    }
    return SimResponse(200, [meta, rows[(page - 1) * per_page : page * per_page]])


def _countries(codes_text: str) -> list[str]:
    """Known ISO2 codes of the path, each once, in order; unknown but valid-looking ones dropped."""
    if codes_text.lower() == "all":
        return list(COUNTRIES)
    known: list[str] = []
    for code in codes_text.split(";"):
        if not _CODE.match(code):
            raise _InvalidValue
        iso2 = code.upper() if code.upper() in COUNTRIES else _BY_ISO3.get(code.upper())
        if iso2 and iso2 not in known:
            known.append(iso2)
    return known


def _years(request: SimRequest) -> list[int]:
    date = request.param("date")
    if date is None:
        return list(range(FIRST_YEAR, LATEST_YEAR + 1))
    match = _DATE.match(date)
    if not match:
        raise _InvalidValue
    first, last = int(match.group(1)), int(match.group(2) or match.group(1))
    return [year for year in range(max(first, FIRST_YEAR), min(last, LATEST_YEAR) + 1)]


def _positive(text: str | None, default: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or int(text) == 0:
        raise _InvalidValue
    return int(text)


def _value(iso2: str, indicator: str, year: int) -> float | None:
    if year == LATEST_YEAR and seeded("world_bank", "latest-missing", iso2, indicator).random() < 0.3:
        return None  # not published yet for this country
    gdp = float(COUNTRIES[iso2][2])
    if year > ANCHOR_YEAR:
        for later in range(ANCHOR_YEAR + 1, year + 1):
            gdp *= _growth(iso2, later)
    else:
        for later in range(year + 1, ANCHOR_YEAR + 1):
            gdp /= _growth(iso2, later)
    # Poorer countries' prices are lower: PPP lifts their income more than rich countries'.
    price_level = min(1.0, 0.3 + gdp / 70000) * seeded("world_bank", "price", iso2).uniform(0.9, 1.1)
    if indicator == "NY.GDP.PCAP.PP.CD":
        return round(gdp / price_level, 1)
    if indicator == "PA.NUS.PPP":
        return round(price_level * seeded("world_bank", "currency", iso2).uniform(0.7, 20), 3)
    return round(gdp, 1)


def _growth(iso2: str, year: int) -> float:
    """Nominal growth of GDP per capita in US$ from the year before to `year`."""
    return seeded("world_bank", "growth", iso2, year).uniform(0.97, 1.07)


def _row(iso2: str, indicator: str, year: int, value: float | None) -> dict[str, Any]:
    iso3, name, _ = COUNTRIES[iso2]
    return {
        "indicator": {"id": indicator, "value": INDICATORS[indicator]},
        "country": {"id": iso2, "value": name},
        "countryiso3code": iso3,
        "date": str(year),
        "value": value,
        "unit": "",
        "obs_status": "",
        "decimal": 1,
    }
