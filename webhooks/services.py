"""Registering webhooks, and delivering change events to them.

A webhook's secret: `whsec_` + HMAC-SHA256(SECRET_KEY, its random salt). It has to be usable to
sign, so it cannot be hashed like an API token; rather than store it, it is derived when needed,
so a copy of the database alone signs nothing. It is shown once, when the webhook is made (or
its secret rotated), never returned after, never logged, and left out of the history.

Each delivery is a POST of the event's JSON with
    X-DynConfig-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
(Stripe's scheme: the timestamp is signed with the body, so a receiver can refuse replays), and
X-DynConfig-Event (the kind), X-DynConfig-Event-Id, X-DynConfig-Delivery. A 2xx delivers it;
anything else (another status, a timeout, a refused connection) is retried after
DYNCONFIG_WEBHOOK_BACKOFF × 2^(attempt - 1) seconds, up to DYNCONFIG_WEBHOOK_ATTEMPTS attempts,
then recorded as failed. Redirects are not followed. Attempts run in Celery workers
(webhooks.tasks), never in a request: a failing receiver slows no read and no edit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import requests
from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.history import audit_record, snapshot
from values.events import ChangeEvent
from webhooks.models import Webhook, WebhookDelivery

SIGNATURE_HEADER = "X-DynConfig-Signature"
SECRET_PREFIX = "whsec_"
UPDATABLE_FIELDS = frozenset({"url", "description", "keys", "is_enabled"})
# Never in the history: with SECRET_KEY it makes the secret.
SECRET_FIELDS = frozenset({"secret_salt"})
# How much of a receiver's error is kept on the delivery row.
ERROR_TEXT_LIMIT = 500


# Registering ----------------------------------------------------------------------------------


@transaction.atomic
def webhook_create(
    *, url: str, actor: str, channel: str, description: str = "", keys: list[str] | None = None, is_enabled: bool = True
) -> tuple[Webhook, str]:
    """Register a receiver; returns it and its signing secret (shown to the operator once)."""
    webhook = Webhook(
        url=url,
        description=description,
        keys=list(keys or []),
        is_enabled=is_enabled,
        secret_salt=secrets.token_hex(32),
        created_by=actor,
    )
    _validate(webhook)
    webhook.save()
    audit_record(actor=actor, channel=channel, instance=webhook, before=None, after=_public_snapshot(webhook))
    return webhook, webhook_secret(webhook)


@transaction.atomic
def webhook_update(*, webhook: Webhook, actor: str, channel: str, reason: str = "", **fields: Any) -> Webhook:
    """Change a webhook's url, description, keys or is_enabled (ValidationError if refused)."""
    unknown = set(fields) - UPDATABLE_FIELDS
    if unknown:
        raise TypeError(f"webhook_update cannot change {', '.join(sorted(unknown))}")
    locked = Webhook.objects.select_for_update().get(pk=webhook.pk)
    before = _public_snapshot(locked)
    for name, value in fields.items():
        setattr(locked, name, value)
    _validate(locked)
    locked.save()
    audit_record(actor=actor, channel=channel, instance=locked, before=before, after=_public_snapshot(locked), reason=reason)
    return locked


@transaction.atomic
def webhook_secret_rotate(*, webhook: Webhook, actor: str, channel: str, reason: str = "") -> str:
    """A new signing secret (returned once); the old one stops signing at once."""
    locked = Webhook.objects.select_for_update().get(pk=webhook.pk)
    locked.secret_salt = secrets.token_hex(32)
    locked.save(update_fields=["secret_salt", "updated_at"])
    snapshot_now = _public_snapshot(locked)
    audit_record(
        actor=actor, channel=channel, instance=locked, before=snapshot_now,
        after={**snapshot_now, "secret": "rotated"}, reason=reason or "secret rotated",
    )  # fmt: skip
    return webhook_secret(locked)


@transaction.atomic
def webhook_delete(*, webhook: Webhook, actor: str, channel: str, reason: str = "") -> None:
    """Remove a receiver, and the record of its deliveries."""
    audit_record(actor=actor, channel=channel, instance=webhook, before=_public_snapshot(webhook), after=None, reason=reason)
    webhook.delete()


def webhook_secret(webhook: Webhook) -> str:
    """The webhook's signing secret, derived from SECRET_KEY and its salt (never stored)."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"dynconfig.webhooks:{webhook.secret_salt}".encode(), hashlib.sha256)
    return SECRET_PREFIX + digest.hexdigest()


def _validate(webhook: Webhook) -> None:
    webhook.full_clean()  # the URL's scheme, host and no credentials; keys a list (Webhook.clean)


def _public_snapshot(webhook: Webhook) -> dict[str, Any]:
    return {name: value for name, value in snapshot(webhook).items() if name not in SECRET_FIELDS}


# Delivering -----------------------------------------------------------------------------------

# The task that records and queues an event's deliveries (webhooks.tasks, an edge: named, not imported).
FAN_OUT_TASK = "webhooks.tasks.fan_out_change_event"


def change_event_queue(event: ChangeEvent) -> None:
    """Queue the deliveries of a published event (values.events calls this after the change's
    commit, in its process): one message on the broker, nothing more in the edit's time."""
    if not Webhook.objects.filter(is_enabled=True).exists():
        return  # most deployments have none: no message per change
    # retry=False: a broker that is down fails this at once (values.events logs it) rather
    # than holding the edit while the client retries its connection.
    current_app.send_task(FAN_OUT_TASK, args=(event.as_dict(),), retry=False)



def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`."""
    signed = f"{timestamp}.".encode() + body
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def webhook_deliveries_create(*, event: dict[str, Any]) -> list[int]:
    """A pending delivery of `event` for each enabled webhook that wants its key; idempotent
    (one per webhook and event id). Returns the ids of the deliveries to attempt."""
    wanted = [
        webhook
        for webhook in Webhook.objects.filter(is_enabled=True)
        if not webhook.keys or event["key"] in webhook.keys
    ]
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                webhook=webhook, event_id=event["id"], event_kind=event["kind"], payload=event, next_attempt_at=timezone.now()
            )
            for webhook in wanted
        ],
        ignore_conflicts=True,
    )
    return list(
        WebhookDelivery.objects.filter(
            webhook__in=wanted, event_id=event["id"], status=WebhookDelivery.Status.PENDING
        ).values_list("pk", flat=True)
    )


@dataclass(frozen=True)
class AttemptOutcome:
    status: str  # delivered | pending (retry after `retry_in`) | failed | skipped (already done, or gone)
    retry_in: float = 0.0


def webhook_delivery_attempt(*, delivery_id: int) -> AttemptOutcome:
    """POST the delivery's event once, and record how it went (see the module docstring)."""
    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        return AttemptOutcome("skipped")
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    secret = webhook_secret(delivery.webhook)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "DynConfig-Webhooks/1",
        SIGNATURE_HEADER: signature_header(secret, int(time.time()), body),
        "X-DynConfig-Event": delivery.event_kind,
        "X-DynConfig-Event-Id": delivery.event_id,
        "X-DynConfig-Delivery": str(delivery.pk),
    }
    status_code: int | None = None
    try:
        response = requests.post(
            delivery.webhook.url, data=body, headers=headers, timeout=settings.DYNCONFIG_WEBHOOK_TIMEOUT, allow_redirects=False
        )
        status_code = response.status_code
        error = "" if 200 <= status_code < 300 else f"HTTP {status_code}: {response.text[:200]}"
    except requests.RequestException as failure:  # the message names the URL, never the secret
        error = f"{type(failure).__name__}: {failure}"
    return _record_attempt(delivery, status_code, error)


def _record_attempt(delivery: WebhookDelivery, status_code: int | None, error: str) -> AttemptOutcome:
    now = timezone.now()
    delivery.attempts += 1
    delivery.last_status_code = status_code
    delivery.last_error = error[:ERROR_TEXT_LIMIT]
    if not error:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        outcome = AttemptOutcome("delivered")
    elif delivery.attempts >= settings.DYNCONFIG_WEBHOOK_ATTEMPTS:
        delivery.status = WebhookDelivery.Status.FAILED
        delivery.next_attempt_at = None
        outcome = AttemptOutcome("failed")
    else:
        retry_in = retry_delay(delivery.attempts)
        delivery.next_attempt_at = now + timedelta(seconds=retry_in)
        outcome = AttemptOutcome("pending", retry_in)
    delivery.save(
        update_fields=[
            "attempts", "last_status_code", "last_error", "status", "delivered_at", "next_attempt_at", "updated_at"
        ]
    )  # fmt: skip
    return outcome


def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: doubling from the backoff."""
    return settings.DYNCONFIG_WEBHOOK_BACKOFF * 2 ** max(attempts - 1, 0)
