from django.urls import path

from values.apis import (
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

urlpatterns = [
    path("values/", ValueTypeListApi.as_view(), name="value-type-list"),
    # Before values/<key>/: "batch" is this endpoint, not a value type.
    path("values/batch/", ValueBatchReadApi.as_view(), name="value-batch-read"),
    path("values/<str:key>/", ValueReadApi.as_view(), name="value-read"),
    path("values/<str:key>/fallback/", ValueFallbackApi.as_view(), name="value-fallback"),
    path("values/<str:key>/refresh/", ValueRefreshApi.as_view(), name="value-refresh"),
    path("values/<str:key>/history/", ValueHistoryApi.as_view(), name="value-history"),
    path("values/<str:key>/rollback/", ValueRollbackApi.as_view(), name="value-rollback"),
    path("overrides/", OverrideListApi.as_view(), name="override-list"),
    path("overrides/<int:override_id>/", OverrideDetailApi.as_view(), name="override-detail"),
]
