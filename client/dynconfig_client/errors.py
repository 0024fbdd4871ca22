"""What the client raises.

- `RequestRejected` and its subclasses: the server answered 4xx. These are bugs or
  misconfigurations of the caller (an unknown key, a bad context, a missing or revoked token),
  not outages, so they are raised even when a last-known value or a default exists: serving a
  fallback would hide them for as long as the server is up.
- `DynConfigUnavailable`: the server could not be used (down, timing out, 5xx, 429), nothing
  is known of this value, and no default was given. With a default or a known value, the
  client never raises this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DynConfigError(Exception):
    """Base class of every error this client raises."""


class DynConfigUnavailable(DynConfigError):
    """The server could not answer, no value is known for this key and context, and there is
    no default (neither the `default` argument nor the client's `defaults` mapping)."""

    def __init__(self, key: str, context: Mapping[str, Any], reason: str) -> None:
        self.key = key
        self.context = dict(context)
        self.reason = reason
        super().__init__(
            f"{key} {self.context}: the DynConfig server is unavailable ({reason}), no value is known "
            "and no default was given"
        )


class RequestRejected(DynConfigError):
    """The server refused the request (HTTP 4xx, other than 429): `status`, and the server's
    `code`, `message` and `fields` (for field errors) from its error body."""

    def __init__(
        self, status: int, code: str, message: str, fields: Mapping[str, Any] | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.fields = dict(fields) if fields else None
        text = f"HTTP {status} {code}: {message}"
        if self.fields:
            text += f" {self.fields}"
        super().__init__(text)


class InvalidContextError(RequestRejected):
    """400: the context is not one the value type accepts (the message says which key, why)."""


class AuthenticationError(RequestRejected):
    """401: no token, or an unknown or revoked one."""


class PermissionDeniedError(RequestRejected):
    """403: the token lacks the `values:read` scope."""


class UnknownKeyError(RequestRejected):
    """404: no value type has this key (or alias)."""


_BY_STATUS: dict[int, type[RequestRejected]] = {
    400: InvalidContextError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: UnknownKeyError,
}


def rejection(status: int, error: Any) -> RequestRejected:
    """The exception for a 4xx answer whose body's `error` member is `error` (anything: a
    proxy's page has none, and then a generic message stands in)."""
    if not isinstance(error, Mapping):
        error = {}
    code = error.get("code")
    message = error.get("message")
    fields = error.get("fields")
    return _BY_STATUS.get(status, RequestRejected)(
        status,
        code if isinstance(code, str) else "error",
        message if isinstance(message, str) else f"the server refused the request (HTTP {status})",
        fields if isinstance(fields, Mapping) else None,
    )
