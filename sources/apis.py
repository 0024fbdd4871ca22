"""The sources API: each source, what it feeds and how it is doing; breaker actions for operators.

    GET  /api/v1/sources/                        every source (values:read)
    GET  /api/v1/sources/{name}/                 one source, with its recent calls (values:read)
    POST /api/v1/sources/{name}/breaker/reset/   {"reason"}: close its breaker (sources:manage)
    POST /api/v1/sources/{name}/breaker/open/    {"duration", "reason"}: open it (sources:manage)

Credentials appear as the names of their environment variables and "set" or "missing", never a
value; the base URL is shown without user info, query or fragment, where a key could hide.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import CanManageSources, CanReadValues
from access.principals import actor_of
from core.durations import parse_duration
from dynconfig_site.api_schema import ERROR_REF, error_responses
from sources.breaker import BreakerUnavailable
from sources.health import DEGRADED, DOWN, HEALTHY, source_health
from sources.models import CallOutcome, Source
from values.models import Tier
from sources.selectors import source_call_list
from values.selectors import source_with_links, sources_with_links
from sources.services import source_breaker_force_open, source_breaker_reset
from core.validation import identifier_validator

API_CHANNEL = "api"
# The longest an operator may force a breaker open over the API: long enough for a provider's
# maintenance, short enough that a forgotten one heals by itself.
MAX_FORCED_OPEN = timedelta(days=30)

BREAKER_UNAVAILABLE = OpenApiResponse(
    response=ERROR_REF, description="Redis, which holds the breakers, is unavailable: nothing was changed."
)


class BreakerUnavailableError(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "breaker_unavailable"
    default_detail = "Redis is unavailable: the breaker was not changed."


# Output ---------------------------------------------------------------------------------------------


class BreakerOutputSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["closed", "open", "half_open"])
    failures = serializers.IntegerField(help_text="Counted failures in a row, while closed.")
    opened_until = serializers.DateTimeField(allow_null=True, help_text="When an open breaker admits trials.")
    trials = serializers.IntegerField(help_text="Trial calls in flight, while half-open.")
    successes = serializers.IntegerField(help_text="Trials that succeeded in this half-open period.")
    store = serializers.ChoiceField(
        choices=["redis", "process"], help_text="redis: shared by every process; process: this one only."
    )


class SourceHealthOutputSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=[HEALTHY, DEGRADED, DOWN])
    reasons = serializers.ListField(child=serializers.CharField(), help_text="Why, in plain sentences.")
    breaker = BreakerOutputSerializer()
    calls = serializers.IntegerField(help_text="Recent attempts (see thresholds).")
    errors = serializers.IntegerField()
    error_rate = serializers.FloatField(allow_null=True)
    mean_seconds = serializers.FloatField(allow_null=True, help_text="Of the recent successful attempts.")
    p50_seconds = serializers.FloatField(allow_null=True)
    p95_seconds = serializers.FloatField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_failure_at = serializers.DateTimeField(allow_null=True)
    last_failure_reason = serializers.CharField(allow_blank=True)


class ValueTypeLinkOutputSerializer(serializers.Serializer):
    key = serializers.CharField(source="value_type.key")
    tier = serializers.ChoiceField(choices=Tier.values)
    weight = serializers.FloatField()
    channels = serializers.ListField(child=serializers.CharField(), help_text="Channels covered; empty: all.")


class SourceCallOutputSerializer(serializers.Serializer):
    called_at = serializers.DateTimeField()
    outcome = serializers.ChoiceField(choices=CallOutcome.values)
    seconds = serializers.FloatField()
    reason = serializers.CharField(allow_blank=True)


class SourceOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    base_url = serializers.SerializerMethodField()
    is_enabled = serializers.BooleanField()
    credentials = serializers.SerializerMethodField()
    value_types = ValueTypeLinkOutputSerializer(source="value_type_links", many=True)
    health = serializers.SerializerMethodField()

    def get_base_url(self, source: Source) -> str:
        return shown_url(source.base_url)

    @extend_schema_field(
        {
            "type": "object",
            "additionalProperties": {"type": "string", "enum": ["set", "missing"]},
            "description": "Each credential's environment variable name: set or missing. Never a value.",
        }
    )
    def get_credentials(self, source: Source) -> dict[str, str]:
        return {name: "set" if is_set else "missing" for name, is_set in sorted(source.credential_status().items())}

    @extend_schema_field(SourceHealthOutputSerializer)
    def get_health(self, source: Source) -> dict[str, Any]:
        health = source_health(source.name, is_enabled=source.is_enabled).as_dict()
        del health["name"]
        return SourceHealthOutputSerializer(health).data


class SourceDetailOutputSerializer(SourceOutputSerializer):
    recent_calls = serializers.SerializerMethodField()

    @extend_schema_field(SourceCallOutputSerializer(many=True))
    def get_recent_calls(self, source: Source) -> list[dict[str, Any]]:
        return SourceCallOutputSerializer(source_call_list(source.name), many=True).data


class BreakerChangeOutputSerializer(serializers.Serializer):
    source = serializers.CharField()
    breaker = BreakerOutputSerializer()


# Input ----------------------------------------------------------------------------------------------


class ReasonField(serializers.CharField):
    def __init__(self, **kwargs):
        super().__init__(max_length=1000, help_text="Why: recorded in the history.", **kwargs)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "example": "PT15M", "description": "An ISO 8601 duration (weeks to seconds)."},
            {
                "type": "number",
                "minimum": 0,
                "exclusiveMinimum": True,
                "maximum": MAX_FORCED_OPEN.total_seconds(),
                "example": 900,
                "description": "Seconds.",
            },
        ]
    }
)
class DurationInputField(serializers.Field):
    """A positive duration: ISO 8601 (`PT15M`) or a number of seconds, at most MAX_FORCED_OPEN."""

    default_error_messages = {
        "invalid": "Give an ISO 8601 duration such as PT15M, or a number of seconds.",
        "too_long": "At most 30 days (P30D).",
    }

    def to_internal_value(self, data: Any) -> timedelta:
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, (int, float)):
            if not math.isfinite(data) or data <= 0:
                raise serializers.ValidationError("A number of seconds must be positive.")
            if data > MAX_FORCED_OPEN.total_seconds():
                self.fail("too_long")
            return timedelta(seconds=data)
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            duration = parse_duration(data)
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from None
        if duration > MAX_FORCED_OPEN:
            self.fail("too_long")
        return duration

    def to_representation(self, value: timedelta) -> float:
        return value.total_seconds()


class BreakerResetInputSerializer(serializers.Serializer):
    reason = ReasonField()


class BreakerOpenInputSerializer(serializers.Serializer):
    duration = DurationInputField(help_text="How long: ISO 8601 (PT15M) or seconds; at most 30 days.")
    reason = ReasonField()


# Views ----------------------------------------------------------------------------------------------


class SourceListApi(APIView):
    permission_classes = [CanReadValues]

    @extend_schema(responses={200: SourceOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(SourceOutputSerializer(sources_with_links(), many=True).data)


class SourceDetailApi(APIView):
    permission_classes = [CanReadValues]

    @extend_schema(responses={200: SourceDetailOutputSerializer, **error_responses(404)})
    def get(self, request: Request, name: str) -> Response:
        return Response(SourceDetailOutputSerializer(_source_or_404(name)).data)


class SourceBreakerResetApi(APIView):
    permission_classes = [CanManageSources]

    @extend_schema(
        request=BreakerResetInputSerializer,
        responses={200: BreakerChangeOutputSerializer, **error_responses(400, 404), 503: BREAKER_UNAVAILABLE},
    )
    def post(self, request: Request, name: str) -> Response:
        return _breaker_changed(request, name, BreakerResetInputSerializer, source_breaker_reset)


class SourceBreakerOpenApi(APIView):
    permission_classes = [CanManageSources]

    @extend_schema(
        request=BreakerOpenInputSerializer,
        responses={200: BreakerChangeOutputSerializer, **error_responses(400, 404), 503: BREAKER_UNAVAILABLE},
    )
    def post(self, request: Request, name: str) -> Response:
        return _breaker_changed(request, name, BreakerOpenInputSerializer, source_breaker_force_open)


def _breaker_changed(request: Request, name: str, input_serializer_class, service) -> Response:
    """Validate the input, apply `service` (a breaker change, audited) to the source, answer its
    new breaker state; Redis down for the breaker → 503."""
    source = _source_or_404(name)
    serializer = input_serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    try:
        state = service(source=source, actor=actor_of(request.user), channel=API_CHANNEL, **serializer.validated_data)
    except BreakerUnavailable as error:
        raise BreakerUnavailableError(str(error)) from error
    return Response(BreakerChangeOutputSerializer({"source": source.name, "breaker": state.as_dict()}).data)


def _source_or_404(name: str) -> Source:
    # Names are identifiers: anything else (a NUL byte PostgreSQL would refuse) names no source.
    try:
        identifier_validator(name)
    except ValidationError:
        raise NotFound(f"No source named {name!r}.") from None
    source = source_with_links(name)
    if source is None:
        raise NotFound(f"No source named {name!r}.")
    return source


def shown_url(url: str) -> str:
    """`url` without user info, query or fragment: where a credential could be written."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
