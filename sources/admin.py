"""Admin for sources and their links to value types.

A source names the environment variables that hold its credentials; the admin shows each name
and whether it is set, never a value. It also shows each source's circuit breaker, and offers
operators three actions on selected sources: reset the breaker, force it open for a while, and
test the connection (one call, its outcome shown as a message). The first two go through
sources.services, which records them in the history.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from sources.breaker import BreakerUnavailable, breaker_state
from sources.health import health_report
from sources.models import Source, SourceCall
from sources.services import source_breaker_force_open, source_breaker_reset
from values.services import source_test_connection
from values.admin import (
    ADMIN_CHANNEL,
    FORMFIELD_OVERRIDES,
    AuditedAdminMixin,
    StructuredEditorsMixin,
    string_map_editor_if_fits,
)
from values.admin_editors import Editor

# How long "Force breaker open" keeps a source from being called: long enough to stop a storm
# of failures while someone looks, short enough that a forgotten one heals by itself.
FORCED_OPEN_DURATION = timedelta(minutes=15)


@admin.register(Source)
class SourceAdmin(StructuredEditorsMixin, AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "is_enabled", "health", "base_url", "credentials", "breaker"]
    list_filter = ["kind", "is_enabled"]
    search_fields = ["name", "description", "base_url"]
    readonly_fields = ["credential_status_list", "breaker", "created_at", "updated_at"]
    actions = ["reset_breaker", "force_breaker_open", "test_connection"]
    formfield_overrides = FORMFIELD_OVERRIDES
    field_labels = {
        "base_url": "Base URL",
        "credential_variables": "Credential variables",
        "connect_timeout": "Connect timeout (seconds)",
        "read_timeout": "Read timeout (seconds)",
        "breaker_recovery_timeout": "Breaker recovery time",
        "request_template": "Request (JSON)",
        "field_mapping": "Field mapping",
    }
    fieldsets = [
        (None, {"fields": ["name", "kind", "description", "base_url", "is_enabled"]}),
        ("Credentials", {"fields": ["credential_variables", "credential_status_list"]}),
        (
            "Timeouts and rate limit",
            {"fields": ["connect_timeout", "read_timeout", "requests_per_minute", "burst_allowance"]},
        ),
        (
            "Circuit breaker",
            {
                "fields": [
                    "breaker",
                    "breaker_failure_threshold",
                    "breaker_recovery_timeout",
                    "breaker_half_open_trials",
                ]
            },
        ),
        ("Request", {"fields": ["request_template", "field_mapping"]}),
        ("Bookkeeping", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def structured_editors(self, request: HttpRequest, obj: Source | None) -> dict[str, Editor | None]:
        return {
            "credential_variables": string_map_editor_if_fits(
                obj.credential_variables if obj else {},
                "Each credential's role and the NAME of the environment variable that holds it, never the secret.",
            ),
            "field_mapping": string_map_editor_if_fits(
                obj.field_mapping if obj else {}, "Value field to JMESPath expression over the response."
            ),
        }

    def get_changelist_instance(self, request: HttpRequest):
        # Every source's health computed once for the page, not once per row.
        changelist = super().get_changelist_instance(request)
        healths = {health.name: health for health in health_report({}).sources}
        for source in changelist.result_list:  # the page's rows, kept by the queryset
            source.current_health = healths.get(source.name)
        return changelist

    @admin.display(description="health")
    def health(self, source: Source) -> str:
        health = getattr(source, "current_health", None)
        if health is None:
            return "-"
        if not health.reasons:
            return health.status
        return format_html('{} <span class="help">({})</span>', health.status, health.reasons[0])

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

    @admin.display(description="breaker")
    def breaker(self, source: Source) -> str:
        if source.pk is None:
            return "-"
        return breaker_state(source.name).summary()

    @admin.action(description="Reset breaker", permissions=["change"])
    def reset_breaker(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        self._change_breakers(request, queryset, source_breaker_reset, reason="Reset breaker (admin action)")

    @admin.action(description="Force breaker open for 15 min", permissions=["change"])
    def force_breaker_open(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        self._change_breakers(
            request,
            queryset,
            source_breaker_force_open,
            reason="Force breaker open for 15 min (admin action)",
            duration=FORCED_OPEN_DURATION,
        )

    @admin.action(description="Test connection", permissions=["change"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        for source in queryset:
            outcome = source_test_connection(source=source)
            level = messages.SUCCESS if outcome.is_ok else messages.ERROR
            self.message_user(request, f"{source.name}: {outcome}", level)

    def _change_breakers(
        self, request: HttpRequest, queryset: QuerySet[Source], service, *, reason: str, **options
    ) -> None:
        for source in queryset:
            try:
                state = service(
                    source=source,
                    actor=request.user.get_username(),
                    channel=ADMIN_CHANNEL,
                    reason=reason,
                    **options,
                )
            except BreakerUnavailable as error:
                self.message_user(request, f"{source.name}: {error}", messages.ERROR)
            else:
                self.message_user(request, f"{source.name}: breaker {state.summary()}", messages.SUCCESS)


@admin.register(SourceCall)
class SourceCallAdmin(admin.ModelAdmin):
    """The record of source calls (sources.health), read-only: processes write it, not people."""

    list_display = ["called_at", "source_name", "outcome", "seconds", "reason"]
    list_filter = ["outcome", "source_name"]
    search_fields = ["source_name", "reason"]
    date_hierarchy = "called_at"
    fields = ["source_name", "outcome", "seconds", "reason", "called_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SourceCall | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SourceCall | None = None) -> bool:
        return False
