"""The admin dashboard: one page (charts drawn in the browser by dashboard.js with the vendored
Chart.js) and the one JSON endpoint it reads. Both are staff-only: dashboard_urls.py wraps them
with admin.site.admin_view, which sends anyone else to the admin login."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from dynconfig_site.api_errors import error_body
from monitoring.selectors import MAX_HOURS, dashboard_data

# What the window selector offers, in hours: the last hour, a shift, a day, a week.
WINDOW_CHOICES = ((1, "last hour"), (6, "last 6 hours"), (24, "last day"), (168, "last week"))
DEFAULT_HOURS = 24
# Query parameters `context_<value type key>=<context key>` pick a history's context.
CONTEXT_PARAMETER_PREFIX = "context_"


class DashboardDataForm(forms.Form):
    hours = forms.IntegerField(min_value=1, max_value=MAX_HOURS, required=False)


def dashboard(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "data_url": reverse("monitoring_dashboard_data"),
        "window_choices": WINDOW_CHOICES,
        "default_hours": DEFAULT_HOURS,
    }
    return TemplateResponse(request, "monitoring/dashboard.html", context)


def dashboard_data_view(request: HttpRequest) -> JsonResponse:
    form = DashboardDataForm(request.GET)
    if not form.is_valid():
        fields = {name: [str(error) for error in errors] for name, errors in form.errors.items()}
        return JsonResponse(error_body(400, "invalid", "The request has invalid fields.", fields), status=400)
    contexts = {
        name.removeprefix(CONTEXT_PARAMETER_PREFIX): value
        for name, value in request.GET.items()
        if name.startswith(CONTEXT_PARAMETER_PREFIX)
    }
    data = dashboard_data(hours=form.cleaned_data["hours"] or DEFAULT_HOURS, contexts=contexts)
    return JsonResponse(data)
