"""The history API: revert one entry of the history of operator changes.

    POST /api/v1/history/{entry_id}/revert/   {"reason", "version"?}   (values:write)

The revert is values.services.audit_entry_revert: the fields an update changed get their
"before" values back, a created object is deleted, a deleted one made again; each passes the
same validation as any edit and is recorded as a new entry, which is what this answers. A
refusal (the object changed or vanished since, the restored state is invalid) is 400 and changes
nothing; "version", for value types and overrides, is checked like an update's (409 if stale).

Where change requests are on (values.change_requests), the revert of an edit of a value type,
override or source link is not applied: it is proposed, checked as the direct revert is, and this
answers 202 with the pending change request (Location: the request), as the values API does.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import CanWriteValues
from access.principals import actor_of
from audit.models import AuditEntry
from dynconfig_site.api_schema import error_responses
from values.api_serializers import AuditEntryOutputSerializer, ChangeRequestOutputSerializer
from values.change_requests import revert_is_proposed, revert_propose
from values.services import VersionConflict, audit_entry_revert

API_CHANNEL = "api"


class RevertConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class RevertInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=1000, help_text="Why: recorded as “revert of entry N: <reason>”.")
    version = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        help_text="For value types and overrides: the version you read; another one is 409.",
    )


class AuditEntryRevertApi(APIView):
    permission_classes = [CanWriteValues]

    @extend_schema(
        operation_id="history_entry_revert",
        request=RevertInputSerializer,
        responses={200: AuditEntryOutputSerializer, 202: ChangeRequestOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request: Request, entry_id: int) -> Response:
        entry = AuditEntry.objects.filter(pk=entry_id).first()
        if entry is None:
            raise NotFound(f"No history entry {entry_id}.")
        serializer = RevertInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        proposes = revert_is_proposed(entry)
        revert = revert_propose if proposes else audit_entry_revert
        try:
            done = revert(
                entry=entry,
                actor=actor_of(request.user),
                channel=API_CHANNEL,
                reason=data["reason"],
                expected_version=data.get("version"),
            )
        except VersionConflict as error:
            raise RevertConflict(
                f"The object changed since you read it: its current version is {error.current_version}."
            ) from error
        except DjangoValidationError as error:
            raise ValidationError(_error_fields(error)) from error
        if proposes:
            location = reverse("change-request-detail", kwargs={"request_id": done.pk})
            return Response(
                ChangeRequestOutputSerializer(done).data, status=status.HTTP_202_ACCEPTED, headers={"Location": location}
            )
        return Response(AuditEntryOutputSerializer(done).data)


def _error_fields(error: DjangoValidationError) -> dict[str, list[str]]:
    """A refusal as the API's field errors: the model's fields, or non_field_errors."""
    if not hasattr(error, "error_dict"):
        return {"non_field_errors": error.messages}
    return {"non_field_errors" if name == "__all__" else name: messages for name, messages in error.message_dict.items()}
