"""Local simulators of the real APIs, for development (`mock_mode: true`) and for tests.

Each provider's module has `simulate(request: SimRequest) -> SimResponse`, speaking that API's
wire format (`../shared/api-formats.md`): same paths, parameters, status codes, error bodies
and pagination. Data is plausible and deterministic per request (seeded from the context it
asks about), so development runs the real adapter code against stable numbers. Development
serves them at `/simulators/<kind>/...` (sources.views); tests serve them from a LocalServer.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from django.utils.module_loading import import_string

# The name in `/simulators/<name>/...` -> the function that answers for it.
SIMULATORS: dict[str, str] = {
    "world_bank": "sources.simulators.world_bank.simulate",
    "imf": "sources.simulators.imf.simulate",
    "google_ads": "sources.simulators.google_ads.simulate",
    "facebook_marketing": "sources.simulators.facebook_marketing.simulate",
    "semrush": "sources.simulators.semrush.simulate",
    # The generic JSON services of base.yaml (kind http_json), one function each.
    "market_research": "sources.simulators.http_json.market_research",
    "industry_benchmarks": "sources.simulators.http_json.industry_benchmarks",
    "economic_intelligence": "sources.simulators.http_json.economic_intelligence",
    "competitive_analysis": "sources.simulators.http_json.competitive_analysis",
    "email_intelligence": "sources.simulators.http_json.email_intelligence",
}


@dataclass(frozen=True)
class SimRequest:
    method: str
    path: str  # below the simulator's base URL, e.g. "/v2/country/US/indicator/NY.GDP.PCAP.CD"
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @classmethod
    def from_url(cls, method: str, path_with_query: str, headers: Mapping[str, str], body: bytes) -> SimRequest:
        parts = urlsplit(path_with_query)
        return cls(method.upper(), parts.path, parse_qs(parts.query), dict(headers), body)


@dataclass(frozen=True)
class SimResponse:
    status: int = 200
    body: Any = None  # bytes or str as is; anything else is sent as JSON
    headers: Mapping[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        """(body bytes, content type)."""
        if isinstance(self.body, bytes):
            return self.body, self.headers.get("Content-Type", "application/octet-stream")
        if isinstance(self.body, str):
            return self.body.encode(), self.headers.get("Content-Type", "text/plain; charset=utf-8")
        return json.dumps(self.body).encode(), "application/json"


def seeded(*parts: Any) -> random.Random:
    """A random generator seeded by `parts`: the same request always gets the same numbers."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def simulator_for(name: str) -> Callable[[SimRequest], SimResponse] | None:
    path = SIMULATORS.get(name)
    return import_string(path) if path else None
