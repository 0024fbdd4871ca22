"""Admin for webhooks (edits through webhooks.services, so each is in the history) and their
deliveries (read-only: status, attempts, the receiver's last answer)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from audit.admin import ViewOnlyAdmin, pretty_json
from webhooks.models import Webhook, WebhookDelivery
from webhooks.services import UPDATABLE_FIELDS, webhook_create, webhook_delete, webhook_secret_rotate, webhook_update

ADMIN_CHANNEL = "admin"


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ["url", "is_enabled", "key_list", "description", "created_by", "created_at", "deliveries_link"]
    list_filter = ["is_enabled"]
    search_fields = ["url", "description"]
    fields = ["url", "description", "keys", "is_enabled", "created_by", "created_at", "updated_at"]
    readonly_fields = ["created_by", "created_at", "updated_at"]
    actions = ["rotate_secret"]
    # A URL typed without a scheme is taken as https (Django 6's default, set now).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="keys")
    def key_list(self, webhook: Webhook) -> str:
        return ", ".join(webhook.keys) or "every key"

    @admin.display(description="deliveries")
    def deliveries_link(self, webhook: Webhook) -> str:
        return format_html('<a href="../webhookdelivery/?webhook__id__exact={}">deliveries</a>', webhook.pk)

    def save_model(self, request: HttpRequest, obj: Webhook, form, change: bool) -> None:
        actor = request.user.get_username()
        if change:
            fields = {name: getattr(obj, name) for name in form.changed_data if name in UPDATABLE_FIELDS}
            updated = webhook_update(webhook=obj, actor=actor, channel=ADMIN_CHANNEL, **fields)
            obj.pk = updated.pk
            return
        created, secret = webhook_create(
            url=obj.url, description=obj.description, keys=obj.keys, is_enabled=obj.is_enabled, actor=actor,
            channel=ADMIN_CHANNEL,
        )  # fmt: skip
        obj.pk = created.pk
        self._show_secret(request, created, secret)

    def delete_model(self, request: HttpRequest, obj: Webhook) -> None:
        webhook_delete(webhook=obj, actor=request.user.get_username(), channel=ADMIN_CHANNEL)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Webhook]) -> None:
        for webhook in queryset:
            self.delete_model(request, webhook)

    @admin.action(description="Rotate the signing secret of selected webhooks", permissions=["change"])
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[Webhook]) -> None:
        for webhook in queryset:
            secret = webhook_secret_rotate(webhook=webhook, actor=request.user.get_username(), channel=ADMIN_CHANNEL)
            self._show_secret(request, webhook, secret)

    def _show_secret(self, request: HttpRequest, webhook: Webhook, secret: str) -> None:
        # Shown once, on the page after saving: never stored, never shown again.
        self.message_user(
            request,
            format_html("Signing secret of {} (copy it now, it is not shown again): <code>{}</code>", webhook.url, secret),
            messages.WARNING,
        )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ViewOnlyAdmin):
    list_display = ["created_at", "webhook", "event_kind", "event_id", "status", "attempts", "last_status_code", "next_attempt_at"]
    list_filter = ["status", "event_kind", "webhook"]
    search_fields = ["event_id", "webhook__url"]
    list_select_related = ["webhook"]
    fields = [
        "webhook", "event_id", "event_kind", "status", "attempts", "last_status_code", "last_error",
        "next_attempt_at", "delivered_at", "created_at", "payload_pretty",
    ]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="payload")
    def payload_pretty(self, delivery: WebhookDelivery) -> str:
        return pretty_json(delivery.payload)
