"""The API's one error format in the OpenAPI schema (the format itself: dynconfig_site/api_errors.py).

Two ways in, one component (`ErrorResponse`):

- a view names the errors particular to it with `error_responses`:

      @extend_schema(request=OverrideInputSerializer,
                     responses={201: OverrideOutputSerializer, **error_responses(409, 428)})

- `add_error_responses`, a drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS), gives
  every operation the errors any of them can answer, unless the view documented them itself:
  401, 403, 429 and 503 everywhere, 404 where the path has parameters, 400 where the operation
  takes query parameters or a body, 415 where it takes a body.
"""

from __future__ import annotations

import copy

from drf_spectacular.utils import OpenApiResponse
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer

ERROR_COMPONENT = "ErrorResponse"
ERROR_REF = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every API error, of every endpoint: `{\"error\": {status, code, message, fields?}}`.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "status": {"type": "integer", "description": "The HTTP status, repeated."},
                "code": {"type": "string", "description": "A stable, machine-readable code, e.g. `invalid`."},
                "message": {"type": "string", "description": "What went wrong, for a person."},
                "fields": {
                    "type": "object",
                    "additionalProperties": {},
                    "description": "Only for field errors: each invalid field and its messages.",
                },
            },
            "required": ["status", "code", "message"],
        }
    },
    "required": ["error"],
}

ERROR_DESCRIPTIONS = {
    400: "Invalid input: a bad field, context or body (`fields` says which).",
    401: "No credential, or an unknown or revoked token.",
    403: "The credential lacks the scope this operation needs (or a session request lacks its CSRF token).",
    404: "Nothing by that key, name or id.",
    409: "Conflict: the object changed since it was read, or the operation clashes with its state.",
    415: "Unsupported media type: send the body as `application/json`.",
    428: "Precondition required: send the version you read (`If-Match`) to change it.",
    429: "Too many requests: wait for `Retry-After` seconds.",
    503: (
        "`database_unavailable`: the database cannot be reached; try again after `Retry-After` "
        "seconds. Value reads keep answering meanwhile, with tokens looked up recently."
    ),
}

# What any operation may answer, whatever it is (503: a token's lookup needs the database).
EVERY_OPERATION_ERRORS = (401, 403, 429, 503)


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """Responses in the one error format, for `extend_schema(responses={..., **error_responses(404)})`."""
    return {status: OpenApiResponse(response=dict(ERROR_REF), description=ERROR_DESCRIPTIONS[status]) for status in statuses}


def add_error_responses(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: the error component, and the errors every operation may answer."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = copy.deepcopy(ERROR_SCHEMA)
    for path, path_item in result.get("paths", {}).items():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            for status in _expected_errors(path, operation):
                responses.setdefault(str(status), _error_response(status))
    return result


def _expected_errors(path: str, operation: dict) -> list[int]:
    statuses = list(EVERY_OPERATION_ERRORS)
    parameters = operation.get("parameters", [])
    if any(parameter.get("in") == "path" for parameter in parameters) or "{" in path:
        statuses.append(404)
    if "requestBody" in operation or any(parameter.get("in") == "query" for parameter in parameters):
        statuses.append(400)
    if "requestBody" in operation:
        statuses.append(415)
    return statuses


def _error_response(status: int) -> dict:
    return {"description": ERROR_DESCRIPTIONS[status], "content": {"application/json": {"schema": dict(ERROR_REF)}}}


class JsonErrorsMixin:
    """Errors in the API's JSON format, whatever the page renders when it succeeds (YAML, HTML):
    a 401 on /api/docs/ is an API error like any other, not an HTML page."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


class SchemaApi(JsonErrorsMixin, SpectacularAPIView):
    """GET /api/schema/: the OpenAPI 3 schema, YAML (or JSON with ?format=json)."""


class SchemaDocsPage(JsonErrorsMixin, SpectacularSwaggerView):
    """GET /api/docs/: Swagger UI over /api/schema/, its files served locally (drf-spectacular-sidecar)."""
