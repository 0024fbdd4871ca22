"""The generic JSON-over-HTTP adapter: a request built from the source's template, a JSON answer
mapped onto the value's fields with JMESPath.

The request is the source's `request_template` with the link's `params` laid over it (`query`
and `headers` merged key by key): `method` (GET), `path` (after `base_url`), `query`, `headers`
and a JSON `body`. `{name}` placeholders in their strings are filled from the call's context
(lists joined with ","), `{value_type}`, and the source's credentials by role (`{api_key}`).

The answer must be 2xx JSON of at most 1 MiB, without NaN/Infinity: the shared HTTP layer
(`sources.adapters.http`) checks all three, clamps timeouts to the call's budget and classifies
failures by status. The effective mapping (the source's, updated by the link's) maps dotted
target paths to JMESPath expressions; without a mapping the JSON itself is the data. Types are
not checked here: the value type's schema does that later.

No credential may reach an error or a log line: reasons are built from status codes, field and
placeholder names only, never from URLs, headers or bodies; the HTTP layer does not chain
requests' exceptions (whose messages carry the URL with its query string) and redacts query
strings from urllib3's log lines. A credential may not be placed in the path, which is logged
as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import jmespath
import jmespath.exceptions
import requests

from sources.adapters.base import ErrorKind, SourceAdapter, SourceCall, SourceError, SourceResult
from sources.adapters.http import parse_json, raise_for_status, send

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ONLY_A_PLACEHOLDER = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass(frozen=True)
class _Request:
    method: str
    url: str
    query: dict[str, Any]
    headers: dict[str, str]
    body: Any  # JSON, or None for no body


class HttpJsonAdapter(SourceAdapter):
    """A generic JSON service described entirely by the source's template and mapping."""

    kind = "http_json"

    def fetch(self, call: SourceCall, session: requests.Session) -> SourceResult:
        credentials = call.source.credentials()  # DISABLED if a variable is unset
        request = _build_request(call, credentials)
        reply = send(
            session,
            method=request.method,
            url=request.url,
            call=call,
            params=request.query,
            headers=request.headers,
            json=request.body,
        )
        raise_for_status(reply)
        payload = parse_json(reply)
        fetched_at = datetime.now(UTC)
        mapping = {**call.source.field_mapping, **call.field_mapping}
        data = _apply_mapping(payload, mapping) if mapping else payload
        if call.channels:
            data = _keep_channels(data, call.channels)
        return SourceResult(data, fetched_at=fetched_at, confidence=_confidence(payload, mapping))


# The request ---------------------------------------------------------------------------------


def _build_request(call: SourceCall, credentials: Mapping[str, str]) -> _Request:
    template: dict[str, Any] = {**call.source.request_template, **call.params}
    # A link adding one query parameter or header must not wipe out the source's others.
    for key in ("query", "headers"):
        template[key] = {
            **(call.source.request_template.get(key) or {}),
            **(call.params.get(key) or {}),
        }
    values = _placeholder_values(call, credentials)

    path = str(template.get("path") or "")
    for name in _PLACEHOLDER.findall(path):
        if name in credentials:
            # A path shows in urllib3's debug lines as is (only query strings are redacted
            # there) and in many access logs; headers are never logged.
            raise SourceError(
                ErrorKind.TERMINAL,
                f"credential placeholder {{{name}}} may not be used in the path (use query or headers)",
            )
    path = _fill(path, values, encode=lambda value: quote(value, safe=","))
    if path and not path.startswith("/"):
        path = "/" + path

    query: dict[str, Any] = {}
    for key, value in template["query"].items():
        unfilled = _ONLY_A_PLACEHOLDER.match(value) if isinstance(value, str) else None
        if unfilled and unfilled.group(1) not in values:
            continue  # an optional parameter the context does not provide
        query[key] = _fill_json(value, values)

    headers = {"Accept": "application/json"}
    headers.update({str(key): _fill(str(value), values) for key, value in template["headers"].items()})

    return _Request(
        method=str(template.get("method") or "GET").upper(),
        url=call.source.base_url.rstrip("/") + path,
        query=query,
        headers=headers,
        body=_fill_json(template.get("body"), values),
    )


def _placeholder_values(call: SourceCall, credentials: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in call.context.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(str(item) for item in value)
        values[str(key)] = str(value)
    if "channels" not in values and call.channels:
        values["channels"] = ",".join(call.channels)
    values["value_type"] = call.value_type
    values.update(credentials)  # last, so a context key can never stand in for a credential
    return values


def _fill(text: str, values: Mapping[str, str], encode: Callable[[str], str] = str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise SourceError(ErrorKind.TERMINAL, f"request placeholder {{{name}}} has no value")
        return encode(values[name])

    return _PLACEHOLDER.sub(replace, text)


def _fill_json(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _fill(value, values)
    if isinstance(value, list):
        return [_fill_json(item, values) for item in value]
    if isinstance(value, dict):
        return {key: _fill_json(item, values) for key, item in value.items()}
    return value


# The mapping ---------------------------------------------------------------------------------


def _apply_mapping(payload: Any, mapping: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for target, expression in mapping.items():
        try:
            value = jmespath.search(expression, payload)
        except jmespath.exceptions.ParseError:
            raise SourceError(
                ErrorKind.TERMINAL, f"mapping for {target}: {expression!r} is not a valid JMESPath expression"
            ) from None
        except jmespath.exceptions.JMESPathError as error:  # e.g. a function given the wrong type
            raise SourceError(
                ErrorKind.INVALID_DATA,
                f"mapping for {target}: {expression!r} failed ({type(error).__name__})",
            ) from None
        # `[p25, p75]` with one field absent yields [x, None]: as missing as a plain None.
        if value is None or (isinstance(value, list) and None in value):
            raise SourceError(
                ErrorKind.INVALID_DATA, f"field {target} is missing from the answer (mapping {expression!r})"
            )
        _set_dotted(data, target, value)
    return data


def _set_dotted(data: dict[str, Any], target: str, value: Any) -> None:
    *parents, leaf = target.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SourceError(ErrorKind.TERMINAL, f"mapping targets overlap at {target}")
    if leaf in node:
        raise SourceError(ErrorKind.TERMINAL, f"mapping targets overlap at {target}")
    node[leaf] = value


def _keep_channels(data: Any, channels: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SourceError(ErrorKind.INVALID_DATA, "expected an object keyed by channel")
    kept = {key: value for key, value in data.items() if key in channels}
    if not kept:
        raise SourceError(ErrorKind.INVALID_DATA, f"no data for channels {', '.join(channels)}")
    return kept


def _confidence(payload: Any, mapping: Mapping[str, str]) -> float:
    # With a mapping, a top-level `confidence` is the source's view of its answer; without one,
    # the whole answer is the data and `confidence` (if any) belongs to it.
    if not mapping or "confidence" in mapping or not isinstance(payload, dict):
        return 1.0
    value = payload.get("confidence")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return 1.0
