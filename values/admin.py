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
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db import models, router, transaction
from django.db.models import Count
from django.db.models.deletion import Collector
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.timesince import timesince
from django_jsonform.widgets import JSONFormWidget

from audit.admin import ViewOnlyAdmin, pretty_json
from audit.history import audit_record, object_type_of, snapshot
from core.durations import format_duration
from sources.models import Source
from values import get_value
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


class ChangeReasonForm(forms.ModelForm):
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


# django-jsonform 2.23 draws a form from a schema only when it knows every keyword in it: it
# refuses an object without "properties" (a map given only by "additionalProperties") and an
# array without a single "items" schema. Other schemas are edited as plain JSON. The editor
# does not enforce the validation keywords; the model's clean() does, on the server.
_EDITOR_KEYWORDS = {
    "$schema", "type", "title", "description", "default", "properties", "additionalProperties",
    "required", "items", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
    "maxLength", "pattern", "format", "enum",
}  # fmt: skip
_EDITOR_SCALAR_TYPES = {"string", "number", "integer", "boolean"}


def form_editor_supports(schema: Any, *, is_top_level: bool = True) -> bool:
    """Whether django-jsonform's editor can edit every value of `schema`."""
    if not isinstance(schema, dict) or set(schema) - _EDITOR_KEYWORDS:
        return False
    schema_type = schema.get("type")
    if schema_type == "object":
        properties = schema.get("properties")
        extra = schema.get("additionalProperties", False)
        return (
            isinstance(properties, dict)
            and all(form_editor_supports(each, is_top_level=False) for each in properties.values())
            and (isinstance(extra, bool) or form_editor_supports(extra, is_top_level=False))
        )
    if schema_type == "array":
        return form_editor_supports(schema.get("items"), is_top_level=False)
    return not is_top_level and schema_type in _EDITOR_SCALAR_TYPES


class ValueTypeSourceInline(admin.TabularInline):
    """The sources feeding a value type; their history is written by the parent's admin."""

    model = ValueTypeSource
    fields = ["source", "tier", "weight", "channels"]
    extra = 0
    formfield_overrides = JSON_AS_TEXT


@admin.register(ValueType)
class ValueTypeAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["key", "aliases", "current_answer", "update_frequency_iso", "ttl_iso", "source_count"]
    search_fields = ["key", "aliases", "description"]
    readonly_fields = ["version", "created_at", "updated_at"]
    inlines = [ValueTypeSourceInline]
    formfield_overrides = JSON_AS_TEXT
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

    def get_form(self, request: HttpRequest, obj: ValueType | None = None, change: bool = False, **kwargs):
        # The editor follows the schema stored now; an edit of the schema takes effect in the
        # editor after saving, while the server checks the fallback against the new schema.
        if obj is not None and form_editor_supports(obj.schema):
            editor = JSONFormWidget(schema=obj.schema)
            kwargs["widgets"] = {**kwargs.get("widgets", {}), "fallback_value": editor}
        return super().get_form(request, obj, change, **kwargs)

    def get_changelist_instance(self, request: HttpRequest):
        changelist = super().get_changelist_instance(request)
        for value_type in changelist.result_list:  # the page's rows, kept by the queryset
            value_type.current_answer_text = _current_answer_text(value_type.key)
        return changelist

    @admin.display(description="served now (empty context)")
    def current_answer(self, value_type: ValueType) -> str:
        return getattr(value_type, "current_answer_text", "-")

    @admin.display(description="update frequency", ordering="update_frequency")
    def update_frequency_iso(self, value_type: ValueType) -> str:
        return format_duration(value_type.update_frequency)

    @admin.display(description="ttl", ordering="ttl")
    def ttl_iso(self, value_type: ValueType) -> str:
        return format_duration(value_type.ttl)

    @admin.display(description="sources", ordering="source_count")
    def source_count(self, value_type: ValueType) -> int:
        return value_type.source_count


def _current_answer_text(key: str) -> str:
    """The tier and age of the value served for the empty context, e.g. "primary, 4 minutes old"."""
    try:
        answer = get_value(key)
    except Exception:  # noqa: BLE001 - one value's failure must not break the page: shown, logged
        logger.exception("value type changelist: %s could not be read", key, extra={"value_type": key})
        return "unavailable"
    provenance = answer.provenance
    text = provenance.tier
    if provenance.fetched_at is not None:
        text += f", {timesince(provenance.fetched_at)} old"
    if provenance.is_degraded:
        text += " (degraded)"
    return text


@admin.register(ValueTypeSource)
class ValueTypeSourceAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["value_type", "source", "tier", "weight", "channels"]
    list_filter = ["tier", "source", "value_type"]
    search_fields = ["value_type__key", "source__name"]
    formfield_overrides = JSON_AS_TEXT

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("value_type", "source")


@admin.register(Override)
class OverrideAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["value_type", "context_match", "state", "author", "starts_at", "expires_at", "reason"]
    list_filter = ["value_type"]
    search_fields = ["value_type__key", "reason", "author"]
    list_select_related = ["value_type"]
    readonly_fields = ["author", "version", "created_at", "updated_at"]
    fields = [
        "value_type", "context_match", "value", "reason", "starts_at", "expires_at",
        "author", "version", "created_at", "updated_at",
    ]  # fmt: skip
    formfield_overrides = JSON_AS_TEXT

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
