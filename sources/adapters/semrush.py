"""Semrush Analytics API v3: CPC and competition of the phrases related to an industry's seed
phrase, as the `search_advertising` channel of `channel_performance`.

The request is one `GET {base_url}/?type=phrase_related&key=KEY&phrase=SEED&database=DB
&export_columns=Ph,Nq,Cp,Co&display_limit=N` (`../shared/api-formats.md`, section 5). The key
is the source's `api_key` credential and travels in the query string only. The seed phrase
is the link's `phrase` parameter, else `INDUSTRY_PHRASES[industry]`, else the industry's name.
The database is the link's `database` parameter, else the context's region (ISO 3166 code;
`gb` is Semrush's `uk`) when Semrush has a database for it, else the template's `database`,
else `us`. `display_limit` is the link's or the template's, else 50.

The answer is semicolon-separated text: a header row of readable names ("Keyword", "Search
Volume", "CPC", "Competition"; the short codes Ph, Nq, Cp, Co are accepted too, columns in any
order, others ignored), one row per phrase, lines ending in `\\n` or `\\r\\n`.

Derivation (for docs/sources.md):

- Usable rows are phrases with a CPC above 0 and a search volume above 0: a CPC of 0 means
  no advertiser bids on the phrase, and a phrase nobody searches costs nothing.
- `cpc_range` = [p25, p75] of CPC across the usable rows, weighted by search volume: sorted by
  CPC, the pXX is the first CPC at which the running volume reaches XX % of the total. The
  budget goes where the searches are, so a niche phrase with a high bid counts for little.
- `competitive_intensity` = the plain mean of Competition (Semrush's 0-1 density of
  advertisers) across the usable rows.
- `ctr_range` and `conversion_rate_range` are not measured by Semrush: they are completed from
  `call.reference` (the last good value, else the fallback) by `complete_from_reference`.
- Confidence = the measured share of the channel's numbers (3 of 7 for a complete reference),
  times usable rows / 3 when fewer than 3 rows are usable. No usable row is INVALID_DATA.

Errors are classified on the body whatever the HTTP status, since Semrush sends its `ERROR NN
:: MESSAGE` bodies with 200 as well as 403: 50 (nothing found) INVALID_DATA; 120, 122 (bad
key) and 130 (API disabled) TERMINAL; 132 (API units balance is zero) RETRYABLE with
`retry_after` of an hour, since units return only when the balance is topped up; any other
code TERMINAL. Without an error body the status decides, the generic way
(`sources.adapters.http.raise_for_status`: 5xx RETRYABLE, 401 and 403 TERMINAL, ...). A 200
HTML page, a row of the wrong width, a field that is not a finite number or out of range, and
an answer over 1 MiB are INVALID_DATA; timeouts are RETRYABLE.

The key is in the request URL, so: reasons never quote the URL, the body or a field's value
(only an unknown error code's message, when it is a plain upper-case phrase without the key);
and the shared HTTP layer (`sources.adapters.http`) does not chain requests' exceptions and
redacts query strings from urllib3's log lines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from sources.adapters.base import (
    ErrorKind,
    SourceAdapter,
    SourceCall,
    SourceError,
    SourceResult,
    complete_from_reference,
    require_channel,
)
from sources.adapters.http import raise_for_status, send

CHANNEL = "search_advertising"
REPORT_TYPE = "phrase_related"
EXPORT_COLUMNS = "Ph,Nq,Cp,Co"
DEFAULT_DATABASE = "us"
# 50 related phrases cost 50 units per call and give a stable p25/p75.
DEFAULT_DISPLAY_LIMIT = 50
# Semrush caps a report's lines; more than this is a configuration mistake.
MAX_DISPLAY_LIMIT = 10_000
# Below this many usable rows a percentile is one or two phrases' bids: trust it less.
MIN_ROWS_FOR_FULL_CONFIDENCE = 3
# Units come back only when someone tops up the balance; an hour keeps the breaker from
# spending calls on a certain failure (the breaker honours `retry_after`).
UNITS_EXHAUSTED_RETRY_SECONDS = 3600.0
# An error body is one short line; a non-2xx answer is read only this far to find it.
ERROR_PEEK_BYTES = 4096

# Seed phrases for the industries of `values.builtins`; a link's `phrase` parameter overrides.
INDUSTRY_PHRASES: dict[str, str] = {
    "technology": "software",
    "healthcare": "medical clinic",
    "finance": "personal loan",
    "manufacturing": "industrial equipment",
    "retail": "online shopping",
    "services": "consulting services",
}

# Semrush's regional databases are named by ISO 3166 code, except the United Kingdom.
REGION_DATABASES: dict[str, str] = {"gb": "uk", "uk": "uk"}
SEMRUSH_DATABASES = frozenset(
    {
        "us", "uk", "ca", "au", "de", "fr", "es", "it", "br", "nl", "be", "ch", "at", "dk", "fi",
        "ie", "no", "pl", "se", "pt", "in", "jp", "mx", "ar", "sg", "hk", "nz", "tr", "il", "za",
    }
)  # fmt: skip

# Header names (readable, as Semrush sends them, or short codes) -> column code.
COLUMN_NAMES: dict[str, str] = {
    "keyword": "Ph",
    "ph": "Ph",
    "search volume": "Nq",
    "nq": "Nq",
    "cpc": "Cp",
    "cp": "Cp",
    "competition": "Co",
    "co": "Co",
}
REQUIRED_COLUMNS = {"Nq": "Search Volume", "Cp": "CPC", "Co": "Competition"}

_ERROR_BODY = re.compile(r"^ERROR\s+(\d+)\s*::\s*(.*)$")
# Semrush's messages are short upper-case phrases; anything else is not quoted in a reason.
_PLAIN_MESSAGE = re.compile(r"^[A-Z0-9 ,.'()/-]{1,80}$")


@dataclass(frozen=True)
class PhraseRow:
    volume: float
    cpc: float
    competition: float


class SemrushAdapter(SourceAdapter):
    """`channel_performance.search_advertising` from Semrush's related phrases (see module)."""

    kind = "semrush"

    def fetch(self, call: SourceCall, session: requests.Session) -> SourceResult:
        require_channel(call, CHANNEL, "Semrush")
        credentials = call.source.credentials()  # DISABLED if a variable is unset
        key = credentials.get("api_key")
        if not key:
            raise SourceError(ErrorKind.TERMINAL, "the source has no api_key credential")
        phrase = _seed_phrase(call)
        database = _database(call)
        query = {
            "type": REPORT_TYPE,
            "key": key,
            "phrase": phrase,
            "database": database,
            "export_columns": EXPORT_COLUMNS,
            "display_limit": _display_limit(call),
        }
        text = _fetch_text(session, call.source.base_url.rstrip("/") + "/", query, call)
        fetched_at = datetime.now(UTC)
        rows = parse_rows(text)
        measured = derive(rows, phrase=phrase, database=database)
        reference = call.reference.get(CHANNEL) if isinstance(call.reference, Mapping) else None
        data, measured_share = complete_from_reference({CHANNEL: measured}, {CHANNEL: reference or {}})
        usable = len(usable_rows(rows))
        confidence = measured_share * min(1.0, usable / MIN_ROWS_FOR_FULL_CONFIDENCE)
        return SourceResult(data, fetched_at=fetched_at, confidence=confidence)


# The request ---------------------------------------------------------------------------------


def _seed_phrase(call: SourceCall) -> str:
    phrase = call.params.get("phrase")
    if isinstance(phrase, str) and phrase.strip():
        return phrase.strip()
    industry = call.context.get("industry")
    if isinstance(industry, str) and industry.strip():
        industry = industry.strip().lower()
        return INDUSTRY_PHRASES.get(industry, industry.replace("_", " "))
    # A context without an industry asks about the market as a whole, if configured to.
    default = {**call.source.request_template, **call.params}.get("default_phrase")
    if isinstance(default, str) and default.strip():
        return default.strip()
    raise SourceError(ErrorKind.TERMINAL, "no seed phrase: the context has no industry, the link no phrase, no default_phrase")


def _database(call: SourceCall) -> str:
    if call.params.get("database"):
        return str(call.params["database"]).lower()
    region = str(call.context.get("region") or "").strip().lower()
    region = REGION_DATABASES.get(region, region)
    if region in SEMRUSH_DATABASES:
        return region
    return str(call.source.request_template.get("database") or DEFAULT_DATABASE).lower()


def _display_limit(call: SourceCall) -> int:
    settings = {**call.source.request_template, **call.params}
    limit = settings.get("display_limit", DEFAULT_DISPLAY_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_DISPLAY_LIMIT:
        raise SourceError(ErrorKind.TERMINAL, f"display_limit must be a whole number from 1 to {MAX_DISPLAY_LIMIT}")
    return limit


def _fetch_text(session: requests.Session, url: str, query: Mapping[str, Any], call: SourceCall) -> str:
    """The answer's text, or a classified SourceError."""
    # An error body is one short line: a failed answer is read only far enough to find it.
    reply = send(session, method="GET", url=url, call=call, params=query, error_body_bytes=ERROR_PEEK_BYTES)
    text = _decode(reply.body) if reply.is_success else _decode_lenient(reply.body)
    # Semrush's error body decides whatever the status; without one, the status does.
    _raise_for_error_body(text, query)
    raise_for_status(reply)
    return text


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SourceError(ErrorKind.INVALID_DATA, "the answer is not UTF-8 text") from None


def _decode_lenient(raw: bytes) -> str:
    # A failed answer cut at ERROR_PEEK_BYTES may end mid-character; only its first line matters.
    return raw.decode("utf-8", errors="replace")


# The answer ----------------------------------------------------------------------------------


def _raise_for_error_body(text: str, query: Mapping[str, Any]) -> None:
    first_line = text.strip().split("\n", 1)[0].strip()
    match = _ERROR_BODY.match(first_line)
    if match is None:
        return
    code, message = int(match.group(1)), match.group(2).strip()
    if code == 50:
        raise SourceError(
            ErrorKind.INVALID_DATA,
            f"no phrases for {query['phrase']!r} in database {query['database']} (Semrush ERROR 50: nothing found)",
        )
    if code in (120, 122):
        raise SourceError(ErrorKind.TERMINAL, f"the API key was refused (Semrush ERROR {code})")
    if code == 130:
        raise SourceError(ErrorKind.TERMINAL, "the API is disabled for this account (Semrush ERROR 130)")
    if code == 132:
        raise SourceError(
            ErrorKind.RETRYABLE,
            "the API units balance is zero (Semrush ERROR 132)",
            retry_after=UNITS_EXHAUSTED_RETRY_SECONDS,
        )
    is_quotable = _PLAIN_MESSAGE.match(message) and str(query["key"]).lower() not in message.lower()
    raise SourceError(ErrorKind.TERMINAL, f"Semrush ERROR {code}" + (f": {message}" if is_quotable else ""))


def parse_rows(text: str) -> list[PhraseRow]:
    """The rows of a Semrush table answer, or INVALID_DATA. Reasons name lines and columns,
    never quote a value (a hostile answer could echo the key)."""
    if text.lstrip().startswith("<"):
        raise SourceError(ErrorKind.INVALID_DATA, "the answer is an HTML page, not Semrush's semicolon text")
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or not lines[0].strip():
        raise SourceError(ErrorKind.INVALID_DATA, "the answer is empty")
    header = [COLUMN_NAMES.get(name.strip().lower()) for name in lines[0].split(";")]
    missing = [name for code, name in REQUIRED_COLUMNS.items() if code not in header]
    if missing:
        raise SourceError(ErrorKind.INVALID_DATA, f"the header row lacks {', '.join(missing)}")
    positions = {code: header.index(code) for code in REQUIRED_COLUMNS}

    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split(";")
        if len(fields) != len(header):
            raise SourceError(
                ErrorKind.INVALID_DATA, f"line {number} has {len(fields)} fields, the header has {len(header)}"
            )
        volume = _number(fields[positions["Nq"]], number, "Search Volume")
        cpc = _number(fields[positions["Cp"]], number, "CPC")
        competition = _number(fields[positions["Co"]], number, "Competition")
        if competition > 1:
            raise SourceError(ErrorKind.INVALID_DATA, f"line {number}: Competition is above 1")
        rows.append(PhraseRow(volume, cpc, competition))
    return rows


def _number(text: str, line: int, column: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise SourceError(ErrorKind.INVALID_DATA, f"line {line}: {column} is not a number") from None
    if not math.isfinite(value):
        raise SourceError(ErrorKind.INVALID_DATA, f"line {line}: {column} is not a finite number")
    if value < 0:
        raise SourceError(ErrorKind.INVALID_DATA, f"line {line}: {column} is negative")
    return value


def usable_rows(rows: list[PhraseRow]) -> list[PhraseRow]:
    """Phrases advertisers bid on (CPC > 0) that people search (volume > 0)."""
    return [row for row in rows if row.cpc > 0 and row.volume > 0]


def derive(rows: list[PhraseRow], *, phrase: str, database: str) -> dict[str, Any]:
    """The measured fields of the channel (see the module docstring)."""
    usable = usable_rows(rows)
    if not usable:
        raise SourceError(
            ErrorKind.INVALID_DATA, f"no phrase related to {phrase!r} in database {database} has a CPC and a volume"
        )
    return {
        "cpc_range": [weighted_percentile(usable, 0.25), weighted_percentile(usable, 0.75)],
        "competitive_intensity": sum(row.competition for row in usable) / len(usable),
    }


def weighted_percentile(rows: list[PhraseRow], fraction: float) -> float:
    """The first CPC, in ascending order, at which the running search volume reaches
    `fraction` of the total (nearest rank, no interpolation)."""
    ordered = sorted(rows, key=lambda row: row.cpc)
    target = fraction * sum(row.volume for row in ordered)
    running = 0.0
    for row in ordered:
        running += row.volume
        if running >= target:
            return row.cpc
    return ordered[-1].cpc  # only by rounding: the running total ends at the total
