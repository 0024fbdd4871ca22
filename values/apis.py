"""The values API: value types, resolved values (one or a batch), and the operator endpoints:
overrides, the emergency fallback, refresh now, history and rollback.

Views validate input, call one service or selector and serialize. Writes name the version they
read (If-Match or "version" in the body): missing is 428, stale is 409 (values.services).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import CanReadValues, CanWriteValues, ReadOrWriteValues
from access.principals import actor_of
from core.durations import format_duration
from dynconfig_site.api_schema import error_responses
from core.answers import Answer
from values.api_serializers import (
    AnswerOutputSerializer,
    BatchInputSerializer,
    BatchOutputSerializer,
    FallbackOutputSerializer,
    FallbackUpdateInputSerializer,
    HistoryOutputSerializer,
    HistoryQuerySerializer,
    OverrideCreateInputSerializer,
    OverrideDeleteInputSerializer,
    OverrideListFilterSerializer,
    OverrideOutputSerializer,
    OverrideUpdateInputSerializer,
    RefreshOutputSerializer,
    RollbackInputSerializer,
)
from core.context import ContextError
from values.models import Override, ValueType
from values.refresh import FAILED, value_refresh
from values.resolution import UnknownValueType, get_value
from values.selectors import (
    override_get,
    override_list,
    value_history,
    value_record_get,
    value_type_get,
    value_type_list,
)
from values.services import (
    VersionConflict,
    override_create,
    override_delete,
    override_update,
    value_rollback,
    value_type_fallback_update,
)

API_CHANNEL = "api"

CONTEXT_PARAMETERS = [
    OpenApiParameter(name, OpenApiTypes.STR, OpenApiParameter.QUERY, required=False, description=description)
    for name, description in (
        ("region", "Context: a region, e.g. `us` (if the value type takes it)."),
        ("industry", "Context: an industry, e.g. `retail` (if the value type takes it)."),
        ("channels", "Context: channels, `a,b` or repeated (if the value type takes them)."),
    )
]
IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description='The ETag you read, e.g. `"3"` (or send "version" in the body): one of the two is required.',
)


class PreconditionRequired(APIException):
    status_code = 428
    default_code = "precondition_required"
    default_detail = (
        'Send the version you read: the ETag in an If-Match header (e.g. If-Match: "3"), or "version" in the body.'
    )


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


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

    @extend_schema(operation_id="value_type_list", responses={200: ValueTypeOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(ValueTypeOutputSerializer(value_type_list(), many=True).data)


class ValueReadApi(APIView):
    """GET /api/v1/values/{key}/?region=us&industry=retail&channels=a,b"""

    permission_classes = [CanReadValues]

    @extend_schema(
        operation_id="value_read", parameters=CONTEXT_PARAMETERS, responses={200: AnswerOutputSerializer, 304: None}
    )
    def get(self, request: Request, key: str) -> HttpResponse:
        answer = _answer(key, _context(request))
        etag = _etag(answer)
        headers = {"ETag": etag, "Cache-Control": f"max-age={_max_age(answer)}"}
        if _not_modified(request.META.get("HTTP_IF_NONE_MATCH", ""), etag):
            return Response(status=304, headers=headers)
        if request.accepted_media_type != JSONRenderer.media_type:  # e.g. `; indent=4`: DRF renders
            return Response(answer.as_dict(), headers=headers)
        # The answer's JSON, made once when it entered L1 or read as is from L2 (Answer.as_json:
        # what JSONRenderer would make of as_dict()); auth, throttling, negotiation and errors
        # stay DRF's, only the serializer and renderer are skipped.
        return HttpResponse(answer.as_json(), content_type=JSONRenderer.media_type, headers=headers)


class ValueBatchReadApi(APIView):
    """POST /api/v1/values/batch/ {"reads": [{"key": ..., "context": {...}}, ...]}"""

    permission_classes = [CanReadValues]

    @extend_schema(
        operation_id="value_batch_read", request=BatchInputSerializer, responses={200: BatchOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        reads = _valid(BatchInputSerializer, request.data)["reads"]
        return Response({"results": [_batch_result(read["key"], read["context"]) for read in reads]})


class ValueFallbackApi(APIView):
    """GET and PUT /api/v1/values/{key}/fallback/: the type's emergency fallback."""

    permission_classes = [ReadOrWriteValues]

    @extend_schema(operation_id="value_fallback_read", responses={200: FallbackOutputSerializer})
    def get(self, request: Request, key: str) -> Response:
        return _fallback_response(_value_type(key))

    @extend_schema(
        operation_id="value_fallback_update",
        request=FallbackUpdateInputSerializer,
        parameters=[IF_MATCH],
        responses={200: FallbackOutputSerializer, **error_responses(400, 404, 409, 428)},
    )
    def put(self, request: Request, key: str) -> Response:
        value_type = _value_type(key)
        data = _valid(FallbackUpdateInputSerializer, request.data)
        expected_version = _expected_version(request, data.get("version"))
        with _refusals(field_names={"fallback_value": "value"}, what="The value type"):
            value_type = value_type_fallback_update(
                value_type=value_type,
                value=data["value"],
                expected_version=expected_version,
                actor=actor_of(request.user),
                channel=API_CHANNEL,
                reason=data["reason"],
            )
        return _fallback_response(value_type)


class ValueRefreshApi(APIView):
    """POST /api/v1/values/{key}/refresh/?<context>: fetch from the sources now.

    Always 200 with the answer (for a known key and a valid context): a refresh that failed
    says so in `refresh`, and the answer is the best value kept (l3, stale or fallback)."""

    permission_classes = [CanWriteValues]

    @extend_schema(
        operation_id="value_refresh",
        request=None,
        parameters=CONTEXT_PARAMETERS,
        responses={200: RefreshOutputSerializer},
    )
    def post(self, request: Request, key: str) -> Response:
        context = _context(request)
        # value_refresh refuses an unknown key or a bad context without raising; the read
        # after it raises for them, mapped to 404 and 400 exactly as GET values/{key}/ does.
        outcome = value_refresh(key=key, context=context)
        answer = _answer(key, context)
        refresh = {"ok": outcome.status != FAILED, "status": outcome.status, "reason": outcome.reason}
        return Response({**answer.as_dict(), "refresh": refresh})


class ValueHistoryApi(APIView):
    """GET /api/v1/values/{key}/history/?<context>&limit=50"""

    permission_classes = [CanReadValues]

    @extend_schema(
        operation_id="value_history",
        parameters=[*CONTEXT_PARAMETERS, HistoryQuerySerializer],
        responses={200: HistoryOutputSerializer},
    )
    def get(self, request: Request, key: str) -> Response:
        value_type = _value_type(key)
        limit = _valid(HistoryQuerySerializer, request.query_params)["limit"]
        context = {name: value for name, value in _context(request).items() if name != "limit"}
        try:
            history = value_history(value_type=value_type, context=context, limit=limit)
        except ContextError as error:
            raise ValidationError({"context": [str(error)]}) from error
        body = {
            "key": value_type.key,
            "context": history.context,
            "values": history.values,
            "changes": history.changes,
        }
        return Response(HistoryOutputSerializer(body).data)


class ValueRollbackApi(APIView):
    """POST /api/v1/values/{key}/rollback/ {"record_id", "reason", "expires_at"?}: a past value
    served again, as an override for the context it was fetched for (values.services.value_rollback)."""

    permission_classes = [CanWriteValues]

    @extend_schema(
        operation_id="value_rollback",
        request=RollbackInputSerializer,
        responses={201: OverrideOutputSerializer, **error_responses(400, 404)},
    )
    def post(self, request: Request, key: str) -> Response:
        value_type = _value_type(key)
        data = _valid(RollbackInputSerializer, request.data)
        record = value_record_get(value_type=value_type, record_id=data["record_id"])
        if record is None:
            raise NotFound(f"No value record {data['record_id']} of {value_type.key}.")
        with _refusals(what="The override"):
            override = value_rollback(
                value_type=value_type,
                record=record,
                actor=actor_of(request.user),
                channel=API_CHANNEL,
                reason=data["reason"],
                expires_at=data.get("expires_at"),
            )
        return _override_response(override, status.HTTP_201_CREATED)


class OverrideListApi(APIView):
    """GET /api/v1/overrides/?value_type=&active=true, POST /api/v1/overrides/"""

    permission_classes = [ReadOrWriteValues]

    @extend_schema(
        operation_id="override_list",
        parameters=[OverrideListFilterSerializer],
        responses={200: OverrideOutputSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        filters = _valid(OverrideListFilterSerializer, request.query_params)
        value_type = None
        if "value_type" in filters:
            value_type = value_type_get(key=filters["value_type"])
            if value_type is None:
                raise ValidationError({"value_type": [f"Unknown value type {filters['value_type']!r}."]})
        overrides = override_list(value_type=value_type, is_active=filters["active"])
        return Response(OverrideOutputSerializer(overrides, many=True, context={"now": timezone.now()}).data)

    @extend_schema(
        operation_id="override_create",
        request=OverrideCreateInputSerializer,
        responses={201: OverrideOutputSerializer, **error_responses(400)},
    )
    def post(self, request: Request) -> Response:
        data = _valid(OverrideCreateInputSerializer, request.data)
        value_type = value_type_get(key=data.pop("value_type"))
        if value_type is None:
            raise ValidationError({"value_type": ["Unknown value type."]})
        with _refusals(what="The override"):
            override = override_create(value_type=value_type, actor=actor_of(request.user), channel=API_CHANNEL, **data)
        return _override_response(override, status.HTTP_201_CREATED)


class OverrideDetailApi(APIView):
    """GET, PATCH and DELETE /api/v1/overrides/{id}/; PATCH and DELETE name the version read."""

    permission_classes = [ReadOrWriteValues]

    @extend_schema(operation_id="override_read", responses={200: OverrideOutputSerializer})
    def get(self, request: Request, override_id: int) -> Response:
        return _override_response(_override(override_id))

    @extend_schema(
        operation_id="override_update",
        request=OverrideUpdateInputSerializer,
        parameters=[IF_MATCH],
        responses={200: OverrideOutputSerializer, **error_responses(400, 404, 409, 428)},
    )
    def patch(self, request: Request, override_id: int) -> Response:
        override = _override(override_id)
        data = _valid(OverrideUpdateInputSerializer, request.data)
        expected_version = _expected_version(request, data.pop("version", None))
        reason = data.pop("reason")
        with _refusals(what="The override"):
            override = override_update(
                override=override,
                expected_version=expected_version,
                actor=actor_of(request.user),
                channel=API_CHANNEL,
                reason=reason,
                **data,
            )
        return _override_response(override)

    @extend_schema(
        operation_id="override_delete",
        request=OverrideDeleteInputSerializer,
        parameters=[
            IF_MATCH,
            OpenApiParameter(
                "reason",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                required=False,
                description='Why it is deleted (or "reason" in the body): one of the two is required.',
            ),
        ],
        responses={204: None, **error_responses(400, 404, 409, 428)},
    )
    def delete(self, request: Request, override_id: int) -> Response:
        override = _override(override_id)
        body = request.data if isinstance(request.data, dict) else {}
        data = _valid(OverrideDeleteInputSerializer, {"reason": request.query_params.get("reason", ""), **body})
        if not data["reason"].strip():
            raise ValidationError({"reason": ["A reason is required: in the body or as ?reason=."]})
        expected_version = _expected_version(request, data.get("version"))
        with _refusals(what="The override"):
            override_delete(
                override=override,
                expected_version=expected_version,
                actor=actor_of(request.user),
                channel=API_CHANNEL,
                reason=data["reason"],
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


def _context(request: Request) -> dict[str, str]:
    """The query parameters as a context. A repeated parameter keeps every value, joined as
    `a,b`: `?channels=a&channels=b` means both channels, and a repeated one-name key is refused."""
    return {name: ",".join(values) for name, values in request.query_params.lists()}


def _answer(key: str, context: dict[str, Any]) -> Answer:
    """get_value, with an unknown key as 404 and a refused context as 400."""
    try:
        return get_value(key, context)
    except UnknownValueType as error:
        raise NotFound(str(error)) from error
    except ContextError as error:
        raise ValidationError({"context": [str(error)]}) from error


def _batch_result(key: str, context: dict[str, Any]) -> dict[str, Any]:
    """One read of a batch: the answer as GET values/{key}/ gives it, or this read's error."""
    try:
        return get_value(key, context).as_dict()
    except UnknownValueType as error:
        error_status, code, message = 404, "not_found", str(error)
    except ContextError as error:
        error_status, code, message = 400, "invalid_context", str(error)
    return {"key": key, "context": context, "error": {"status": error_status, "code": code, "message": message}}


def _valid(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _value_type(key: str) -> ValueType:
    value_type = value_type_get(key=key)
    if value_type is None:
        raise NotFound(f"unknown value type {key!r}")
    return value_type


def _override(override_id: int) -> Override:
    override = override_get(override_id=override_id)
    if override is None:
        raise NotFound(f"No override {override_id}.")
    return override


def _override_response(override: Override, status_code: int = status.HTTP_200_OK) -> Response:
    headers = {"ETag": _version_etag(override.version)}
    if status_code == status.HTTP_201_CREATED:
        headers["Location"] = reverse("override-detail", kwargs={"override_id": override.pk})
    return Response(OverrideOutputSerializer(override).data, status=status_code, headers=headers)


def _fallback_response(value_type: ValueType) -> Response:
    body = {"key": value_type.key, "value": value_type.fallback_value, "version": value_type.version}
    return Response(FallbackOutputSerializer(body).data, headers={"ETag": _version_etag(value_type.version)})


def _version_etag(version: int) -> str:
    # Strong: the version names exactly one state of the object.
    return f'"{version}"'


def _expected_version(request: Request, body_version: int | None) -> int:
    """The version the client read: If-Match (an ETag this API sent) or "version" in the body.

    Neither is 428; both, disagreeing, or an If-Match that is not one of our ETags is 400."""
    header = request.headers.get("If-Match", "").strip()
    if not header:
        if body_version is None:
            raise PreconditionRequired()
        return body_version
    tags = parse_etags(header)
    number = tags[0].removeprefix("W/").strip('"') if len(tags) == 1 else ""
    if not number.isdigit() or not 0 < int(number) < 2**63:
        raise ValidationError({"If-Match": ['Send one ETag this API sent, e.g. "3" (not *, not a list).']})
    if body_version is not None and body_version != int(number):
        raise ValidationError({"version": ["Differs from If-Match: send the version you read once."]})
    return int(number)


@contextmanager
def _refusals(*, what: str, field_names: dict[str, str] | None = None) -> Iterator[None]:
    """Maps a service's refusals to API errors: VersionConflict to 409 naming the current
    version, Django's ValidationError to 400 with its fields (renamed as the API names them)."""
    try:
        yield
    except VersionConflict as error:
        version = error.current_version
        raise Conflict(
            f"{what} changed since you read it: its current version is {version}. "
            f'Read it again and retry with If-Match: "{version}".'
        ) from error
    except DjangoValidationError as error:
        if not hasattr(error, "error_dict"):
            raise ValidationError({"non_field_errors": error.messages}) from error
        renamed = {"__all__": "non_field_errors", **(field_names or {})}
        fields = {renamed.get(name, name): messages for name, messages in error.message_dict.items()}
        raise ValidationError(fields) from error


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
