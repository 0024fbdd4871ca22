"""World Bank Indicators API v2: the baseline value scaled to a region by GDP per capita.

What we request: the most recent non-empty value of an indicator (default `NY.GDP.PCAP.CD`,
GDP per capita in current US$) for the context's region and a reference country (default `US`),
in one call: `GET {base}/v2/country/{REGION};{REF}/indicator/{INDICATOR}?format=json&mrnev=1
&per_page=50`, following `page`/`pages` when the answer has more than one page. With a `date`
range set instead (e.g. `2019:2023`), the latest year both countries have a value for is used.

How the number is computed:

    factor = clamp((gdp_region / gdp_reference) ** elasticity, 0.25, 4.0)    elasticity = 0.5

and every number of the call's baseline value (the value type's fallback: never the last good
value, which would compound the factor refresh after refresh) is multiplied by the factor and
rounded to 4 significant figures (`sources.adapters.scaling`, shared with `imf`); a positive
factor keeps ascending thresholds ascending. The elasticity 0.5 says that budgets scale less than income:
ad prices are set in auctions that are partly global, so a country with a quarter of the
reference income has budget tiers at half the reference, not at a quarter. The clamp [1/4, 4]
is symmetric on a log scale and is reached at a GDP ratio of 1/16 or 16: past that one income
figure says little about ad budgets, and the answer stays well inside the 0.1-10 ratio bounds
of `budget_thresholds`, so an extreme country gives a bounded answer instead of a rejected one.

Confidence: 1.0 when both figures are for the same year, 0.8 when they are not. Without a
region in the context the baseline is returned unchanged at confidence 0.5, without a
request: the baseline already is the value for no particular region, so it is the right
answer rather than an error, but nothing was measured, so measured sources outweigh it.

Errors: the API's error shape (HTTP 200 with `[{"message": [...]}]`) is TERMINAL (a bad
country code or indicator), except 105 "service currently unavailable" and 199 "unexpected
error", which are RETRYABLE; the no-data shape and series that are all null are INVALID_DATA
naming the countries; HTTP, size, JSON and timeout failures are classified by the shared HTTP
layer (`sources.adapters.http`).

Settings, from the source's `request` block with the link's `params` laid over it:
`indicator`, `reference_country`, `elasticity`, `date` (replaces `mrnev=1`), `per_page`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import requests

from sources.adapters.base import ErrorKind, SourceAdapter, SourceCall, SourceError, SourceResult
from sources.adapters.http import parse_json, raise_for_status, send
from sources.adapters.scaling import non_negative_setting, require_numbers, scale_baseline, unscaled_result

DEFAULT_INDICATOR = "NY.GDP.PCAP.CD"
DEFAULT_REFERENCE_COUNTRY = "US"
DEFAULT_ELASTICITY = 0.5
# Symmetric on a log scale; see the module docstring for why these bounds.
MIN_FACTOR = 0.25
MAX_FACTOR = 4.0
# Two countries' latest values fit on one page; a `date` range of 25 years still does.
DEFAULT_PER_PAGE = 50
# A wide `date` range at a small `per_page` must not turn one call into hundreds of requests.
MAX_PAGES = 10
SAME_YEAR_CONFIDENCE = 1.0
MIXED_YEARS_CONFIDENCE = 0.8  # two years of growth and exchange rates apart, still a fair guess
# The API's message ids that say "try again later" (105 service unavailable, 199 unexpected error).
RETRYABLE_MESSAGE_IDS = frozenset({"105", "199"})

# ISO2, ISO3 or the API's aggregate codes (`1W`, `EUU`); anything else must not reach the path.
_COUNTRY_CODE = re.compile(r"^[A-Za-z0-9]{2,3}$")
_INDICATOR_CODE = re.compile(r"^[A-Za-z0-9_.]+$")


class WorldBankAdapter(SourceAdapter):
    """Scales the call's baseline value by the region's GDP per capita against a reference country's."""

    kind = "world_bank"

    def fetch(self, call: SourceCall, session: requests.Session) -> SourceResult:
        settings = {**call.source.request_template, **call.params}
        indicator = _indicator(settings.get("indicator", DEFAULT_INDICATOR))
        reference_country = country_code(settings.get("reference_country", DEFAULT_REFERENCE_COUNTRY), "reference_country")
        elasticity = non_negative_setting(settings, "elasticity", DEFAULT_ELASTICITY)
        require_numbers(call.baseline)
        region = call.context.get("region")
        if not region:
            return unscaled_result(call.baseline)
        region_code = country_code(region, "region")

        codes = [region_code] if region_code == reference_country else [region_code, reference_country]
        rows = _fetch_rows(call, session, codes, indicator, settings)
        series = _series(rows, codes)
        missing = [code for code in codes if not series[code]]
        if missing:
            raise SourceError(ErrorKind.INVALID_DATA, f"no data for {_countries(missing)} in indicator {indicator}")
        (region_year, region_value), (reference_year, reference_value) = _latest_pair(
            series[region_code], series[reference_country]
        )
        factor = min(max((region_value / reference_value) ** elasticity, MIN_FACTOR), MAX_FACTOR)
        confidence = SAME_YEAR_CONFIDENCE if region_year == reference_year else MIXED_YEARS_CONFIDENCE
        return SourceResult(scale_baseline(call.baseline, factor), fetched_at=datetime.now(UTC), confidence=confidence)


# Settings --------------------------------------------------------------------------------------


def country_code(value: Any, setting: str) -> str:
    """`value` upper-cased if it looks like a country code, else TERMINAL naming the setting."""
    if not isinstance(value, str) or not _COUNTRY_CODE.match(value):
        raise SourceError(ErrorKind.TERMINAL, f"{setting} {str(value)[:40]!r} is not an ISO2 or ISO3 country code")
    return value.upper()


def _countries(codes: list[str]) -> str:
    return ("country " if len(codes) == 1 else "countries ") + ", ".join(codes)


def _indicator(value: Any) -> str:
    if not isinstance(value, str) or not _INDICATOR_CODE.match(value):
        raise SourceError(ErrorKind.TERMINAL, f"indicator {str(value)[:40]!r} is not an indicator code")
    return value


# The request and its pages --------------------------------------------------------------------


def _fetch_rows(
    call: SourceCall, session: requests.Session, codes: list[str], indicator: str, settings: Mapping[str, Any]
) -> list[Any]:
    """Every row of every page of the answer, or a classified SourceError."""
    deadline = time.monotonic() + call.timeout_budget
    query: dict[str, Any] = {"format": "json", "per_page": settings.get("per_page", DEFAULT_PER_PAGE)}
    if settings.get("date"):
        query["date"] = str(settings["date"])
    else:
        query["mrnev"] = 1
    url = f"{call.source.base_url.rstrip('/')}/v2/country/{';'.join(codes)}/indicator/{indicator}"
    context = f"{_countries(codes)}, indicator {indicator}"

    rows: list[Any] = []
    page, pages = 1, 1
    while page <= pages:
        if time.monotonic() >= deadline:
            raise SourceError(ErrorKind.RETRYABLE, f"no time left in the call's budget for page {page} of {pages}")
        reply = send(
            session,
            method="GET",
            url=url,
            call=call,
            params={**query, "page": page},
            headers={"Accept": "application/json"},
            deadline=deadline,  # each page gets what the earlier ones left
        )
        raise_for_status(reply)
        page_rows, pages = _page(parse_json(reply), context)
        if pages > MAX_PAGES:
            raise SourceError(ErrorKind.INVALID_DATA, f"the answer has {pages} pages, more than the {MAX_PAGES} we follow")
        rows.extend(page_rows)
        page += 1
    return rows


def _page(payload: Any, context: str) -> tuple[list[Any], int]:
    """(rows, number of pages) of one page of the answer."""
    if (
        isinstance(payload, list)
        and len(payload) == 1
        and isinstance(payload[0], Mapping)
        and "message" in payload[0]
    ):
        raise _api_error(payload[0]["message"], context)
    if not isinstance(payload, list) or len(payload) != 2 or not isinstance(payload[0], Mapping):
        raise SourceError(ErrorKind.INVALID_DATA, "expected a JSON array [page information, rows]")
    meta, rows = payload
    # `per_page` is not read (the API sends it as a number or as a string): `pages` is enough.
    pages, total = _count(meta, "pages"), _count(meta, "total")
    if rows is None:
        if total == 0:
            return [], 0  # the API's "no data" shape
        raise SourceError(ErrorKind.INVALID_DATA, f"the page has no rows although the total is {total}")
    if not isinstance(rows, list):
        raise SourceError(ErrorKind.INVALID_DATA, "the rows of the page are not an array")
    return rows, pages


def _count(meta: Mapping[str, Any], name: str) -> int:
    value = meta.get(name)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise SourceError(ErrorKind.INVALID_DATA, f"the page information's {name} is not a count")


def _api_error(messages: Any, context: str) -> SourceError:
    first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], Mapping) else {}
    message_id = str(first.get("id", "?"))[:10]
    key = str(first.get("key", "unknown error"))[:80]
    kind = ErrorKind.RETRYABLE if message_id in RETRYABLE_MESSAGE_IDS else ErrorKind.TERMINAL
    return SourceError(kind, f"the API refused the request for {context} (message {message_id}: {key})")


# The rows -------------------------------------------------------------------------------------


def _series(rows: list[Any], codes: list[str]) -> dict[str, dict[str, float]]:
    """Requested code -> {date: value} of the rows' non-null values."""
    series: dict[str, dict[str, float]] = {code: {} for code in codes}
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise SourceError(ErrorKind.INVALID_DATA, f"row {index} is not an object")
        country = row.get("country")
        names = {
            name.upper()
            for name in (country.get("id") if isinstance(country, Mapping) else None, row.get("countryiso3code"))
            if isinstance(name, str) and name
        }
        date, value = row.get("date"), row.get("value")
        if not names:
            raise SourceError(ErrorKind.INVALID_DATA, f"row {index} names no country")
        if not isinstance(date, str) or not date:
            raise SourceError(ErrorKind.INVALID_DATA, f"row {index} has no date")
        if value is None:
            continue  # a year without data, as the API marks it
        label = f"the value for {min(names)} in {date[:10]}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SourceError(ErrorKind.INVALID_DATA, f"{label} is not a number")
        if not value > 0:
            raise SourceError(ErrorKind.INVALID_DATA, f"{label} is not positive, so it cannot be a ratio's base")
        for code in codes:
            if code in names:
                series[code][date] = float(value)
    return series


def _latest_pair(
    region: Mapping[str, float], reference: Mapping[str, float]
) -> tuple[tuple[str, float], tuple[str, float]]:
    """((year, value), (year, value)): the latest year both have, else each one's latest."""
    common = set(region) & set(reference)
    if common:
        year = max(common)
        return (year, region[year]), (year, reference[year])
    region_year, reference_year = max(region), max(reference)
    return (region_year, region[region_year]), (reference_year, reference[reference_year])
