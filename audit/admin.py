"""Admin of the history of operator edits (read only), and the read-only admin base it shares."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from audit.history import UNTRACKED_FIELDS
from audit.models import AuditEntry


def pretty_json(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


class ViewOnlyAdmin(admin.ModelAdmin):
    """Records the system writes (caches, history, refresh state): shown, never edited here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ViewOnlyAdmin):
    """The history: for reading only, by everyone who may see it; nobody adds, edits or deletes."""

    list_display = ["created_at", "actor", "channel", "action", "object_type", "object_repr"]
    list_filter = ["channel", "action", "object_type"]
    search_fields = ["object_repr", "object_id", "actor", "reason"]
    date_hierarchy = "created_at"
    fields = [
        "created_at", "actor", "channel", "action", "object_type", "object_id", "object_repr",
        "reason", "changed_fields", "before_pretty", "after_pretty",
    ]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="changed fields")
    def changed_fields(self, entry: AuditEntry) -> str:
        before, after = entry.before or {}, entry.after or {}
        names = [name for name in {**before, **after} if name not in UNTRACKED_FIELDS]
        changed = [name for name in names if before.get(name) != after.get(name)]
        if not changed:
            return "-"
        rows = format_html_join(
            "",
            '<tr><th scope="row">{}</th><td><pre>{}</pre></td><td><mark><pre>{}</pre></mark></td></tr>',
            (
                (
                    name,
                    _json_or_dash(before, name),
                    _json_or_dash(after, name),
                )
                for name in changed
            ),
        )
        return format_html(
            '<table class="audit-changes"><thead><tr><th>field</th><th>before</th><th>after</th>'
            "</tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="before")
    def before_pretty(self, entry: AuditEntry) -> str:
        return pretty_json(entry.before) if entry.before is not None else "-"

    @admin.display(description="after")
    def after_pretty(self, entry: AuditEntry) -> str:
        return pretty_json(entry.after) if entry.after is not None else "-"


def _json_or_dash(values: dict[str, Any], name: str) -> str:
    return json.dumps(values[name], indent=2, ensure_ascii=False, sort_keys=True) if name in values else "-"
