"""Simulator of the Meta Marketing API Insights endpoint (`api-formats.md` section 4).

`GET /{version}/act_{id}/insights?fields=...&date_preset=...&level=...&limit=...&after=...`
answers `{"data": [...], "paging": {...}}`: every metric a string, `ctr` in percent, `actions` a
list of `{"action_type", "value"}` without zero entries, `cpc` left out of rows without clicks.
Pages follow Meta's cursors: `paging.cursors.before/after` name the first and last row of the
page, and `paging.next` (only when more rows follow) is an absolute URL built from the request's
Host header (and `X-Forwarded-Proto`/`X-Forwarded-Prefix` when a proxy or a mount sets them)
with the same query and `after=`. Rows are deterministic per account, date preset and level.

Every answer carries `X-App-Usage` and `X-Business-Use-Case-Usage`. Errors are Graph errors:
no access token (neither `Authorization: Bearer|OAuth` nor `access_token`) -> 190 with HTTP 400;
a bad parameter -> 100 with HTTP 400; an unknown path -> 2500 with HTTP 400.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, date, datetime, timedelta
from random import Random
from typing import Any
from urllib.parse import urlencode

from sources.simulators import SimRequest, SimResponse, seeded

_INSIGHTS_PATH = re.compile(r"^/(v\d+\.\d+)/act_([^/]+)/insights/?$")
METRIC_FIELDS = ("impressions", "clicks", "spend", "ctr", "cpc", "cpm", "reach", "frequency", "actions")
ID_FIELDS = ("account_id", "campaign_id", "adset_id", "ad_id")
DEFAULT_FIELDS = "impressions,spend"  # what Meta answers when `fields` is not given
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 5000
# Rows per level: one account, a handful of campaigns, a few dozen ad sets, more ads.
ROW_COUNTS = {"account": (1, 1), "campaign": (4, 8), "adset": (18, 36), "ad": (40, 90)}
DATE_PRESET_DAYS = {
    "today": 1, "yesterday": 1, "last_3d": 3, "last_7d": 7, "last_14d": 14, "last_28d": 28,
    "last_30d": 30, "last_90d": 90, "this_week_mon_today": 7, "this_week_sun_today": 7,
    "last_week_mon_sun": 7, "last_week_sun_sat": 7, "this_month": 30, "last_month": 30,
    "this_quarter": 90, "last_quarter": 90, "this_year": 365, "last_year": 365,
    "maximum": 730, "data_maximum": 730,
}  # fmt: skip


def simulate(request: SimRequest) -> SimResponse:
    match = _INSIGHTS_PATH.match(request.path)
    account_id = match.group(2) if match else "0"
    headers = _usage_headers(account_id)
    if not _access_token(request):
        message = "Invalid OAuth access token - Cannot parse access token"
        challenge = 'OAuth "Facebook Platform" "invalid_token" "Cannot parse access token"'
        return _error(400, 190, message, headers, extra_headers={"WWW-Authenticate": challenge})
    if match is None:
        return _error(400, 2500, f"Unknown path components: {request.path}", headers)
    if request.method != "GET":
        return _error(400, 100, f"Unsupported {request.method.lower()} request.", headers, subcode=33)

    date_preset = request.param("date_preset", "last_30d")
    level = request.param("level", "account")
    if date_preset not in DATE_PRESET_DAYS:
        presets = ", ".join(DATE_PRESET_DAYS)
        return _error(400, 100, f"(#100) date_preset must be one of the following values: {presets}", headers)
    if level not in ROW_COUNTS:
        levels = ", ".join(ROW_COUNTS)
        return _error(400, 100, f"(#100) level must be one of the following values: {levels}", headers)
    fields = [name for name in (request.param("fields") or DEFAULT_FIELDS).split(",") if name]
    unknown = [name for name in fields if name not in METRIC_FIELDS + ID_FIELDS]
    if unknown:
        return _error(400, 100, f"(#100) {unknown[0]} is not valid for fields param.", headers)
    limit_text = request.param("limit", str(DEFAULT_PAGE_SIZE)) or ""
    if not (limit_text.isascii() and limit_text.isdigit()) or int(limit_text) < 1:
        return _error(400, 100, "(#100) Param limit must be a positive integer", headers)
    limit = min(int(limit_text), MAX_PAGE_SIZE)
    start = 0
    for direction in ("after", "before"):
        if request.param(direction) is None:
            continue
        index = _decode_cursor(request.param(direction) or "")
        if index is None:
            return _error(400, 100, f"(#100) The {direction} cursor is invalid", headers)
        start = index + 1 if direction == "after" else max(0, index - limit)

    rows = _rows(account_id, date_preset, level)
    page = rows[start : start + limit]
    body: dict[str, Any] = {"data": [_shown(row, fields) for row in page]}
    if page:
        body["paging"] = {"cursors": {"before": _cursor(start), "after": _cursor(start + len(page) - 1)}}
        if start + len(page) < len(rows):
            body["paging"]["next"] = _page_url(request, after=_cursor(start + len(page) - 1))
        if start > 0:
            body["paging"]["previous"] = _page_url(request, before=_cursor(start))
    return SimResponse(200, body, headers)


# The data ------------------------------------------------------------------------------------


def _rows(account_id: str, date_preset: str, level: str) -> list[dict[str, Any]]:
    rng = seeded("facebook_marketing", account_id, date_preset, level)
    days = DATE_PRESET_DAYS[date_preset]
    stop = datetime.now(UTC).date() - timedelta(days=0 if date_preset.startswith(("today", "this_")) else 1)
    low, high = ROW_COUNTS[level]
    return [_row(rng, account_id, index, days, stop) for index in range(rng.randint(low, high))]


def _row(rng: Random, account_id: str, index: int, days: int, stop: date) -> dict[str, Any]:
    impressions = int(rng.uniform(300, 14000) * days * (1 if index % 9 else 0.02))
    # A few ad sets barely served: no clicks, and then Meta leaves out cpc.
    ctr_percent = rng.uniform(0.6, 1.9) if index % 9 else 0.0
    clicks = round(impressions * ctr_percent / 100)
    spend = round(clicks * rng.uniform(0.55, 2.8) + impressions * 0.0004, 2)
    reach = max(1, int(impressions / rng.uniform(1.1, 2.4))) if impressions else 0
    conversions = round(clicks * rng.uniform(0.012, 0.055))
    leads = round(conversions * rng.uniform(0.2, 0.8))
    link_clicks = round(clicks * rng.uniform(0.7, 0.9))
    actions = {
        "link_click": link_clicks,
        "landing_page_view": round(link_clicks * rng.uniform(0.7, 0.9)),
        "post_engagement": clicks + round(impressions * rng.uniform(0.001, 0.004)),
        "lead": leads,
        "purchase": conversions - leads,
    }
    row: dict[str, Any] = {
        "account_id": account_id,
        "campaign_id": str(23850000000000000 + rng.randrange(10**12)),
        "adset_id": str(23860000000000000 + rng.randrange(10**12)),
        "ad_id": str(23870000000000000 + rng.randrange(10**12)),
        "impressions": str(impressions),
        "clicks": str(clicks),
        "spend": _decimal(spend, 2),
        "reach": str(reach),
        "frequency": _decimal(impressions / reach, 6) if reach else "0",
        "ctr": _decimal(clicks / impressions * 100, 6) if impressions else "0",
        "cpm": _decimal(spend / impressions * 1000, 6) if impressions else "0",
        "actions": [
            {"action_type": name, "value": str(value)} for name, value in actions.items() if value > 0
        ],
        "date_start": (stop - timedelta(days=days - 1)).isoformat(),
        "date_stop": stop.isoformat(),
    }
    if clicks:
        row["cpc"] = _decimal(spend / clicks, 6)
    return row


def _decimal(value: float, places: int) -> str:
    # Meta's style: "5339.5", "1.436384" -- no trailing zeros.
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return text or "0"


def _shown(row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    # Only what was asked (and the dates, always); empty actions and absent cpc stay absent.
    shown = {name: row[name] for name in fields if name in row and row[name] != []}
    shown["date_start"], shown["date_stop"] = row["date_start"], row["date_stop"]
    return shown


# Paging --------------------------------------------------------------------------------------


def _cursor(index: int) -> str:
    # Meta's cursors are base64 with each "=" written "ZD": row 0 is "MAZDZD".
    return base64.b64encode(str(index).encode()).decode().replace("=", "ZD")


def _decode_cursor(cursor: str) -> int | None:
    try:
        text = base64.b64decode(cursor.replace("ZD", "="), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return int(text) if text.isascii() and text.isdigit() else None


def _page_url(request: SimRequest, **cursor: str) -> str:
    host = _header(request, "Host") or "graph.facebook.com"
    scheme = _header(request, "X-Forwarded-Proto") or "http"
    prefix = (_header(request, "X-Forwarded-Prefix") or "").rstrip("/")
    query = {name: values for name, values in request.query.items() if name not in ("after", "before")}
    query.update({name: [value] for name, value in cursor.items()})
    return f"{scheme}://{host}{prefix}{request.path}?{urlencode(query, doseq=True)}"


# Headers and errors --------------------------------------------------------------------------


def _header(request: SimRequest, name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in request.headers.items() if key.lower() == wanted), None)


def _access_token(request: SimRequest) -> str | None:
    authorization = _header(request, "Authorization") or ""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and token.strip():
        return token.strip()
    return request.param("access_token") or None


def _usage_headers(account_id: str) -> dict[str, str]:
    rng = seeded("facebook_marketing usage", account_id)
    app = {
        "call_count": rng.randint(1, 30),
        "total_time": rng.randint(1, 25),
        "total_cputime": rng.randint(1, 25),
    }
    business = {
        account_id: [
            {
                "type": "ads_insights",
                "call_count": rng.randint(1, 20),
                "total_cputime": rng.randint(1, 20),
                "total_time": rng.randint(1, 20),
                "estimated_time_to_regain_access": 0,
            }
        ]
    }
    return {"X-App-Usage": json.dumps(app), "X-Business-Use-Case-Usage": json.dumps(business)}


def _error(
    status: int,
    code: int,
    message: str,
    headers: dict[str, str],
    *,
    subcode: int | None = None,
    extra_headers: dict[str, str] | None = None,
) -> SimResponse:
    # Meta types nearly every error OAuthException; an unsupported method is the exception.
    error_type = "GraphMethodException" if subcode == 33 else "OAuthException"
    error: dict[str, Any] = {"message": message, "type": error_type, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = base64.urlsafe_b64encode(seeded("fbtrace", code, message).randbytes(9)).decode()
    return SimResponse(status, {"error": error}, {**headers, **(extra_headers or {})})
