"""Celery tasks of webhooks: the fan-out of a change event, and each delivery's attempts.

webhooks.services.change_event_queue, which values.events calls for every event it published
(the hook is set in WebhooksConfig.ready), puts one message for `fan_out_change_event` on the
broker, so an edit never waits on a receiver. The worker's `fan_out_change_event` records a
delivery per webhook (idempotent) and queues `deliver_webhook` for each, which tries once and, if the receiver failed, queues itself
again after the backoff (webhooks.services) until the attempts run out.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import transaction

from webhooks.services import webhook_deliveries_create, webhook_delivery_attempt

logger = logging.getLogger(__name__)


@shared_task(name="webhooks.tasks.fan_out_change_event")
def fan_out_change_event(event: dict[str, Any]) -> int:
    """Record a delivery of `event` for each webhook that wants it and queue each; returns how many."""
    with transaction.atomic():
        delivery_ids = webhook_deliveries_create(event=event)
        for delivery_id in delivery_ids:
            transaction.on_commit(lambda delivery_id=delivery_id: deliver_webhook.delay(delivery_id))
    return len(delivery_ids)


@shared_task(name="webhooks.tasks.deliver_webhook", bind=True, max_retries=None)
def deliver_webhook(self, delivery_id: int) -> str:
    """One attempt at a delivery; on failure, this task again after the backoff (bounded by
    DYNCONFIG_WEBHOOK_ATTEMPTS, counted on the delivery row, not by Celery)."""
    outcome = webhook_delivery_attempt(delivery_id=delivery_id)
    if outcome.status == "pending":
        logger.info("webhook delivery %s failed, retried in %.1f s", delivery_id, outcome.retry_in)
        raise self.retry(countdown=outcome.retry_in)
    if outcome.status == "failed":
        logger.warning("webhook delivery %s failed for good", delivery_id)
    return outcome.status
