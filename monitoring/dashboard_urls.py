"""The admin dashboard, under {ADMIN_PATH}dashboard/ (dynconfig_site/urls.py), staff only."""

from django.contrib import admin
from django.urls import path

from monitoring.dashboard import dashboard, dashboard_data_view

# The admin index links to the dashboard. django.contrib.admin precedes our apps in
# INSTALLED_APPS, so an admin/index.html of ours would never be found: name ours instead.
admin.site.index_template = "admin/dynconfig_index.html"

urlpatterns = [
    path("", admin.site.admin_view(dashboard), name="monitoring_dashboard"),
    path("data/", admin.site.admin_view(dashboard_data_view), name="monitoring_dashboard_data"),
]
