"""Simulator of the Google Ads API (REST): generateKeywordIdeas and googleAds:search/searchStream.

Speaks the wire format of `api-formats.md` section 3: any `/v<digits>/` version; `POST` only;
`Authorization: Bearer ...` required (401 UNAUTHENTICATED without it); lowerCamelCase fields,
int64 as JSON strings, doubles as numbers, zero metrics omitted; `nextPageToken` absent on the
last page; errors as `google.rpc.Status` (wrapped in a one-element array by searchStream); an
unknown body field, `pageSize` to googleAds:search included, is INVALID_ARGUMENT as in the real
API.

Numbers are plausible and deterministic: keyword ideas per geo target and keyword (top-of-page
bids around a country's typical CPC, higher for finance and legal words, p80 2.5-4x p20),
campaigns per customer id. Two liberties: googleAds:search pages hold `SEARCH_PAGE_ROWS` rows
instead of 10,000, so that pagination shows; and any customer id is accepted, since mock mode
sends a placeholder credential.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from sources.simulators import SimRequest, SimResponse, seeded

# Small, so that a few dozen campaigns span pages (the real API: 10,000 rows a page).
SEARCH_PAGE_ROWS = 10
MAX_PAGE_SIZE = 10_000
MAX_SEED_KEYWORDS = 20
MAX_GEO_TARGETS = 10

# A country's typical search CPC in USD (geo target constant -> CPC); worldwide 1.0.
COUNTRY_CPC = {
    2840: 1.6, 2826: 1.3, 2276: 1.2, 2250: 1.0, 2124: 1.3, 2036: 1.4, 2356: 0.25,
    2392: 0.9, 2076: 0.35, 2724: 0.7, 2380: 0.7, 2528: 1.0, 2484: 0.4,
}
IDEA_MODIFIERS = (
    "", "best", "cheap", "near me", "online", "reviews", "prices", "deals", "buy", "for sale",
    "top rated", "discount", "compare", "services", "2026", "how to choose",
)
# Words of the queries advertisers fight hardest over (finance, legal, B2B software).
EXPENSIVE_TERMS = ("loan", "mortgage", "insurance", "credit", "lawyer", "attorney", "financial", "banking", "saas")
EXPENSIVE_FACTOR = 2.5
PREFIX_MODIFIERS = ("best", "cheap", "buy", "top rated", "compare")
NETWORKS = ("GOOGLE_SEARCH", "GOOGLE_SEARCH_AND_PARTNERS")
SEEDS = ("keywordSeed", "urlSeed", "keywordAndUrlSeed", "siteSeed")
IDEA_FIELDS = {
    "customerId", "language", "geoTargetConstants", "includeAdultKeywords", "pageToken", "pageSize",
    "keywordPlanNetwork", "keywordAnnotation", "aggregateMetrics", "historicalMetricsOptions", *SEEDS,
}
SEARCH_FIELDS = {"query", "pageToken", "validateOnly", "returnTotalResultsCount", "summaryRowSetting"}

FIELD_MASK = ",".join(
    (
        "campaign.id", "metrics.impressions", "metrics.clicks", "metrics.ctr", "metrics.averageCpc",
        "metrics.costMicros", "metrics.conversions", "metrics.conversionsFromInteractionsRate",
    )
)

_IDEAS_PATH = re.compile(r"^/(v\d+)/customers/([^/:]+):generateKeywordIdeas$")
_SEARCH_PATH = re.compile(r"^/(v\d+)/customers/([^/:]+)/googleAds:(search|searchStream)$")
_GEO = re.compile(r"^geoTargetConstants/(\d+)$")
_LIMIT = re.compile(r"\bLIMIT\s+(\d+)\s*$", re.IGNORECASE)
_FROM_CAMPAIGN = re.compile(r"^\s*SELECT\s.+\sFROM\s+campaign\b", re.IGNORECASE | re.DOTALL)


def simulate(request: SimRequest) -> SimResponse:
    ideas = _IDEAS_PATH.match(request.path)
    search = _SEARCH_PATH.match(request.path)
    if request.method != "POST" or not (ideas or search):
        return _status(404, "NOT_FOUND", f"The requested URL {request.path} was not found on this server.")
    is_stream = bool(search and search.group(3) == "searchStream")
    response = _answer(request, ideas, search, is_stream)
    # searchStream sends its errors in a one-element array.
    return SimResponse(response.status, [response.body]) if is_stream and response.status != 200 else response


def _answer(request: SimRequest, ideas: re.Match | None, search: re.Match | None, is_stream: bool) -> SimResponse:
    authorization = next((value for name, value in request.headers.items() if name.lower() == "authorization"), "")
    if not authorization.startswith("Bearer ") or not authorization[len("Bearer "):].strip():
        return _status(
            401,
            "UNAUTHENTICATED",
            "Request is missing required authentication credential. Expected OAuth 2 access token,"
            " login cookie or other valid authentication credential.",
        )
    try:
        body = request.json()
    except ValueError:
        return _invalid_json("Invalid JSON payload received.")
    if not isinstance(body, dict):
        return _invalid_json("Invalid JSON payload received. Expected an object.")
    known = IDEA_FIELDS if ideas else SEARCH_FIELDS - ({"pageToken"} if is_stream else set())
    unknown = sorted(set(body) - known)
    if unknown:
        return _invalid_json(f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.')
    if ideas:
        return _keyword_ideas(body)
    return _search(search.group(2), body, is_stream)


# generateKeywordIdeas ------------------------------------------------------------------------


def _keyword_ideas(body: dict[str, Any]) -> SimResponse:
    seeds = [name for name in SEEDS if name in body]
    if len(seeds) != 1:
        return _ads_failure("requestError", "REQUIRED_FIELD_MISSING", "Exactly one seed is required.")
    seed = body[seeds[0]]
    keywords = seed.get("keywords") if isinstance(seed, dict) and seeds == ["keywordSeed"] else ["example"]
    if not isinstance(keywords, list) or not 1 <= len(keywords) <= MAX_SEED_KEYWORDS:
        return _ads_failure("keywordPlanIdeaError", "INVALID_VALUE", "keywordSeed.keywords takes 1 to 20 keywords.")
    geo_targets = body.get("geoTargetConstants") or []
    geo_ids = [_GEO.match(target) for target in geo_targets if isinstance(target, str)]
    if len(geo_targets) > MAX_GEO_TARGETS or len(geo_ids) != len(geo_targets) or not all(geo_ids):
        return _ads_failure("requestError", "INVALID_INPUT", "Invalid geo target constants.")
    network = body.get("keywordPlanNetwork", "GOOGLE_SEARCH")
    if network not in NETWORKS:
        return _invalid_json(f'Invalid value at \'keyword_plan_network\' ("{network}")')
    page_size = body.get("pageSize", MAX_PAGE_SIZE)
    if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        return _ads_failure("requestError", "INVALID_PAGE_SIZE", "Page size must be from 1 to 10,000.")
    offset = _offset(body.get("pageToken"))
    if offset is None:
        return _ads_failure("requestError", "INVALID_PAGE_TOKEN", "Page token is invalid.")

    country = int(geo_ids[0].group(1)) if geo_ids else None
    language = body.get("language", "")
    ideas = [
        _idea(text, country, language, network)
        for text in _idea_texts([str(keyword).strip().lower() for keyword in keywords])
    ]
    page = ideas[offset : offset + page_size]
    answer: dict[str, Any] = {"results": page, "totalSize": str(len(ideas))}
    if offset + page_size < len(ideas):
        answer["nextPageToken"] = _token(offset + page_size)
    return SimResponse(200, answer)


def _idea_texts(keywords: list[str]) -> list[str]:
    texts: list[str] = []
    for keyword in keywords:
        rng = seeded("google_ads", "modifiers", keyword)
        modifiers = ["", *rng.sample(IDEA_MODIFIERS[1:], rng.randint(6, 12))]
        for modifier in modifiers:
            is_prefix = modifier in PREFIX_MODIFIERS
            text = (f"{modifier} {keyword}" if is_prefix else f"{keyword} {modifier}").strip()
            if text not in texts:
                texts.append(text)
    return texts


def _idea(text: str, country: int | None, language: str, network: str) -> dict[str, Any]:
    rng = seeded("google_ads", "idea", text, country, language, network)
    searches = rng.choice((10, 20, 50, 90, 170, 320, 590, 1000, 2400, 5400, 12100)) * rng.randint(1, 4)
    metrics: dict[str, Any] = {"avgMonthlySearches": str(searches)}
    index = rng.randint(18, 100)
    metrics["competition"] = "LOW" if index <= 33 else "MEDIUM" if index <= 66 else "HIGH"
    if rng.random() > 0.12:  # thin data: no index, only the level
        metrics["competitionIndex"] = str(index)
    if rng.random() > 0.07:  # thin data: no bids at all
        is_expensive = any(term in text for term in EXPENSIVE_TERMS)
        typical = COUNTRY_CPC.get(country, 1.0) * (EXPENSIVE_FACTOR if is_expensive else 1.0)
        p20 = typical * rng.lognormvariate(0, 0.45) * rng.uniform(0.55, 0.8)
        p80 = p20 * rng.uniform(2.5, 4.0)
        metrics["lowTopOfPageBidMicros"] = str(_micros(p20))
        metrics["highTopOfPageBidMicros"] = str(_micros(p80))
    return {"text": text, "keywordIdeaMetrics": metrics, "keywordAnnotations": {}}


def _micros(usd: float) -> int:
    return max(10_000, round(usd * 100) * 10_000)  # whole cents, at least one


# googleAds:search / searchStream -------------------------------------------------------------


def _search(customer_id: str, body: dict[str, Any], is_stream: bool) -> SimResponse:
    query = body.get("query")
    if not isinstance(query, str) or not _FROM_CAMPAIGN.match(query):
        return _ads_failure("queryError", "BAD_RESOURCE_TYPE_IN_FROM_CLAUSE", "Only FROM campaign is simulated.")
    rows = _campaigns(customer_id, query)
    request_id = f"sim-{seeded('google_ads', 'request', customer_id, query).getrandbits(48):012x}"
    if is_stream:
        batches = [
            {"results": rows[start : start + SEARCH_PAGE_ROWS], "fieldMask": FIELD_MASK, "requestId": request_id}
            for start in range(0, len(rows), SEARCH_PAGE_ROWS)
        ]
        return SimResponse(200, batches or [{"fieldMask": FIELD_MASK, "requestId": request_id}])
    offset = _offset(body.get("pageToken"))
    if offset is None:
        return _ads_failure("requestError", "INVALID_PAGE_TOKEN", "Page token is invalid.")
    answer: dict[str, Any] = {"fieldMask": FIELD_MASK, "requestId": request_id}
    page = rows[offset : offset + SEARCH_PAGE_ROWS]
    if page:  # an empty repeated field is omitted
        answer["results"] = page
    if offset + SEARCH_PAGE_ROWS < len(rows):
        answer["nextPageToken"] = _token(offset + SEARCH_PAGE_ROWS)
    if body.get("returnTotalResultsCount"):
        answer["totalResultsCount"] = str(len(rows))
    return SimResponse(200, answer)


def _campaigns(customer_id: str, query: str) -> list[dict[str, Any]]:
    rng = seeded("google_ads", "campaigns", customer_id)
    rows = []
    for _ in range(rng.randint(14, 32)):
        campaign_id = str(rng.randint(10**9, 10**10))
        impressions = 0 if rng.random() < 0.1 else int(rng.lognormvariate(9, 1.2))
        ctr = min(0.3, rng.lognormvariate(-3.1, 0.4))  # around 4.5 %
        clicks = round(impressions * ctr)
        conversions = round(clicks * min(0.5, rng.lognormvariate(-2.8, 0.5)), 2)  # around 6 %
        cost_micros = round(clicks * rng.uniform(0.8, 3.5) * 100) * 10_000  # whole cents
        metrics: dict[str, Any] = {
            "impressions": str(impressions),
            "clicks": str(clicks),
            "ctr": clicks / impressions if impressions else 0.0,
            "averageCpc": cost_micros / clicks if clicks else 0.0,
            "costMicros": str(cost_micros),
            "conversions": conversions,
            "conversionsFromInteractionsRate": conversions / clicks if clicks else 0.0,
        }
        rows.append(
            {
                "campaign": {"resourceName": f"customers/{customer_id}/campaigns/{campaign_id}", "id": campaign_id},
                # proto3 JSON leaves out zero values
                "metrics": {name: value for name, value in metrics.items() if value not in ("0", 0, 0.0)},
            }
        )
    if re.search(r"metrics\.impressions\s*>\s*0", query):
        rows = [row for row in rows if "impressions" in row["metrics"]]
    if re.search(r"ORDER\s+BY\s+metrics\.impressions\s+DESC", query, re.IGNORECASE):
        rows.sort(key=lambda row: int(row["metrics"].get("impressions", "0")), reverse=True)
    limit = _LIMIT.search(query)
    return rows[: int(limit.group(1))] if limit else rows


# Pagination and errors -----------------------------------------------------------------------


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(token: Any) -> int | None:
    """The row offset a page token stands for (0 without one); None for a token we never sent."""
    if token is None or token == "":
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(str(token).encode()))["offset"]
    except (ValueError, TypeError, KeyError):
        return None
    return offset if isinstance(offset, int) and offset >= 0 else None


def _status(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> SimResponse:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return SimResponse(code, {"error": error})


def _invalid_json(message: str) -> SimResponse:
    return _status(
        400,
        "INVALID_ARGUMENT",
        message,
        [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"description": message}]}],
    )


def _ads_failure(error_type: str, error_code: str, message: str) -> SimResponse:
    return _status(
        400,
        "INVALID_ARGUMENT",
        "Request contains an invalid argument.",
        [
            {
                "@type": "type.googleapis.com/google.ads.googleads.v25.errors.GoogleAdsFailure",
                "errors": [{"errorCode": {error_type: error_code}, "message": message}],
                "requestId": "sim-request",
            }
        ],
    )

