"""The one error format of the HTTP API, for every error, DRF's or Django's:

    {"error": {"status": 400, "code": "invalid_context", "message": "...", "fields": {...}}}

`fields` appears only for field errors. No API error is ever an HTML page.
"""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def error_body(status_code: int, code: str, message: str, fields: dict | None = None) -> dict:
    error = {"status": status_code, "code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def api_exception_handler(exc, context):
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
