from django.urls import path

from values.apis import ValueReadApi, ValueTypeListApi

urlpatterns = [
    path("values/", ValueTypeListApi.as_view(), name="value-type-list"),
    path("values/<str:key>/", ValueReadApi.as_view(), name="value-read"),
]
