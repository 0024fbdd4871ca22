"""Change requests over the API (DYNCONFIG_CHANGE_REQUESTS on): a values:write token's writes
answer 202 with a pending request and change nothing; a values:approve token, not the proposer,
approves (applied, then served) or rejects; refusals are clear errors in the one format."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from access.models import Scope
from audit.models import AuditEntry
from tests.api.operator_fixtures import WRITER_ACTOR, database_state, poll, reader, writer  # noqa: F401
from tests.tokens import token_client
from values.models import ChangeRequest, Override, ValueType
from values.services import override_create, value_type_update

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sources_down")]

KEY = "industry_multipliers"
REASON = "Retail demand is up this quarter"


@pytest.fixture(autouse=True)
def change_requests_on():
    with override_settings(DYNCONFIG_CHANGE_REQUESTS=True):
        yield


@pytest.fixture
def approver(engine):
    return token_client("ops-approver", [Scope.VALUES_APPROVE])


def multipliers() -> ValueType:
    return ValueType.objects.get(key=KEY)


def propose_retail(client, retail: float):
    value_type = multipliers()
    body = {"value": {**value_type.fallback_value, "retail": retail}, "reason": REASON, "version": value_type.version}
    return client.put(f"/api/v1/values/{KEY}/fallback/", body, format="json")


def test_fallback_put__change_requests_on__202_pending_request_with_diff_and_nothing_applied(writer):
    before = multipliers().fallback_value
    entries = AuditEntry.objects.count()

    response = propose_retail(writer, 1.4)

    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"] == f"/api/v1/change-requests/{body['id']}/"
    assert (body["state"], body["proposed_by"], body["channel"], body["value_type"]) == ("pending", WRITER_ACTOR, "api", KEY)
    [line] = body["diff"]
    assert (line["field"], line["before"], line["after"]) == ("fallback_value", before, {**before, "retail": 1.4})
    assert writer.get(f"/api/v1/values/{KEY}/fallback/").json()["value"] == before
    assert AuditEntry.objects.count() == entries


def test_approve__approver_token__applied_audited_with_both_names_and_served(writer, approver, reader):
    proposal = propose_retail(writer, 1.4).json()

    response = approver.post(f"/api/v1/change-requests/{proposal['id']}/approve/", {"note": "ok"}, format="json")

    assert response.status_code == 200, response.content
    assert (response.json()["state"], response.json()["decided_by"]) == ("applied", "token:ops-approver")
    entry = AuditEntry.objects.order_by("-pk").first()
    assert entry.actor == f"{WRITER_ACTOR} (approved by token:ops-approver)"
    assert entry.reason == f"change request {proposal['id']}: {REASON}"
    served = poll(
        lambda: reader.get(f"/api/v1/values/{KEY}/", {"region": "us"}).json(),
        lambda answer: answer["value"]["retail"] == 1.4,
    )
    assert served["value"]["retail"] == 1.4 and served["provenance"]["tier"] == "fallback"


def test_approve__write_token__403_and_still_pending(writer):
    proposal = propose_retail(writer, 1.4).json()

    response = writer.post(f"/api/v1/change-requests/{proposal['id']}/approve/", {}, format="json")

    assert response.status_code == 403
    assert ChangeRequest.objects.get(pk=proposal["id"]).state == "pending"


def test_approve__by_its_proposer__403_in_the_error_format_and_still_pending(engine):
    both = token_client("ops-both", [Scope.VALUES_WRITE, Scope.VALUES_APPROVE])
    proposal = propose_retail(both, 1.4).json()

    response = both.post(f"/api/v1/change-requests/{proposal['id']}/approve/", {}, format="json")

    assert response.status_code == 403
    assert "someone other than its proposer" in response.json()["error"]["message"]
    assert ChangeRequest.objects.get(pk=proposal["id"]).state == "pending"
    assert multipliers().fallback_value["retail"] != 1.4


def test_approve__value_type_changed_since__409_stale_recorded_failed_and_nothing_applied(writer, approver):
    proposal = propose_retail(writer, 1.4).json()
    value_type_update(value_type=multipliers(), actor="carol", channel="admin", reason="other", ttl=timedelta(hours=2))

    response = approver.post(f"/api/v1/change-requests/{proposal['id']}/approve/", {}, format="json")

    assert response.status_code == 409
    assert "changed since this request was proposed" in response.json()["error"]["message"]
    assert ChangeRequest.objects.get(pk=proposal["id"]).state == "failed"
    assert multipliers().fallback_value["retail"] != 1.4


def test_approve__apply_at_in_the_future__scheduled_and_not_yet_applied(writer, approver):
    proposal = propose_retail(writer, 1.4).json()
    apply_at = timezone.now() + timedelta(hours=1)

    response = approver.post(
        f"/api/v1/change-requests/{proposal['id']}/approve/", {"apply_at": apply_at.isoformat()}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["state"] == "scheduled" and response.json()["apply_at"] is not None
    assert multipliers().fallback_value["retail"] != 1.4


def test_reject__with_a_note__rejected_then_a_second_decision_is_409(writer, approver):
    proposal = propose_retail(writer, 1.4).json()
    url = f"/api/v1/change-requests/{proposal['id']}"

    rejected = approver.post(f"{url}/reject/", {"note": "not this quarter"}, format="json")
    again = approver.post(f"{url}/approve/", {}, format="json")

    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    assert again.status_code == 409 and "is rejected" in again.json()["error"]["message"]
    assert multipliers().fallback_value["retail"] != 1.4


def test_reject__without_a_note__400(writer, approver):
    proposal = propose_retail(writer, 1.4).json()

    response = approver.post(f"/api/v1/change-requests/{proposal['id']}/reject/", {}, format="json")

    assert response.status_code == 400 and "note" in response.json()["error"]["fields"]


def test_fallback_put__outside_the_bounds__400_and_no_request(writer):
    state = database_state()

    response = propose_retail(writer, 5.0)

    assert response.status_code == 400
    assert "value" in response.json()["error"]["fields"]
    assert not ChangeRequest.objects.exists()
    assert database_state() == state


def test_fallback_put__old_version__409_and_no_request(writer):
    value_type = multipliers()
    body = {"value": {**value_type.fallback_value, "retail": 1.4}, "reason": REASON, "version": value_type.version + 1}

    response = writer.put(f"/api/v1/values/{KEY}/fallback/", body, format="json")

    assert response.status_code == 409
    assert not ChangeRequest.objects.exists()


def test_override_create_then_delete__each_proposed_and_applied_on_approval(writer, approver):
    value = multipliers().fallback_value
    created = writer.post(
        "/api/v1/overrides/", {"value_type": KEY, "context_match": {"region": "us"}, "value": value, "reason": REASON}, format="json"
    )
    assert created.status_code == 202, created.content
    assert not Override.objects.exists()

    approver.post(f"/api/v1/change-requests/{created.json()['id']}/approve/", {}, format="json")

    override = Override.objects.get()
    assert override.author == WRITER_ACTOR and override.context_match == {"region": "us"}
    deleted = writer.delete(f"/api/v1/overrides/{override.pk}/", {"reason": "over", "version": override.version}, format="json")
    assert deleted.status_code == 202, deleted.content
    assert Override.objects.exists()
    approver.post(f"/api/v1/change-requests/{deleted.json()['id']}/approve/", {}, format="json")
    assert not Override.objects.exists()


def test_override_patch__proposed_with_the_changed_fields_only(writer):
    override = override_create(
        value_type=multipliers(), value=multipliers().fallback_value, reason=REASON, actor="x", channel="test",
        context_match={"region": "us"},
    )

    response = writer.patch(
        f"/api/v1/overrides/{override.pk}/", {"context_match": {"region": "de"}, "reason": "move", "version": override.version},
        format="json",
    )

    assert response.status_code == 202, response.content
    assert [(line["field"], line["before"], line["after"]) for line in response.json()["diff"]] == [
        ("context_match", {"region": "us"}, {"region": "de"})
    ]
    assert Override.objects.get(pk=override.pk).context_match == {"region": "us"}


def test_list__state_filter__only_those_newest_first(writer, approver, reader):
    first = propose_retail(writer, 1.4).json()
    approver.post(f"/api/v1/change-requests/{first['id']}/reject/", {"note": "no"}, format="json")
    second = propose_retail(writer, 1.5).json()

    pending = reader.get("/api/v1/change-requests/", {"state": "pending"}).json()
    everything = reader.get("/api/v1/change-requests/").json()

    assert [each["id"] for each in pending] == [second["id"]]
    assert [each["id"] for each in everything] == [second["id"], first["id"]]


def test_read__unknown_id__404(reader):
    assert reader.get("/api/v1/change-requests/999999/").status_code == 404
