from django.urls import path

from values.apis import (
    ChangeRequestApproveApi,
    ChangeRequestDetailApi,
    ChangeRequestListApi,
    ChangeRequestRejectApi,
    OverrideDetailApi,
    OverrideListApi,
    ValueBatchReadApi,
    ValueFallbackApi,
    ValueHistoryApi,
    ValueReadApi,
    ValueRefreshApi,
    ValueRollbackApi,
    ValueTypeListApi,
)
from values.views import ChangeStreamApi

urlpatterns = [
    path("values/", ValueTypeListApi.as_view(), name="value-type-list"),
    # Before values/<key>/: "batch" is this endpoint, not a value type.
    path("values/batch/", ValueBatchReadApi.as_view(), name="value-batch-read"),
    path("values/stream/", ChangeStreamApi.as_view(), name="value-change-stream"),  # likewise
    path("values/<str:key>/", ValueReadApi.as_view(), name="value-read"),
    path("values/<str:key>/fallback/", ValueFallbackApi.as_view(), name="value-fallback"),
    path("values/<str:key>/refresh/", ValueRefreshApi.as_view(), name="value-refresh"),
    path("values/<str:key>/history/", ValueHistoryApi.as_view(), name="value-history"),
    path("values/<str:key>/rollback/", ValueRollbackApi.as_view(), name="value-rollback"),
    path("overrides/", OverrideListApi.as_view(), name="override-list"),
    path("overrides/<int:override_id>/", OverrideDetailApi.as_view(), name="override-detail"),
    path("change-requests/", ChangeRequestListApi.as_view(), name="change-request-list"),
    path("change-requests/<int:request_id>/", ChangeRequestDetailApi.as_view(), name="change-request-detail"),
    path("change-requests/<int:request_id>/approve/", ChangeRequestApproveApi.as_view(), name="change-request-approve"),
    path("change-requests/<int:request_id>/reject/", ChangeRequestRejectApi.as_view(), name="change-request-reject"),
]
