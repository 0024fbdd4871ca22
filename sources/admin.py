"""Admin for sources and their links to value types.

A source names the environment variables that hold its credentials; the admin shows each name
and whether it is set, never a value.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from sources.models import Source, ValueTypeSource
from values.admin import JSON_AS_TEXT, AuditedAdminMixin


@admin.register(Source)
class SourceAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "is_enabled", "base_url", "credentials"]
    list_filter = ["kind", "is_enabled"]
    search_fields = ["name", "description", "base_url"]
    readonly_fields = ["credential_status_list", "created_at", "updated_at"]
    formfield_overrides = JSON_AS_TEXT
    fieldsets = [
        (None, {"fields": ["name", "kind", "description", "base_url", "is_enabled"]}),
        ("Credentials", {"fields": ["credential_variables", "credential_status_list"]}),
        (
            "Timeouts and rate limit",
            {"fields": ["connect_timeout", "read_timeout", "requests_per_minute", "burst_allowance"]},
        ),
        (
            "Circuit breaker",
            {"fields": ["breaker_failure_threshold", "breaker_recovery_timeout", "breaker_half_open_trials"]},
        ),
        ("Request", {"fields": ["request_template", "field_mapping"]}),
        ("Bookkeeping", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    @admin.display(description="credentials")
    def credentials(self, source: Source) -> str:
        status = source.credential_status()
        if not status:
            return "none needed"
        return f"{sum(status.values())} of {len(status)} set"

    @admin.display(description="credential variables in the environment")
    def credential_status_list(self, source: Source) -> str:
        status = source.credential_status()
        if not status:
            return "This source needs no credentials."
        return format_html(
            '<ul class="credential-status">{}</ul>',
            format_html_join(
                "",
                "<li><code>{}</code>: {}</li>",
                ((name, "set" if is_set else "NOT SET") for name, is_set in sorted(status.items())),
            ),
        )


@admin.register(ValueTypeSource)
class ValueTypeSourceAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["value_type", "source", "tier", "weight", "channels"]
    list_filter = ["tier", "source", "value_type"]
    search_fields = ["value_type__key", "source__name"]
    formfield_overrides = JSON_AS_TEXT

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("value_type", "source")
