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
from django.conf import settings
from django.http import HttpRequest, HttpResponse, QueryDict
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.authentication import ApiTokenAuthentication
from access.permissions import CanApproveChanges, CanReadValues, CanWriteValues, ReadOrWriteValues
from access.principals import READ_SCOPES, actor_of, scopes_of
from core.durations import format_duration
from dynconfig_site.api_schema import error_responses
from core.answers import Answer
from values.api_serializers import (
    AnswerOutputSerializer,
    BatchInputSerializer,
    BatchOutputSerializer,
    ChangeRequestApproveInputSerializer,
    ChangeRequestListFilterSerializer,
    ChangeRequestOutputSerializer,
    ChangeRequestRejectInputSerializer,
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
from values.change_requests import (
    NotPending,
    SelfApproval,
    change_request_approve,
    change_request_reject,
    change_requests_enabled,
    change_request_propose,
    fallback_update_edit,
    override_create_edit,
    override_delete_edit,
    override_update_edit,
    rollback_edit,
)
from values.models import ChangeRequest, Override, ValueType
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


# Where change requests are on, a write answers 202 with the pending request it made instead.
PROPOSED = ChangeRequestOutputSerializer


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

    # The common read is answered before it gets here, by value_read_plain (from
    # dynconfig_site.read_lane); this view answers the rest, and describes the endpoint's schema.

    @extend_schema(
        operation_id="value_read", parameters=CONTEXT_PARAMETERS, responses={200: AnswerOutputSerializer, 304: None}
    )
    def get(self, request: Request, key: str) -> HttpResponse:
        answer = _answer(key, _context(request.query_params))
        if request.accepted_media_type == JSONRenderer.media_type:
            return _answer_response(request, answer)
        # Another JSON media type, e.g. `; indent=4`: DRF's renderer makes the body.
        headers = _cache_headers(answer)
        if _not_modified(request.META.get("HTTP_IF_NONE_MATCH", ""), headers["ETag"]):
            return Response(status=304, headers=headers)
        return Response(answer.as_dict(), headers=headers)


# What DRF's content negotiation settles as plain JSON, for the read endpoint's plain path.
PLAIN_JSON_ACCEPTS = frozenset({"", "*/*", "application/json", "application/*"})


def value_read_plain(view: ValueReadApi, request: HttpRequest, key: str) -> HttpResponse | None:
    """GET values/{key}/ without DRF's request, negotiation and response machinery, or None to
    leave the request to ValueReadApi.

    A configuration read is mostly a dictionary lookup; DRF's dispatch around it (wrapping the
    request, negotiating, rendering, finalizing) costs several times that. This answers the
    common case with the same authentication class, permission, throttles, headers and bytes
    (tests/api/test_value_read_fast_path.py): a bearer token or, where anonymous reads are
    allowed, a client with no session; JSON accepted; the read permitted and under its rate.
    Anything else, including every refusal and error, returns None: DRF then answers it (and
    counts it against the rate once more, which only matters to a client already refused).
    """
    if request.META.get("HTTP_ACCEPT", "") not in PLAIN_JSON_ACCEPTS:
        return None
    if "HTTP_AUTHORIZATION" in request.META:
        try:
            authenticated = ApiTokenAuthentication().authenticate(request)
        except Exception:  # noqa: BLE001 - refused or the database is away: DRF says which
            return None
        if authenticated is None:  # another scheme
            return None
        principal = authenticated[0]
        if not (scopes_of(principal) & READ_SCOPES):
            return None
    elif settings.DYNCONFIG_ANONYMOUS_READS and settings.SESSION_COOKIE_NAME not in request.COOKIES:
        principal = None
    else:
        return None  # a session (the admin's staff in a browser): DRF authenticates it
    request.user = principal  # as DRF's Request sets it; the throttles read it
    if not all(throttle.allow_request(request, view) for throttle in view.get_throttles()):
        return None
    try:
        answer = get_value(key, _context(request.GET))
    except (UnknownValueType, ContextError):
        return None
    response = _answer_response(request, answer)
    for name, value in view.default_response_headers.items():  # as DRF's finalize_response
        response[name] = value
    if principal is None:
        # DRF's session authentication looked at the (absent) session: Vary: Cookie.
        patch_vary_headers(response, ["Cookie"])
    return response


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
        responses={200: FallbackOutputSerializer, 202: PROPOSED, **error_responses(400, 404, 409, 428)},
    )
    def put(self, request: Request, key: str) -> Response:
        value_type = _value_type(key)
        data = _valid(FallbackUpdateInputSerializer, request.data)
        expected_version = _expected_version(request, data.get("version"))
        if change_requests_enabled():
            return _proposal_response(
                request,
                lambda: fallback_update_edit(value_type=value_type, value=data["value"], expected_version=expected_version),
                reason=data["reason"],
                what="The value type",
                field_names={"fallback_value": "value"},
            )
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
        context = _context(request.query_params)
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
        context = {name: value for name, value in _context(request.query_params).items() if name != "limit"}
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
        responses={201: OverrideOutputSerializer, 202: PROPOSED, **error_responses(400, 404)},
    )
    def post(self, request: Request, key: str) -> Response:
        value_type = _value_type(key)
        data = _valid(RollbackInputSerializer, request.data)
        record = value_record_get(value_type=value_type, record_id=data["record_id"])
        if record is None:
            raise NotFound(f"No value record {data['record_id']} of {value_type.key}.")
        if change_requests_enabled():
            actor = actor_of(request.user)
            return _proposal_response(
                request,
                lambda: rollback_edit(
                    value_type=value_type, record=record, reason=data["reason"], actor=actor,
                    expires_at=data.get("expires_at"),
                ),
                reason=data["reason"],
                what="The override",
            )
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
        responses={201: OverrideOutputSerializer, 202: PROPOSED, **error_responses(400)},
    )
    def post(self, request: Request) -> Response:
        data = _valid(OverrideCreateInputSerializer, request.data)
        value_type = value_type_get(key=data.pop("value_type"))
        if value_type is None:
            raise ValidationError({"value_type": ["Unknown value type."]})
        if change_requests_enabled():
            actor = actor_of(request.user)
            return _proposal_response(
                request,
                lambda: override_create_edit(value_type=value_type, actor=actor, **data),
                reason=data["reason"],
                what="The override",
            )
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
        responses={200: OverrideOutputSerializer, 202: PROPOSED, **error_responses(400, 404, 409, 428)},
    )
    def patch(self, request: Request, override_id: int) -> Response:
        override = _override(override_id)
        data = _valid(OverrideUpdateInputSerializer, request.data)
        expected_version = _expected_version(request, data.pop("version", None))
        reason = data.pop("reason")
        if change_requests_enabled():
            return _proposal_response(
                request,
                lambda: override_update_edit(override=override, expected_version=expected_version, **data),
                reason=reason,
                what="The override",
            )
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
        responses={204: None, 202: PROPOSED, **error_responses(400, 404, 409, 428)},
    )
    def delete(self, request: Request, override_id: int) -> Response:
        override = _override(override_id)
        body = request.data if isinstance(request.data, dict) else {}
        data = _valid(OverrideDeleteInputSerializer, {"reason": request.query_params.get("reason", ""), **body})
        if not data["reason"].strip():
            raise ValidationError({"reason": ["A reason is required: in the body or as ?reason=."]})
        expected_version = _expected_version(request, data.get("version"))
        if change_requests_enabled():
            return _proposal_response(
                request,
                lambda: override_delete_edit(override=override, expected_version=expected_version),
                reason=data["reason"],
                what="The override",
            )
        with _refusals(what="The override"):
            override_delete(
                override=override,
                expected_version=expected_version,
                actor=actor_of(request.user),
                channel=API_CHANNEL,
                reason=data["reason"],
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


def _context(query: QueryDict) -> dict[str, str]:
    """The query parameters as a context. A repeated parameter keeps every value, joined as
    `a,b`: `?channels=a&channels=b` means both channels, and a repeated one-name key is refused."""
    return {name: ",".join(values) for name, values in query.lists()}


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


def _answer_response(request: HttpRequest | Request, answer: Answer) -> HttpResponse:
    """The answer as JSON, or 304 Not Modified when the client has it already.

    The body is the answer's JSON as made once, when it entered L1 or as read from L2
    (Answer.as_json: byte for byte what DRF's JSONRenderer makes of as_dict())."""
    headers = _cache_headers(answer)
    if _not_modified(request.META.get("HTTP_IF_NONE_MATCH", ""), headers["ETag"]):
        not_modified = HttpResponse(status=304, headers=headers)
        del not_modified["Content-Type"]  # no body, no media type (as DRF's 304)
        return not_modified
    return HttpResponse(answer.as_json(), content_type=JSONRenderer.media_type, headers=headers)


def _cache_headers(answer: Answer) -> dict[str, str]:
    return {"ETag": f'W/"{answer.version()}"', "Cache-Control": f"max-age={_max_age(answer)}"}


def _not_modified(header: str, etag: str) -> bool:
    """If-None-Match names this representation: `*`, or an entity tag equal by the weak
    comparison (RFC 9110 13.1.2), so `"x"` and `W/"x"` both match `W/"x"`."""
    if not header:
        return False
    tags = parse_etags(header)
    return "*" in tags or etag.removeprefix("W/") in {tag.removeprefix("W/") for tag in tags}


def _max_age(answer: Answer) -> int:
    expires_at = answer.provenance.expires_at
    if expires_at is None:
        return 0
    return max(0, int((expires_at - timezone.now()).total_seconds()))


# Change requests (values.change_requests) -------------------------------------------------------
#
# Where DYNCONFIG_CHANGE_REQUESTS is on, the writes above (fallback, overrides, rollback) answer
# 202 with the pending request they made instead of applying; a caller with values:approve, not
# its proposer, approves (applied now, or at `apply_at`) or rejects it here.

def _proposal_response(
    request: Request, build_edit, *, reason: str, what: str, field_names: dict[str, str] | None = None
) -> Response:
    """Propose the edit `build_edit()` makes (checked like the direct write: 400, 409) → 202."""
    with _refusals(what=what, field_names=field_names):
        change_request = change_request_propose(
            edits=[build_edit()], reason=reason, actor=actor_of(request.user), channel=API_CHANNEL
        )
    return _change_request_response(change_request, status.HTTP_202_ACCEPTED)


class ChangeRequestListApi(APIView):
    """GET /api/v1/change-requests/?state=pending&value_type=<key>, newest first."""

    permission_classes = [CanReadValues]

    @extend_schema(
        operation_id="change_request_list",
        parameters=[ChangeRequestListFilterSerializer],
        responses={200: ChangeRequestOutputSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        filters = _valid(ChangeRequestListFilterSerializer, request.query_params)
        change_requests = ChangeRequest.objects.all()
        if "state" in filters:
            change_requests = change_requests.filter(state=filters["state"])
        if "value_type" in filters:
            change_requests = change_requests.filter(value_type_key=filters["value_type"])
        return Response(ChangeRequestOutputSerializer(change_requests[:CHANGE_REQUEST_PAGE], many=True).data)


# The newest requests a list returns: a review queue, not an archive (the history has every change).
CHANGE_REQUEST_PAGE = 200


class ChangeRequestDetailApi(APIView):
    """GET /api/v1/change-requests/{id}/: the request, its diff and its state."""

    permission_classes = [CanReadValues]

    @extend_schema(operation_id="change_request_read", responses={200: ChangeRequestOutputSerializer})
    def get(self, request: Request, request_id: int) -> Response:
        return _change_request_response(_change_request(request_id))


class ChangeRequestApproveApi(APIView):
    """POST /api/v1/change-requests/{id}/approve/ {"note"?, "apply_at"?} (values:approve).

    Applied now (200, state applied), or scheduled for `apply_at` (200, state scheduled). Its
    proposer is refused (403); a request already decided, or one whose objects changed since it
    was proposed (it is then recorded failed, with why), is 409; nothing is applied then."""

    permission_classes = [CanApproveChanges]

    @extend_schema(
        operation_id="change_request_approve",
        request=ChangeRequestApproveInputSerializer,
        responses={200: ChangeRequestOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request: Request, request_id: int) -> Response:
        change_request = _change_request(request_id)
        data = _valid(ChangeRequestApproveInputSerializer, request.data)
        with _decision_refusals():
            change_request = change_request_approve(
                change_request=change_request, actor=actor_of(request.user), note=data["note"], apply_at=data.get("apply_at")
            )
        if change_request.state == ChangeRequest.State.FAILED:
            raise Conflict(f"Change request {change_request.pk} was not applied. {change_request.failure}")
        return _change_request_response(change_request)


class ChangeRequestRejectApi(APIView):
    """POST /api/v1/change-requests/{id}/reject/ {"note"} (values:approve): nothing is applied."""

    permission_classes = [CanApproveChanges]

    @extend_schema(
        operation_id="change_request_reject",
        request=ChangeRequestRejectInputSerializer,
        responses={200: ChangeRequestOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request: Request, request_id: int) -> Response:
        change_request = _change_request(request_id)
        data = _valid(ChangeRequestRejectInputSerializer, request.data)
        with _decision_refusals():
            change_request = change_request_reject(change_request=change_request, actor=actor_of(request.user), note=data["note"])
        return _change_request_response(change_request)


def _change_request(request_id: int) -> ChangeRequest:
    change_request = ChangeRequest.objects.filter(pk=request_id).first()
    if change_request is None:
        raise NotFound(f"No change request {request_id}.")
    return change_request


def _change_request_response(change_request: ChangeRequest, status_code: int = status.HTTP_200_OK) -> Response:
    headers = {}
    if status_code == status.HTTP_202_ACCEPTED:
        headers["Location"] = reverse("change-request-detail", kwargs={"request_id": change_request.pk})
    return Response(ChangeRequestOutputSerializer(change_request).data, status=status_code, headers=headers)


@contextmanager
def _decision_refusals() -> Iterator[None]:
    """A decision's refusals as API errors: the proposer approving is 403, a decided request 409."""
    try:
        yield
    except SelfApproval as error:
        raise PermissionDenied(" ".join(error.messages)) from error
    except NotPending as error:
        raise Conflict(" ".join(error.messages)) from error
    except DjangoValidationError as error:
        raise ValidationError(error.message_dict if hasattr(error, "error_dict") else {"non_field_errors": error.messages}) from error
