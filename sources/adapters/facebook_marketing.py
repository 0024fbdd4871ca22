"""Meta Marketing API Insights: CTR, CPC and conversion-rate ranges of the `social_media` channel.

The request is `GET {base}/{api_version}/act_{ad_account_id}/insights` with
`fields=impressions,clicks,spend,ctr,cpc,cpm,actions`, `date_preset`, `level` and `limit` (the
source's `request_template`, each key overridable by the link's `params`; defaults `v26.0`,
`last_30d`, `adset`, 100). The access token goes in `Authorization: Bearer`, never in the query,
so it lands in no URL and no log line; the ad account id is in the path, so it is registered for
redaction from urllib3's debug lines (`sources.adapters.http.redact_path_segment`).
`paging.next` is followed while present, for at most `MAX_PAGES` pages, and only when it points
at the same scheme, host, port and path as the first request: a `next` anywhere else is refused
before anything is sent there, and redirects are not followed.

Derivation (one row per ad set; every metric arrives as a decimal string, `ctr` in percent):

- `ctr_range` = [p25, p75] of `ctr` / 100 over the rows with impressions;
- `cpc_range` = [p25, p75] of `cpc` (account currency) over the rows with clicks;
- `conversion_rate_range` = [p25, p75] over the rows with clicks of
  min(1, sum of the `actions` values whose `action_type` is in `conversion_action_types`
  (default `["lead", "purchase"]`) / `clicks`) -- view-through and repeat conversions can
  outnumber clicks, but a rate above 1 is not a conversion rate;
- `competitive_intensity` is not measured by Insights: it comes from `call.reference` (the last
  good value, else the fallback) through `complete_from_reference`, so the confidence is the
  measured share of the numbers (6 of 7 when the reference has it).

Percentiles interpolate linearly between ranks (numpy's default), each ad set counting once
whatever its spend. Rows without impressions are skipped; no rows at all, no row with clicks, or
a metric that is not a finite non-negative number is INVALID_DATA.

Errors (`{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`), classified by
code before status, since Meta sends throttling with HTTP 400:
- throttling 80000-80014 and rate limits 4, 17, 32, 613 (and 2, "temporary") -> RETRYABLE, with
  `retry_after` from `X-Business-Use-Case-Usage` `estimated_time_to_regain_access` (minutes)
  when above 0, else `DEFAULT_THROTTLE_SECONDS`;
- 190, 102, and OAuthException 463/467 (code or subcode) -> TERMINAL (the token is refused);
- any 5xx (code 1 "reduce the amount of data" comes with 500) -> RETRYABLE; other 4xx -> TERMINAL.
A non-2xx answer without a Graph error body is classified by its status as for every source
(`sources.adapters.http.raise_for_status`). An answer that is not JSON (an HTML page), holds
NaN, or is over 1 MiB is INVALID_DATA; timeouts and connection failures are RETRYABLE. Reasons
carry codes only, never the provider's message (which may echo the request), a URL or a header.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

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
from sources.adapters.http import (
    MAX_RESPONSE_BYTES,
    Reply,
    parse_json,
    raise_for_status,
    redact_path_segment,
    send,
)

logger = logging.getLogger(__name__)

CHANNEL = "social_media"
FIELDS = "impressions,clicks,spend,ctr,cpc,cpm,actions"
DEFAULT_API_VERSION = "v26.0"
DEFAULT_DATE_PRESET = "last_30d"
DEFAULT_LEVEL = "adset"
# 100 ad sets a page: 10 pages cover a large account, and a page stays far below 1 MiB.
DEFAULT_PAGE_SIZE = 100
# Meta accepts larger pages, but then answers code 1 "reduce the amount of data" more often.
MAX_PAGE_SIZE = 500
DEFAULT_CONVERSION_ACTION_TYPES = ("lead", "purchase")
# A range needs a sample, not a census; a cursor that loops must still end.
MAX_PAGES = 10

LEVELS = frozenset({"account", "campaign", "adset", "ad"})
# Meta's rate-limit codes: app (4), user (17), page (32), ad account (613), business use case.
THROTTLING_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
# Code 2: "Service temporarily unavailable" -- Meta documents it as worth a retry.
TEMPORARY_CODES = frozenset({2})
# 190: invalid, expired or revoked token; 102: API session; 463/467: expired / invalid token.
AUTH_CODES = frozenset({190, 102})
OAUTH_TOKEN_SUBCODES = frozenset({463, 467})
# Throttled without an estimate: Meta's short-term limits recover within minutes; a sooner try
# would only spend more of the quota it scores us on.
DEFAULT_THROTTLE_SECONDS = 60.0
# Above this share of a usage header Meta starts throttling soon: worth a line in the log.
HIGH_USAGE_PERCENT = 95

_API_VERSION = re.compile(r"^v\d+\.\d+$")
_DATE_PRESET = re.compile(r"^[a-z0-9_]+$")
_DECIMAL = re.compile(r"^\s*(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
_TRACE_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")

# urllib3 logs request paths at DEBUG, and ours holds the ad account id (a credential role).
redact_path_segment("/act_")


@dataclass(frozen=True)
class _Settings:
    api_version: str
    date_preset: str
    level: str
    limit: int
    conversion_action_types: frozenset[str]


@dataclass(frozen=True)
class _Row:
    impressions: Decimal
    clicks: Decimal
    ctr: Decimal | None  # percent; None without impressions
    cpc: Decimal | None  # None without clicks
    conversions: Decimal


class FacebookMarketingAdapter(SourceAdapter):
    """Insights of one ad account, level `adset` by default, as `channel_performance` data."""

    kind = "facebook_marketing"

    def fetch(self, call: SourceCall, session: requests.Session) -> SourceResult:
        require_channel(call, CHANNEL, "Insights")
        settings = _settings(call)
        credentials = call.source.credentials()  # DISABLED if a variable is unset
        for role in ("access_token", "ad_account_id"):
            if not credentials.get(role):
                raise SourceError(ErrorKind.TERMINAL, f"the source has no {role} credential")

        rows = _fetch_rows(call, session, settings, credentials)
        fetched_at = datetime.now(UTC)
        measured = derive_channel_performance(rows, settings.conversion_action_types)
        reference = call.reference.get(CHANNEL) if isinstance(call.reference, Mapping) else None
        data, confidence = complete_from_reference(
            {CHANNEL: measured}, {CHANNEL: reference} if isinstance(reference, Mapping) else {}
        )
        return SourceResult(data, fetched_at=fetched_at, confidence=confidence)


# The request ---------------------------------------------------------------------------------


def _settings(call: SourceCall) -> _Settings:
    template: dict[str, Any] = {**call.source.request_template, **call.params}
    api_version = str(template.get("api_version") or DEFAULT_API_VERSION)
    if not _API_VERSION.match(api_version):
        raise SourceError(ErrorKind.TERMINAL, "api_version must look like v26.0")
    date_preset = str(template.get("date_preset") or DEFAULT_DATE_PRESET)
    if not _DATE_PRESET.match(date_preset):
        raise SourceError(ErrorKind.TERMINAL, "date_preset must be one of Meta's presets, e.g. last_30d")
    level = str(template.get("level") or DEFAULT_LEVEL)
    if level not in LEVELS:
        raise SourceError(ErrorKind.TERMINAL, f"level must be one of {', '.join(sorted(LEVELS))}")
    limit = template.get("limit", DEFAULT_PAGE_SIZE)
    if isinstance(limit, str) and limit.isascii() and limit.isdigit():
        limit = int(limit)  # a link's params may hold it as text
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise SourceError(ErrorKind.TERMINAL, f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}")
    action_types = template.get("conversion_action_types", DEFAULT_CONVERSION_ACTION_TYPES)
    if (
        isinstance(action_types, str)
        or not isinstance(action_types, Sequence)
        or not action_types
        or not all(isinstance(item, str) and item for item in action_types)
    ):
        raise SourceError(ErrorKind.TERMINAL, "conversion_action_types must be a list of action types")
    return _Settings(api_version, date_preset, level, limit, frozenset(action_types))


def _fetch_rows(
    call: SourceCall, session: requests.Session, settings: _Settings, credentials: Mapping[str, str]
) -> list[Any]:
    deadline = time.monotonic() + call.timeout_budget
    base = call.source.base_url.rstrip("/")
    account = quote(credentials["ad_account_id"].removeprefix("act_"), safe="")
    url = f"{base}/{settings.api_version}/act_{account}/insights"
    params: dict[str, Any] | None = {
        "fields": FIELDS,
        "date_preset": settings.date_preset,
        "level": settings.level,
        "limit": settings.limit,
    }
    headers = {"Accept": "application/json", "Authorization": f"Bearer {credentials['access_token']}"}
    secrets = tuple(credentials.values())

    rows: list[Any] = []
    for _page in range(MAX_PAGES):
        payload = _get(session, url, params, headers, call, deadline, secrets)
        if not isinstance(payload, Mapping) or not isinstance(payload.get("data"), list):
            raise SourceError(ErrorKind.INVALID_DATA, "the answer has no data list")
        rows.extend(payload["data"])
        next_url = _next_page(payload, first_url=url)
        if next_url is None:
            break
        url, params = next_url, None  # the cursor URL carries the whole query
    else:
        logger.info("source %s: stopped after %d pages of insights", call.source.name, MAX_PAGES)
    return rows


def _next_page(payload: Mapping[str, Any], *, first_url: str) -> str | None:
    paging = payload.get("paging")
    next_url = paging.get("next") if isinstance(paging, Mapping) else None
    if next_url is None:
        return None
    if not isinstance(next_url, str) or not _same_endpoint(next_url, first_url):
        # The access token would go wherever this points: never anywhere but where we asked.
        raise SourceError(ErrorKind.INVALID_DATA, "paging.next points outside the insights endpoint asked")
    return next_url


def _same_endpoint(candidate: str, expected: str) -> bool:
    try:
        got, want = urlsplit(candidate), urlsplit(expected)
        return (
            got.scheme.lower() == want.scheme.lower()
            and got.username is None
            and got.password is None
            and got.hostname == want.hostname
            and (got.port or _default_port(got.scheme)) == (want.port or _default_port(want.scheme))
            and got.path == want.path
            and not got.fragment
        )
    except ValueError:  # an invalid port
        return False


def _default_port(scheme: str) -> int | None:
    return {"http": 80, "https": 443}.get(scheme.lower())


def _get(
    session: requests.Session,
    url: str,
    params: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    call: SourceCall,
    deadline: float,
    secrets: Sequence[str],
) -> Any:
    """One page, parsed, or a classified SourceError."""
    reply = send(
        session,
        method="GET",
        url=url,
        call=call,
        params=params,
        headers=headers,
        deadline=deadline,
        # Meta explains a failure (throttling among others) in its error body: read it whole.
        error_body_bytes=MAX_RESPONSE_BYTES,
        allow_redirects=False,  # the access token goes nowhere but where we asked
    )
    if not reply.is_success:
        _raise_for_error(reply, secrets)
    _log_high_usage(reply.headers, call)
    payload = parse_json(reply)
    if isinstance(payload, Mapping) and "error" in payload and "data" not in payload:
        # Some Graph failures arrive with 200; they are failures all the same.
        graph_error = _graph_error(reply.status, payload, reply.headers, secrets)
        if graph_error is not None:
            raise graph_error
    return payload


# Errors --------------------------------------------------------------------------------------


def _raise_for_error(reply: Reply, secrets: Sequence[str]) -> None:
    try:
        payload = parse_json(reply)
    except SourceError:
        payload = None  # not a Graph error body (an HTML page, a proxy's answer): the status decides
    graph_error = _graph_error(reply.status, payload, reply.headers, secrets)
    if graph_error is not None:
        raise graph_error
    raise_for_status(reply)
    raise AssertionError("unreachable: a non-2xx status always raises")


def _graph_error(
    status: int, payload: Any, headers: Mapping[str, str], secrets: Sequence[str]
) -> SourceError | None:
    error = payload.get("error") if isinstance(payload, Mapping) else None
    if not isinstance(error, Mapping):
        return None
    code = _whole_number(error.get("code"))
    subcode = _whole_number(error.get("error_subcode"))
    label = f"Graph API error {code if code is not None else '?'}"
    if subcode is not None:
        label += f"/{subcode}"
    label += f" (HTTP {status}"
    trace_id = error.get("fbtrace_id")
    # The trace id is what Meta's support asks for; a server echoing a credential is not it.
    is_echo = isinstance(trace_id, str) and any(secret and secret in trace_id for secret in secrets)
    if isinstance(trace_id, str) and _TRACE_ID.match(trace_id) and not is_echo:
        label += f", fbtrace_id {trace_id}"
    label += ")"

    if code in THROTTLING_CODES:
        return SourceError(
            ErrorKind.RETRYABLE, f"throttled by Meta: {label}", retry_after=_throttle_seconds(headers)
        )
    if code in TEMPORARY_CODES:
        return SourceError(ErrorKind.RETRYABLE, f"Meta is temporarily unavailable: {label}")
    is_oauth = error.get("type") == "OAuthException"
    if code in AUTH_CODES or (is_oauth and (code in OAUTH_TOKEN_SUBCODES or subcode in OAUTH_TOKEN_SUBCODES)):
        return SourceError(ErrorKind.TERMINAL, f"access token refused: {label}")
    if status >= 500:
        return SourceError(ErrorKind.RETRYABLE, f"server error: {label}")
    return SourceError(ErrorKind.TERMINAL, f"request refused: {label}")


def _whole_number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _throttle_seconds(headers: Mapping[str, str]) -> float:
    minutes = max(
        (
            entry["estimated_time_to_regain_access"]
            for entry in _business_use_case_entries(headers)
            if _is_number(entry.get("estimated_time_to_regain_access"))
        ),
        default=0,
    )
    # 0 means "under a minute" while throttled: retrying at once would only be refused again.
    return minutes * 60.0 if minutes > 0 else DEFAULT_THROTTLE_SECONDS


def _log_high_usage(headers: Mapping[str, str], call: SourceCall) -> None:
    usage = [
        entry[key]
        for entry in (*_business_use_case_entries(headers), _json_header(headers, "X-App-Usage"))
        if isinstance(entry, Mapping)
        for key in ("call_count", "total_time", "total_cputime")
        if _is_number(entry.get(key))
    ]
    if usage and max(usage) >= HIGH_USAGE_PERCENT:
        logger.info("source %s: Meta reports %d%% of its rate limit used", call.source.name, max(usage))


def _business_use_case_entries(headers: Mapping[str, str]) -> list[Mapping[str, Any]]:
    """The entries of `X-Business-Use-Case-Usage` (`{"<id>": [{...}, ...]}`); none if malformed."""
    usage = _json_header(headers, "X-Business-Use-Case-Usage")
    if not isinstance(usage, Mapping):
        return []
    return [
        entry
        for entries in usage.values()
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, Mapping)
    ]


def _json_header(headers: Mapping[str, str], name: str) -> Any:
    try:
        return json.loads(headers.get(name) or "null", parse_constant=lambda constant: None)
    except ValueError:
        return None  # a malformed usage header is no reason to lose the answer


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf")


# The derivation ------------------------------------------------------------------------------


def derive_channel_performance(
    rows: Sequence[Any], conversion_action_types: frozenset[str]
) -> dict[str, Any]:
    """The measured part of a `social_media` channel_performance entry from Insights rows."""
    if not rows:
        raise SourceError(ErrorKind.INVALID_DATA, "no insights rows")
    parsed = [_parse_row(row, index, conversion_action_types) for index, row in enumerate(rows)]
    served = [row for row in parsed if row.impressions > 0]
    if not served:
        raise SourceError(ErrorKind.INVALID_DATA, "no insights rows with impressions")
    clicked = [row for row in served if row.clicks > 0]
    if not clicked:
        raise SourceError(ErrorKind.INVALID_DATA, "no insights rows with clicks")
    ctrs = [row.ctr / 100 for row in served if row.ctr is not None]
    cpcs = [row.cpc for row in clicked if row.cpc is not None]
    conversion_rates = [min(Decimal(1), row.conversions / row.clicks) for row in clicked]
    return {
        "ctr_range": _quartiles(ctrs),
        "cpc_range": _quartiles(cpcs),
        "conversion_rate_range": _quartiles(conversion_rates),
    }


def _parse_row(row: Any, index: int, conversion_action_types: frozenset[str]) -> _Row:
    if not isinstance(row, Mapping):
        raise SourceError(ErrorKind.INVALID_DATA, f"insights row {index} is not an object")
    # Meta leaves out what is zero or undefined: cpc without clicks, actions without any.
    impressions = _metric(row, "impressions", index, default=Decimal(0))
    clicks = _metric(row, "clicks", index, default=Decimal(0))
    ctr = _metric(row, "ctr", index, default=None)
    cpc = _metric(row, "cpc", index, default=None)
    if impressions > 0 and ctr is None:
        raise SourceError(ErrorKind.INVALID_DATA, f"insights row {index} has impressions but no ctr")
    if clicks > 0 and cpc is None:
        raise SourceError(ErrorKind.INVALID_DATA, f"insights row {index} has clicks but no cpc")
    return _Row(impressions, clicks, ctr, cpc, _conversions(row, index, conversion_action_types))


def _conversions(row: Mapping[str, Any], index: int, conversion_action_types: frozenset[str]) -> Decimal:
    actions = row.get("actions", [])
    if not isinstance(actions, list):
        raise SourceError(ErrorKind.INVALID_DATA, f"insights row {index}: actions is not a list")
    total = Decimal(0)
    for action in actions:
        if not isinstance(action, Mapping) or not isinstance(action.get("action_type"), str):
            raise SourceError(ErrorKind.INVALID_DATA, f"insights row {index}: an action has no action_type")
        if action["action_type"] in conversion_action_types:
            total += _metric(action, "value", index, default=Decimal(0), prefix="actions ")
    return total


def _metric(
    container: Mapping[str, Any], name: str, index: int, *, default: Decimal | None, prefix: str = ""
) -> Decimal | None:
    value = container.get(name)
    if value is None:
        return default
    # Meta sends every metric as a decimal string; a plain JSON number means the same.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = repr(value)
    if not isinstance(value, str) or not _DECIMAL.match(value):
        raise SourceError(
            ErrorKind.INVALID_DATA, f"insights row {index}: {prefix}{name} is not a non-negative number"
        )
    number = Decimal(value.strip())
    if not number.is_finite() or not float(number) < float("inf"):
        raise SourceError(ErrorKind.INVALID_DATA, f"insights row {index}: {prefix}{name} is out of range")
    return number


def _quartiles(values: Sequence[Decimal]) -> list[float]:
    ordered = sorted(values)
    return [_percentile(ordered, Decimal("0.25")), _percentile(ordered, Decimal("0.75"))]


def _percentile(ordered: Sequence[Decimal], share: Decimal) -> float:
    """Linear interpolation between closest ranks (numpy's default, Excel's PERCENTILE.INC)."""
    position = share * (len(ordered) - 1)
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return float(ordered[lower] + (position - lower) * (ordered[upper] - ordered[lower]))
