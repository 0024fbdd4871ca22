"""The read lane: GET /api/v1/values/{key}/ answered right after the security middleware.

A consumer's read is the platform's hottest request, and what it needs of the request stack is
little: a request id, the security headers, a token, a rate limit and the answer's bytes. The
rest of the stack (sessions, CSRF, the admin's auth and messages, URL resolution, DRF's
dispatch) is for browsers and writes. This middleware, placed right after
SecurityMiddleware, hands the common read to values.apis.value_read_plain and adds the two
headers the skipped middleware would (Content-Length, X-Frame-Options); a request it does not
answer (another path or method, a session, a refusal, an error) goes down the stack as before.
tests/api/test_value_read_fast_path.py compares its responses with the full stack's, header by
header.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve, reverse

from values.apis import ValueReadApi, value_read_plain

# Path -> the value type key it reads, or None for any other route; bounded, because paths
# come from clients. A path's route never changes while the process runs.
MAX_REMEMBERED_PATHS = 4096


class ValueReadLaneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.view = ValueReadApi()  # its permission, throttles and default headers
        self.view.setup(HttpRequest())  # as as_view() prepares each instance: HEAD is allowed
        self.keys_by_path: dict[str, str | None] = {}
        self.path_prefix: str | None = None  # "/api/v1/values/", from the URLconf on first use

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.path_prefix is None:
            self.path_prefix = reverse("value-read", kwargs={"key": "KEY"}).removesuffix("KEY/")
        if request.method == "GET" and request.path_info.startswith(self.path_prefix):
            key = self._value_read_key(request.path_info)
            if key is not None:
                response = value_read_plain(self.view, request, key)
                if response is not None:
                    if not response.has_header("X-Frame-Options"):
                        response["X-Frame-Options"] = settings.X_FRAME_OPTIONS
                    response["Content-Length"] = str(len(response.content))
                    return response
        return self.get_response(request)

    def _value_read_key(self, path: str) -> str | None:
        try:
            return self.keys_by_path[path]
        except KeyError:
            pass
        try:
            match = resolve(path)
        except Resolver404:
            key = None
        else:
            key = match.kwargs.get("key") if getattr(match.func, "view_class", None) is ValueReadApi else None
        if len(self.keys_by_path) >= MAX_REMEMBERED_PATHS:
            self.keys_by_path.clear()
        self.keys_by_path[path] = key
        return key
