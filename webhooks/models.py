"""Webhooks: URLs that receive every change event (values.events), signed, and the record of
each delivery. Written only through webhooks.services."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models


class Webhook(models.Model):
    """A registered receiver. Its signing secret is never stored: it is derived from the
    deployment's SECRET_KEY and `secret_salt` (webhooks.services.webhook_secret), shown once
    when made."""

    url = models.URLField(max_length=2000, help_text="Where change events are POSTed (http or https).")
    description = models.CharField(max_length=200, blank=True)
    keys = models.JSONField(
        default=list, blank=True, help_text="Value types whose events it receives; [] for every one."
    )
    is_enabled = models.BooleanField(default=True)
    # Random, not secret by itself: with SECRET_KEY it makes the signing secret.
    secret_salt = models.CharField(max_length=64, editable=False)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.url

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        parts = urlsplit(self.url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            errors["url"] = ["An http or https URL with a host, e.g. https://hooks.example.com/dynconfig."]
        elif parts.username or parts.password:
            errors["url"] = ["No credentials in the URL: receivers verify the signature instead."]
        if not isinstance(self.keys, list) or not all(isinstance(key, str) and key for key in self.keys):
            errors["keys"] = ["A list of value type keys; [] for every one."]
        if errors:
            raise ValidationError(errors)


class WebhookDelivery(models.Model):
    """One change event for one webhook: its attempts and how the last one went."""

    class Status(models.TextChoices):
        PENDING = "pending"  # not tried yet, or to be retried at next_attempt_at
        DELIVERED = "delivered"  # the receiver answered 2xx
        FAILED = "failed"  # every attempt failed: given up

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=64)
    event_kind = models.CharField(max_length=40)
    payload = models.JSONField(help_text="The event, as POSTed.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            # A change event is delivered to a webhook once, however often its fan-out runs.
            models.UniqueConstraint(fields=["webhook", "event_id"], name="webhooks_one_delivery_per_event"),
        ]

    def __str__(self) -> str:
        return f"{self.event_kind} {self.event_id} → {self.webhook.url}: {self.status}"
