"""A view that finds the database unreachable answers 503 `database_unavailable`, with
Retry-After, instead of a 500 (or DEBUG's traceback page).

DRF views (the API, /metrics) answer it from their exception handler (dynconfig_site/api_errors.py);
this middleware answers for every other view: in the API's one error format under /api/ or
for a client that asks for JSON, else as a short HTML page (the admin, the dashboard). Value
reads do not get here: they answer from the caches through an outage (values/resolution.py).
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse

from dynconfig_site.api_errors import (
    DATABASE_UNAVAILABLE_ERRORS,
    DATABASE_UNAVAILABLE_MESSAGE,
    database_unavailable_body,
    database_unavailable_headers,
)

logger = logging.getLogger(__name__)

# Where the API lives (dynconfig_site/urls.py): its errors are always in its JSON format.
API_PATH_PREFIX = "/api/"

# Short and plain: it stands in for any page, and must render without the database.
OUTAGE_PAGE = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Database unavailable · DynConfig</title></head>
<body>
<h1>Database unavailable</h1>
<p>{DATABASE_UNAVAILABLE_MESSAGE}</p>
<p>Consumers keep reading values through the API meanwhile.</p>
</body>
</html>
"""


class DatabaseOutageMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DATABASE_UNAVAILABLE_ERRORS):
            return None  # Django's handler500 answers
        # Django logs the 503 itself; this says why.
        logger.warning("Database unavailable, %s answered 503: %s", request.path, exception)
        if _wants_json(request):
            return JsonResponse(database_unavailable_body(), status=503, headers=database_unavailable_headers())
        return HttpResponse(OUTAGE_PAGE, status=503, headers=database_unavailable_headers())


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return request.path.startswith(API_PATH_PREFIX) or ("application/json" in accept and "text/html" not in accept)
