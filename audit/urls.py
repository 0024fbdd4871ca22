from django.urls import path

from audit.apis import AuditEntryRevertApi

urlpatterns = [
    path("history/<int:entry_id>/revert/", AuditEntryRevertApi.as_view(), name="history-entry-revert"),
]
