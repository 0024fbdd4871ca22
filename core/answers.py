"""What a read returns: a value with its provenance (PRODUCT.md's contract)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

# Where an answer was found or made, in precedence order (values.resolution's docstring).
TIERS = (
    "override", "l1", "l2", "l3", "primary", "secondary", "tertiary", "stale", "widened", "predicted", "fallback",
)
SOURCE_TIERS = ("primary", "secondary", "tertiary")
# Where an answer was made when the sources gave nothing: a degraded answer.
DEGRADED_ORIGINS = ("stale", "widened", "predicted", "fallback")
# Why an answer is degraded (Provenance.reason; the metrics' `reason` label).
REASONS = ("budget_exceeded", "breaker_open", "sources_down", "no_sources", "no_database")


@dataclass(frozen=True)
class SourceUse:
    """A source that contributed to a value."""

    name: str
    weight: float
    confidence: float
    fetched_at: datetime


@dataclass(frozen=True)
class Provenance:
    tier: str  # where this answer was found (l1, l2, l3) or made (override, primary, ..., fallback)
    origin: str  # where the value was made: override, primary, secondary, tertiary, stale, fallback
    sources: tuple[SourceUse, ...]
    confidence: float
    fetched_at: datetime | None
    expires_at: datetime | None
    stale: bool = False
    errors: tuple[str, ...] = ()  # why better tiers gave nothing, when they did
    reason: str | None = None  # a degraded answer's why, one of REASONS; None otherwise
    refreshing: bool = False  # a refresh of this value was left running in the background
    context_used: dict[str, Any] | None = None  # widened: the wider context whose value this is
    window: dict[str, Any] | None = None  # predicted: the history it came from (oldest, newest, points)

    @property
    def is_degraded(self) -> bool:
        return self.origin in DEGRADED_ORIGINS

    def as_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "origin": self.origin,
            "sources": [
                {
                    "name": use.name,
                    "weight": use.weight,
                    "confidence": use.confidence,
                    "fetched_at": use.fetched_at.isoformat(),
                }
                for use in self.sources
            ],
            "confidence": self.confidence,
            "fetched_at": self.fetched_at.isoformat() if self.fetched_at else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "stale": self.stale,
            "errors": list(self.errors),
            "reason": self.reason,
            "refreshing": self.refreshing,
            "context_used": self.context_used,
            "window": self.window,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        # Built without __init__ (as found_in does): an L2 hit makes one of these from JSON this
        # class wrote, and a frozen dataclass's __init__ sets each of its twelve fields through
        # object.__setattr__. The fields are the ones __init__ would set, with its defaults.
        return _made(
            cls,
            tier=data["tier"],
            origin=data["origin"],
            sources=tuple(
                _made(
                    SourceUse,
                    name=use["name"],
                    weight=use["weight"],
                    confidence=use["confidence"],
                    fetched_at=datetime.fromisoformat(use["fetched_at"]),
                )
                for use in data["sources"]
            ),
            confidence=data["confidence"],
            fetched_at=_time(data["fetched_at"]),
            expires_at=_time(data["expires_at"]),
            stale=data["stale"],
            errors=tuple(data.get("errors", ())),
            reason=data.get("reason"),
            refreshing=data.get("refreshing", False),
            context_used=data.get("context_used"),
            window=data.get("window"),
        )


@dataclass(frozen=True)
class Answer:
    key: str
    context: dict[str, Any]
    value: Any
    provenance: Provenance

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of PRODUCT.md's contract; made once per answer object, so read-only."""
        made = self.__dict__.get("_as_dict")
        if made is None:
            # An answer is immutable, and an L1 hit returns the same object again and again.
            made = self.__dict__["_as_dict"] = {
                "key": self.key,
                "context": self.context,
                "value": self.value,
                "provenance": self.provenance.as_dict(),
            }
        return made

    def version(self) -> str:
        """Changes when the value or where it was made changes, not with the tier serving it."""
        made = self.__dict__.get("_version")
        if made is None:
            identity = [self.value, self.context, self.provenance.origin, str(self.provenance.fetched_at)]
            text = json.dumps(identity, sort_keys=True, default=str)
            made = self.__dict__["_version"] = hashlib.sha256(text.encode()).hexdigest()[:20]
        return made

    def as_json(self) -> bytes:
        """`as_dict()` as JSON, byte for byte what DRF's JSONRenderer makes of it (compact, UTF-8);
        made once per answer object, like `as_dict()`: the read API and L2 send these bytes."""
        made = self.__dict__.get("_json")
        if made is None:
            made = self.__dict__["_json"] = answer_json(self.as_dict())
        return made

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Answer:
        return _made(
            cls,
            key=data["key"],
            context=data["context"],
            value=data["value"],
            provenance=Provenance.from_dict(data["provenance"]),
        )

    @classmethod
    def from_json(cls, data: bytes) -> Answer:
        """The answer whose `as_json()` is `data`, which it keeps (so do its `as_dict()`): an answer
        read back from L2 is served without being serialized again. Raises ValueError on
        bytes that are not an answer's JSON."""
        made = orjson.loads(data)
        try:
            answer = cls.from_dict(made)
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not an answer's JSON: {error}") from error
        answer.__dict__["_as_dict"] = made
        answer.__dict__["_json"] = data
        return answer

    def found_in(self, tier: str) -> Answer:
        """The same answer, as served from a cache tier.

        Made on every L1 and L2 write and on every L2 hit (kept in L1), so made cheaply: the
        fields copied as they are (dataclasses.replace would run __init__ and check each one),
        the version kept (it does not depend on the tier), and the JSON form derived from this
        one's when it has it, rather than made again from the datetimes.
        """
        provenance = object.__new__(type(self.provenance))
        provenance.__dict__.update(self.provenance.__dict__, tier=tier)
        answer = object.__new__(type(self))
        answer.__dict__.update(key=self.key, context=self.context, value=self.value, provenance=provenance)
        version = self.__dict__.get("_version")
        if version is not None:
            answer.__dict__["_version"] = version
        made = self.__dict__.get("_as_dict")
        if made is not None:
            answer.__dict__["_as_dict"] = {**made, "provenance": {**made["provenance"], "tier": tier}}
            text = self.__dict__.get("_json")
            if text is not None:
                retiered = _with_tier(text, self.provenance.tier, tier)
                if retiered is not None:
                    answer.__dict__["_json"] = retiered
        return answer


def answer_json(data: dict[str, Any]) -> bytes:
    """`data` as DRF's JSONRenderer renders it with this project's settings (compact, UTF-8,
    U+2028 and U+2029 escaped for JavaScript), through orjson: several times faster than the
    standard library's json, for the one body every read of a key and context shares."""
    try:
        text = orjson.dumps(data)
    except orjson.JSONEncodeError:  # what orjson refuses (an integer past 64 bits): the slow way
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    if b"\xe2\x80\xa8" in text or b"\xe2\x80\xa9" in text:
        text = text.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return text


# Where as_json() writes the tier: "provenance" is the answer's last key, "tier" its first.
_TIER_MARK = b'"provenance":{"tier":"'


def _with_tier(text: bytes, old: str, new: str) -> bytes | None:
    """An answer's JSON with its tier changed from `old` to `new`, or None if `text` does not
    read as expected. Strings in JSON escape their quotes, so the last unescaped mark is the
    provenance's own."""
    at = text.rfind(_TIER_MARK) + len(_TIER_MARK)
    if at < len(_TIER_MARK) or text[at : at + len(old) + 1] != f'{old}"'.encode():
        return None
    return b"".join((text[:at], new.encode(), text[at + len(old) :]))


def _made(cls: type, **fields: Any) -> Any:
    """An instance of a frozen dataclass of this module, its fields set as given, __init__ not run."""
    made = object.__new__(cls)
    made.__dict__.update(fields)
    return made


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
