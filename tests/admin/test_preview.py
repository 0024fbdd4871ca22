"""The admin's save flow through HTTP: a value type's page shows what it serves now; a save first
shows a preview (the diff, the validation result, which served answers change) and changes
nothing until confirmed; where change requests are on, the confirmed edit is proposed, and
another operator approves or rejects it on the request's page."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.urls import reverse

from audit.models import AuditEntry
from tests.admin.test_admin import (
    GOOD_MULTIPLIERS,
    admin_url,
    form_errors,
    inline_field,
    link_of,
    rendered_post_data,
)
from tests.api.conftest import BUDGET_SOURCES, route_budget, sources_down  # noqa: F401
from tests.values.conftest import engine, local_server, serve_sources  # noqa: F401
from values import get_value
from values.change_requests import change_request_propose, edit_of
from values.models import ChangeRequest, ContextReads, Override, ValueType

pytestmark = pytest.mark.django_db

PREVIEW = {"_preview": "1"}
CONFIRMED = {"_confirmed": "1"}


def multipliers() -> ValueType:
    return ValueType.objects.get(key="industry_multipliers")


def page_post_data(client, url: str, **changes) -> dict[str, str]:
    page = client.get(url)
    assert page.status_code == 200
    return rendered_post_data(page, **changes)


def preview_of(response) -> dict:
    assert response.status_code == 200, form_errors(response) if response.context and "adminform" in response.context else response
    assert [template.name for template in response.templates][0] == "admin/values/edit_preview.html"
    return response.context


@pytest.fixture
def change_requests_on():
    with override_settings(DYNCONFIG_CHANGE_REQUESTS=True):
        yield


@pytest.fixture
def bob(django_user_model) -> Client:
    """A second operator, allowed to approve."""
    user = django_user_model.objects.create_user("bob", password="unused-password", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_changerequest", "approve_changerequest"]))
    client = Client()
    client.force_login(user)
    return client


# Served now -------------------------------------------------------------------------------------


def test_value_type_page__contexts_read__served_now_lists_each_with_tier_sources_age_and_expiry(
    admin_client, engine, local_server  # noqa: F811
):
    route_budget(local_server)
    serve_sources(local_server, *BUDGET_SOURCES)
    value_type = ValueType.objects.get(key="budget_thresholds")
    get_value("budget_thresholds", {"region": "us", "industry": "retail"})  # fetched, cached
    ContextReads.objects.update_or_create(
        value_type=value_type, context_key="industry=retail&region=us",
        defaults={"context": {"industry": "retail", "region": "us"}, "reads": 40},
    )  # fmt: skip

    page = admin_client.get(admin_url(ValueType, "change", value_type.pk)).content.decode()

    table = page[page.index('<table class="served-now">') :]
    table = table[: table.index("</table>")]
    assert "(empty context)" in table
    row = table[table.index("industry=retail, region=us") :]
    row = row[: row.index("</tr>")]
    assert "<td>40</td>" in row
    assert "market_research_api (0.6)" in row and "industry_benchmarks_api (0.4)" in row
    assert " old</td>" in row and "<td>in " in row  # its age, and when it expires


def test_value_type_page__context_never_fetched__says_nothing_cached_and_renders(admin_client, synced):
    value_type = multipliers()
    ContextReads.objects.create(value_type=value_type, context_key="region=us", context={"region": "us"}, reads=3)

    response = admin_client.get(admin_url(ValueType, "change", value_type.pk))

    assert response.status_code == 200
    assert "nothing cached now" in response.content.decode()


# The preview ----------------------------------------------------------------------------------


def test_save_with_preview__valid_fallback__diff_validation_and_served_answers_shown_and_nothing_saved(admin_client, synced):
    value_type = multipliers()
    url = admin_url(ValueType, "change", value_type.pk)
    data = page_post_data(admin_client, url, fallback_value=GOOD_MULTIPLIERS, change_reason="Tech demand is up")

    context = preview_of(admin_client.post(url, {**data, **PREVIEW}))

    assert context["preview"].is_valid
    [(label, field, keys, before, after)] = context["diff"]
    assert field == "fallback_value" and "industry_multipliers" in label
    assert keys == "technology: 1.2 → 1.25"
    assert '"technology": 1.25' in after
    assert [row["context"] for row in context["served"]] == ["(empty context)"]
    assert context["served"][0]["effect"] == "may change"
    assert multipliers().fallback_value == value_type.fallback_value
    assert not AuditEntry.objects.filter(channel="admin").exists()
    body = admin_client.post(url, {**data, **PREVIEW}).content.decode()
    assert "Valid: the edit passes" in body and "Confirm and save" in body


def test_preview_confirmed__same_data_posted_back__saved_with_one_audit_entry(admin_client, synced):
    value_type = multipliers()
    url = admin_url(ValueType, "change", value_type.pk)
    data = page_post_data(admin_client, url, fallback_value=GOOD_MULTIPLIERS, change_reason="Tech demand is up")
    context = preview_of(admin_client.post(url, {**data, **PREVIEW}))

    replayed = {name: value for name, value in context["replayed"]}
    response = admin_client.post(url, {**replayed, "change_reason": context["reason"], **CONFIRMED})

    assert response.status_code == 302
    assert multipliers().fallback_value == GOOD_MULTIPLIERS
    [entry] = AuditEntry.objects.filter(channel="admin")
    assert entry.reason == "Tech demand is up"


def test_save_with_preview__fallback_above_bound__form_refuses_it_and_no_preview(admin_client, synced):
    value_type = multipliers()
    url = admin_url(ValueType, "change", value_type.pk)
    data = page_post_data(admin_client, url, fallback_value={**GOOD_MULTIPLIERS, "retail": 5.0})

    response = admin_client.post(url, {**data, **PREVIEW})

    assert response.status_code == 200
    assert "fallback_value" in form_errors(response)
    assert "preview" not in response.context


def test_preview__fallback_edit__context_served_from_the_fallback_changes_to_the_new_one(
    admin_client, sources_down  # noqa: F811
):
    value_type = multipliers()
    get_value("industry_multipliers", {"region": "us"})  # sources down: served from the fallback
    ContextReads.objects.update_or_create(
        value_type=value_type, context_key="region=us", defaults={"context": {"region": "us"}, "reads": 7}
    )
    url = admin_url(ValueType, "change", value_type.pk)
    data = page_post_data(admin_client, url, fallback_value=GOOD_MULTIPLIERS, change_reason="Tech demand is up")

    context = preview_of(admin_client.post(url, {**data, **PREVIEW}))

    row = {row["context"]: row for row in context["served"]}["region=us"]
    assert (row["reads"], row["effect"]) == (7, "changes")
    assert row["tier"].startswith("fallback (degraded)")
    assert '"technology": 1.25' in row["new_value"]


def test_preview__new_override__its_context_changes_to_its_value_others_unchanged(admin_client, synced):
    value_type = multipliers()
    url = admin_url(Override, "add")
    value = {**value_type.fallback_value, "retail": 1.4}
    data = page_post_data(
        admin_client, url, value_type=str(value_type.pk), context_match={"region": "us"}, value=value,
        reason="Black Friday", change_reason="OPS-1",
    )  # fmt: skip

    context = preview_of(admin_client.post(url, {**data, **PREVIEW}))

    rows = {row["context"]: row for row in context["served"]}
    assert rows["region=us"]["effect"] == "changes"
    assert '"retail": 1.4' in rows["region=us"]["new_value"]
    assert rows["(empty context)"]["effect"] == "unchanged"
    assert not Override.objects.exists()


def test_preview__source_link_weight__source_answers_may_change(admin_client, synced):
    value_type = multipliers()
    link = link_of("industry_multipliers")
    url = admin_url(ValueType, "change", value_type.pk)
    data = page_post_data(admin_client, url, change_reason="rebalance", **{inline_field(value_type, link, "weight"): "0.55"})

    context = preview_of(admin_client.post(url, {**data, **PREVIEW}))

    assert [(field, after) for _, field, _, _, after in context["diff"]] == [("weight", "0.55")]
    link.refresh_from_db()
    assert link.weight != 0.55


# Change requests in the admin -------------------------------------------------------------------


def test_save__change_requests_on__preview_then_confirm_proposes_and_nothing_applied(admin_client, synced, change_requests_on):
    value_type = multipliers()
    url = admin_url(ValueType, "change", value_type.pk)
    data = page_post_data(admin_client, url, fallback_value=GOOD_MULTIPLIERS, change_reason="Tech demand is up")

    context = preview_of(admin_client.post(url, data))  # no preview asked: still previewed
    assert context["proposes"]
    replayed = {name: value for name, value in context["replayed"]}
    response = admin_client.post(url, {**replayed, "change_reason": "Tech demand is up", **CONFIRMED}, follow=True)

    change_request = ChangeRequest.objects.get()
    assert response.redirect_chain[-1][0] == reverse("admin:values_changerequest_change", args=[change_request.pk])
    assert "Not applied yet: proposed as change request" in response.content.decode()
    assert (change_request.state, change_request.proposed_by, change_request.reason) == ("pending", "admin", "Tech demand is up")
    assert change_request.items[0]["fields"] == {"fallback_value": GOOD_MULTIPLIERS}
    assert multipliers().fallback_value == value_type.fallback_value
    assert not AuditEntry.objects.filter(channel="admin").exists()


def test_confirm__change_requests_on_without_reason__asked_for_one_and_nothing_proposed(admin_client, synced, change_requests_on):
    value_type = multipliers()
    url = admin_url(ValueType, "change", value_type.pk)
    data = page_post_data(admin_client, url, fallback_value=GOOD_MULTIPLIERS)

    response = admin_client.post(url, {**data, **CONFIRMED})

    assert preview_of(response)["reason_missing"]
    assert "A change request needs a reason." in response.content.decode()
    assert not ChangeRequest.objects.exists()


def test_override_delete__change_requests_on__proposed_and_the_override_stays(admin_client, synced, change_requests_on):
    override = Override.objects.create(
        value_type=multipliers(), context_match={"region": "us"}, value=GOOD_MULTIPLIERS, reason="Q3", author="x"
    )

    response = admin_client.post(admin_url(Override, "delete", override.pk), {"post": "yes", "change_reason": "over"})

    assert response.status_code == 302
    change_request = ChangeRequest.objects.get()
    assert change_request.items[0]["action"] == "delete"
    assert Override.objects.filter(pk=override.pk).exists()


def proposed_by_admin() -> ChangeRequest:
    value_type = multipliers()
    value_type.fallback_value = GOOD_MULTIPLIERS
    return change_request_propose(edits=[edit_of(value_type)], reason="Tech demand is up", actor="admin", channel="admin")


def test_request_page__another_operator__approves_and_it_applies_audited_with_both_names(bob, synced):
    change_request = proposed_by_admin()
    page = bob.get(admin_url(ChangeRequest, "change", change_request.pk)).content.decode()
    assert 'name="_approve"' in page and "fallback_value" in page

    response = bob.post(reverse("admin:values_changerequest_decide", args=[change_request.pk]), {"_approve": "Approve", "note": "ok"})

    assert response.status_code == 302
    change_request.refresh_from_db()
    assert (change_request.state, change_request.decided_by) == ("applied", "bob")
    assert multipliers().fallback_value == GOOD_MULTIPLIERS
    assert AuditEntry.objects.order_by("-pk").first().actor == "admin (approved by bob)"


def test_request_page__its_proposer__no_approve_button_and_an_approval_refused(admin_client, synced):
    change_request = proposed_by_admin()

    page = admin_client.get(admin_url(ChangeRequest, "change", change_request.pk)).content.decode()
    response = admin_client.post(
        reverse("admin:values_changerequest_decide", args=[change_request.pk]), {"_approve": "Approve"}, follow=True
    )

    assert 'name="_approve"' not in page and 'name="_reject"' in page
    assert "someone other than its proposer" in response.content.decode()
    change_request.refresh_from_db()
    assert change_request.state == "pending"


def test_request_page__apply_at_later__scheduled(bob, synced):
    change_request = proposed_by_admin()

    bob.post(
        reverse("admin:values_changerequest_decide", args=[change_request.pk]),
        {"_approve": "Approve", "apply_at": "2099-01-01T09:00"},
    )

    change_request.refresh_from_db()
    assert change_request.state == "scheduled" and change_request.apply_at.year == 2099
    assert multipliers().fallback_value != GOOD_MULTIPLIERS


def test_request_page__reject_without_note__refused_then_with_note_rejected(bob, synced):
    change_request = proposed_by_admin()
    decide = reverse("admin:values_changerequest_decide", args=[change_request.pk])

    bob.post(decide, {"_reject": "Reject"})
    change_request.refresh_from_db()
    assert change_request.state == "pending"

    bob.post(decide, {"_reject": "Reject", "note": "not this quarter"})
    change_request.refresh_from_db()
    assert (change_request.state, change_request.decision_note) == ("rejected", "not this quarter")


def test_decide__staff_without_the_approve_permission__403(synced, django_user_model):
    change_request = proposed_by_admin()
    user = django_user_model.objects.create_user("carol", password="unused-password", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_changerequest"))
    client = Client()
    client.force_login(user)

    response = client.post(reverse("admin:values_changerequest_decide", args=[change_request.pk]), {"_approve": "Approve"})

    assert response.status_code == 403
    change_request.refresh_from_db()
    assert change_request.state == "pending"


def test_value_type_add_with_a_link__change_requests_on__one_request_and_both_made_on_approval(
    admin_client, bob, synced, change_requests_on
):
    url = admin_url(ValueType, "add")
    source = link_of("industry_multipliers").source
    data = page_post_data(
        admin_client, url, key="seasonality", schema={"type": "object", "additionalProperties": {"type": "number"}},
        fallback_value={"q4": 1.2}, field_bounds={"*": {"min": 0.5, "max": 2}}, update_frequency="P1D", ttl="PT6H",
        max_staleness="P7D", change_reason="new planner input",
    )  # fmt: skip
    data.update({
        "source_links-TOTAL_FORMS": "1", "source_links-0-source": str(source.pk), "source_links-0-tier": "primary",
        "source_links-0-weight": "0.5", "source_links-0-channels": "[]",
    })  # fmt: skip

    preview = preview_of(admin_client.post(url, data))
    assert preview["preview"].served_note == "A new value type: nothing is served for it yet."
    admin_client.post(url, {**data, **CONFIRMED})

    change_request = ChangeRequest.objects.get()
    assert [(item["action"], item["object_type"]) for item in change_request.items] == [
        ("create", "values.valuetype"), ("create", "sources.valuetypesource")
    ]
    assert not ValueType.objects.filter(key="seasonality").exists()
    bob.post(reverse("admin:values_changerequest_decide", args=[change_request.pk]), {"_approve": "Approve"})
    created = ValueType.objects.get(key="seasonality")
    assert [(link.source_id, link.weight) for link in created.source_links.all()] == [(source.pk, 0.5)]


def test_value_type_page__pending_request__listed_with_a_link_to_it(admin_client, synced):
    change_request = proposed_by_admin()

    page = admin_client.get(admin_url(ValueType, "change", multipliers().pk)).content.decode()

    assert admin_url(ChangeRequest, "change", change_request.pk) in page
    assert "update value type industry_multipliers (fallback_value) (pending)</a> by admin" in page
