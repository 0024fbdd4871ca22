"""Admin for value types, overrides and the database cache tier (the history of edits: audit.admin).

Every admin edit of a value type, override, source or source link goes to the history through
`AuditedAdminMixin`, which calls `audit.history.audit_record` once per changed object; the
models' own `clean()` decides what is valid, so the admin only shows their errors on the form.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib import messages
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.db import models, router, transaction
from django.db.models import Count
from django.db.models.deletion import Collector
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.timesince import timesince, timeuntil

from audit.admin import ViewOnlyAdmin, pretty_json
from audit.history import audit_record, object_type_of, snapshot
from core.answers import Answer
from core.durations import format_duration
from sources.models import Source
from values.admin_editors import (
    Editor,
    ISODurationField,
    StructuredErrorsFormMixin,
    context_editor,
    editor_field_classes,
    field_bounds_editor,
    string_list_editor,
    string_map_editor,
    value_editor,
)
from values.change_requests import (
    CHANGE_REQUEST_MODELS,
    ProposedEdit,
    change_request_approve,
    change_request_diff,
    change_request_propose,
    change_request_reject,
    change_requests_enabled,
    changed_keys,
    edit_of,
    shown,
)
from access.principals import APPROVE_PERMISSION
from values.previews import ServedChange, edit_preview, served_now
from values.resolution import answers_known_now
from values.models import ChangeRequest
from values.models import ContextReads, Override, RefreshSchedule, ResolvedValue, ValueRecord, ValueType, ValueTypeSource

logger = logging.getLogger(__name__)

ADMIN_CHANNEL = "admin"
REASON_FIELD = "change_reason"

# What an operator edits and the history records. ResolvedValue is a cache, not an edit.
AUDITED_MODELS = (ValueType, Override, Source, ValueTypeSource)


class IndentedJSONField(forms.JSONField):
    """A JSON form field that shows its value indented, so that nested values stay readable."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


JSON_AS_TEXT = {
    models.JSONField: {
        "form_class": IndentedJSONField,
        "widget": forms.Textarea(attrs={"rows": 8, "cols": 80, "class": "vLargeTextField"}),
    }
}
# JSON that no structured editor fits is text; a duration is ISO 8601, as in the YAML.
FORMFIELD_OVERRIDES = {**JSON_AS_TEXT, models.DurationField: {"form_class": ISODurationField}}


class StructuredEditorsMixin:
    """Gives each JSON field `structured_editors` names its editor (values.admin_editors), and
    each field the human label of `field_labels`; other JSON fields stay text, labelled so."""

    field_labels: dict[str, str] = {}

    def structured_editors(self, request: HttpRequest, obj: models.Model | None) -> dict[str, Editor | None]:
        return {}

    def get_form(self, request: HttpRequest, obj: models.Model | None = None, change: bool = False, **kwargs):
        kwargs["field_classes"] = {
            **editor_field_classes(self.structured_editors(request, obj)),
            **kwargs.get("field_classes", {}),
        }
        kwargs["labels"] = {**self.field_labels, **kwargs.get("labels", {})}
        return super().get_form(request, obj, change, **kwargs)


class ChangeReasonForm(StructuredErrorsFormMixin, forms.ModelForm):
    """An admin form that also asks why: the answer goes into the history with the edit."""

    change_reason = forms.CharField(
        label="Reason for this change",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text="Saved in the history with this change.",
    )


class AuditedAdminMixin:
    """Writes one history entry per object an admin create, update or delete changes.

    That covers the edited object, its inline objects (`save_formset`) and the objects a delete
    cascades to. `before` is always read back from the database, because by `save_model` the
    form has already written the new values into the instance. Nothing changed, no entry.
    """

    form = ChangeReasonForm
    delete_confirmation_template = "admin/audited_delete_confirmation.html"
    delete_selected_confirmation_template = "admin/audited_delete_selected_confirmation.html"
    # Its save buttons post PREVIEW_FIELD where the model's edits are previewed (below).
    change_form_template = "admin/values/audited_change_form.html"

    def get_fieldsets(self, request: HttpRequest, obj: models.Model | None = None):
        # The reason is about the whole edit (inline changes included), so it has its own
        # fieldset after the object's fields instead of wherever the form declared it.
        fieldsets = [
            (name, {**options, "fields": [field for field in options["fields"] if field != REASON_FIELD]})
            for name, options in super().get_fieldsets(request, obj)
        ]
        return [*fieldsets, ("Reason for this change", {"fields": [REASON_FIELD]})]

    def save_model(self, request: HttpRequest, obj: models.Model, form, change: bool) -> None:
        stored = _stored_objects(type(obj), [obj.pk]).get(obj.pk) if change else None
        if stored is not None:
            _keep_untouched_fields(obj, stored, form)
        if self._holds_edits(request):
            # Not saved: held for the preview or a change request; save_related unwinds the save.
            request.held_edits = [ProposedEdit(instance=obj, before=snapshot(stored) if stored is not None else None)]
            return
        super().save_model(request, obj, form, change)
        before = snapshot(stored) if stored is not None else None
        self._record(request, obj, before=before, after=snapshot(obj), reason=_reason_of(form))

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        reason = _reason_of(form)
        forms_by_pk = {each.instance.pk: each for each in formset.initial_forms}
        stored = _stored_objects(formset.model, list(forms_by_pk))
        saved = formset.save(commit=False)
        for obj in formset.deleted_objects:
            self._delete_recorded(request, obj, reason)
        for obj in saved:
            before = None
            if obj.pk in stored:
                _keep_untouched_fields(obj, stored[obj.pk], forms_by_pk[obj.pk])
                before = snapshot(stored[obj.pk])
            obj.save()
            self._record(request, obj, before=before, after=snapshot(obj), reason=reason)
        formset.save_m2m()

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        self._delete_recorded(request, obj, request.POST.get(REASON_FIELD, ""))

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        reason = request.POST.get(REASON_FIELD, "")
        # The bulk delete action runs outside the admin's transaction: all deleted and
        # recorded, or nothing.
        with transaction.atomic(using=router.db_for_write(queryset.model)):
            for obj in queryset:
                self._delete_recorded(request, obj, reason)

    # The save flow: preview, then save or propose -------------------------------------------
    #
    # Edits of value types, source links and overrides (CHANGE_REQUEST_MODELS) are previewed:
    # the form's save buttons post PREVIEW_FIELD, and a valid form is then not saved but shown
    # on a confirmation page (what changes, the validation result, which served answers change);
    # its Confirm posts the same data back with CONFIRMED_FIELD, which saves. Where change
    # requests are on, the confirmed edit is proposed instead (values.change_requests), and every
    # save of these models goes through the confirmation page, which asks for the reason.
    # The save is unwound by raising HeldEdits from save_related, inside the admin's transaction,
    # so that nothing of it is written.

    def _previews_edits(self) -> bool:
        return self.model in CHANGE_REQUEST_MODELS.values()

    def _proposes_edits(self) -> bool:
        return change_requests_enabled() and self._previews_edits()

    def _holds_edits(self, request: HttpRequest) -> bool:
        return self._previews_edits() and request.method == "POST" and (
            self._proposes_edits() or self._is_preview(request)
        )

    def _is_preview(self, request: HttpRequest) -> bool:
        if CONFIRMED_FIELD in request.POST:
            return False
        return PREVIEW_FIELD in request.POST or self._proposes_edits()

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        held = getattr(request, "held_edits", None)
        if held is None:
            return super().save_related(request, form, formsets, change)
        for formset in formsets:
            held.extend(_formset_edits(formset, parent_item=None if change else 0))
        raise HeldEdits(held)

    def changeform_view(self, request: HttpRequest, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except HeldEdits as held:
            if self._is_preview(request) or not request.POST.get(REASON_FIELD, "").strip():
                return self._preview_response(request, held.edits)
            return self._propose_response(request, held.edits)

    def render_change_form(self, request: HttpRequest, context, add=False, change=False, form_url="", obj=None):
        context = {**context, "previews_edits": self._previews_edits(), "preview_field": PREVIEW_FIELD}
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_actions(self, request: HttpRequest):
        actions = super().get_actions(request)
        if self._proposes_edits():
            actions.pop("delete_selected", None)  # each delete is proposed on its own page
        return actions

    def delete_view(self, request: HttpRequest, object_id: str, extra_context=None) -> HttpResponse:
        if request.method != "POST" or not self._proposes_edits():
            return super().delete_view(request, object_id, extra_context)
        obj = self.get_object(request, unquote(object_id))
        if obj is None or not self.has_delete_permission(request, obj):
            return super().delete_view(request, object_id, extra_context)
        return self._propose_response(request, [edit_of(obj, is_delete=True)])

    def _propose_response(self, request: HttpRequest, edits: list[ProposedEdit]) -> HttpResponse:
        try:
            change_request = change_request_propose(
                edits=edits,
                reason=request.POST.get(REASON_FIELD, ""),
                actor=request.user.get_username(),
                channel=ADMIN_CHANNEL,
            )
        except ValidationError as error:
            self.message_user(request, f"Not proposed: {' '.join(error.messages)}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        self.message_user(
            request,
            f"Not applied yet: proposed as change request #{change_request.pk} ({change_request.summary}). "
            "It applies once another operator approves it.",
            messages.WARNING,
        )
        return HttpResponseRedirect(reverse("admin:values_changerequest_change", args=[change_request.pk]))

    def _preview_response(self, request: HttpRequest, edits: list[ProposedEdit]) -> HttpResponse:
        preview = edit_preview(edits=edits)
        reason = request.POST.get(REASON_FIELD, "").strip()
        replayed = [
            (name, value)
            for name, values in request.POST.lists()
            if name not in {"csrfmiddlewaretoken", PREVIEW_FIELD, CONFIRMED_FIELD, REASON_FIELD}
            for value in values
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Preview: {edits[0].instance._meta.verbose_name} {edits[0].instance}",
            "opts": self.opts,
            "preview": preview,
            "diff": [
                (line.object_label, line.field, changed_keys(line.before, line.after), shown(line.before), shown(line.after))
                for line in preview.diff
            ],
            "served": [_served_row(change) for change in preview.served],
            "replayed": replayed,
            "reason": reason,
            "reason_field": REASON_FIELD,
            "confirmed_field": CONFIRMED_FIELD,
            "proposes": self._proposes_edits(),
            # A proposal without a reason comes back here, asked for one.
            "reason_missing": CONFIRMED_FIELD in request.POST and not reason,
        }
        return TemplateResponse(request, "admin/values/edit_preview.html", context)

    def history_view(self, request: HttpRequest, object_id: str, extra_context=None) -> HttpResponse:
        """Our history of the object (the audit entries), not Django's own admin log."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        return redirect(audit_entries_url(obj))

    def _delete_recorded(self, request: HttpRequest, obj: models.Model, reason: str) -> None:
        # Recorded before the delete, which clears the primary keys the entries name; the admin
        # runs this inside a transaction, so a failed delete takes its entries with it.
        for deleted in _audited_deletion_cascade(obj):
            # From the database: a deleted inline's instance may hold the form's edits.
            stored = _stored_objects(type(deleted), [deleted.pk])[deleted.pk]
            self._record(request, deleted, before=snapshot(stored), after=None, reason=reason)
        obj.delete()

    def _record(
        self,
        request: HttpRequest,
        obj: models.Model,
        *,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        reason: str,
    ) -> None:
        if before is not None and before == after:
            return
        audit_record(
            actor=request.user.get_username(),
            channel=ADMIN_CHANNEL,
            instance=obj,
            before=before,
            after=after,
            reason=reason,
        )


# Posted by the save buttons of a previewed form, and by the preview's Confirm (with CONFIRMED_FIELD).
PREVIEW_FIELD = "_preview"
CONFIRMED_FIELD = "_confirmed"


class HeldEdits(Exception):
    """Unwinds the admin's save (and its transaction: nothing of it is written) with the edits."""

    def __init__(self, edits: list[ProposedEdit]):
        self.edits = edits
        super().__init__(f"{len(edits)} edits held")


def _formset_edits(formset, *, parent_item: int | None) -> list[ProposedEdit]:
    """An inline formset's edits (new, changed, deleted objects), none of them saved."""
    forms_by_pk = {each.instance.pk: each for each in formset.initial_forms}
    stored = _stored_objects(formset.model, list(forms_by_pk))
    saved = formset.save(commit=False)
    edits = [
        ProposedEdit(instance=obj, before=snapshot(stored[obj.pk]), is_delete=True)
        for obj in formset.deleted_objects
        if obj.pk in stored
    ]
    for obj in saved:
        if obj.pk in stored:
            _keep_untouched_fields(obj, stored[obj.pk], forms_by_pk[obj.pk])
            edits.append(ProposedEdit(instance=obj, before=snapshot(stored[obj.pk])))
        else:
            edits.append(ProposedEdit(instance=obj, before=None, parent_item=parent_item))
    return edits


def _served_row(change: ServedChange) -> dict[str, Any]:
    served = change.served
    return {
        "context": _context_text(served.context),
        "reads": "-" if served.reads is None else served.reads,
        "tier": served.error or _tier_text(served),
        "sources": ", ".join(f"{name} ({weight:g})" for name, weight in served.sources) or "-",
        "age": f"{timesince(served.fetched_at)} old" if served.fetched_at else "-",
        "expiry": "-" if served.error else _expiry_text(served.expires_at),
        "value": shown(served.value),
        "effect": change.effect,
        "explanation": change.explanation,
        "new_value": shown(change.new_value),
    }


def _tier_text(served) -> str:
    """Where the value was made, and the cache tier that holds it: "fallback (degraded), from l1"."""
    text = served.origin + (" (degraded)" if served.is_degraded else "")
    return text if served.tier == served.origin else f"{text}, from {served.tier}"


def _context_text(context: dict[str, Any]) -> str:
    if not context:
        return "(empty context)"
    return ", ".join(f"{name}={','.join(value) if isinstance(value, list) else value}" for name, value in context.items())


def _expiry_text(expires_at) -> str:
    if expires_at is None:
        return "never"
    now = timezone.now()
    if expires_at <= now:
        return f"expired {timesince(expires_at, now)} ago"
    return f"in {timeuntil(expires_at, now)}"


def audit_entries_url(obj: models.Model) -> str:
    """The audit entry list, filtered to one object's history."""
    query = urlencode({"object_type": object_type_of(obj), "object_id": str(obj.pk)})
    return f"{reverse('admin:audit_auditentry_changelist')}?{query}"


def _reason_of(form: forms.Form) -> str:
    return form.cleaned_data.get(REASON_FIELD, "").strip()


def _stored_objects(model: type[models.Model], pks: list[Any]) -> dict[Any, models.Model]:
    # Locked so that no other edit slips in between reading `before` and saving.
    pks = [pk for pk in pks if pk is not None]
    return {obj.pk: obj for obj in model._default_manager.select_for_update().filter(pk__in=pks)}


def _keep_untouched_fields(obj: models.Model, stored: models.Model, form: forms.BaseForm) -> None:
    # A field the operator left as shown keeps its stored value even where the form cannot show
    # it exactly (the admin's date and time widgets drop microseconds): an unchanged form must
    # change nothing, and so leave no history entry.
    for name in form.fields:
        if name in form.changed_data:
            continue
        try:
            field = obj._meta.get_field(name)
        except FieldDoesNotExist:
            continue  # a form-only field, such as the reason
        if field.concrete and not field.primary_key:
            setattr(obj, field.attname, getattr(stored, field.attname))


def _audited_deletion_cascade(obj: models.Model) -> list[models.Model]:
    """`obj` and every audited object deleting it also deletes (a value type's links, ...)."""
    collector = Collector(using=router.db_for_write(type(obj)))
    collector.collect([obj])
    # Filtered by model first, so that a type's many cached values are never loaded for nothing.
    collected = [
        each
        for model, instances in collector.data.items()
        if issubclass(model, AUDITED_MODELS)
        for each in instances
    ]
    collected += [
        each
        for queryset in collector.fast_deletes
        if issubclass(queryset.model, AUDITED_MODELS)
        for each in queryset
    ]
    return collected


# Human labels where Django's own ("Ttl", "Max staleness") would read like code; "(JSON)" marks
# a field left as JSON text because no form says it better.
VALUE_TYPE_LABELS = {
    "context_keys": "Context keys",
    "update_frequency": "Update frequency",
    "ttl": "TTL",
    "max_staleness": "Maximum staleness",
    "schema": "Schema (JSON)",
    "field_bounds": "Bounds per field",
    "ascending_fields": "Ascending fields",
    "min_ratio": "Minimum ratio to the previous value",
    "max_ratio": "Maximum ratio to the previous value",
    "field_precision": "Rounding per field (JSON)",
    "read_budget": "Read budget",
    "widening_order": "Widening order",
    "is_prediction_enabled": "Forecast when nothing fresher is known",
    "fallback_value": "Emergency fallback",
}
SOURCE_LINK_LABELS = {
    "channels": "Channels covered",
    "request_params": "Request parameters (JSON)",
    "field_mapping": "Field mapping",
}
OVERRIDE_LABELS = {"context_match": "Applies to the context", "value": "Value"}


def _is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(item, str) for item in value.values())


def _is_bounds_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(bounds, dict) and set(bounds) <= {"min", "max"} for bounds in value.values()
    )


def string_list_editor_if_fits(value: Any, item_title: str, help_text: str = "") -> Editor | None:
    """A list-of-names editor, unless the stored value is something else (then JSON text shows it)."""
    return string_list_editor(item_title, help_text) if _is_string_list(value) else None


def string_map_editor_if_fits(value: Any, help_text: str = "") -> Editor | None:
    return string_map_editor(help_text) if _is_string_map(value) else None


def source_link_editors(link: ValueTypeSource | None) -> dict[str, Editor | None]:
    channels = link.channels if link is not None else []
    mapping = link.field_mapping if link is not None else {}
    return {
        "channels": string_list_editor_if_fits(channels, "Channel", "Empty: every channel."),
        "field_mapping": string_map_editor_if_fits(mapping, "Value field to JMESPath expression over the response."),
    }


class ValueTypeSourceInline(admin.TabularInline):
    """The sources feeding a value type; their history is written by the parent's admin."""

    model = ValueTypeSource
    fields = ["source", "tier", "weight", "channels"]
    extra = 0
    formfield_overrides = FORMFIELD_OVERRIDES

    def get_formset(self, request: HttpRequest, obj: ValueType | None = None, **kwargs):
        # One editor for every row: a list of channel names (a row's other values are JSON-free).
        kwargs["field_classes"] = {
            **editor_field_classes({"channels": string_list_editor("Channel", "Empty: every channel.")}),
            **kwargs.get("field_classes", {}),
        }
        kwargs["labels"] = {**SOURCE_LINK_LABELS, **kwargs.get("labels", {})}
        return super().get_formset(request, obj, **kwargs)


class ServedNowMixin:
    """A value type's page opens with what it serves now: the empty context and the contexts
    consumers read most (values.previews.served_now), each with its tier, sources, age and expiry."""

    def get_readonly_fields(self, request: HttpRequest, obj: models.Model | None = None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "served_now", "open_change_requests"] if obj is not None else fields

    def get_fieldsets(self, request: HttpRequest, obj: models.Model | None = None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None:
            return fieldsets
        served = ("Served now", {"fields": ["served_now", "open_change_requests"], "classes": ["served-now"]})
        return [served, *fieldsets]

    @admin.display(description="change requests waiting")
    def open_change_requests(self, value_type: ValueType) -> str:
        waiting = ChangeRequest.objects.filter(
            value_type_key=value_type.key, state__in=[ChangeRequest.State.PENDING, ChangeRequest.State.SCHEDULED]
        )
        links = format_html_join(
            "",
            '<li><a href="{}">{}</a> by {}</li>',
            (
                (reverse("admin:values_changerequest_change", args=[each.pk]), str(each), each.proposed_by)
                for each in waiting[:10]
            ),
        )
        return format_html('<ul class="open-change-requests">{}</ul>', links) if links else "none"

    @admin.display(description="served now (most-read contexts)")
    def served_now(self, value_type: ValueType) -> str:
        try:
            served = served_now(value_type=value_type)
        except Exception:  # noqa: BLE001 - the page must open even when reading fails: shown, logged
            logger.exception("value type page: %s could not be read", value_type.key, extra={"value_type": value_type.key})
            return "unavailable"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            (
                (row["context"], row["reads"], row["tier"], row["sources"], row["age"], row["expiry"], row["value"])
                for row in (_served_row(ServedChange(each, "", "")) for each in served)
            ),
        )
        return format_html(
            '<table class="served-now"><thead><tr><th>context</th><th>reads</th><th>tier</th><th>sources</th>'
            "<th>age</th><th>expires</th><th>value</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )


@admin.register(ValueType)
class ValueTypeAdmin(ServedNowMixin, StructuredEditorsMixin, AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["key", "aliases", "current_answer", "update_frequency_iso", "ttl_iso", "source_count"]
    search_fields = ["key", "aliases", "description"]
    readonly_fields = ["version", "created_at", "updated_at"]
    inlines = [ValueTypeSourceInline]
    formfield_overrides = FORMFIELD_OVERRIDES
    field_labels = VALUE_TYPE_LABELS
    fieldsets = [
        (None, {"fields": ["key", "aliases", "description", "context_keys"]}),
        ("Schedule", {"fields": ["update_frequency", "ttl", "max_staleness"]}),
        (
            "Rules every value obeys",
            {"fields": ["schema", "field_bounds", "ascending_fields", "min_ratio", "max_ratio"]},
        ),
        ("Blending the sources of a tier", {"fields": ["blend_method", "quorum", "field_precision"]}),
        (
            "When the sources are slow or down",
            {"fields": ["read_budget", "widening_order", "is_prediction_enabled"]},
        ),
        ("Emergency fallback", {"fields": ["fallback_value"]}),
        ("Bookkeeping", {"fields": ["version", "created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return super().get_queryset(request).annotate(source_count=Count("source_links"))

    def structured_editors(self, request: HttpRequest, obj: ValueType | None) -> dict[str, Editor | None]:
        # The fallback's editor follows the schema and bounds stored now; an edit of the schema
        # takes effect in the editor after saving, while the server checks the fallback against
        # the new schema at once.
        editors: dict[str, Editor | None] = {
            "aliases": string_list_editor_if_fits(obj.aliases if obj else [], "Alias"),
            "context_keys": string_list_editor_if_fits(obj.context_keys if obj else [], "Context key"),
            "ascending_fields": string_list_editor_if_fits(obj.ascending_fields if obj else [], "Field"),
            "widening_order": string_list_editor_if_fits(
                obj.widening_order if obj else [], "Context key", "Dropped first to last."
            ),
            "field_bounds": field_bounds_editor(obj.field_bounds if obj else {})
            if _is_bounds_map(obj.field_bounds if obj else {})
            else None,
        }
        if obj is not None:
            editors["fallback_value"] = value_editor(obj.schema, obj.field_bounds, obj.fallback_value)
        return editors

    def get_changelist_instance(self, request: HttpRequest):
        # What each row's type serves now, read for the whole page at once (one L3 query), and
        # from what is known: a page of the changelist never calls a source.
        changelist = super().get_changelist_instance(request)
        texts = _current_answer_texts([value_type.key for value_type in changelist.result_list])
        for value_type in changelist.result_list:  # the page's rows, kept by the queryset
            value_type.current_answer_text = texts[value_type.key]
        return changelist

    @admin.display(description="served now (empty context)")
    def current_answer(self, value_type: ValueType) -> str:
        return getattr(value_type, "current_answer_text", "-")

    @admin.display(description="update frequency", ordering="update_frequency")
    def update_frequency_iso(self, value_type: ValueType) -> str:
        return format_duration(value_type.update_frequency)

    @admin.display(description="TTL", ordering="ttl")
    def ttl_iso(self, value_type: ValueType) -> str:
        return format_duration(value_type.ttl)

    @admin.display(description="sources", ordering="source_count")
    def source_count(self, value_type: ValueType) -> int:
        return value_type.source_count


def _current_answer_texts(keys: list[str]) -> dict[str, str]:
    """Each type's tier and age of the value served for the empty context, e.g. "l2, 4 minutes
    old", or "not read yet" when no cache tier holds one (its next read fetches it)."""
    try:
        answers = answers_known_now(keys)
    except Exception:  # noqa: BLE001 - the values' failure must not break the page: shown, logged
        logger.exception("value type changelist: the values served now could not be read")
        return dict.fromkeys(keys, "unavailable")
    return {key: _answer_text(answer) for key, answer in answers.items()}


def _answer_text(answer: Answer | None) -> str:
    if answer is None:
        return "not read yet"
    provenance = answer.provenance
    text = provenance.tier
    if provenance.fetched_at is not None:
        text += f", {timesince(provenance.fetched_at)} old"
    if provenance.is_degraded:
        text += " (degraded)"
    return text


@admin.register(ValueTypeSource)
class ValueTypeSourceAdmin(StructuredEditorsMixin, AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["value_type", "source", "tier", "weight", "channels"]
    list_filter = ["tier", "source", "value_type"]
    search_fields = ["value_type__key", "source__name"]
    formfield_overrides = FORMFIELD_OVERRIDES
    field_labels = SOURCE_LINK_LABELS

    def structured_editors(self, request: HttpRequest, obj: ValueTypeSource | None) -> dict[str, Editor | None]:
        return source_link_editors(obj)

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("value_type", "source")


@admin.register(Override)
class OverrideAdmin(StructuredEditorsMixin, AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["value_type", "context_match", "state", "author", "starts_at", "expires_at", "reason"]
    list_filter = ["value_type"]
    search_fields = ["value_type__key", "reason", "author"]
    list_select_related = ["value_type"]
    readonly_fields = ["author", "version", "created_at", "updated_at"]
    fields = [
        "value_type", "context_match", "value", "reason", "starts_at", "expires_at",
        "author", "version", "created_at", "updated_at",
    ]  # fmt: skip
    formfield_overrides = FORMFIELD_OVERRIDES
    field_labels = OVERRIDE_LABELS

    def structured_editors(self, request: HttpRequest, obj: Override | None) -> dict[str, Editor | None]:
        # The value's editor is its type's: the stored one's, or on the add page the type chosen
        # (posted, or given in the address by the links of `get_form`'s help).
        value_type = obj.value_type if obj is not None else _chosen_value_type(request)
        if value_type is None:
            return {}
        value = obj.value if obj is not None else value_type.fallback_value
        context_match = obj.context_match if obj is not None else {}
        return {
            "value": value_editor(value_type.schema, value_type.field_bounds, value),
            "context_match": context_editor(value_type.context_keys) if _is_string_map(context_match) else None,
        }

    def get_form(self, request: HttpRequest, obj: Override | None = None, change: bool = False, **kwargs):
        if obj is None and _chosen_value_type(request) is None:
            links = format_html_join(
                ", ",
                '<a href="?{}">{}</a>',
                ((urlencode({"value_type": pk}), key) for pk, key in ValueType.objects.values_list("pk", "key")),
            )
            kwargs["help_texts"] = {
                "value": format_html("As JSON. For a form with each field and its bounds, choose the type first: {}.", links),
                **kwargs.get("help_texts", {}),
            }
        return super().get_form(request, obj, change, **kwargs)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        # A new override starts from its type's emergency fallback: edit the numbers that differ.
        initial = super().get_changeform_initial_data(request)
        value_type = _chosen_value_type(request)
        if value_type is not None:
            initial.setdefault("value", value_type.fallback_value)
        return initial

    @admin.display(description="state")
    def state(self, override: Override) -> str:
        """active, scheduled (starts later) or expired, now."""
        now = timezone.now()
        if override.expires_at is not None and override.expires_at <= now:
            return "expired"
        if override.starts_at > now:
            return "scheduled"
        return "active"

    def save_model(self, request: HttpRequest, obj: Override, form, change: bool) -> None:
        # The author is whoever wrote the override; later editors are in its history.
        if not change:
            obj.author = request.user.get_username()
        super().save_model(request, obj, form, change)


def _chosen_value_type(request: HttpRequest) -> ValueType | None:
    """The value type an override's add page is for: posted, or given in the address."""
    chosen = request.POST.get("value_type") or request.GET.get("value_type") or ""
    return ValueType.objects.filter(pk=int(chosen)).first() if chosen.isdigit() else None


@admin.register(ResolvedValue)
class ResolvedValueAdmin(ViewOnlyAdmin):
    """The database cache tier, for looking only: it is written by resolution, not by hand."""

    list_display = ["value_type", "context_key", "fetched_at", "expires_at"]
    list_filter = ["value_type"]
    search_fields = ["value_type__key", "context_key"]
    list_select_related = ["value_type"]
    fields = [
        "value_type", "context_key", "context_pretty", "value_pretty", "provenance_pretty",
        "fingerprint", "fetched_at", "expires_at",
    ]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="context")
    def context_pretty(self, resolved: ResolvedValue) -> str:
        return pretty_json(resolved.context)

    @admin.display(description="value")
    def value_pretty(self, resolved: ResolvedValue) -> str:
        return pretty_json(resolved.value)

    @admin.display(description="provenance")
    def provenance_pretty(self, resolved: ResolvedValue) -> str:
        return pretty_json(resolved.provenance)


@admin.register(ValueRecord)
class ValueRecordAdmin(ResolvedValueAdmin):
    """The history of fetched values, for looking only: appended by resolution."""

    list_display = ["value_type", "context_key", "fetched_at"]
    fields = ["value_type", "context_key", "context_pretty", "value_pretty", "provenance_pretty", "fetched_at"]
    readonly_fields = fields


@admin.register(ContextReads)
class ContextReadsAdmin(ViewOnlyAdmin):
    """Which contexts consumers read most, and how their background refreshes go."""

    list_display = ["value_type", "context_key", "reads", "last_read_at", "last_refreshed_at", "failures", "next_refresh_at"]
    list_filter = ["value_type"]
    search_fields = ["value_type__key", "context_key", "last_error"]
    list_select_related = ["value_type"]
    ordering = ["-reads"]
    fields = [
        "value_type", "context_key", "context", "reads", "last_read_at", "last_refreshed_at",
        "failures", "last_error", "next_refresh_at", "queued_until",
    ]  # fmt: skip
    readonly_fields = fields


@admin.register(RefreshSchedule)
class RefreshScheduleAdmin(ViewOnlyAdmin):
    """When each value type's refresh round last ran (its cadence is the type's update frequency)."""

    list_display = ["value_type", "last_dispatched_at", "last_refreshed_at"]
    list_select_related = ["value_type"]
    fields = ["value_type", "last_dispatched_at", "last_refreshed_at"]
    readonly_fields = fields


# Change requests --------------------------------------------------------------------------------


class DecisionForm(forms.Form):
    note = forms.CharField(
        label="Note", required=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text="Why you approve or reject it (required to reject).",
    )  # fmt: skip
    apply_at = forms.DateTimeField(
        label="Apply at",
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Empty: apply on approval. A later time: scheduled, applied then by the worker (UTC).",
    )


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ViewOnlyAdmin):
    """Change requests: read here by everyone who may see them; approved (now or at a time) or
    rejected by a user with the values.approve_changerequest permission who did not propose it
    (values.change_requests enforces both)."""

    list_display = ["id", "summary", "value_type_key", "state", "proposed_by", "created_at", "decided_by", "apply_at"]
    list_filter = ["state", "value_type_key", "channel"]
    search_fields = ["summary", "value_type_key", "reason", "proposed_by", "decided_by"]
    fields = [
        "summary", "value_type_key", "state", "reason", "proposed_by", "channel", "created_at", "diff_table",
        "decided_by", "decided_at", "decision_note", "apply_at", "applied_at", "failure", "items", "updated_at",
    ]  # fmt: skip
    readonly_fields = fields
    change_form_template = "admin/values/changerequest/change_form.html"

    def get_urls(self):
        decide = path(
            "<path:object_id>/decide/", self.admin_site.admin_view(self.decide_view), name="values_changerequest_decide"
        )
        return [decide, *super().get_urls()]

    @admin.display(description="changes")
    def diff_table(self, change_request: ChangeRequest) -> str:
        rows = format_html_join(
            "",
            '<tr><td>{}</td><th scope="row">{}<br><strong>{}</strong></th><td><pre>{}</pre></td>'
            "<td><mark><pre>{}</pre></mark></td></tr>",
            (
                (line.object_label, line.field, changed_keys(line.before, line.after), shown(line.before), shown(line.after))
                for line in change_request_diff(change_request)
            ),
        )
        return format_html(
            '<table class="change-request-diff"><thead><tr><th>object</th><th>field</th><th>when proposed</th>'
            "<th>proposed</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def change_view(self, request: HttpRequest, object_id: str, form_url="", extra_context=None):
        change_request = self.get_object(request, unquote(object_id))
        extra_context = {**(extra_context or {})}
        if change_request is not None:
            extra_context.update(
                decision_form=DecisionForm(),
                may_decide=change_request.state == ChangeRequest.State.PENDING
                and request.user.has_perm(APPROVE_PERMISSION),
                is_proposer=change_request.proposed_by == request.user.get_username(),
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def decide_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: approve (`_approve`, now or at `apply_at`) or reject (`_reject`, with a note)."""
        change_request = self.get_object(request, unquote(object_id))
        if change_request is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if request.method != "POST" or not request.user.has_perm(APPROVE_PERMISSION):
            raise PermissionDenied
        back = HttpResponseRedirect(reverse("admin:values_changerequest_change", args=[change_request.pk]))
        form = DecisionForm(request.POST)
        if not form.is_valid():
            problems = " ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
            self.message_user(request, f"Not decided: {problems}", messages.ERROR)
            return back
        actor, note = request.user.get_username(), form.cleaned_data["note"]
        try:
            if "_reject" in request.POST:
                decided = change_request_reject(change_request=change_request, actor=actor, note=note)
            else:
                decided = change_request_approve(
                    change_request=change_request, actor=actor, note=note, apply_at=form.cleaned_data["apply_at"]
                )
        except ValidationError as error:
            self.message_user(request, f"Not decided: {' '.join(error.messages)}", messages.ERROR)
            return back
        self.message_user(request, f"Change request #{decided.pk} {_decision_text(decided)}.", _decision_level(decided))
        return back


def _decision_text(decided: ChangeRequest) -> str:
    if decided.state == ChangeRequest.State.SCHEDULED:
        return f"approved, to be applied at {decided.apply_at:%Y-%m-%d %H:%M} UTC"
    if decided.state == ChangeRequest.State.FAILED:
        return f"approved but not applied: {decided.failure}"
    return "rejected" if decided.state == ChangeRequest.State.REJECTED else "approved and applied"


def _decision_level(decided: ChangeRequest) -> int:
    return messages.ERROR if decided.state == ChangeRequest.State.FAILED else messages.SUCCESS
