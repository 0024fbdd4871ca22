"""Admin of the history of operator edits (read only), and the read-only admin base it shares.

An entry's page offers "Revert": a confirmation page shows what the revert would change (or why
it cannot), asks for a reason, and on POST calls values.services.audit_entry_revert, which
records the revert as a new entry. It takes the permission the revert needs on the object's
model: change to restore fields, delete to undo a create, add to undo a delete.

Where change requests are on (values.change_requests), confirming the revert of an edit of a
value type, override or source link proposes it instead: the page says so, and the POST
redirects to the pending change request.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from audit.history import UNTRACKED_FIELDS
from audit.models import AuditEntry
from values.change_requests import revert_is_proposed, revert_propose
from values.services import REVERTIBLE_MODELS, VersionConflict, audit_entry_revert, audit_entry_revert_plan

ADMIN_CHANNEL = "admin"
# The permission a revert needs on the object's model, by what it does to the object.
REVERT_PERMISSIONS = {"restore": "change", "delete": "delete", "re-create": "add", "": "change"}


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
    change_form_template = "admin/audit/auditentry/change_form.html"

    def get_urls(self):
        revert = path(
            "<path:object_id>/revert/",
            self.admin_site.admin_view(self.revert_view),
            name="audit_auditentry_revert",
        )
        return [revert, *super().get_urls()]

    def revert_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: what reverting the entry would change, and a form asking why; POST: revert it."""
        entry = self.get_object(request, unquote(object_id))
        if entry is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        plan = audit_entry_revert_plan(entry=entry)
        if not self.has_view_permission(request, entry) or not _may_revert(request, entry, plan.action):
            raise PermissionDenied
        proposes = revert_is_proposed(entry)
        form = RevertForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid() and proposes:
            try:
                change_request = revert_propose(
                    entry=entry,
                    actor=request.user.get_username(),
                    channel=ADMIN_CHANNEL,
                    reason=form.cleaned_data["reason"],
                )
            except ValidationError as error:
                self.message_user(request, f"Not proposed: {' '.join(error.messages)}", messages.ERROR)
                plan = audit_entry_revert_plan(entry=entry)
            else:
                self.message_user(
                    request,
                    f"Not applied yet: the revert of entry {entry.pk} is proposed for approval as change request "
                    f"#{change_request.pk}. It applies once another operator approves it.",
                    messages.WARNING,
                )
                return HttpResponseRedirect(reverse("admin:values_changerequest_change", args=[change_request.pk]))
        elif request.method == "POST" and form.is_valid():
            try:
                reverted = audit_entry_revert(
                    entry=entry,
                    actor=request.user.get_username(),
                    channel=ADMIN_CHANNEL,
                    reason=form.cleaned_data["reason"],
                )
            except (ValidationError, VersionConflict) as error:
                text = " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
                self.message_user(request, f"Not reverted: {text}", messages.ERROR)
                plan = audit_entry_revert_plan(entry=entry)
            else:
                self.message_user(request, f"Reverted entry {entry.pk}: recorded as entry {reverted.pk}.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:audit_auditentry_change", args=[reverted.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Revert entry {entry.pk}",
            "opts": self.opts,
            "entry": entry,
            "plan": plan,
            "changes": [
                (change.name, _shown_or_dash(change.current), _shown_or_dash(change.restored))
                for change in plan.changes
            ],
            "form": form,
            "proposes": proposes,
        }
        return TemplateResponse(request, "admin/audit/auditentry/revert_confirmation.html", context)

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


class RevertForm(forms.Form):
    reason = forms.CharField(
        label="Reason for this revert",
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text='Saved in the history as "revert of entry N: <reason>".',
    )


def _may_revert(request: HttpRequest, entry: AuditEntry, action: str) -> bool:
    model = REVERTIBLE_MODELS.get(entry.object_type)
    if model is None:
        return True  # nothing can be done; the page says why
    codename = get_permission_codename(REVERT_PERMISSIONS[action], model._meta)
    return request.user.has_perm(f"{model._meta.app_label}.{codename}")


def _shown_or_dash(value: Any) -> str:
    return "-" if value is None else json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _json_or_dash(values: dict[str, Any], name: str) -> str:
    return json.dumps(values[name], indent=2, ensure_ascii=False, sort_keys=True) if name in values else "-"
