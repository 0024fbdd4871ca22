"""Admin for API tokens: a read-only list, and one action, Revoke (through access.services).

Tokens are created by `manage.py create_api_token`, which shows the token once; the admin has
no add form, and never shows the stored hash."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from access.models import ApiToken
from access.services import api_token_revoke
from values.admin import ADMIN_CHANNEL

ADMIN_REVOKE_REASON = "Revoked in the admin"


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix_shown", "scope_list", "created_at", "created_by", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    # token_hash is left out on purpose: nothing in the admin shows it.
    fields = ["name", "prefix_shown", "scope_list", "created_by", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke"]

    @admin.display(description="prefix", ordering="prefix")
    def prefix_shown(self, token: ApiToken) -> str:
        return f"{token.prefix}…"

    @admin.display(description="scopes")
    def scope_list(self, token: ApiToken) -> str:
        return ", ".join(token.scopes)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created by `manage.py create_api_token`, which shows the token once

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False  # nothing to edit: revoke, and create another

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False  # revoked, never deleted: the history names them, and their names stay taken

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{ApiToken._meta.app_label}.change_apitoken")

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra_context = {**(extra_context or {}), "token_cache_seconds": f"{settings.DYNCONFIG_TOKEN_CACHE_SECONDS:g}"}
        return super().changelist_view(request, extra_context)

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            try:
                api_token_revoke(
                    token=token, actor=request.user.get_username(), reason=ADMIN_REVOKE_REASON, channel=ADMIN_CHANNEL
                )
            except ValidationError as error:
                self.message_user(request, f"Not revoked: {' '.join(error.messages)}", messages.WARNING)
            else:
                self.message_user(request, f"Revoked the token “{token.name}”.", messages.SUCCESS)
