from django.urls import path

from webhooks.apis import WebhookDeliveryListApi, WebhookDetailApi, WebhookListApi, WebhookSecretRotateApi

urlpatterns = [
    path("webhooks/", WebhookListApi.as_view(), name="webhook-list"),
    path("webhooks/<int:webhook_id>/", WebhookDetailApi.as_view(), name="webhook-detail"),
    path("webhooks/<int:webhook_id>/rotate-secret/", WebhookSecretRotateApi.as_view(), name="webhook-rotate-secret"),
    path("webhooks/<int:webhook_id>/deliveries/", WebhookDeliveryListApi.as_view(), name="webhook-deliveries"),
]
