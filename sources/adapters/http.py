"""The one HTTP layer of the source adapters: a request within the call's time budget, a capped
answer, and every failure classified as a `SourceError`.

`send` makes the request and reads the answer into a `Reply` (status, headers, body, media type):

- Timeouts: the source's connect and read timeouts, clamped to what is left of the call's
  budget; a body still arriving when the budget is spent is RETRYABLE, since the read timeout
  bounds each socket read, not the whole answer.
- Size: a 2xx body over 1 MiB (`MAX_RESPONSE_BYTES`) is INVALID_DATA, refused while it is read.
  Other bodies are read only as far as the adapter asks (`error_body_bytes`, none by default).
- requests' exceptions: timeouts, connection failures and bodies that break off are RETRYABLE,
  a broken content encoding is INVALID_DATA, anything else (an invalid URL or header, too many
  redirects) TERMINAL. They are never chained (`from None`): their messages carry the URL,
  query string and all.

`send` does not judge the status. `raise_for_status` does, the generic way; an adapter whose
provider explains failures in its error bodies reads those first. `parse_json` parses a body
and refuses NaN and Infinity, which JSON does not have but Python's parser accepts.

No credential reaches a log line: urllib3 logs every request's path and query at DEBUG, so the
filter installed here (once, on each urllib3 logger that logs URLs) redacts query strings, where
API keys travel, and the path segments that adapters register with `redact_path_segment`.
"""

from __future__ import annotations

import json as json_module
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from sources.adapters.base import ErrorKind, SourceCall, SourceError

# Config answers are a few KiB; anything near this is a wrong endpoint or a hostile server.
MAX_RESPONSE_BYTES = 1024 * 1024
# Read in pieces so an oversized body is refused without holding all of it in memory.
READ_CHUNK_BYTES = 64 * 1024

# A filter on a logger sees only that logger's own records, so each one that logs URLs gets it.
URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.poolmanager", "urllib3.util.retry")

_QUERY_STRING = re.compile(r"\?[^\s'\"]*")
# What a registered path segment runs to: the next slash, custom method (`:search`), query,
# quote or space.
_SEGMENT_REST = r"[^/:?\s'\"]+"


@dataclass(frozen=True)
class Reply:
    """An answer as `send` read it."""

    status: int
    headers: Mapping[str, str]  # requests' case-insensitive mapping
    # A 2xx body whole; any other at most the `error_body_bytes` asked for (empty by default).
    body: bytes
    media_type: str  # Content-Type without its parameters ("application/json"); "" if none

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


def send(
    session: requests.Session,
    *,
    method: str,
    url: str,
    call: SourceCall,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    deadline: float | None = None,
    error_body_bytes: int = 0,
    allow_redirects: bool = True,
) -> Reply:
    """Make one request and read its answer, or raise a classified SourceError.

    `params` is the query, `json` the body (None: no body). `deadline` (a `time.monotonic()`
    instant) is when the call's budget ends; by default `call.timeout_budget` from now. Adapters
    that make several requests in one call pass one deadline to all of them, so each request is
    clamped to what the earlier ones left. Past the deadline no request is made (RETRYABLE).

    A 2xx body is read whole, up to `MAX_RESPONSE_BYTES`. Any other body is read only up to
    `error_body_bytes` (0: not at all) and only while the budget lasts, and is kept however far
    it got: its status already says what failed, the body can only say more. The status is left
    to the caller (`raise_for_status`, or the provider's own error classification).

    `allow_redirects=False` where a redirect could take a credential somewhere it was not meant
    to go.
    """
    if deadline is None:
        deadline = time.monotonic() + call.timeout_budget
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise SourceError(ErrorKind.RETRYABLE, "no time left in the call's budget", is_timeout=True)
    timeout = (min(call.source.connect_timeout, remaining), min(call.source.read_timeout, remaining))
    try:
        with session.request(
            method,
            url,
            params=params,
            headers=headers,
            json=json,
            timeout=timeout,
            allow_redirects=allow_redirects,
            stream=True,  # to cap the body while reading it
        ) as response:
            status = response.status_code
            if 200 <= status < 300:
                body = _read_capped(response, deadline)
            else:
                body = _read_error_body(response, deadline, error_body_bytes)
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            return Reply(status=status, headers=response.headers, body=body, media_type=media_type)
    except requests.Timeout as error:
        phase = "connecting" if isinstance(error, requests.ConnectTimeout) else "waiting for the answer"
        raise SourceError(ErrorKind.RETRYABLE, f"timed out {phase}", is_timeout=True) from None
    except requests.ConnectionError as error:
        if _is_unreachable(error):
            raise SourceError(ErrorKind.RETRYABLE, "connection failed", is_unreachable=True) from None
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


def raise_for_status(reply: Reply) -> None:
    """Nothing for a 2xx reply; otherwise the SourceError its status calls for.

    429 is RETRYABLE with `retry_after` from a `Retry-After` header in seconds; 408 and 5xx are
    RETRYABLE; 401 and 403 are TERMINAL (authentication refused), as are other 4xx and anything
    else outside 2xx (a redirect that was not followed).
    """
    status = reply.status
    if reply.is_success:
        return
    if status == 429:
        raise SourceError(
            ErrorKind.RETRYABLE,
            "throttled (HTTP 429)",
            retry_after=_retry_after_seconds(reply.headers.get("Retry-After")),
            is_throttled=True,
        )
    if status >= 500 or status == 408:
        raise SourceError(ErrorKind.RETRYABLE, f"server error (HTTP {status})")
    if status in (401, 403):
        raise SourceError(ErrorKind.TERMINAL, f"authentication refused (HTTP {status})")
    if 400 <= status < 500:
        raise SourceError(ErrorKind.TERMINAL, f"request refused (HTTP {status})")
    raise SourceError(ErrorKind.TERMINAL, f"unexpected HTTP status {status}")


def parse_json(reply: Reply) -> Any:
    """The reply's body as JSON, or INVALID_DATA (not JSON, not UTF-8, or holding NaN or
    Infinity). The reason names the media type and the position, never quotes the body."""
    try:
        return json_module.loads(reply.body, parse_constant=_reject_constant)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        detail = (
            f"{error.msg} at line {error.lineno} column {error.colno}"
            if isinstance(error, json_module.JSONDecodeError)
            else "undecodable text"
        )
        raise SourceError(
            ErrorKind.INVALID_DATA,
            f"the answer is not JSON ({reply.media_type or 'no Content-Type'}: {detail})",
        ) from None


def redact_path_segment(prefix: str) -> None:
    """Redact, in urllib3's log lines, what follows `prefix` in a path up to the next `/`, `:`,
    `?`, quote or space: `/customers/` turns `/customers/1234567890:search` into
    `/customers/[redacted]:search`. For credentials that an API wants in the path (an account
    id); an adapter registers its prefixes when it is imported. Registering twice is harmless.
    """
    global _secret_path
    if prefix in _secret_path_prefixes:
        return
    _secret_path_prefixes.append(prefix)
    alternatives = "|".join(re.escape(known) for known in _secret_path_prefixes)
    _secret_path = re.compile(f"({alternatives}){_SEGMENT_REST}")


# Reading -------------------------------------------------------------------------------------


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
            raise SourceError(ErrorKind.RETRYABLE, "the answer took longer than the time budget", is_timeout=True)
        chunks.append(chunk)
    return b"".join(chunks)


def _read_error_body(response: requests.Response, deadline: float, limit: int) -> bytes:
    # The status already classifies the failure and the body only adds to it, so a long or slow
    # one is cut short rather than turning the failure into another kind.
    if limit <= 0:
        return b""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=min(READ_CHUNK_BYTES, limit)):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit or time.monotonic() > deadline:
            break
    return b"".join(chunks)[:limit]


def _retry_after_seconds(header: str | None) -> float | None:
    # Only the delay-seconds form; an HTTP date is rare for APIs and then backoff applies.
    try:
        seconds = float(header) if header is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < float("inf") else None


def _reject_constant(name: str) -> Any:
    raise SourceError(ErrorKind.INVALID_DATA, f"the answer contains {name}, which is not a number")


# Log redaction -------------------------------------------------------------------------------

_secret_path_prefixes: list[str] = []
_secret_path: re.Pattern[str] | None = None  # all registered prefixes, rebuilt on registration


def _redact(message: str) -> str:
    if _secret_path is not None:
        message = _secret_path.sub(r"\1[redacted]", message)
    return _QUERY_STRING.sub("?[redacted]", message)


class _UrlRedactor(logging.Filter):
    """Redacts query strings and registered path segments from urllib3's request lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def _install_redactor() -> None:
    for name in URLLIB3_LOGGERS:
        logger = logging.getLogger(name)
        # By class name: a reloaded module (tests, autoreload) must not stack a second filter.
        if not any(type(existing).__name__ == _UrlRedactor.__name__ for existing in logger.filters):
            logger.addFilter(_UrlRedactor())


_install_redactor()


def _is_unreachable(error: requests.ConnectionError) -> bool:
    """Whether the connection was refused or the host name did not resolve: the source is not
    there at all, unlike a connection that broke or a slow one (the breaker opens at once)."""
    cause = error.args[0] if error.args else None
    return isinstance(getattr(cause, "reason", cause), NewConnectionError)
