"""Probes and metrics, at the root: /healthz (liveness), /readyz (readiness), /metrics (Prometheus).

None of them ever answers HTML: JSON, or Prometheus text for /metrics.
"""

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from access.principals import READ_SCOPES, TokenPrincipal
from monitoring import metrics
from monitoring.checks import readiness


def healthz(request):
    """Liveness: the process answers HTTP (touches nothing else)."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Readiness: the database, Redis (if configured) and the Celery broker answer."""
    is_ready, checks = readiness()
    body = {"status": "ready" if is_ready else "not_ready", "checks": checks}
    return JsonResponse(body, status=200 if is_ready else 503, headers={"Cache-Control": "no-store"})


class CanReadMetrics(BasePermission):
    """Open outside production; in production an API token with a read scope or a staff session."""

    def has_permission(self, request, view) -> bool:
        if not settings.IS_PRODUCTION:
            return True
        user = request.user
        if isinstance(user, TokenPrincipal):
            return bool(user.scopes & READ_SCOPES)
        return bool(user is not None and user.is_authenticated and user.is_staff)


class JsonErrorsWhateverIsAccepted(BaseContentNegotiation):
    """Errors in our JSON format even for a scraper that accepts only text (no 406)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return None


@extend_schema(exclude=True)  # an operations endpoint, not part of the API
class MetricsView(APIView):
    """Prometheus metrics of every process on this host (monitoring.metrics), and the breakers."""

    permission_classes = [CanReadMetrics]
    renderer_classes = [JSONRenderer]  # for errors only: the metrics are a plain HttpResponse
    content_negotiation_class = JsonErrorsWhateverIsAccepted
    throttle_classes: list = []  # a scraper every few seconds is expected traffic

    def get(self, request):
        body, content_type = metrics.exposition(request.headers.get("Accept"))
        return HttpResponse(body, content_type=content_type, headers={"Cache-Control": "no-store"})
