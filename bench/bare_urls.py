"""The project's URLs plus `bench/bare/`: a DRF view returning a constant answer.

The constant is the real answer of GET /api/v1/values/budget_thresholds/?region=us&industry=retail,
captured once by bench/run.py and handed over in DYNCONFIG_BENCH_BARE_ANSWER (JSON). The bare
view has the read API's permission class and the project's default authentication, so the
difference between the two is the engine's read (get_value, ETag, max-age), nothing else.
"""

import json
import os

from django.urls import include, path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dynconfig_site.urls import handler404, handler500  # noqa: F401 - same error handlers
from access.permissions import CanReadValues

BARE_ANSWER = json.loads(os.environ.get("DYNCONFIG_BENCH_BARE_ANSWER") or '{"bare": true}')


class BareView(APIView):
    permission_classes = [CanReadValues]

    def get(self, request: Request) -> Response:
        return Response(BARE_ANSWER)


urlpatterns = [
    path("bench/bare/", BareView.as_view(), name="bench-bare"),
    path("", include("dynconfig_site.urls")),
]
