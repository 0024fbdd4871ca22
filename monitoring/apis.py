"""GET /api/v1/health/: every source's health and the overall status, as a report.

It always answers 200, whatever the status: it describes the sources, it is not a probe
(/readyz is). The rules and thresholds: sources.health, docs/health.md.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import CanReadValues
from sources.apis import BreakerOutputSerializer
from sources.health import DEGRADED, DOWN, HEALTHY, health_report
from values.selectors import value_type_source_names


class HealthSourceOutputSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=[HEALTHY, DEGRADED, DOWN])
    reasons = serializers.ListField(child=serializers.CharField())
    breaker = BreakerOutputSerializer()
    calls = serializers.IntegerField(help_text="Recent attempts: the last few, within the window (thresholds).")
    errors = serializers.IntegerField(help_text="Of those, the ones that did not succeed.")
    error_rate = serializers.FloatField(allow_null=True, help_text="Of the recent attempts; null without any.")
    mean_seconds = serializers.FloatField(allow_null=True, help_text="Of the recent successful attempts.")
    p95_seconds = serializers.FloatField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_failure_at = serializers.DateTimeField(allow_null=True)
    last_failure_reason = serializers.CharField(allow_blank=True)


class HealthThresholdsOutputSerializer(serializers.Serializer):
    recent_calls = serializers.IntegerField(help_text="Recent = at most this many latest attempts ...")
    recent_window_seconds = serializers.IntegerField(help_text="... within this many seconds.")
    down_after_failures = serializers.IntegerField(help_text="Down when this many latest attempts all failed.")
    slow_mean_seconds = serializers.FloatField(help_text="Degraded when successful attempts take longer on average.")
    max_error_rate = serializers.FloatField(help_text="Degraded when a larger share of recent attempts failed.")


class HealthOutputSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=[HEALTHY, DEGRADED, DOWN])
    reasons = serializers.ListField(child=serializers.CharField())
    sources = serializers.DictField(child=HealthSourceOutputSerializer())
    thresholds = HealthThresholdsOutputSerializer()


class HealthApi(APIView):
    permission_classes = [CanReadValues]

    @extend_schema(responses={200: HealthOutputSerializer})
    def get(self, request: Request) -> Response:
        return Response(HealthOutputSerializer(health_report(value_type_source_names()).as_dict()).data)
