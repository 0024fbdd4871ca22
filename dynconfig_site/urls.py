from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path

from dynconfig_site.api_errors import json_404
from dynconfig_site.api_schema import SchemaApi, SchemaDocsPage
from dynconfig_site.async_views import reads_from_event_loop
from monitoring.home import home
from sources.views import simulator

admin.site.site_header = "DynConfig"
admin.site.site_title = "DynConfig admin"

urlpatterns = [
    # The read API first: it takes most requests, and each pattern tried before costs time.
    path("api/v1/", include("values.urls")),
    path("api/v1/", include("sources.urls")),
    path("api/v1/", include("planning.urls")),
    path("api/v1/", include("monitoring.api_urls")),
    path("api/v1/", include("audit.urls")),  # reverting a history entry
    path("api/v1/", include("webhooks.urls")),  # receivers of the change events
    # The OpenAPI schema (?format=json for JSON, else YAML) and Swagger UI over it (local assets).
    path("api/schema/", SchemaApi.as_view(), name="schema"),
    path("api/docs/", SchemaDocsPage.as_view(url_name="schema"), name="api-docs"),
    # Django's handler404 only answers with DEBUG off; the API answers JSON always.
    re_path(r"^api/", json_404),
    path(f"{settings.ADMIN_PATH}dashboard/", include("monitoring.dashboard_urls")),
    path(settings.ADMIN_PATH, admin.site.urls),
    path("", home, name="home"),  # what runs, where things are, the values served now
    path("healthz/reads/", reads_from_event_loop, name="reads-from-event-loop"),  # async: aget_many
    path("", include("monitoring.urls")),  # /healthz, /readyz, /metrics
    # Local stand-ins of the market-data APIs; they answer only in mock mode (development).
    path("simulators/<str:name>/", simulator),
    path("simulators/<str:name>/<path:path>", simulator),
]

handler404 = "dynconfig_site.api_errors.json_404"
handler500 = "dynconfig_site.api_errors.json_500"
