from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from monitoring.views import healthz

admin.site.site_header = "DynConfig"
admin.site.site_title = "DynConfig admin"

urlpatterns = [
    path(settings.ADMIN_PATH, admin.site.urls),
    path("api/v1/", include("values.urls")),
    path("healthz", healthz, name="healthz"),
]

handler404 = "dynconfig_site.api_errors.json_404"
handler500 = "dynconfig_site.api_errors.json_500"
