"""Reads of webhooks and their deliveries."""

from __future__ import annotations

from django.db.models import QuerySet

from webhooks.models import Webhook, WebhookDelivery


def webhook_list() -> QuerySet[Webhook]:
    return Webhook.objects.all()


def webhook_get(webhook_id: int) -> Webhook | None:
    return Webhook.objects.filter(pk=webhook_id).first()


def webhook_deliveries(*, webhook: Webhook, limit: int) -> list[WebhookDelivery]:
    """The webhook's latest deliveries, newest first."""
    return list(WebhookDelivery.objects.filter(webhook=webhook).order_by("-id")[:limit])
