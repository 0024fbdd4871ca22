"""Input and output of the webhooks API."""

from __future__ import annotations

from rest_framework import serializers

from webhooks.models import Webhook, WebhookDelivery


class WebhookCreateInputSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    keys = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    is_enabled = serializers.BooleanField(required=False, default=True)


class WebhookUpdateInputSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000, required=False)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    keys = serializers.ListField(child=serializers.CharField(), required=False)
    is_enabled = serializers.BooleanField(required=False)
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class WebhookDeleteInputSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class WebhookOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Webhook
        fields = ["id", "url", "description", "keys", "is_enabled", "created_by", "created_at", "updated_at"]


class WebhookCreatedOutputSerializer(WebhookOutputSerializer):
    secret = serializers.CharField(help_text="The signing secret, shown this once: it is never returned again.")

    class Meta(WebhookOutputSerializer.Meta):
        fields = [*WebhookOutputSerializer.Meta.fields, "secret"]


class WebhookDeliveryOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "event_id", "event_kind", "status", "attempts", "last_status_code", "last_error",
            "next_attempt_at", "delivered_at", "created_at", "payload",
        ]  # fmt: skip
