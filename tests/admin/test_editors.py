"""The admin's structured editors, through HTTP as an operator's browser uses them: each JSON
field a form derived from its value type (labelled inputs, bounds beside them, the raw JSON in an
"Advanced" fold), durations in ISO 8601, and the model's refusals beside the inputs they name."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse

from audit.history import snapshot
from audit.models import AuditEntry
from sources.models import Source
from tests.admin.test_admin import admin_url, form_errors, rendered_post_data
from values.admin_editors import RAW_SHOWN_SUFFIX, RAW_SUFFIX, StructuredJSONField
from values.models import Override, ValueType, ValueTypeSource

pytestmark = pytest.mark.django_db

INDUSTRIES = ["technology", "healthcare", "finance", "manufacturing", "retail", "services"]


# --- helpers -------------------------------------------------------------------------------


def change_page(client, obj):
    response = client.get(admin_url(type(obj), "change", obj.pk))
    assert response.status_code == 200
    return response


def form_field(response, name: str):
    return response.context["adminform"].form.fields[name]


def editor_schema(response, name: str) -> dict:
    field = form_field(response, name)
    assert isinstance(field, StructuredJSONField), type(field)
    return field.widget.get_schema()


def shown_value(response, name: str):
    """The data the editor was given (the editor's shape), as the page's form holds it."""
    return json.loads(response.context["adminform"].form[name].value())


def post_editor_data(client, obj, **changes):
    """Open the change page, then post it back as the browser would, `changes` given in the
    editor's shape (as django-jsonform posts them: the field's whole value as JSON)."""
    page = change_page(client, obj)
    return client.post(admin_url(type(obj), "change", obj.pk), rendered_post_data(page, **changes))


def database_snapshot() -> dict:
    """Everything an operator edits, and the history: to show a refusal changed nothing."""
    return {
        "value_types": [snapshot(each) for each in ValueType.objects.order_by("pk")],
        "overrides": [snapshot(each) for each in Override.objects.order_by("pk")],
        "links": [snapshot(each) for each in ValueTypeSource.objects.order_by("pk")],
        "sources": [snapshot(each) for each in Source.objects.order_by("pk")],
        "history": AuditEntry.objects.count(),
    }


def admin_entries(**filters):
    return AuditEntry.objects.filter(channel="admin", **filters)


# --- each built-in gets its editor ---------------------------------------------------------


def test_industry_multipliers_page__one_labelled_number_input_per_industry_with_its_bounds(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")

    response = change_page(admin_client, value_type)

    schema = editor_schema(response, "fallback_value")
    assert list(schema["properties"]) == sorted(INDUSTRIES)
    assert schema["properties"]["retail"] == {
        "title": "Retail",
        "type": "number",
        "minimum": 0.3,
        "maximum": 3.0,
        "help_text": "Allowed: 0.3 to 3.0",
    }
    # A new industry can be added, with the same bounds.
    assert schema["additionalProperties"]["maximum"] == 3.0
    assert shown_value(response, "fallback_value") == value_type.fallback_value
    body = response.content.decode()
    assert "data-django-jsonform" in body
    assert "Advanced: edit as JSON" in body
    assert f'name="fallback_value{RAW_SUFFIX}"' in body


def test_channel_performance_page__a_group_per_channel_with_low_and_high_inputs(admin_client, synced):
    value_type = ValueType.objects.get(key="channel_performance")

    response = change_page(admin_client, value_type)

    schema = editor_schema(response, "fallback_value")
    assert set(schema["properties"]) == {"search_advertising", "social_media", "email_marketing"}
    search = schema["properties"]["search_advertising"]
    assert (search["title"], search["type"]) == ("Search advertising", "object")
    ctr = search["properties"]["ctr_range"]
    assert ctr["title"] == "CTR range"
    assert ctr["properties"]["low"] == {
        "title": "Low", "type": "number", "minimum": 0, "maximum": 1, "help_text": "Allowed: 0 to 1",
    }  # fmt: skip
    assert search["properties"]["cpc_range"]["properties"]["high"]["maximum"] == 1000
    assert search["properties"]["competitive_intensity"]["help_text"] == "Allowed: 0 to 1"
    shown = shown_value(response, "fallback_value")
    assert shown["search_advertising"]["ctr_range"] == {"low": 0.02, "high": 0.08}
    assert shown["search_advertising"]["competitive_intensity"] == 0.75


def test_budget_thresholds_page__each_threshold_labelled_with_bounds(admin_client, synced):
    response = change_page(admin_client, ValueType.objects.get(key="budget_thresholds"))

    schema = editor_schema(response, "fallback_value")
    assert schema["properties"]["micro_threshold"]["title"] == "Micro threshold"
    assert schema["properties"]["micro_threshold"]["help_text"] == "Allowed: 0 to 1,000,000,000"
    assert "additionalProperties" not in schema  # the schema allows no other field


def test_value_type_page__lists_of_keys__a_text_input_per_entry(admin_client, synced):
    response = change_page(admin_client, ValueType.objects.get(key="budget_thresholds"))

    for name, item_title in [
        ("aliases", "Alias"),
        ("context_keys", "Context key"),
        ("ascending_fields", "Field"),
        ("widening_order", "Context key"),
    ]:
        assert editor_schema(response, name)["items"] == {"type": "string", "title": item_title}, name
    assert shown_value(response, "widening_order") == ["industry", "region"]
    bounds = editor_schema(response, "field_bounds")
    assert bounds["properties"]["*"]["properties"]["max"]["title"] == "Highest"
    # The source links' channels, in the inline of the same page.
    [inline] = response.context["inline_admin_formsets"]
    channels = inline.formset.forms[0].fields["channels"]
    assert isinstance(channels, StructuredJSONField)
    assert channels.widget.get_schema()["items"]["title"] == "Channel"


def test_value_type_page__schema_and_precision__stay_json_labelled_as_such(admin_client, synced):
    response = change_page(admin_client, ValueType.objects.get(key="budget_thresholds"))

    form = response.context["adminform"].form
    assert not isinstance(form.fields["schema"], StructuredJSONField)
    assert form.fields["schema"].label == "Schema (JSON)"
    assert form.fields["field_precision"].label == "Rounding per field (JSON)"


def test_source_page__credential_variables__an_input_per_role(admin_client, synced):
    source = Source.objects.get(name="google_ads_api")

    response = change_page(admin_client, source)

    # Each role is an input labelled with its name, removable, and a role may be added.
    assert editor_schema(response, "credential_variables")["additionalProperties"] == {"type": "string"}
    assert shown_value(response, "credential_variables") == source.credential_variables
    assert form_field(response, "request_template").label == "Request (JSON)"


# --- durations in ISO 8601 -----------------------------------------------------------------


def test_value_type_page__durations__shown_in_iso_8601_with_human_labels(admin_client, synced):
    response = change_page(admin_client, ValueType.objects.get(key="industry_multipliers"))

    form = response.context["adminform"].form
    assert (form["update_frequency"].value(), form["ttl"].value(), form["max_staleness"].value()) == ("P1D", "PT5M", "P7D")
    body = response.content.decode()
    assert 'name="ttl" value="PT5M"' in body
    assert ">TTL:</label>" in body
    assert ">Maximum staleness:</label>" in body


def test_source_page__breaker_recovery_time__shown_in_iso_8601(admin_client, synced):
    response = change_page(admin_client, Source.objects.get(name="google_ads_api"))

    assert response.context["adminform"].form["breaker_recovery_timeout"].value() == "PT1M"


@pytest.mark.parametrize(
    ("entered", "stored"),
    [("PT15M", timedelta(minutes=15)), ("p1dt12h", timedelta(days=1, hours=12)), ("900", timedelta(minutes=15))],
    ids=["minutes", "lowercase_day_and_hours", "whole_seconds"],
)
def test_value_type_change__iso_duration__parsed_saved_and_recorded(admin_client, synced, entered, stored):
    value_type = ValueType.objects.get(key="industry_multipliers")

    response = post_editor_data(admin_client, value_type, ttl=entered, change_reason="fresher numbers")

    assert response.status_code == 302, form_errors(response)
    value_type.refresh_from_db()
    assert value_type.ttl == stored
    [entry] = admin_entries()
    assert entry.reason == "fresher numbers"


@pytest.mark.parametrize(
    ("entered", "expected_error"),
    [
        ("15 minutes", "Bad duration &#x27;15 minutes&#x27;: expected ISO 8601 such as PT6H or P1D."),
        ("P1M", "years and months have no fixed length: use days"),
        ("PT0S", "must be longer than zero"),
        ("1 00:00:00", "expected ISO 8601 such as PT6H or P1D"),
    ],
    ids=["words", "months", "zero", "django_format"],
)
def test_value_type_change__bad_duration__refused_with_clear_error_and_nothing_saved(
    admin_client, synced, entered, expected_error
):
    value_type = ValueType.objects.get(key="industry_multipliers")
    before = database_snapshot()

    response = post_editor_data(admin_client, value_type, max_staleness=entered, change_reason="try it")

    assert response.status_code == 200
    assert "max_staleness" in form_errors(response)
    assert expected_error in response.content.decode()
    assert database_snapshot() == before


# --- refusals beside their inputs, saves with a reason -------------------------------------


def test_multiplier_above_bound__refused_beside_its_input_and_nothing_saved(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")
    before = database_snapshot()
    edited = {**value_type.fallback_value, "retail": 5.0}

    response = post_editor_data(admin_client, value_type, fallback_value=edited, change_reason="try it")

    assert response.status_code == 200
    assert form_errors(response)["fallback_value"] == ["retail: 5.0 is above the maximum 3.0"]
    field = form_field(response, "fallback_value")
    assert field.widget.error_map == {"retail": ["5.0 is above the maximum 3.0"]}
    # The editor is drawn with that error beside the retail input, and with the value as typed.
    body = response.content.decode()
    assert "5.0 is above the maximum 3.0" in body
    config = response.context["adminform"].form["fallback_value"]
    assert json.loads(config.value())["retail"] == 5.0
    assert database_snapshot() == before


def test_multiplier_within_bounds__saved_with_reason_in_one_audit_entry(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")
    stored = value_type.fallback_value
    edited = {**stored, "retail": 1.4}

    response = post_editor_data(admin_client, value_type, fallback_value=edited, change_reason="Holiday demand")

    assert response.status_code == 302, form_errors(response)
    value_type.refresh_from_db()
    assert value_type.fallback_value == edited
    [entry] = admin_entries()
    assert (entry.action, entry.object_type, entry.actor) == ("update", "values.valuetype", "admin")
    assert (entry.before["fallback_value"]["retail"], entry.after["fallback_value"]["retail"]) == (stored["retail"], 1.4)
    assert entry.reason == "Holiday demand"


def test_channel_range_edited_as_low_and_high__stored_as_a_pair(admin_client, synced):
    value_type = ValueType.objects.get(key="channel_performance")
    page = change_page(admin_client, value_type)
    shown = shown_value(page, "fallback_value")
    shown["social_media"]["cpc_range"] = {"low": 0.6, "high": 3.5}

    response = admin_client.post(
        admin_url(ValueType, "change", value_type.pk),
        rendered_post_data(page, fallback_value=shown, change_reason="CPCs rose"),
    )

    assert response.status_code == 302, form_errors(response)
    value_type.refresh_from_db()
    assert value_type.fallback_value["social_media"]["cpc_range"] == [0.6, 3.5]
    assert value_type.fallback_value["search_advertising"]["ctr_range"] == [0.02, 0.08]
    [entry] = admin_entries()
    assert entry.before["fallback_value"]["social_media"]["cpc_range"] == [0.5, 3.0]


def test_channel_range_low_above_high__refused_beside_the_range(admin_client, synced):
    value_type = ValueType.objects.get(key="channel_performance")
    before = database_snapshot()
    page = change_page(admin_client, value_type)
    shown = shown_value(page, "fallback_value")
    shown["search_advertising"]["ctr_range"] = {"low": 0.5, "high": 0.1}
    shown["email_marketing"]["conversion_rate_range"] = {"low": 0.01, "high": 1.5}

    response = admin_client.post(
        admin_url(ValueType, "change", value_type.pk), rendered_post_data(page, fallback_value=shown)
    )

    assert response.status_code == 200
    assert form_field(response, "fallback_value").widget.error_map == {
        "search_advertising§ctr_range": ["low 0.5 is above high 0.1"],
        "email_marketing§conversion_rate_range§high": ["1.5 is above the maximum 1"],
    }
    assert database_snapshot() == before


# --- the advanced JSON view ----------------------------------------------------------------


def test_advanced_json_edited__replaces_the_editor_value_and_saves(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")
    page = change_page(admin_client, value_type)
    data = rendered_post_data(page, change_reason="pasted from the planning sheet")
    shown = json.dumps(value_type.fallback_value, indent=2)
    edited = {**value_type.fallback_value, "finance": 1.35, "energy": 0.9}
    data.update({f"fallback_value{RAW_SUFFIX}": json.dumps(edited), f"fallback_value{RAW_SHOWN_SUFFIX}": shown})

    response = admin_client.post(admin_url(ValueType, "change", value_type.pk), data)

    assert response.status_code == 302, form_errors(response)
    value_type.refresh_from_db()
    assert value_type.fallback_value == edited
    assert admin_entries().get().reason == "pasted from the planning sheet"


def test_advanced_json_left_as_shown__the_editor_value_is_saved(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")
    page = change_page(admin_client, value_type)
    edited = {**value_type.fallback_value, "retail": 1.4}
    data = rendered_post_data(page, fallback_value=edited, change_reason="editor edit")
    shown = json.dumps(value_type.fallback_value, indent=2)
    data.update({f"fallback_value{RAW_SUFFIX}": shown, f"fallback_value{RAW_SHOWN_SUFFIX}": shown})

    response = admin_client.post(admin_url(ValueType, "change", value_type.pk), data)

    assert response.status_code == 302, form_errors(response)
    value_type.refresh_from_db()
    assert value_type.fallback_value == edited


def test_advanced_json_not_json__refused_and_shown_as_text_to_fix(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")
    before = database_snapshot()
    page = change_page(admin_client, value_type)
    data = rendered_post_data(page)
    data.update({f"fallback_value{RAW_SUFFIX}": '{"retail": 1.4', f"fallback_value{RAW_SHOWN_SUFFIX}": "{}"})

    response = admin_client.post(admin_url(ValueType, "change", value_type.pk), data)

    assert response.status_code == 200
    assert form_errors(response)["fallback_value"] == ["Enter a valid JSON."]
    body = response.content.decode()
    assert "This is not valid JSON" in body and "{&quot;retail&quot;: 1.4" in body
    assert database_snapshot() == before


# --- overrides -----------------------------------------------------------------------------


def test_override_add__type_chosen_in_address__editor_starts_from_its_fallback(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")

    response = admin_client.get(admin_url(Override, "add"), {"value_type": value_type.pk})

    assert response.status_code == 200
    assert editor_schema(response, "value")["properties"]["retail"]["maximum"] == 3.0
    assert shown_value(response, "value") == value_type.fallback_value
    assert set(editor_schema(response, "context_match")["properties"]) == {"region"}


def test_override_add__no_type_chosen__json_with_a_link_per_type(admin_client, synced):
    value_type = ValueType.objects.get(key="channel_performance")

    response = admin_client.get(admin_url(Override, "add"))

    assert not isinstance(form_field(response, "value"), StructuredJSONField)
    assert f'href="?value_type={value_type.pk}"' in response.content.decode()


def test_override_add__through_the_editor__saved_and_recorded(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")
    url = admin_url(Override, "add") + f"?value_type={value_type.pk}"
    page = admin_client.get(url)
    value = {**value_type.fallback_value, "retail": 1.4}

    response = admin_client.post(
        url,
        rendered_post_data(
            page, value=value, context_match={"region": "us"}, reason="Black Friday", change_reason="OPS-7"
        ),
    )

    assert response.status_code == 302, form_errors(response)
    created = Override.objects.get()
    assert (created.value, created.context_match) == (value, {"region": "us"})
    assert admin_entries(object_type="values.override").get().reason == "OPS-7"


def test_override_add__context_left_blank__matches_every_context(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")
    url = admin_url(Override, "add") + f"?value_type={value_type.pk}"
    page = admin_client.get(url)

    response = admin_client.post(
        url, rendered_post_data(page, context_match={"region": ""}, reason="everywhere")
    )

    assert response.status_code == 302, form_errors(response)
    assert Override.objects.get().context_match == {}


def test_override_change__value_above_bound__refused_beside_its_input(admin_client, synced):
    value_type = ValueType.objects.get(key="industry_multipliers")
    override = Override.objects.create(
        value_type=value_type, context_match={"region": "us"}, value=value_type.fallback_value,
        reason="Q3", author="someone",
    )  # fmt: skip
    before = database_snapshot()

    response = post_editor_data(admin_client, override, value={**override.value, "finance": 5.0})

    assert response.status_code == 200
    assert form_field(response, "value").widget.error_map == {"finance": ["5.0 is above the maximum 3.0"]}
    assert database_snapshot() == before


def test_value_type_link_to_history__still_the_audit_list(admin_client, synced):
    # The editors change the form, not the page's other links.
    value_type = ValueType.objects.get(key="industry_multipliers")

    body = change_page(admin_client, value_type).content.decode()

    assert reverse("admin:values_valuetype_history", args=[value_type.pk]) in body


def test_browser_posts_whole_floats_as_ints__unchanged_numbers_keep_their_stored_form(admin_client, synced):
    # The editor's JavaScript posts 3.0 as 3 and 1.0 as 1: that alone is no change.
    value_type = ValueType.objects.get(key="industry_multipliers")
    as_browser_posts = {key: int(number) if number == int(number) else number for key, number in value_type.fallback_value.items()}
    bounds_as_posted = {"*": {"min": 0.3, "max": 3}}

    response = post_editor_data(
        admin_client, value_type, fallback_value=as_browser_posts, field_bounds=bounds_as_posted, change_reason="look"
    )

    assert response.status_code == 302, form_errors(response)
    value_type.refresh_from_db()
    assert repr(value_type.field_bounds["*"]["max"]) == "3.0"
    assert repr(value_type.fallback_value["manufacturing"]) == "1.0"
    assert not admin_entries().exists()


def test_source_link_page__channels_edited_as_a_list__saved_and_recorded(admin_client, synced):
    link = ValueTypeSource.objects.filter(value_type__key="channel_performance", tier="primary").order_by("pk").first()
    page = change_page(admin_client, link)
    assert editor_schema(page, "channels")["items"]["title"] == "Channel"
    assert form_field(page, "request_params").label == "Request parameters (JSON)"

    response = admin_client.post(
        admin_url(ValueTypeSource, "change", link.pk),
        rendered_post_data(page, channels=[*link.channels, "display"], change_reason="covers display too"),
    )

    assert response.status_code == 302, form_errors(response)
    link.refresh_from_db()
    assert link.channels[-1] == "display"
    assert admin_entries(object_type="sources.valuetypesource").get().reason == "covers display too"


def test_source_change__bad_breaker_recovery_time__refused_and_nothing_saved(admin_client, synced):
    source = Source.objects.get(name="google_ads_api")
    before = database_snapshot()

    response = post_editor_data(admin_client, source, breaker_recovery_timeout="1 minute", change_reason="try")

    assert response.status_code == 200
    assert form_errors(response)["breaker_recovery_timeout"] == [
        "Bad duration '1 minute': expected ISO 8601 such as PT6H or P1D."
    ]
    assert database_snapshot() == before


def test_value_type_changelist__ttl_column__labelled_TTL_in_iso_8601(admin_client, synced):
    body = admin_client.get(admin_url(ValueType, "changelist")).content.decode()

    assert ">TTL</a>" in body and "Ttl" not in body
    assert '<td class="field-update_frequency_iso">P1D</td>' in body
