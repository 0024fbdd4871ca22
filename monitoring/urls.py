from django.urls import path

from monitoring.views import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
]
