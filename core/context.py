"""Canonical contexts: the same request always yields the same context and the same key.

A context is normalized (strings trimmed and lower-cased, `channels` a sorted set given as a
list or as "a,b"), restricted to the value type's context keys, and written as a key such as
`channels=email_marketing,search_advertising&region=us`. Every dimension is in the key, so no
context can be served another's value. Python's `hash()` is never used: it differs per process.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

# Context keys whose value is a set of names rather than one name.
LIST_KEYS = frozenset({"channels"})
_TOKEN = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")


class ContextError(ValueError):
    """A context the value type does not accept; the message says which key and why."""


def canonical_context(
    raw: Mapping[str, Any] | None, allowed: Collection[str], value_type: str
) -> tuple[dict[str, Any], str]:
    """(normalized context, canonical key) of `raw` for a value type allowing `allowed` keys."""
    if not raw:
        return {}, ""
    context: dict[str, Any] = {}
    for name in sorted(raw):
        if name not in allowed:
            allowed_text = ", ".join(sorted(allowed)) or "none"
            raise ContextError(
                f"unknown context key {name!r} for {value_type} (allowed: {allowed_text})"
            )
        value = _normalize(name, raw[name])
        if value:
            context[name] = value
    return context, context_key_of(context)


def _normalize(name: str, value: Any) -> str | list[str]:
    if name in LIST_KEYS:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple, set, frozenset)):
            raise ContextError(f"context key {name!r} takes a list of names or 'a,b', not {value!r}")
        return sorted({_token(name, item) for item in items if str(item).strip()})
    if isinstance(value, (list, tuple, set, dict)):
        raise ContextError(f"context key {name!r} takes one name, not {value!r}")
    return _token(name, value) if str(value).strip() else ""


def _token(name: str, value: Any) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ContextError(f"context key {name!r}: {value!r} is not a name")
    token = str(value).strip().lower()
    if not _TOKEN.match(token):
        raise ContextError(
            f"context key {name!r}: {value!r} is not a name (letters, digits, '_', '-', '.'; at most 64)"
        )
    return token


def wider_contexts(context: Mapping[str, Any], widening_order: Sequence[str]) -> list[tuple[dict[str, Any], str]]:
    """The contexts wider than `context`, nearest first, with their keys: the keys of
    `widening_order` (least significant first) dropped one more at a time, down to the empty
    context. Keys the context does not give are skipped; keys not in the order are never dropped,
    so the empty context is reached only when the order names every key given."""
    wider: list[tuple[dict[str, Any], str]] = []
    remaining = dict(context)
    for name in widening_order:
        if name not in remaining:
            continue
        del remaining[name]
        wider.append((dict(remaining), context_key_of(remaining)))
    return wider


def context_key_of(context: Mapping[str, Any]) -> str:
    """The canonical key of a context that is already canonical (sorted names, normalized values)."""
    return "&".join(
        f"{name}={','.join(value) if isinstance(value, list) else value}" for name, value in sorted(context.items())
    )
