from django.conf import settings
from django.contrib import admin
from django.urls import path

from monitoring.views import healthz

admin.site.site_header = "DynConfig"
admin.site.site_title = "DynConfig admin"

urlpatterns = [
    path(settings.ADMIN_PATH, admin.site.urls),
    path("healthz", healthz, name="healthz"),
]
