"""Structured logs: a request id on every line of a request, context fields, credentials masked.

    RequestIdMiddleware   takes the caller's X-Request-ID when it is sane, else makes one; keeps
                          it in a context variable for the request and returns it in the
                          response's X-Request-ID header
    LogContextFilter      adds `request_id` to every record (None outside a request), and for the
                          plain format `context_text`: "[request_id value_type source] "; the
                          code passes value_type / source with `extra={...}`
    JsonFormatter         one JSON object per line: time, level, logger, message, request_id,
                          and the extra fields (value_type, source, ...)
    PlainFormatter        time level logger [context] message

Redaction, the safety net (credentials must not be logged in the first place): both formatters
mask, in the whole line they wrote (message and traceback), the current values of the credential
environment variables (the sources' credential_variables, and any name ending in _TOKEN, _KEY,
_SECRET, _PASSWORD) and the password of any URL. It is done on the formatted text rather than by
a filter changing the record, because a record is shared by every handler: pytest's log capture
must still see what the code really logged, so that the tests proving that no adapter logs a
credential keep proving it.

Wired in settings.LOGGING (the handler's filter and formatters, so records of every logger pass
them) and settings.MIDDLEWARE (first, so other middleware's lines carry the id too).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import uuid
from contextvars import ContextVar

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"
# As WSGI and ASGI hand it over: request.headers would build a dict of every header first.
REQUEST_ID_META_KEY = "HTTP_X_REQUEST_ID"
# A caller's id is kept only if it cannot break a log line or a header: letters, digits and
# . _ : - , at most 128 of them (uuids, trace ids). Anything else is replaced by our own.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Environment variables whose values are secrets by their name.
SECRET_VARIABLE_NAME = re.compile(r".*_(TOKEN|KEY|SECRET|PASSWORD)$|^SECRET_KEY$")
# Shorter values are not masked: "1" or "true" would blank out half of every message.
MIN_SECRET_LENGTH = 6
MASK = "***"
# user:password@ in a URL (DATABASE_URL, REDIS_URL, a broker URL in an error message).
URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s]*):([^@/\s]+)@")
# Fields the code may pass with `extra=`, shown by the plain format.
CONTEXT_FIELDS = ("value_type", "source")

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request this code runs for, or None outside a request."""
    return _request_id.get()


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.META.get(REQUEST_ID_META_KEY, "")
        request_id = given if SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        request.request_id = request_id
        token = _request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class LogContextFilter(logging.Filter):
    """Adds request_id (and the plain format's context_text) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        parts = [str(record.request_id)] if record.request_id else []
        parts += [f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if getattr(record, name, None)]
        record.context_text = f"[{' '.join(parts)}] " if parts else ""
        return True


def redact(text: str, secrets: list[str] | None = None) -> str:
    """`text` with URL passwords and the current credential values masked."""
    text = URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    for secret in secret_values() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def secret_values() -> list[str]:
    """The values of the credential variables set now, longest first (so a secret containing
    another is masked whole). Read at each call: tests and operators change the environment."""
    names = {name for name in os.environ if SECRET_VARIABLE_NAME.match(name)} | _source_credential_names()
    values = {os.environ.get(name, "") for name in names}
    return sorted((value for value in values if len(value) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def _source_credential_names() -> set[str]:
    """The credential variables of the sources this process has loaded. The registry's snapshot
    as it is, never reloaded: a log filter must not query the database (which logs too)."""
    module = sys.modules.get("values.registry")  # not imported yet: nothing loaded either
    snapshot = getattr(getattr(module, "registry", None), "_snapshot", None)
    if snapshot is None:
        return set()
    return {
        variable
        for value_type in snapshot.types.values()
        for link in value_type.links
        for variable in link.source.credential_variables.values()
    }


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per record: time, level, logger, message, request_id, extra fields; redacted."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "context_text"])  # plain format's only
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class PlainFormatter(logging.Formatter):
    """time level logger [request_id value_type=… source=…] message; redacted."""

    def __init__(self, fmt: str = "%(asctime)s %(levelname)s %(name)s %(context_text)s%(message)s", **kwargs):
        super().__init__(fmt, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "context_text"):  # a handler without LogContextFilter
            record.context_text = ""
        return redact(super().format(record))
