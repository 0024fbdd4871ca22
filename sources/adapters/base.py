"""The one interface every source adapter implements (one file per provider beside this one).

An adapter turns a `SourceCall` (a source's settings, a value type, a canonical context) into a
`SourceResult` (value-shaped data, when it was fetched, how confident the source is, how long
it stays fresh), or raises `SourceError` with a classified `ErrorKind`. Adapters do HTTP and
parsing only; breakers, rate limits, retries and metrics sit around them in `sources.calls`.
"""

from __future__ import annotations

import enum
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

import requests


# What a simulated source sends for a credential whose variable is unset.
SIMULATOR_CREDENTIAL = "simulator-credential"


class ErrorKind(str, enum.Enum):
    RETRYABLE = "retryable"  # timeout, connection error, 5xx, throttled: worth another try
    TERMINAL = "terminal"  # bad credentials, bad request: the same call will fail again
    INVALID_DATA = "invalid_data"  # unparseable, wrong types, NaN, oversized, out of bounds
    RATE_LIMITED = "rate_limited"  # our own budget for the source is spent
    BREAKER_OPEN = "breaker_open"  # the source's breaker refuses calls for now
    DISABLED = "disabled"  # switched off, or a credential variable is not set


class SourceError(Exception):
    """A source call that produced no usable data, with why. Never carries a credential."""

    def __init__(
        self,
        kind: ErrorKind,
        reason: str,
        *,
        retry_after: float | None = None,
        is_timeout: bool = False,
        is_throttled: bool = False,
        is_unreachable: bool = False,
    ):
        self.kind = kind
        self.reason = reason
        self.retry_after = retry_after  # seconds the provider asked us to wait, if it said
        # For the health record (sources.health.call_outcome), which tells a slow source from a
        # failing one and a throttling provider from a broken one; RETRYABLE covers all four.
        self.is_timeout = is_timeout  # the time budget or a socket timeout ran out
        self.is_throttled = is_throttled  # the provider refused us for our rate (HTTP 429, quota)
        # Connection refused or host unknown: not slow but absent, so the breaker opens at once.
        self.is_unreachable = is_unreachable
        super().__init__(f"{kind.value}: {reason}")


@dataclass(frozen=True)
class SourceConfig:
    """A source's settings as the engine holds them (a snapshot of `sources.Source`)."""

    name: str
    kind: str
    base_url: str
    credential_variables: Mapping[str, str] = field(default_factory=dict)
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    request_template: Mapping[str, Any] = field(default_factory=dict)
    field_mapping: Mapping[str, str] = field(default_factory=dict)
    is_enabled: bool = True
    requests_per_minute: int = 60
    burst_allowance: int = 10
    breaker_failure_threshold: int = 5
    breaker_recovery_timeout: timedelta = timedelta(seconds=60)
    breaker_half_open_trials: int = 1
    # Mock mode (development): the source is a local simulator, which takes any credential.
    is_simulated: bool = False

    def credentials(self) -> dict[str, str]:
        """Role -> secret, read from the environment now. Raises DISABLED if one is unset."""
        if self.is_simulated:
            return {role: os.environ.get(name) or SIMULATOR_CREDENTIAL for role, name in self.credential_variables.items()}
        missing = [name for name in self.credential_variables.values() if not os.environ.get(name)]
        if missing:
            raise SourceError(
                ErrorKind.DISABLED, f"credential variable {', '.join(sorted(missing))} is not set"
            )
        return {role: os.environ[name] for role, name in self.credential_variables.items()}


@dataclass(frozen=True)
class SourceCall:
    """One request for one value type in one context."""

    source: SourceConfig
    value_type: str
    context: Mapping[str, Any]
    params: Mapping[str, Any] = field(default_factory=dict)  # the link's request parameters
    field_mapping: Mapping[str, str] = field(default_factory=dict)  # the link's, over the source's
    channels: tuple[str, ...] = ()  # channels this source covers for the type (empty: all)
    timeout_budget: float = 10.0  # seconds the whole call may take, retries included
    # Someone is waiting for this call (a consumer's read): one attempt, no retry, and no wait
    # for a rate-limit token. Background refreshes are not urgent and use the whole budget.
    is_urgent: bool = False
    # The value a source may complete: the last known good value, else the fallback. A source
    # that measures only some fields (Semrush) fills the others from it.
    reference: Any = None
    # The value type's unadjusted base, its fallback. Economic sources (World Bank, IMF) scale
    # it by a regional factor; scaling `reference` instead would compound refresh after refresh.
    baseline: Any = None


@dataclass(frozen=True)
class SourceResult:
    data: Any  # value-shaped: what the value type's schema describes (possibly partial)
    fetched_at: datetime
    confidence: float = 1.0  # 0..1, the source's own view of its answer
    ttl: timedelta | None = None  # the source's own freshness, if it says; else the type's


def require_channel(call: SourceCall, channel: str, provider: str) -> None:
    """TERMINAL unless the call may ask for `channel`, the one this provider measures.

    The same link would ask again and again: a configuration mistake, not bad data.
    """
    if call.channels and channel not in call.channels:
        raise SourceError(ErrorKind.TERMINAL, f"{provider} measures only {channel}, not {', '.join(call.channels)}")


def complete_from_reference(measured: Mapping[str, Any], reference: Any) -> tuple[dict[str, Any], float]:
    """(`measured` deep-merged over `reference`, share of the numbers that were measured).

    A provider that measures only some fields of a value (Semrush has CPC but no CTR) answers
    whole values this way; the share becomes its confidence, so the blend trusts it less.
    """
    merged = _merge(reference if isinstance(reference, Mapping) else {}, measured)
    measured_count = count_numbers(measured)
    total = count_numbers(merged)
    return merged, (measured_count / total if total else 0.0)


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = {key: value for key, value in base.items()}
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def count_numbers(value: Any) -> int:
    """How many numbers `value` holds, in nested mappings and lists too (booleans are not numbers)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, (int, float)):
        return 1
    if isinstance(value, Mapping):
        return sum(count_numbers(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(count_numbers(item) for item in value)
    return 0


class SourceAdapter(ABC):
    """Base of every adapter. Subclasses set `kind` and implement `fetch`."""

    kind: ClassVar[str]

    @abstractmethod
    def fetch(self, call: SourceCall, session: requests.Session) -> SourceResult:
        """Fetch and convert. Raise SourceError (classified) for every failure; never return
        data the adapter could not fully parse."""
