"""The one error format of the HTTP API, for every error, DRF's or Django's:

    {"error": {"status": 400, "code": "invalid_context", "message": "...", "fields": {...}}}

`fields` appears only for field errors. No API error is ever an HTML page.

A database that cannot be reached is 503 `database_unavailable` with Retry-After, not a 500:
here for DRF views, in dynconfig_site/database_outage.py for every other view.
"""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)

# The errors that mean the database cannot answer now (refused, cut, restarting, failing over),
# as opposed to a query it refuses (IntegrityError, ProgrammingError...), which stays a 500.
DATABASE_UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)
# Seconds a client should wait before trying again: about what a restarted or failed-over
# PostgreSQL takes to accept connections; short, because value reads keep answering meanwhile.
DATABASE_RETRY_AFTER_SECONDS = 5
DATABASE_UNAVAILABLE_MESSAGE = "The database is unavailable; try again shortly."


def error_body(status_code: int, code: str, message: str, fields: dict | None = None) -> dict:
    error = {"status": status_code, "code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def database_unavailable_body() -> dict:
    return error_body(status.HTTP_503_SERVICE_UNAVAILABLE, "database_unavailable", DATABASE_UNAVAILABLE_MESSAGE)


def database_unavailable_headers() -> dict[str, str]:
    return {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}


def api_exception_handler(exc, context):
    if isinstance(exc, DATABASE_UNAVAILABLE_ERRORS):
        # Django logs the 503 itself; this says why.
        logger.warning("Database unavailable, %s answered 503: %s", context["request"].path, exc)
        set_rollback()  # as DRF does for its own errors, in case the request runs in a transaction
        return Response(
            database_unavailable_body(),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers=database_unavailable_headers(),
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # not an API exception: Django's handler500 answers (in JSON for the API)
    if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
        body = error_body(response.status_code, "invalid", "The request has invalid fields.", exc.detail)
    else:
        detail = getattr(exc, "detail", str(exc))
        code = detail.code if hasattr(detail, "code") else getattr(exc, "default_code", "error")
        body = error_body(response.status_code, str(code), str(detail))
    return Response(body, status=response.status_code, headers=_kept_headers(response))


def _kept_headers(response: Response) -> dict:
    return {name: value for name, value in response.items() if name in ("WWW-Authenticate", "Retry-After", "Allow")}


@csrf_exempt  # it changes nothing; else a POST to an unknown API path got Django's HTML CSRF page
def json_404(request, exception=None):
    return JsonResponse(error_body(404, "not_found", f"Nothing at {request.path}."), status=status.HTTP_404_NOT_FOUND)


def json_500(request):
    return JsonResponse(error_body(500, "server_error", "The server failed; this was logged."), status=500)
