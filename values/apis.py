"""The read API: value types, and one resolved value with its provenance."""

from __future__ import annotations

from django.utils import timezone
from django.utils.http import parse_etags
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import CanReadValues
from config.durations import format_duration
from values.answers import Answer
from values.context import ContextError
from values.resolution import UnknownValueType, get_value
from values.selectors import value_type_list


class ValueTypeOutputSerializer(serializers.Serializer):
    key = serializers.CharField()
    aliases = serializers.ListField(child=serializers.CharField())
    description = serializers.CharField()
    context_keys = serializers.ListField(child=serializers.CharField())
    update_frequency = serializers.SerializerMethodField()
    ttl = serializers.SerializerMethodField()
    max_staleness = serializers.SerializerMethodField()
    sources = serializers.SerializerMethodField()

    def get_update_frequency(self, value_type) -> str:
        return format_duration(value_type.update_frequency)

    def get_ttl(self, value_type) -> str:
        return format_duration(value_type.ttl)

    def get_max_staleness(self, value_type) -> str:
        return format_duration(value_type.max_staleness)

    def get_sources(self, value_type) -> list[dict]:
        return [
            {"name": link.source.name, "tier": link.tier, "weight": link.weight, "channels": link.channels}
            for link in value_type.source_links.all()
        ]


class ValueTypeListApi(APIView):
    permission_classes = [CanReadValues]

    def get(self, request: Request) -> Response:
        return Response(ValueTypeOutputSerializer(value_type_list(), many=True).data)


class ValueReadApi(APIView):
    """GET /api/v1/values/{key}/?region=us&industry=retail&channels=a,b"""

    permission_classes = [CanReadValues]

    def get(self, request: Request, key: str) -> Response:
        try:
            answer = get_value(key, _context(request))
        except UnknownValueType as error:
            raise NotFound(str(error)) from error
        except ContextError as error:
            raise ValidationError({"context": [str(error)]}) from error
        etag = _etag(answer)
        headers = {"ETag": etag, "Cache-Control": f"max-age={_max_age(answer)}"}
        if _not_modified(request.META.get("HTTP_IF_NONE_MATCH", ""), etag):
            return Response(status=304, headers=headers)
        return Response(answer.as_dict(), headers=headers)


def _context(request: Request) -> dict[str, str]:
    """The query parameters as a context. A repeated parameter keeps every value, joined as
    `a,b`: `?channels=a&channels=b` means both channels, and a repeated one-name key is refused."""
    return {name: ",".join(values) for name, values in request.query_params.lists()}


def _etag(answer: Answer) -> str:
    return f'W/"{answer.version()}"'


def _not_modified(header: str, etag: str) -> bool:
    """If-None-Match names this representation: `*`, or an entity tag equal by the weak
    comparison (RFC 9110 13.1.2), so `"x"` and `W/"x"` both match `W/"x"`."""
    tags = parse_etags(header) if header else []
    return "*" in tags or etag.removeprefix("W/") in {tag.removeprefix("W/") for tag in tags}


def _max_age(answer: Answer) -> int:
    expires_at = answer.provenance.expires_at
    if expires_at is None:
        return 0
    return max(0, int((expires_at - timezone.now()).total_seconds()))
