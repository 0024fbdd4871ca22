"""The webhooks API (scope webhooks:manage): register, change and remove receivers of the change
events, rotate a secret, and read each one's deliveries. Views validate input, call one service
or selector and serialize."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import CanManageWebhooks
from access.principals import actor_of
from dynconfig_site.api_schema import error_responses
from webhooks.api_serializers import (
    WebhookCreatedOutputSerializer,
    WebhookCreateInputSerializer,
    WebhookDeleteInputSerializer,
    WebhookDeliveryOutputSerializer,
    WebhookOutputSerializer,
    WebhookUpdateInputSerializer,
)
from webhooks.models import Webhook
from webhooks.selectors import webhook_deliveries, webhook_get, webhook_list
from webhooks.services import webhook_create, webhook_delete, webhook_secret_rotate, webhook_update

API_CHANNEL = "api"
# The latest deliveries a GET lists.
DELIVERIES_SHOWN = 100


class WebhookListApi(APIView):
    """GET (list) and POST (register) /api/v1/webhooks/."""

    permission_classes = [CanManageWebhooks]

    @extend_schema(operation_id="webhooks_list", responses={200: WebhookOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(WebhookOutputSerializer(webhook_list(), many=True).data)

    @extend_schema(
        operation_id="webhooks_create",
        description="Register a URL that receives every change event, signed (docs/api.md, Webhooks). "
        "The answer holds the signing secret, this once.",
        request=WebhookCreateInputSerializer,
        responses={201: WebhookCreatedOutputSerializer, **error_responses(400)},
    )
    def post(self, request: Request) -> Response:
        data = _valid(WebhookCreateInputSerializer, request.data)
        with _as_api_errors():
            webhook, secret = webhook_create(actor=actor_of(request.user), channel=API_CHANNEL, **data)
        body = {**WebhookOutputSerializer(webhook).data, "secret": secret}
        return Response(body, status=201)


class WebhookDetailApi(APIView):
    """GET, PATCH and DELETE /api/v1/webhooks/{id}/."""

    permission_classes = [CanManageWebhooks]

    @extend_schema(operation_id="webhooks_retrieve", responses={200: WebhookOutputSerializer})
    def get(self, request: Request, webhook_id: int) -> Response:
        return Response(WebhookOutputSerializer(_webhook(webhook_id)).data)

    @extend_schema(
        operation_id="webhooks_update",
        request=WebhookUpdateInputSerializer,
        responses={200: WebhookOutputSerializer, **error_responses(400)},
    )
    def patch(self, request: Request, webhook_id: int) -> Response:
        webhook = _webhook(webhook_id)
        data = _valid(WebhookUpdateInputSerializer, request.data)
        reason = data.pop("reason")
        with _as_api_errors():
            webhook = webhook_update(webhook=webhook, actor=actor_of(request.user), channel=API_CHANNEL, reason=reason, **data)
        return Response(WebhookOutputSerializer(webhook).data)

    @extend_schema(operation_id="webhooks_destroy", request=WebhookDeleteInputSerializer, responses={204: None})
    def delete(self, request: Request, webhook_id: int) -> Response:
        webhook = _webhook(webhook_id)
        data = _valid(WebhookDeleteInputSerializer, request.data or {})
        webhook_delete(webhook=webhook, actor=actor_of(request.user), channel=API_CHANNEL, reason=data["reason"])
        return Response(status=204)


class WebhookSecretRotateApi(APIView):
    """POST /api/v1/webhooks/{id}/rotate-secret/: a new signing secret, shown this once."""

    permission_classes = [CanManageWebhooks]

    @extend_schema(
        operation_id="webhooks_rotate_secret", request=WebhookDeleteInputSerializer,
        responses={200: WebhookCreatedOutputSerializer},
    )  # fmt: skip
    def post(self, request: Request, webhook_id: int) -> Response:
        webhook = _webhook(webhook_id)
        data = _valid(WebhookDeleteInputSerializer, request.data or {})
        secret = webhook_secret_rotate(webhook=webhook, actor=actor_of(request.user), channel=API_CHANNEL, reason=data["reason"])
        return Response({**WebhookOutputSerializer(webhook).data, "secret": secret})


class WebhookDeliveryListApi(APIView):
    """GET /api/v1/webhooks/{id}/deliveries/: the latest deliveries, newest first."""

    permission_classes = [CanManageWebhooks]

    @extend_schema(operation_id="webhooks_deliveries", responses={200: WebhookDeliveryOutputSerializer(many=True)})
    def get(self, request: Request, webhook_id: int) -> Response:
        deliveries = webhook_deliveries(webhook=_webhook(webhook_id), limit=DELIVERIES_SHOWN)
        return Response(WebhookDeliveryOutputSerializer(deliveries, many=True).data)


def _webhook(webhook_id: int) -> Webhook:
    webhook = webhook_get(webhook_id)
    if webhook is None:
        raise NotFound(f"No webhook {webhook_id}.")
    return webhook


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


@contextmanager
def _as_api_errors() -> Iterator[None]:
    """Django's ValidationError from a service as a 400 with its fields."""
    try:
        yield
    except DjangoValidationError as error:
        fields = error.message_dict if hasattr(error, "error_dict") else {"non_field_errors": error.messages}
        raise ValidationError(fields) from None
