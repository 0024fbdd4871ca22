"""The generic JSON-over-HTTP adapter: a request built from the source's template, a JSON answer
mapped onto the value's fields with JMESPath.

The request is the source's `request_template` with the link's `params` laid over it (`query`
and `headers` merged key by key): `method` (GET), `path` (after `base_url`), `query`, `headers`
and a JSON `body`. `{name}` placeholders in their strings are filled from the call's context
(lists joined with ","), `{value_type}`, and the source's credentials by role (`{api_key}`).

The answer must be 2xx JSON of at most 1 MiB, without NaN/Infinity. The effective mapping (the
source's, updated by the link's) maps dotted target paths to JMESPath expressions; without a
mapping the JSON itself is the data. Types are not checked here: the value type's schema does
that later.

No credential may reach an error or a log line: reasons are built from status codes, field and
placeholder names only, never from URLs, headers or bodies, and requests' own exceptions (whose
messages carry the URL with its query string) are not chained.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import jmespath
import jmespath.exceptions
import requests

from sources.adapters.base import ErrorKind, SourceAdapter, SourceCall, SourceError, SourceResult

# Config answers are a few KiB; anything near this is a wrong endpoint or a hostile server.
MAX_RESPONSE_BYTES = 1024 * 1024
# Read in pieces so an oversized body is refused without holding all of it in memory.
READ_CHUNK_BYTES = 64 * 1024

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ONLY_A_PLACEHOLDER = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_QUERY_STRING = re.compile(r"\?[^\s'\"]*")


class _QueryStringRedactor(logging.Filter):
    """urllib3 logs request URLs (query strings included) at DEBUG; a query may hold an API key."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = _QUERY_STRING.sub("?[redacted]", message), ()
        return True


# A filter on a logger sees only that logger's own records, so each one that logs URLs gets it.
for _logger_name in ("urllib3.connectionpool", "urllib3.poolmanager", "urllib3.util.retry"):
    logging.getLogger(_logger_name).addFilter(_QueryStringRedactor())


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
        if call.timeout_budget <= 0:
            raise SourceError(ErrorKind.RETRYABLE, "no time left in the call's budget")
        credentials = call.source.credentials()  # DISABLED if a variable is unset
        request = _build_request(call, credentials)
        payload = _send(session, request, call)
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


# The response --------------------------------------------------------------------------------


def _send(session: requests.Session, request: _Request, call: SourceCall) -> Any:
    """The parsed JSON answer, or a classified SourceError. Exceptions of requests are never
    chained (`from None`): their messages carry the URL, query string included."""
    budget = call.timeout_budget
    deadline = time.monotonic() + budget
    timeout = (min(call.source.connect_timeout, budget), min(call.source.read_timeout, budget))
    try:
        with session.request(
            request.method,
            request.url,
            params=request.query,
            headers=request.headers,
            json=request.body,
            timeout=timeout,
            stream=True,  # to cap the body while reading it
        ) as response:
            _check_status(response)
            raw = _read_capped(response, deadline)
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    except requests.Timeout as error:
        phase = "connecting" if isinstance(error, requests.ConnectTimeout) else "waiting for the answer"
        raise SourceError(ErrorKind.RETRYABLE, f"timed out {phase}") from None
    except requests.ConnectionError:
        raise SourceError(ErrorKind.RETRYABLE, "connection failed") from None
    except requests.exceptions.ChunkedEncodingError:
        raise SourceError(ErrorKind.RETRYABLE, "the answer broke off while being read") from None
    except requests.exceptions.ContentDecodingError:
        raise SourceError(ErrorKind.INVALID_DATA, "the answer's content encoding is broken") from None
    except requests.RequestException as error:
        # Invalid URL or header, too many redirects: the same call would fail again.
        raise SourceError(
            ErrorKind.TERMINAL, f"request could not be made ({type(error).__name__})"
        ) from None
    return _parse_json(raw, media_type)


def _check_status(response: requests.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 429:
        raise SourceError(
            ErrorKind.RETRYABLE,
            "throttled (HTTP 429)",
            retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
        )
    if status >= 500 or status == 408:
        raise SourceError(ErrorKind.RETRYABLE, f"server error (HTTP {status})")
    if status in (401, 403):
        raise SourceError(ErrorKind.TERMINAL, f"authentication refused (HTTP {status})")
    if 400 <= status < 500:
        raise SourceError(ErrorKind.TERMINAL, f"request refused (HTTP {status})")
    raise SourceError(ErrorKind.TERMINAL, f"unexpected HTTP status {status}")


def _retry_after_seconds(header: str | None) -> float | None:
    # Only the delay-seconds form; an HTTP date is rare for APIs and then backoff applies.
    try:
        seconds = float(header) if header is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < float("inf") else None


def _read_capped(response: requests.Response, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise SourceError(ErrorKind.INVALID_DATA, "the answer is larger than 1 MiB")
    # The length may be missing or wrong, so count what actually arrives.
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=READ_CHUNK_BYTES):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise SourceError(ErrorKind.INVALID_DATA, "the answer is larger than 1 MiB")
        # The read timeout is per socket read; a trickling server must not outlast the budget.
        if time.monotonic() > deadline:
            raise SourceError(ErrorKind.RETRYABLE, "the answer took longer than the time budget")
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise SourceError(ErrorKind.INVALID_DATA, f"the answer contains {name}, which is not a number")


def _parse_json(raw: bytes, media_type: str) -> Any:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        detail = (
            f"{error.msg} at line {error.lineno} column {error.colno}"
            if isinstance(error, json.JSONDecodeError)
            else "undecodable text"
        )
        raise SourceError(
            ErrorKind.INVALID_DATA, f"the answer is not JSON ({media_type or 'no Content-Type'}: {detail})"
        ) from None


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
