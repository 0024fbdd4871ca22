"""Liveness: the process answers HTTP. Readiness and metrics live beside it as they grow."""

from django.http import JsonResponse


def healthz(request):
    return JsonResponse({"status": "ok"})
