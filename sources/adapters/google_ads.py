"""Google Ads API (REST): `channel_performance` for `search_advertising`.

Two calls, both `POST` with `Authorization: Bearer <access_token>` (and `login-customer-id`
when the variable named by `login_customer_id_variable` is set), to
`{base_url}/{api_version}/customers/{customer_id}...` (`api_version` as in the template, `v25`
by default; anything but `v<digits>` is refused as TERMINAL before any request):

1. `:generateKeywordIdeas` for the context: `keywordSeed.keywords` from the industry
   (`SEED_KEYWORDS`; the industry's own name when it is not in the table; the link's
   `params.keywords` replace them), `geoTargetConstants` from the region (`GEO_TARGETS`; a
   region not in the table is asked worldwide), `language`, `keywordPlanNetwork`, `pageSize`.
   `nextPageToken` is followed for at most `MAX_KEYWORD_PAGES` pages.
2. `googleAds:search` with a GAQL query over the account's search campaigns of the last 30
   days (`DEFAULT_GAQL_QUERY`, or the template's `gaql_query`); no `pageSize` (the API refuses
   it); `nextPageToken` followed for at most `MAX_GAQL_PAGES` pages.

Settings (the source's `request`, with the link's `params` over it): `api_version`,
`language` (`languageConstants/1000`), `keyword_plan_network` (`GOOGLE_SEARCH`), `page_size`
(500), `keywords` (a list, or "a,b"), `gaql_query`, `login_customer_id_variable`. Credential
roles: `access_token`, `customer_id` (dashes stripped).

The derivation, per field of `search_advertising`:

- `cpc_range`: for each idea with both `lowTopOfPageBidMicros` and `highTopOfPageBidMicros`
  (micros / 1e6 = USD), which Google documents as the 20th and 80th percentiles of the
  top-of-page bid, assume the bid is log-normal: fit mu and sigma from p20 and p80
  (z = -/+0.8416), evaluate at z = -/+0.6745 to get that idea's p25 and p75. The range is
  [median of the ideas' p25, median of the ideas' p75]. In closed form, for one idea,
  p25 = p20^((1+k)/2) * p80^((1-k)/2) and p75 = p20^((1-k)/2) * p80^((1+k)/2), k = 0.6745/0.8416:
  a slightly narrower range, geometrically inside [p20, p80]. Ideas with a bid of 0 (no
  log-normal fits) are left out; a low bid above the high bid is INVALID_DATA.
- `competitive_intensity`: the mean over ideas of `competitionIndex` / 100; an idea without
  an index counts with its `competition` level's mid-point (LOW 0.17, MEDIUM 0.5, HIGH 0.83);
  ideas with neither (UNSPECIFIED, UNKNOWN) are left out.
- `ctr_range`: [p25, p75] of `metrics.ctr` over campaign rows with impressions (a row without
  impressions has no CTR); `ctr` absent from such a row is 0, as the API omits zero metrics.
- `conversion_rate_range`: [p25, p75] of `metrics.conversionsFromInteractionsRate` (else
  `conversions / clicks`) over rows with clicks; absent means 0; a rate above 1 (several
  conversions per click) counts as 1, as the value type bounds rates to [0, 1].
- Percentiles are linear between closest ranks (numpy's default): p = q * (n - 1) in the
  sorted list. One row gives [x, x].

Keyword ideas describe the asked region and industry; the campaign rows describe the
configured account's own search campaigns, whatever the context. A field with nothing to
measure (no ideas with bids, no campaign rows) is filled from `call.reference` (the last good
value, else the fallback) by `complete_from_reference`, and the confidence becomes the share of
numbers measured (3 of 7 without campaign rows); a region without a geo target multiplies it
by `UNTARGETED_REGION_CONFIDENCE`. Nothing measured at all is INVALID_DATA.

Errors are `google.rpc.Status` bodies (`{"error": {code, status, message, details}}`, or
wrapped in a one-element array as searchStream sends them), also when one arrives in a 2xx
answer: 401/UNAUTHENTICATED, 403/PERMISSION_DENIED, 400/INVALID_ARGUMENT and other 4xx are
TERMINAL; 429/RESOURCE_EXHAUSTED is RETRYABLE with `retry_after` from
`quotaErrorDetails.retryDelay` (or a `google.rpc.RetryInfo`), "40s" -> 40.0; 408 and 5xx are
RETRYABLE. Non-JSON (an HTML page), NaN/Infinity, more than 1 MiB, wrong types and int64
strings that are not integers are INVALID_DATA. Timeouts of every request are clamped to what
is left of `call.timeout_budget`.

No credential reaches an error or a log line: reasons carry status codes, endpoint names and
Google's error-code enum names only (never messages, URLs or bodies), requests' exceptions are
not chained, and urllib3's debug lines have the customer id in the path redacted.
"""

from __future__ import annotations

import logging
import math
import os
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

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
from sources.adapters.http import MAX_RESPONSE_BYTES, Reply, parse_json, redact_path_segment, send

logger = logging.getLogger(__name__)

CHANNEL = "search_advertising"
DEFAULT_API_VERSION = "v25"
DEFAULT_LANGUAGE = "languageConstants/1000"  # English
DEFAULT_NETWORK = "GOOGLE_SEARCH"
NETWORKS = ("GOOGLE_SEARCH", "GOOGLE_SEARCH_AND_PARTNERS")
# An idea with its monthly volumes is about 1 KB: 500 keep a page well under the 1 MiB cap.
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 10_000  # the API's own limit
# The first ideas are the most relevant; five pages are plenty for stable medians.
MAX_KEYWORD_PAGES = 5
# GAQL pages hold 10,000 rows; the default query's LIMIT keeps it to one.
MAX_GAQL_PAGES = 5
MAX_SEED_KEYWORDS = 20  # the API's limit for keywordSeed.keywords

DEFAULT_GAQL_QUERY = (
    "SELECT campaign.id, metrics.impressions, metrics.clicks, metrics.ctr, metrics.average_cpc,"
    " metrics.cost_micros, metrics.conversions, metrics.conversions_from_interactions_rate"
    " FROM campaign"
    " WHERE segments.date DURING LAST_30_DAYS"
    " AND campaign.advertising_channel_type = 'SEARCH'"
    " AND metrics.impressions > 0"
    # The busiest 2,000 campaigns fit in one page under the 1 MiB cap (about 300 bytes a row).
    " ORDER BY metrics.impressions DESC LIMIT 2000"
)

# Our region codes -> Google's geo target constants (countries).
GEO_TARGETS = {
    "us": 2840,
    "gb": 2826,
    "uk": 2826,
    "de": 2276,
    "fr": 2250,
    "ca": 2124,
    "au": 2036,
    "in": 2356,
    "jp": 2392,
    "br": 2076,
    "es": 2724,
    "it": 2380,
    "nl": 2528,
    "mx": 2484,
}
# Ideas asked worldwide describe the region only loosely.
UNTARGETED_REGION_CONFIDENCE = 0.8

# Our industries -> a few generic commercial queries of each (keywordSeed.keywords).
SEED_KEYWORDS = {
    "technology": ["software", "cloud services", "it support", "saas platform", "cybersecurity"],
    "healthcare": ["health clinic", "doctor appointment", "dental care", "physical therapy", "urgent care"],
    "finance": ["personal loan", "credit card", "financial advisor", "mortgage rates", "business banking"],
    "manufacturing": [
        "contract manufacturing", "industrial equipment", "cnc machining", "injection molding", "metal fabrication"
    ],
    "retail": ["buy online", "running shoes", "home decor", "womens clothing", "electronics store"],
    "services": ["cleaning service", "plumber", "accounting services", "marketing agency", "moving company"],
}

# Mid-points of the KeywordPlanCompetitionLevel bands (LOW 0-33, MEDIUM 34-66, HIGH 67-100).
COMPETITION_MIDPOINTS = {"LOW": 0.17, "MEDIUM": 0.5, "HIGH": 0.83}
# Standard normal quantiles: the bids Google gives (p20, p80) and the ones we report (p25, p75).
Z_P80 = 0.8416
Z_P75 = 0.6745

_API_VERSION = re.compile(r"^v\d+$")
_ENUM_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_FIELD_NAME = re.compile(r"^[A-Za-z]+$")
_INT64 = re.compile(r"^-?\d+$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")

# urllib3 logs request paths at DEBUG; ours carry the customer id, a configured credential.
redact_path_segment("/customers/")

_Item = TypeVar("_Item")


@dataclass(frozen=True)
class _Account:
    customer_id: str
    url: str  # {base_url}/{version}/customers/{customer id}
    headers: dict[str, str]


@dataclass(frozen=True)
class _Idea:
    bid_p20: float | None  # USD
    bid_p80: float | None
    competition: float | None  # 0..1


@dataclass(frozen=True)
class _CampaignRow:
    impressions: int
    clicks: int
    ctr: float | None
    conversions: float
    conversion_rate: float | None


class GoogleAdsAdapter(SourceAdapter):
    """Search advertising CPC and competition from keyword ideas, CTR and conversion rate from
    the account's campaigns (see the module docstring for the derivation)."""

    kind = "google_ads"

    def fetch(self, call: SourceCall, session: requests.Session) -> SourceResult:
        if call.value_type != "channel_performance":
            raise SourceError(ErrorKind.TERMINAL, f"google_ads answers channel_performance, not {call.value_type}")
        require_channel(call, CHANNEL, "google_ads")
        settings = _settings(call)
        version = _api_version(settings)
        credentials = call.source.credentials()  # DISABLED if a variable is unset
        secrets = [secret for secret in credentials.values() if secret]
        try:
            account = _account(call.source.base_url, settings, credentials, version)
            secrets.extend([account.customer_id, account.headers.get("login-customer-id", "")])
            return _measure(call, session, account)
        except SourceError as error:
            raise _without_secrets(error, secrets) from None


def _measure(call: SourceCall, session: requests.Session, account: _Account) -> SourceResult:
    deadline = time.monotonic() + call.timeout_budget
    region = str(call.context.get("region") or "").lower()
    geo_target = GEO_TARGETS.get(region)

    ideas = _keyword_ideas(call, session, account, geo_target, deadline)
    rows = _campaign_rows(call, session, account, deadline)
    fetched_at = datetime.now(UTC)
    logger.debug("google_ads: %d keyword ideas, %d campaign rows", len(ideas), len(rows))

    measured: dict[str, Any] = {}
    for name, measurement in (
        ("ctr_range", _ctr_range(rows)),
        ("cpc_range", _cpc_range(ideas)),
        ("conversion_rate_range", _conversion_rate_range(rows)),
        ("competitive_intensity", _competitive_intensity(ideas)),
    ):
        if measurement is not None:
            measured[name] = measurement
    if not measured:
        raise SourceError(ErrorKind.INVALID_DATA, "no keyword idea had bids or competition and no campaign had traffic")

    reference = call.reference.get(CHANNEL) if isinstance(call.reference, Mapping) else None
    data, measured_share = complete_from_reference(measured, reference)
    confidence = measured_share
    if region and geo_target is None:
        confidence *= UNTARGETED_REGION_CONFIDENCE
    return SourceResult({CHANNEL: data}, fetched_at=fetched_at, confidence=round(confidence, 4))


# The request ---------------------------------------------------------------------------------


def _settings(call: SourceCall) -> dict[str, Any]:
    """The source's `request` settings with the link's `params` over them."""
    return {**call.source.request_template, **call.params}


def _api_version(settings: Mapping[str, Any]) -> str:
    version = settings.get("api_version", DEFAULT_API_VERSION)
    if not isinstance(version, str) or not _API_VERSION.match(version):
        raise SourceError(ErrorKind.TERMINAL, "request api_version must look like v25")
    return version


def _account(
    base_url: str, settings: Mapping[str, Any], credentials: Mapping[str, str], version: str
) -> _Account:
    for role in ("access_token", "customer_id"):
        if not credentials.get(role):
            raise SourceError(ErrorKind.TERMINAL, f"the source has no credential role {role}")
    # Dashes as the Ads UI shows them (123-456-7890). Other characters are left for the API to
    # judge: mock mode sends a placeholder id, which the simulator accepts.
    customer_id = credentials["customer_id"].replace("-", "").strip()
    headers = {
        "Authorization": f"Bearer {credentials['access_token']}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    variable = settings.get("login_customer_id_variable")
    login_customer_id = os.environ.get(variable, "") if isinstance(variable, str) and variable else ""
    if login_customer_id:
        login_customer_id = login_customer_id.replace("-", "").strip()
        if not login_customer_id.isdigit():
            raise SourceError(ErrorKind.TERMINAL, f"the login customer id in {variable} is not digits")
        headers["login-customer-id"] = login_customer_id
    url = f"{base_url.rstrip('/')}/{version}/customers/{quote(customer_id, safe='')}"
    return _Account(customer_id, url, headers)


def _seed_keywords(call: SourceCall, settings: Mapping[str, Any]) -> list[str]:
    keywords = settings.get("keywords")
    if keywords is None:
        industry = str(call.context.get("industry") or "").lower()
        if industry:
            return SEED_KEYWORDS.get(industry, [industry.replace("_", " ")])
        # A context without an industry asks about the market as a whole, if configured to.
        keywords = settings.get("default_keywords")
        if keywords is None:
            raise SourceError(
                ErrorKind.TERMINAL, "no industry in the context, no keywords in the link's params, no default_keywords"
            )
    if isinstance(keywords, str):
        keywords = keywords.split(",")
    if not isinstance(keywords, (list, tuple)) or not all(isinstance(keyword, str) for keyword in keywords):
        raise SourceError(ErrorKind.TERMINAL, "params keywords must be a list of strings")
    keywords = [keyword.strip() for keyword in keywords if keyword.strip()]
    if not 1 <= len(keywords) <= MAX_SEED_KEYWORDS:
        raise SourceError(ErrorKind.TERMINAL, f"params keywords must hold 1 to {MAX_SEED_KEYWORDS} keywords")
    return keywords


def _ideas_request(call: SourceCall, geo_target: int | None) -> dict[str, Any]:
    settings = _settings(call)
    network = settings.get("keyword_plan_network", DEFAULT_NETWORK)
    if network not in NETWORKS:
        raise SourceError(ErrorKind.TERMINAL, f"request keyword_plan_network must be one of {', '.join(NETWORKS)}")
    page_size = settings.get("page_size", DEFAULT_PAGE_SIZE)
    if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise SourceError(ErrorKind.TERMINAL, f"request page_size must be an integer from 1 to {MAX_PAGE_SIZE}")
    language = settings.get("language", DEFAULT_LANGUAGE)
    if not isinstance(language, str) or not language.startswith("languageConstants/"):
        raise SourceError(ErrorKind.TERMINAL, "request language must be a languageConstants/<id>")
    body: dict[str, Any] = {
        "language": language,
        "keywordPlanNetwork": network,
        "keywordSeed": {"keywords": _seed_keywords(call, settings)},
        "pageSize": page_size,
    }
    if geo_target is not None:
        body["geoTargetConstants"] = [f"geoTargetConstants/{geo_target}"]
    return body


# The two endpoints ---------------------------------------------------------------------------


def _keyword_ideas(
    call: SourceCall, session: requests.Session, account: _Account, geo_target: int | None, deadline: float
) -> list[_Idea]:
    body = _ideas_request(call, geo_target)
    return _all_pages(call, session, account, ":generateKeywordIdeas", body, MAX_KEYWORD_PAGES, _idea, deadline)


def _campaign_rows(
    call: SourceCall, session: requests.Session, account: _Account, deadline: float
) -> list[_CampaignRow]:
    query = _settings(call).get("gaql_query", DEFAULT_GAQL_QUERY)
    if not isinstance(query, str) or not query.strip():
        raise SourceError(ErrorKind.TERMINAL, "request gaql_query must be a GAQL query")
    body: dict[str, Any] = {"query": query}
    return _all_pages(call, session, account, "/googleAds:search", body, MAX_GAQL_PAGES, _campaign_row, deadline)


def _all_pages(
    call: SourceCall,
    session: requests.Session,
    account: _Account,
    suffix: str,
    body: dict[str, Any],
    max_pages: int,
    parse: Callable[[Any], _Item],
    deadline: float,
) -> list[_Item]:
    """The parsed results of up to `max_pages` pages of one endpoint (`suffix` follows the
    account's URL), following `nextPageToken`. Each page is parsed before the next is asked for."""
    endpoint = suffix.lstrip(":/")
    items: list[_Item] = []
    for _ in range(max_pages):
        payload = _post(call, session, f"{account.url}{suffix}", account.headers, body, deadline, endpoint)
        results, next_page_token = _page(payload, endpoint)
        items.extend(parse(result) for result in results)
        if next_page_token is None:
            break
        body = {**body, "pageToken": next_page_token}
    return items


def _post(
    call: SourceCall,
    session: requests.Session,
    url: str,
    headers: Mapping[str, str],
    body: Any,
    deadline: float,
    endpoint: str,
) -> Any:
    """One request's parsed JSON answer, or a classified SourceError naming the endpoint."""
    try:
        reply = send(
            session,
            method="POST",
            url=url,
            call=call,
            headers=dict(headers),
            json=body,
            deadline=deadline,
            # Google explains a failure in a google.rpc.Status body: read it whole.
            error_body_bytes=MAX_RESPONSE_BYTES,
        )
        payload = parse_json(reply) if reply.is_success else None
    except SourceError as error:
        raise SourceError(
            error.kind,
            f"{endpoint}: {error.reason}",
            retry_after=error.retry_after,
            is_timeout=error.is_timeout,
            is_throttled=error.is_throttled,
        ) from None
    if not reply.is_success:
        raise _status_error(endpoint, reply.status, _rpc_status(reply))
    embedded = _rpc_status_in(payload)
    if embedded is not None:  # a 2xx carrying a Status, as a searchStream may after it began
        code = embedded.get("code")
        is_code = isinstance(code, int) and not isinstance(code, bool)
        raise _status_error(endpoint, code if is_code else reply.status, embedded)
    return payload


# Errors --------------------------------------------------------------------------------------


def _rpc_status(reply: Reply) -> Mapping[str, Any] | None:
    try:
        payload = parse_json(reply)
    except SourceError:
        return None  # an HTML error page, an empty or cut-short body: the HTTP status says enough
    return _rpc_status_in(payload)


def _rpc_status_in(payload: Any) -> Mapping[str, Any] | None:
    """The `error` object of a google.rpc.Status answer, bare or (searchStream) in an array."""
    if isinstance(payload, list):
        for item in payload:
            found = _rpc_status_in(item)
            if found is not None:
                return found
        return None
    if isinstance(payload, Mapping) and isinstance(payload.get("error"), Mapping):
        return payload["error"]
    return None


def _status_error(endpoint: str, status: int, error: Mapping[str, Any] | None) -> SourceError:
    error = error or {}
    rpc_status = error.get("status") if isinstance(error.get("status"), str) else ""
    rpc_status = rpc_status if _ENUM_NAME.match(rpc_status) else ""
    codes = _error_codes(error)
    what = f"{endpoint}: HTTP {status}"
    what += f" {rpc_status}" if rpc_status else ""
    what += f" ({', '.join(codes)})" if codes else ""
    if status in (401, 403) or rpc_status in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return SourceError(ErrorKind.TERMINAL, f"access refused, {what}")
    if status == 429 or rpc_status == "RESOURCE_EXHAUSTED":
        return SourceError(
            ErrorKind.RETRYABLE, f"quota exhausted, {what}", retry_after=_retry_delay(error), is_throttled=True
        )
    if status >= 500 or status == 408 or rpc_status in ("INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED"):
        return SourceError(ErrorKind.RETRYABLE, f"server error, {what}")
    if 400 <= status < 500:
        return SourceError(ErrorKind.TERMINAL, f"request refused, {what}")
    return SourceError(ErrorKind.TERMINAL, f"unexpected answer, {what}")


def _failures(error: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The GoogleAdsFailure errors inside a Status's details."""
    failures = []
    for detail in error.get("details") or []:
        if isinstance(detail, Mapping) and isinstance(detail.get("errors"), list):
            failures.extend(item for item in detail["errors"] if isinstance(item, Mapping))
    return failures


def _error_codes(error: Mapping[str, Any]) -> list[str]:
    # Enum names only (`quotaError=RESOURCE_EXHAUSTED`): messages may quote the request.
    codes: list[str] = []
    for failure in _failures(error):
        code = failure.get("errorCode")
        if not isinstance(code, Mapping):
            continue
        for name, value in code.items():
            is_enum = isinstance(value, str) and _ENUM_NAME.match(value)
            if isinstance(name, str) and _FIELD_NAME.match(name) and is_enum and f"{name}={value}" not in codes:
                codes.append(f"{name}={value}")
    return codes[:3]


def _retry_delay(error: Mapping[str, Any]) -> float | None:
    """Seconds from `quotaErrorDetails.retryDelay` (or a google.rpc.RetryInfo), the longest."""
    delays = []
    for detail in error.get("details") or []:
        if isinstance(detail, Mapping):
            delays.append(_duration_seconds(detail.get("retryDelay")))
    for failure in _failures(error):
        details = failure.get("details")
        quota = details.get("quotaErrorDetails") if isinstance(details, Mapping) else None
        if isinstance(quota, Mapping):
            delays.append(_duration_seconds(quota.get("retryDelay")))
    known = [delay for delay in delays if delay is not None]
    return max(known) if known else None


def _duration_seconds(value: Any) -> float | None:
    # protobuf Duration in JSON: "40s", "1.5s".
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    seconds = float(match.group(1))
    return seconds if math.isfinite(seconds) else None


def _without_secrets(error: SourceError, secrets: Sequence[str]) -> SourceError:
    # Reasons are built from enum names and fixed words; this only guards against a server that
    # echoes a credential into something shaped like one.
    reason = error.reason
    for secret in secrets:
        if len(secret) >= 4:
            reason = reason.replace(secret, "[redacted]")
    if reason == error.reason:
        return error
    return SourceError(
        error.kind, reason, retry_after=error.retry_after, is_timeout=error.is_timeout, is_throttled=error.is_throttled
    )


# Parsing -------------------------------------------------------------------------------------


def _page(payload: Any, endpoint: str) -> tuple[list[Any], str | None]:
    """(results, next page token or None on the last page) of one page of either endpoint."""
    if not isinstance(payload, Mapping):
        raise SourceError(ErrorKind.INVALID_DATA, f"{endpoint}: expected an object")
    results = payload.get("results", [])  # empty repeated fields are omitted
    if not isinstance(results, list):
        raise SourceError(ErrorKind.INVALID_DATA, f"{endpoint}: results is not a list")
    token = payload.get("nextPageToken")
    if token is not None and not isinstance(token, str):
        raise SourceError(ErrorKind.INVALID_DATA, f"{endpoint}: nextPageToken is not a string")
    return results, token or None


def _idea(result: Any) -> _Idea:
    if not isinstance(result, Mapping):
        raise SourceError(ErrorKind.INVALID_DATA, "generateKeywordIdeas: a result is not an object")
    metrics = result.get("keywordIdeaMetrics")
    if metrics is None:
        return _Idea(None, None, None)  # no data for this idea
    if not isinstance(metrics, Mapping):
        raise SourceError(ErrorKind.INVALID_DATA, "generateKeywordIdeas: keywordIdeaMetrics is not an object")
    low = _int64(metrics, "lowTopOfPageBidMicros", "generateKeywordIdeas")
    high = _int64(metrics, "highTopOfPageBidMicros", "generateKeywordIdeas")
    if low is not None and high is not None and low > high:
        raise SourceError(
            ErrorKind.INVALID_DATA, "generateKeywordIdeas: lowTopOfPageBidMicros is above highTopOfPageBidMicros"
        )
    index = _int64(metrics, "competitionIndex", "generateKeywordIdeas")
    if index is not None and not 0 <= index <= 100:
        raise SourceError(ErrorKind.INVALID_DATA, "generateKeywordIdeas: competitionIndex is outside 0..100")
    level = metrics.get("competition")
    if level is not None and not isinstance(level, str):
        raise SourceError(ErrorKind.INVALID_DATA, "generateKeywordIdeas: competition is not an enum name")
    competition = index / 100 if index is not None else COMPETITION_MIDPOINTS.get(level or "")
    has_bids = low is not None and high is not None and low > 0
    return _Idea(
        bid_p20=low / 1e6 if has_bids else None,
        bid_p80=high / 1e6 if has_bids else None,
        competition=competition,
    )


def _campaign_row(result: Any) -> _CampaignRow:
    if not isinstance(result, Mapping):
        raise SourceError(ErrorKind.INVALID_DATA, "googleAds:search: a row is not an object")
    metrics = result.get("metrics", {})  # all-zero metrics are all omitted
    if not isinstance(metrics, Mapping):
        raise SourceError(ErrorKind.INVALID_DATA, "googleAds:search: metrics is not an object")
    endpoint = "googleAds:search"
    impressions = _int64(metrics, "impressions", endpoint) or 0
    clicks = _int64(metrics, "clicks", endpoint) or 0
    ctr = _double(metrics, "ctr", endpoint)
    conversions = _double(metrics, "conversions", endpoint) or 0.0
    rate = _double(metrics, "conversionsFromInteractionsRate", endpoint)
    is_ctr_valid = ctr is None or 0 <= ctr <= 1
    if min(impressions, clicks, conversions, rate or 0.0) < 0 or not is_ctr_valid:
        raise SourceError(ErrorKind.INVALID_DATA, f"{endpoint}: a metric is out of bounds")
    return _CampaignRow(impressions, clicks, ctr, conversions, rate)


def _int64(metrics: Mapping[str, Any], name: str, endpoint: str) -> int | None:
    """An int64 field: a JSON string of digits (a plain integer is tolerated); absent is None."""
    value = metrics.get(name)
    if value is None:
        return None
    if isinstance(value, str) and _INT64.match(value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise SourceError(ErrorKind.INVALID_DATA, f"{endpoint}: {name} is not an int64")


def _double(metrics: Mapping[str, Any], name: str, endpoint: str) -> float | None:
    value = metrics.get(name)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise SourceError(ErrorKind.INVALID_DATA, f"{endpoint}: {name} is not a number")


# The derivation ------------------------------------------------------------------------------


def _cpc_range(ideas: Sequence[_Idea]) -> list[float] | None:
    quartiles = [
        _bid_quartiles(idea.bid_p20, idea.bid_p80)
        for idea in ideas
        if idea.bid_p20 is not None and idea.bid_p80 is not None
    ]
    if not quartiles:
        return None
    return [
        round(statistics.median(p25 for p25, _ in quartiles), 4),
        round(statistics.median(p75 for _, p75 in quartiles), 4),
    ]


def _bid_quartiles(p20: float, p80: float) -> tuple[float, float]:
    """(p25, p75) of the log-normal distribution whose p20 and p80 these are."""
    mu = (math.log(p20) + math.log(p80)) / 2
    sigma = (math.log(p80) - math.log(p20)) / (2 * Z_P80)
    return math.exp(mu - Z_P75 * sigma), math.exp(mu + Z_P75 * sigma)


def _competitive_intensity(ideas: Sequence[_Idea]) -> float | None:
    levels = [idea.competition for idea in ideas if idea.competition is not None]
    return round(statistics.fmean(levels), 4) if levels else None


def _ctr_range(rows: Sequence[_CampaignRow]) -> list[float] | None:
    ctrs = [
        row.ctr if row.ctr is not None else row.clicks / row.impressions for row in rows if row.impressions > 0
    ]
    return _quartiles(ctrs)


def _conversion_rate_range(rows: Sequence[_CampaignRow]) -> list[float] | None:
    rates = [
        min(row.conversion_rate if row.conversion_rate is not None else row.conversions / row.clicks, 1.0)
        for row in rows
        if row.clicks > 0
    ]
    return _quartiles(rates)


def _quartiles(values: Sequence[float]) -> list[float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return [round(_percentile(ordered, 0.25), 6), round(_percentile(ordered, 0.75), 6)]


def _percentile(ordered: Sequence[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)
