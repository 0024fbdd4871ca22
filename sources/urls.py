from django.urls import path

from sources.apis import SourceBreakerOpenApi, SourceBreakerResetApi, SourceDetailApi, SourceListApi

urlpatterns = [
    path("sources/", SourceListApi.as_view(), name="source-list"),
    path("sources/<str:name>/", SourceDetailApi.as_view(), name="source-detail"),
    path("sources/<str:name>/breaker/reset/", SourceBreakerResetApi.as_view(), name="source-breaker-reset"),
    path("sources/<str:name>/breaker/open/", SourceBreakerOpenApi.as_view(), name="source-breaker-open"),
]
