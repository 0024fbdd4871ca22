"""The admin, through HTTP as an operator uses it: pages render, the models' rules refuse bad
values on the form, and every edit leaves exactly one history entry per changed object."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django import forms
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.urls import reverse
from django.utils import timezone
from django_jsonform.widgets import JSONFormWidget

from sources.models import Source
from values.models import ValueTypeSource
from values.models import ContextReads, Override, RefreshSchedule, ResolvedValue, ValueRecord, ValueType
from audit.models import AuditEntry
from values.change_requests import change_request_propose, edit_of

pytestmark = pytest.mark.django_db

PLANTED_SECRET = "planted-secret-value-123"

GOOD_MULTIPLIERS = {
    "technology": 1.25,
    "healthcare": 1.1,
    "finance": 1.3,
    "manufacturing": 1.0,
    "retail": 1.1,
    "services": 1.0,
}


# --- helpers -------------------------------------------------------------------------------


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def field_post_data(bound_field) -> dict[str, str]:
    """What a browser would post for one field of a rendered form, left as it was shown."""
    data = widget_post_data(bound_field.field.widget, bound_field.html_name, bound_field.value())
    if bound_field.field.show_hidden_initial:
        # Fields with a callable default also post the value shown, to tell whether it changed.
        hidden = bound_field.field.hidden_widget()
        data.update(widget_post_data(hidden, bound_field.html_initial_name, bound_field.initial))
    return data


def widget_post_data(widget, name: str, value) -> dict[str, str]:
    if isinstance(widget, forms.MultiWidget):
        parts = value if isinstance(value, (list, tuple)) else widget.decompress(value)
        return {
            f"{name}{suffix}": subwidget.format_value(part) or ""
            for suffix, subwidget, part in zip(widget.widgets_names, widget.widgets, parts)
        }
    if isinstance(widget, forms.CheckboxInput):
        return {name: "on"} if value else {}
    if value is None:
        return {name: ""}
    if isinstance(widget, (forms.Select, forms.HiddenInput)) or not isinstance(value, str):
        return {name: str(value)}
    return {name: value}


def form_post_data(form) -> dict[str, str]:
    data: dict[str, str] = {}
    for name in form.fields:
        data.update(field_post_data(form[name]))
    return data


def rendered_post_data(response, **changes) -> dict[str, str]:
    """The POST a browser would send for a rendered admin form, with `changes` applied.

    JSON values in `changes` may be given as Python data; they are posted as JSON text.
    """
    data = form_post_data(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update(form_post_data(formset.management_form))
        for form in formset.forms:
            data.update(form_post_data(form))
    for name, value in changes.items():
        data[name] = value if isinstance(value, str) else json.dumps(value)
    return data


def post_change(client, obj, **changes):
    """Open the object's change form, then post it back with `changes`."""
    url = admin_url(type(obj), "change", obj.pk)
    page = client.get(url)
    assert page.status_code == 200
    return client.post(url, rendered_post_data(page, **changes))


def post_add(client, model, **changes):
    url = admin_url(model, "add")
    page = client.get(url)
    assert page.status_code == 200
    return client.post(url, rendered_post_data(page, **changes))


def form_errors(response) -> dict[str, list[str]]:
    errors = dict(response.context["adminform"].form.errors)
    for inline in response.context["inline_admin_formsets"]:
        for index, form_error in enumerate(inline.formset.errors):
            for name, messages in form_error.items():
                errors[f"{inline.formset.prefix}-{index}-{name}"] = messages
    return errors


def admin_entries(**filters):
    return AuditEntry.objects.filter(channel="admin", **filters)


def link_of(key: str) -> ValueTypeSource:
    return ValueTypeSource.objects.filter(value_type__key=key).order_by("pk").first()


@pytest.fixture
def override(synced):
    return Override.objects.create(
        value_type=ValueType.objects.get(key="industry_multipliers"),
        context_match={"region": "us"},
        value=GOOD_MULTIPLIERS,
        reason="Q3 market shift",
        author="someone",
    )


@pytest.fixture
def resolved_value(synced):
    now = timezone.now()
    value_type = ValueType.objects.get(key="industry_multipliers")
    ValueRecord.objects.create(
        value_type=value_type,
        context_key="region=us",
        context={"region": "us"},
        value=value_type.fallback_value,
        provenance={"tier": "primary"},
        fetched_at=now,
    )
    return ResolvedValue.objects.create(
        value_type=value_type,
        context_key="region=us",
        context={"region": "us"},
        value=value_type.fallback_value,
        provenance={"tier": "fallback"},
        fetched_at=now,
        expires_at=now + timedelta(hours=1),
    )


# --- pages render --------------------------------------------------------------------------

# Every model of ours the admin shows: a model registered later is covered without a change here.
ALL_MODELS = sorted(
    (model for model in admin.site._registry if model._meta.app_label in ("values", "sources")),
    key=lambda model: model.__name__,
)
ADDABLE_MODELS = [ValueType, Override, Source, ValueTypeSource]


@pytest.fixture
def refresh_records(synced):
    """One row of each refresh record, written as the refresh machinery would."""
    value_type = ValueType.objects.get(key="budget_thresholds")
    RefreshSchedule.objects.create(value_type=value_type, last_dispatched_at=timezone.now())
    ContextReads.objects.create(value_type=value_type, context_key="region=us", context={"region": "us"}, reads=3)
    # ... and of the source call record (sources.health), written as every attempt writes it.
    from sources.health import call_record

    call_record(source_name="market_research_api", outcome="success", seconds=0.2)
    # ... and a change request, proposed as an operator's edit is where change requests are on.
    value_type.fallback_value = {**value_type.fallback_value, "small_threshold": 5500}
    change_request_propose(edits=[edit_of(value_type)], reason="admin pages test", actor="someone", channel="admin")


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_changelist__synced_database__renders(admin_client, synced, override, resolved_value, refresh_records, model):
    response = admin_client.get(admin_url(model, "changelist"))

    assert response.status_code == 200


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_change_form__existing_object__renders(admin_client, synced, override, resolved_value, refresh_records, model):
    obj = model.objects.order_by("pk").first()

    response = admin_client.get(admin_url(model, "change", obj.pk))

    assert response.status_code == 200


@pytest.mark.parametrize("model", ADDABLE_MODELS, ids=lambda model: model.__name__)
def test_add_form__addable_model__renders_with_reason_field(admin_client, synced, model):
    response = admin_client.get(admin_url(model, "add"))

    assert response.status_code == 200
    assert "Reason for this change" in response.content.decode()


@pytest.mark.parametrize("model", [ValueType, Override, Source, ValueTypeSource], ids=lambda m: m.__name__)
def test_delete_confirmation__audited_model__renders_with_reason_field(
    admin_client, synced, override, model
):
    # A source still linked to value types is protected from deletion: take one that is not.
    candidates = model.objects.filter(value_type_links=None) if model is Source else model.objects.all()
    obj = candidates.order_by("pk").first() or Source.objects.create(
        name="unused", kind="http_json", base_url="https://example.com"
    )

    response = admin_client.get(admin_url(model, "delete", obj.pk))

    assert response.status_code == 200
    assert 'name="change_reason"' in response.content.decode()


# Shown under another name, or set by the admin itself rather than typed in.
SHOWN_DIFFERENTLY = {
    ResolvedValue: {"context", "value", "provenance"},
    ValueRecord: {"context", "value", "provenance"},
    AuditEntry: {"before", "after"},
}


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_change_form__every_model_field__shown(admin_client, synced, override, resolved_value, refresh_records, model):
    # A field added to a model must not silently go missing from an admin with listed fields.
    obj = model.objects.order_by("pk").first()
    model_admin = admin.site._registry[model]
    request = admin_client.get(admin_url(model, "change", obj.pk)).wsgi_request

    shown = set(flatten_fieldsets(model_admin.get_fieldsets(request, obj)))

    editable = {field.name for field in model._meta.concrete_fields if not field.primary_key}
    assert editable - shown - SHOWN_DIFFERENTLY.get(model, set()) == set()


def test_value_type_changelist__search_by_alias__finds_the_type(admin_client, synced):
    response = admin_client.get(admin_url(ValueType, "changelist"), {"q": "budget_classification"})

    assert [value_type.key for value_type in response.context["cl"].result_list] == ["budget_thresholds"]


# --- the fallback editor -------------------------------------------------------------------


def test_value_type_change__schema_with_properties__fallback_uses_schema_editor(admin_client, synced):
    value_type = ValueType.objects.get(key="budget_thresholds")

    response = admin_client.get(admin_url(ValueType, "change", value_type.pk))

    field = response.context["adminform"].form.fields["fallback_value"]
    assert isinstance(field.widget, JSONFormWidget)
    # Drawn from the stored schema (with labels and bounds added: tests/admin/test_editors.py).
    assert list(field.widget.get_schema()["properties"]) == list(value_type.schema["properties"])
    assert "data-django-jsonform" in response.content.decode()


@pytest.mark.parametrize("key", ["industry_multipliers", "channel_performance"])
def test_value_type_change__map_schema__fallback_uses_schema_editor_with_current_keys(admin_client, synced, key):
    value_type = ValueType.objects.get(key=key)

    response = admin_client.get(admin_url(ValueType, "change", value_type.pk))

    field = response.context["adminform"].form.fields["fallback_value"]
    assert isinstance(field.widget, JSONFormWidget)
    assert set(field.widget.get_schema()["properties"]) == set(value_type.fallback_value)
    assert "data-django-jsonform" in response.content.decode()


def test_value_type_change__schema_the_editor_cannot_draw__fallback_is_plain_json_text(admin_client, synced):
    value_type = ValueType.objects.create(
        key="either", schema={"type": "object", "additionalProperties": {"oneOf": [{"type": "number"}, {"type": "string"}]}},
        fallback_value={"a": 1}, update_frequency=timedelta(days=1), ttl=timedelta(hours=1), max_staleness=timedelta(days=1),
    )  # fmt: skip

    response = admin_client.get(admin_url(ValueType, "change", value_type.pk))

    field = response.context["adminform"].form.fields["fallback_value"]
    assert isinstance(field.widget, forms.Textarea)
    assert 'name="fallback_value"' in response.content.decode()


# --- bad fallbacks are refused -------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "fallback", "expected_error"),
    [
        (
            "industry_multipliers",
            {**GOOD_MULTIPLIERS, "technology": 5.0},
            "technology: 5.0 is above the maximum 3.0",
        ),
        (
            "budget_thresholds",
            {
                "micro_threshold": 500,
                "small_threshold": 50000,
                "medium_threshold": 5000,
                "large_threshold": 500000,
                "enterprise_threshold": 2000000,
            },
            "medium_threshold (5000) must be above small_threshold (50000)",
        ),
        (
            "industry_multipliers",
            {**GOOD_MULTIPLIERS, "retail": "high"},
            "retail: &#x27;high&#x27; is not of type",
        ),
        ("industry_multipliers", "not json {", "Enter a valid JSON."),
    ],
    ids=["breaks_bounds", "thresholds_not_ascending", "wrong_type", "not_json"],
)
def test_value_type_change__bad_fallback__refused_with_error_on_form(
    admin_client, synced, key, fallback, expected_error
):
    value_type = ValueType.objects.get(key=key)
    stored_fallback = value_type.fallback_value

    response = post_change(admin_client, value_type, fallback_value=fallback, change_reason="try it")

    assert response.status_code == 200
    assert "fallback_value" in form_errors(response)
    assert expected_error in response.content.decode()
    value_type.refresh_from_db()
    assert value_type.fallback_value == stored_fallback
    assert not admin_entries().exists()


@pytest.mark.parametrize(
    ("changes", "field", "expected_error"),
    [
        ({"widening_order": ["colour"]}, "widening_order", "Name each of the context keys (region, industry) at most once."),
        ({"widening_order": ["region", "region"]}, "widening_order", "Must not repeat an entry."),
        ({"read_budget": "11"}, "read_budget", "less than or equal to 0:00:10"),
    ],
    ids=["unknown_context_key", "repeated_key", "read_budget_too_long"],
)
def test_value_type_change__bad_widening_or_read_budget__refused_with_error_on_form(
    admin_client, synced, changes, field, expected_error
):
    value_type = ValueType.objects.get(key="budget_thresholds")
    stored = (value_type.widening_order, value_type.read_budget)

    response = post_change(admin_client, value_type, change_reason="try it", **changes)

    assert response.status_code == 200
    assert field in form_errors(response)
    assert expected_error in " ".join(form_errors(response)[field])
    value_type.refresh_from_db()
    assert (value_type.widening_order, value_type.read_budget) == stored
    assert not admin_entries().exists()


@pytest.mark.parametrize(
    ("precision", "expected_error"),
    [
        ({"*": {"decimals": 2, "significant": 4}}, "*: give exactly one of decimals or significant"),
        ({"*": {"decimals": 40}}, "*.decimals: must be a whole number from 0 to 15, not 40"),
        (["*", 2], "must be a mapping of field pattern to a precision"),
    ],
    ids=["two_precisions", "too_many_decimals", "not_a_mapping"],
)
def test_value_type_change__bad_precision__refused_with_error_on_form(admin_client, synced, precision, expected_error):
    value_type = ValueType.objects.get(key="budget_thresholds")
    stored = value_type.field_precision

    response = post_change(admin_client, value_type, field_precision=precision, change_reason="try it")

    assert response.status_code == 200
    assert expected_error in " ".join(form_errors(response)["field_precision"])
    value_type.refresh_from_db()
    assert value_type.field_precision == stored
    assert not admin_entries().exists()


def test_value_type_change__good_precision__saved_with_one_audit_entry(admin_client, synced):
    value_type = ValueType.objects.get(key="budget_thresholds")

    response = post_change(
        admin_client, value_type, field_precision={"*": {"decimals": 0}}, change_reason="Whole dollars are enough"
    )

    assert response.status_code == 302, form_errors(response)
    value_type.refresh_from_db()
    assert value_type.field_precision == {"*": {"decimals": 0}}
    [entry] = admin_entries()
    assert (entry.before["field_precision"], entry.after["field_precision"]) == ({"*": {"decimals": 2}}, {"*": {"decimals": 0}})


# --- good edits are saved and recorded -----------------------------------------------------


def test_value_type_change__good_fallback__saved_with_one_audit_entry(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")
    stored_fallback = value_type.fallback_value

    response = post_change(
        admin_client, value_type, fallback_value=GOOD_MULTIPLIERS, change_reason="Tech demand is up"
    )

    assert response.status_code == 302, form_errors(response)
    value_type.refresh_from_db()
    assert value_type.fallback_value == GOOD_MULTIPLIERS
    [entry] = admin_entries()
    assert (entry.actor, entry.channel, entry.action) == ("admin", "admin", "update")
    assert (entry.object_type, entry.object_id) == ("values.valuetype", str(value_type.pk))
    assert entry.before["fallback_value"] == stored_fallback
    assert entry.after["fallback_value"] == GOOD_MULTIPLIERS
    assert entry.reason == "Tech demand is up"


def test_value_type_change__schema_editor_post__saved(admin_client, synced):
    value_type = ValueType.objects.get(key="budget_thresholds")
    # What django-jsonform's editor posts: the whole value as one JSON string.
    thresholds = {**value_type.fallback_value, "micro_threshold": 750}

    response = post_change(admin_client, value_type, fallback_value=json.dumps(thresholds))

    assert response.status_code == 302, form_errors(response)
    value_type.refresh_from_db()
    assert value_type.fallback_value == thresholds
    assert admin_entries(object_type="values.valuetype").count() == 1


def test_value_type_change__nothing_changed__no_audit_entry(admin_client, synced):
    value_type = ValueType.objects.get(key="channel_performance")

    response = post_change(admin_client, value_type, change_reason="just looking")

    assert response.status_code == 302, form_errors(response)
    assert not admin_entries().exists()


def test_value_type_history__after_admin_edit__shows_our_audit_entry(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")
    post_change(admin_client, value_type, fallback_value=GOOD_MULTIPLIERS, change_reason="Tech demand is up")
    entry = admin_entries().get()

    response = admin_client.get(admin_url(ValueType, "history", value_type.pk), follow=True)

    assert response.status_code == 200
    listed = list(response.context["cl"].result_list)
    assert entry in listed
    assert all(
        (each.object_type, each.object_id) == ("values.valuetype", str(value_type.pk)) for each in listed
    )


def test_value_type_add__valid_type__saved_with_create_entry(admin_client, synced):
    response = post_add(
        admin_client,
        ValueType,
        key="seasonality",
        schema={"type": "object", "additionalProperties": {"type": "number"}},
        fallback_value={"q4": 1.2},
        field_bounds={"*": {"min": 0.5, "max": 2}},
        update_frequency="P1D",
        ttl="PT6H",
        max_staleness="P7D",
        change_reason="new planner input",
    )

    assert response.status_code == 302, form_errors(response)
    created = ValueType.objects.get(key="seasonality")
    [entry] = admin_entries()
    assert (entry.action, entry.object_id, entry.before) == ("create", str(created.pk), None)
    assert entry.after["fallback_value"] == {"q4": 1.2}
    assert entry.reason == "new planner input"


def test_value_type_delete__with_links__one_entry_per_deleted_object(admin_client, synced, override):
    value_type = override.value_type
    link_count = value_type.source_links.count()
    assert link_count

    response = admin_client.post(
        admin_url(ValueType, "delete", value_type.pk), {"post": "yes", "change_reason": "retired"}
    )

    assert response.status_code == 302
    assert not ValueType.objects.filter(pk=value_type.pk).exists()
    entries = admin_entries(action="delete")
    assert entries.count() == 1 + link_count + 1
    assert entries.filter(object_type="values.valuetype", object_id=str(value_type.pk)).count() == 1
    assert entries.filter(object_type="sources.valuetypesource").count() == link_count
    assert entries.filter(object_type="values.override", object_id=str(override.pk)).count() == 1
    assert all(entry.after is None and entry.reason == "retired" for entry in entries)


# --- source links inline -------------------------------------------------------------------


def inline_field(value_type: ValueType, link: ValueTypeSource, name: str) -> str:
    index = list(value_type.source_links.order_by("value_type__key", "tier", "source__name")).index(link)
    return f"source_links-{index}-{name}"


def test_value_type_inline__weight_above_one__refused_with_error(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")
    link = link_of("industry_multipliers")
    stored_weight = link.weight

    response = post_change(admin_client, value_type, **{inline_field(value_type, link, "weight"): "1.5"})

    assert response.status_code == 200
    assert inline_field(value_type, link, "weight") in form_errors(response)
    assert "Weight must be in (0, 1], not 1.5." in response.content.decode()
    link.refresh_from_db()
    assert link.weight == stored_weight
    assert not admin_entries().exists()


def test_value_type_inline__valid_weight_change__audit_entry_for_the_link_only(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")
    link = link_of("industry_multipliers")
    stored_weight = link.weight
    new_weight = 0.55 if stored_weight != 0.55 else 0.45

    response = post_change(
        admin_client,
        value_type,
        change_reason="rebalance",
        **{inline_field(value_type, link, "weight"): str(new_weight)},
    )

    assert response.status_code == 302, form_errors(response)
    link.refresh_from_db()
    assert link.weight == new_weight
    [entry] = admin_entries()
    assert (entry.object_type, entry.object_id) == ("sources.valuetypesource", str(link.pk))
    assert entry.action == "update"
    assert (entry.before["weight"], entry.after["weight"]) == (stored_weight, new_weight)
    assert entry.reason == "rebalance"


def test_value_type_inline__link_removed__delete_entry_for_the_link(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")
    link = link_of("industry_multipliers")
    stored = {"weight": link.weight, "source": link.source_id}

    response = post_change(admin_client, value_type, **{inline_field(value_type, link, "DELETE"): "on"})

    assert response.status_code == 302, form_errors(response)
    assert not ValueTypeSource.objects.filter(pk=link.pk).exists()
    [entry] = admin_entries()
    assert (entry.object_type, entry.object_id, entry.action, entry.after) == (
        "sources.valuetypesource",
        str(link.pk),
        "delete",
        None,
    )
    assert {"weight": entry.before["weight"], "source": entry.before["source_id"]} == stored


def test_value_type_source_change__own_admin__audit_entry(admin_client, synced):
    link = link_of("budget_thresholds")

    response = post_change(admin_client, link, tier="secondary", change_reason="demoted")

    assert response.status_code == 302, form_errors(response)
    [entry] = admin_entries()
    assert (entry.object_type, entry.before["tier"], entry.after["tier"], entry.reason) == (
        "sources.valuetypesource",
        link.tier,
        "secondary",
        "demoted",
    )


# --- overrides -----------------------------------------------------------------------------


def test_override_add__value_out_of_bounds__refused_with_error_on_form(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")

    response = post_add(
        admin_client,
        Override,
        value_type=str(value_type.pk),
        context_match={"region": "us"},
        value={"technology": 5.0},
        reason="testing",
    )

    assert response.status_code == 200
    assert "value" in form_errors(response)
    assert "technology: 5.0 is above the maximum 3.0" in response.content.decode()
    assert not Override.objects.exists()
    assert not admin_entries().exists()


def test_override_add__good_value__author_is_the_user_and_recorded(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")

    response = post_add(
        admin_client,
        Override,
        value_type=str(value_type.pk),
        context_match={"region": "us"},
        value={"technology": 1.4},
        reason="Q3 market shift",
        change_reason="ticket OPS-12",
    )

    assert response.status_code == 302, form_errors(response)
    created = Override.objects.get()
    assert created.author == "admin"
    assert created.value == {"technology": 1.4}
    [entry] = admin_entries()
    assert (entry.object_type, entry.object_id) == ("values.override", str(created.pk))
    assert entry.action == "create"
    assert (entry.after["author"], entry.reason) == ("admin", "ticket OPS-12")


def test_override_add__author_posted__ignored(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")

    post_add(
        admin_client,
        Override,
        value_type=str(value_type.pk),
        value={"technology": 1.4},
        reason="Q3",
        author="somebody-else",
    )

    assert Override.objects.get().author == "admin"


def test_override_add__blank_reason__refused(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")

    response = post_add(
        admin_client, Override, value_type=str(value_type.pk), value={"technology": 1.4}, reason="  "
    )

    assert response.status_code == 200
    assert "reason" in form_errors(response)
    assert not Override.objects.exists()


def test_override_change__edited_by_another_user__author_kept(admin_client, synced, override):
    response = post_change(admin_client, override, value={"technology": 1.5})

    assert response.status_code == 302, form_errors(response)
    override.refresh_from_db()
    assert (override.author, override.value) == ("someone", {"technology": 1.5})
    [entry] = admin_entries()
    assert (entry.actor, entry.action, entry.after["value"]) == ("admin", "update", {"technology": 1.5})


def test_override_change__nothing_changed__no_audit_entry_and_start_kept(admin_client, synced, override):
    # Created outside the admin, its start carries microseconds the admin's widgets cannot show.
    stored_start = override.starts_at

    response = post_change(admin_client, override, change_reason="just looking")

    assert response.status_code == 302, form_errors(response)
    override.refresh_from_db()
    assert override.starts_at == stored_start
    assert not admin_entries().exists()


def test_override_bulk_delete__two_overrides__one_entry_each_with_reason(admin_client, synced, override):
    second = Override.objects.create(
        value_type=override.value_type, value={"retail": 1.2}, reason="promo", author="someone"
    )

    response = admin_client.post(
        admin_url(Override, "changelist"),
        {
            "action": "delete_selected",
            "_selected_action": [override.pk, second.pk],
            "post": "yes",
            "change_reason": "campaign over",
        },
    )

    assert response.status_code == 302
    assert not Override.objects.exists()
    entries = admin_entries(object_type="values.override", action="delete")
    assert sorted(entry.object_id for entry in entries) == sorted([str(override.pk), str(second.pk)])
    assert {entry.reason for entry in entries} == {"campaign over"}
    assert entries.get(object_id=str(second.pk)).before["value"] == {"retail": 1.2}


# --- the history admin ---------------------------------------------------------------------


def test_audit_entry_admin__add_change_delete__forbidden(admin_client, synced):
    entry = AuditEntry.objects.order_by("pk").first()
    before_count = AuditEntry.objects.count()

    add = admin_client.get(admin_url(AuditEntry, "add"))
    change = admin_client.post(admin_url(AuditEntry, "change", entry.pk), {"actor": "forger"})
    delete = admin_client.post(admin_url(AuditEntry, "delete", entry.pk), {"post": "yes"})
    bulk_delete = admin_client.post(
        admin_url(AuditEntry, "changelist"),
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )

    assert add.status_code == 403
    assert change.status_code == 403
    assert delete.status_code == 403
    assert bulk_delete.status_code in (200, 302)  # the action is not offered: nothing happens
    assert AuditEntry.objects.count() == before_count
    entry.refresh_from_db()
    assert entry.actor != "forger"


def test_audit_entry_admin__list_and_detail__render_without_edit_buttons(admin_client, synced):
    entry = AuditEntry.objects.order_by("pk").first()

    changelist = admin_client.get(admin_url(AuditEntry, "changelist"))
    detail = admin_client.get(admin_url(AuditEntry, "change", entry.pk))

    assert changelist.status_code == 200
    assert "delete_selected" not in changelist.content.decode()
    assert admin_url(AuditEntry, "add") not in changelist.content.decode()
    assert detail.status_code == 200
    body = detail.content.decode()
    assert 'name="_save"' not in body
    assert admin_url(AuditEntry, "delete", entry.pk) not in body


def test_audit_entry_detail__update__lists_changed_fields_with_both_values(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")
    post_change(admin_client, value_type, fallback_value=GOOD_MULTIPLIERS, min_ratio="0.2")
    entry = admin_entries().get()

    response = admin_client.get(admin_url(AuditEntry, "change", entry.pk))

    assert response.status_code == 200
    body = response.content.decode()
    changed_table = body[body.index('class="audit-changes"') :]
    changed_table = changed_table[: changed_table.index("</table>")]
    assert "fallback_value" in changed_table and "min_ratio" in changed_table
    assert "max_staleness" not in changed_table
    assert "1.25" in changed_table


# --- sources and secrets -------------------------------------------------------------------


def test_source_change__credentials__names_with_set_status(admin_client, synced, monkeypatch):
    monkeypatch.setenv("GOOGLE_ADS_ACCESS_TOKEN", PLANTED_SECRET)
    monkeypatch.delenv("GOOGLE_ADS_CUSTOMER_ID", raising=False)
    source = Source.objects.get(name="google_ads_api")

    response = admin_client.get(admin_url(Source, "change", source.pk))

    body = response.content.decode()
    assert "<code>GOOGLE_ADS_ACCESS_TOKEN</code>: set" in body
    assert "<code>GOOGLE_ADS_CUSTOMER_ID</code>: NOT SET" in body


def test_source_changelist__credentials__counts_set_variables(admin_client, synced, monkeypatch):
    monkeypatch.setenv("GOOGLE_ADS_ACCESS_TOKEN", PLANTED_SECRET)
    monkeypatch.delenv("GOOGLE_ADS_CUSTOMER_ID", raising=False)

    response = admin_client.get(admin_url(Source, "changelist"))

    assert "1 of 2 set" in response.content.decode()


def test_admin_pages__secret_in_environment__never_in_html(admin_client, synced, monkeypatch):
    monkeypatch.setenv("GOOGLE_ADS_ACCESS_TOKEN", PLANTED_SECRET)
    source = Source.objects.get(name="google_ads_api")
    link = ValueTypeSource.objects.filter(source=source).first()
    pages = [
        reverse("admin:index"),
        admin_url(Source, "changelist"),
        admin_url(Source, "change", source.pk),
        admin_url(Source, "add"),
        admin_url(Source, "delete", source.pk),
        admin_url(ValueTypeSource, "changelist"),
        admin_url(ValueTypeSource, "change", link.pk),
        admin_url(ValueType, "change", link.value_type_id),
        admin_url(AuditEntry, "changelist"),
    ]
    source_entries = AuditEntry.objects.filter(object_type="sources.source")
    pages += [admin_url(AuditEntry, "change", entry.pk) for entry in source_entries]

    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert PLANTED_SECRET not in response.content.decode(), page


def test_source_change__timeout_edited__audit_entry(admin_client, synced):
    source = Source.objects.get(name="semrush_api")

    response = post_change(admin_client, source, read_timeout="12.5", change_reason="slow API")

    assert response.status_code == 302, form_errors(response)
    [entry] = admin_entries()
    assert (entry.object_type, entry.before["read_timeout"], entry.after["read_timeout"]) == (
        "sources.source",
        source.read_timeout,
        12.5,
    )


def test_source_change__secret_instead_of_variable_name__refused(admin_client, synced):
    source = Source.objects.get(name="semrush_api")

    response = post_change(admin_client, source, credential_variables={"api_key": "sk-live-abc"})

    assert response.status_code == 200
    assert "credential_variables" in form_errors(response)
    assert not admin_entries().exists()


# --- the database cache tier ---------------------------------------------------------------


def test_resolved_value_admin__read_only__no_add_change_or_delete(admin_client, resolved_value):
    add = admin_client.get(admin_url(ResolvedValue, "add"))
    change = admin_client.post(admin_url(ResolvedValue, "change", resolved_value.pk), {"context_key": "x"})
    delete = admin_client.post(admin_url(ResolvedValue, "delete", resolved_value.pk), {"post": "yes"})
    detail = admin_client.get(admin_url(ResolvedValue, "change", resolved_value.pk))

    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    assert detail.status_code == 200
    assert "region=us" in detail.content.decode()
    resolved_value.refresh_from_db()
    assert resolved_value.context_key == "region=us"


# --- changelists at a glance ----------------------------------------------------------------


def test_value_type_changelist__each_type__shows_the_tier_served_now(admin_client, synced):
    response = admin_client.get(admin_url(ValueType, "changelist"))

    assert response.status_code == 200
    body = response.content.decode()
    assert "Served now (empty context)" in body
    assert body.count('class="field-current_answer"') == ValueType.objects.count()


def test_value_type_changelist__read_fails__row_says_unavailable_and_page_renders(admin_client, synced, monkeypatch):
    def failing_read(keys):
        raise RuntimeError("cache and database down")

    monkeypatch.setattr("values.admin.answers_known_now", failing_read)

    response = admin_client.get(admin_url(ValueType, "changelist"))

    assert response.status_code == 200
    assert response.content.decode().count('<td class="field-current_answer">unavailable</td>') == ValueType.objects.count()


def test_override_changelist__state__active_scheduled_and_expired(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")
    now = timezone.now()
    for starts_at, expires_at in (
        (now - timedelta(hours=1), None),
        (now + timedelta(days=1), None),
        (now - timedelta(days=2), now - timedelta(days=1)),
    ):
        Override.objects.create(
            value_type=value_type, value=GOOD_MULTIPLIERS, reason="state test", author="test",
            starts_at=starts_at, expires_at=expires_at,
        )  # fmt: skip

    body = admin_client.get(admin_url(Override, "changelist")).content.decode()

    for state in ("active", "scheduled", "expired"):
        assert f'<td class="field-state">{state}</td>' in body


def test_source_changelist__health__one_status_per_source(admin_client, synced):
    body = admin_client.get(admin_url(Source, "changelist")).content.decode()

    cells = body.split('<td class="field-health">')[1:]
    assert len(cells) == Source.objects.count()
    assert all(cell.split("<")[0].strip() in {"healthy", "degraded", "down"} for cell in cells)
