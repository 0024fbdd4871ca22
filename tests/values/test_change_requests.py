"""Change requests (values.change_requests): an edit held as a pending request, approved by
someone else (applied at once or at a scheduled time, by a real Celery worker and beat),
or rejected; validated at the proposal and again at the apply; refused as stale when its object
changed since; applied once however many workers try."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from audit.models import AuditEntry
from tests.refresh.celery_processes import CeleryProcess
from values.change_requests import (
    change_request_apply_due,
    change_request_approve,
    change_request_diff,
    change_request_propose,
    change_request_reject,
    changed_keys,
    edit_of,
    fallback_update_edit,
    override_create_edit,
)
from values.models import ChangeRequest, Override, ValueType, ValueTypeSource
from values.services import VersionConflict, value_type_update

KEY = "industry_multipliers"
REASON = "Retail demand is up this quarter"


def multipliers() -> ValueType:
    return ValueType.objects.get(key=KEY)


def propose_retail(retail: float, *, actor: str = "alice") -> ChangeRequest:
    value_type = multipliers()
    edit = fallback_update_edit(
        value_type=value_type, value={**value_type.fallback_value, "retail": retail}, expected_version=value_type.version
    )
    return change_request_propose(edits=[edit], reason=REASON, actor=actor, channel="api")


# Proposing -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_propose__valid_fallback_edit__pending_with_its_diff_and_nothing_applied(synced):
    before = multipliers()
    entries = AuditEntry.objects.count()

    request = propose_retail(1.4)

    assert request.state == ChangeRequest.State.PENDING
    assert (request.proposed_by, request.channel, request.reason, request.value_type_key) == ("alice", "api", REASON, KEY)
    [line] = change_request_diff(request)
    assert line.field == "fallback_value"
    assert line.before == before.fallback_value and line.after == {**before.fallback_value, "retail": 1.4}
    now = multipliers()
    assert (now.fallback_value, now.version) == (before.fallback_value, before.version)
    assert AuditEntry.objects.count() == entries


@pytest.mark.django_db
def test_propose__fallback_outside_the_bounds__refused_and_no_request(synced):
    with pytest.raises(ValidationError) as refused:
        propose_retail(5.0)

    assert "fallback_value" in refused.value.message_dict
    assert not ChangeRequest.objects.exists()


@pytest.mark.django_db
def test_propose__no_reason__refused(synced):
    value_type = multipliers()
    edit = fallback_update_edit(value_type=value_type, value={**value_type.fallback_value, "retail": 1.4}, expected_version=value_type.version)

    with pytest.raises(ValidationError):
        change_request_propose(edits=[edit], reason="  ", actor="alice", channel="api")

    assert not ChangeRequest.objects.exists()


@pytest.mark.django_db
def test_propose__edit_that_changes_nothing__refused(synced):
    value_type = multipliers()
    edit = fallback_update_edit(value_type=value_type, value=value_type.fallback_value, expected_version=value_type.version)

    with pytest.raises(ValidationError, match="changes nothing"):
        change_request_propose(edits=[edit], reason=REASON, actor="alice", channel="api")


@pytest.mark.django_db
def test_propose__version_read_is_old__version_conflict(synced):
    value_type = multipliers()

    with pytest.raises(VersionConflict):
        fallback_update_edit(value_type=value_type, value=value_type.fallback_value, expected_version=value_type.version - 1 or 99)


# Deciding --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_approve__by_the_proposer__refused_and_still_pending(synced):
    request = propose_retail(1.4)

    with pytest.raises(ValidationError, match="someone other than its proposer"):
        change_request_approve(change_request=request, actor="alice")

    request.refresh_from_db()
    assert request.state == ChangeRequest.State.PENDING
    assert multipliers().fallback_value["retail"] != 1.4


@pytest.mark.django_db
def test_approve__by_another_operator__applied_and_audited_with_both_names(synced):
    version = multipliers().version
    request = propose_retail(1.4)

    approved = change_request_approve(change_request=request, actor="bob", note="checked with finance")

    assert approved.state == ChangeRequest.State.APPLIED and approved.applied_at is not None
    assert (approved.decided_by, approved.decision_note) == ("bob", "checked with finance")
    value_type = multipliers()
    assert value_type.fallback_value["retail"] == 1.4
    assert value_type.version == version + 1
    entry = AuditEntry.objects.order_by("-pk").first()
    assert entry.actor == "alice (approved by bob)"
    assert entry.channel == "api"
    assert entry.reason == f"change request {request.pk}: {REASON}"
    assert entry.after["fallback_value"]["retail"] == 1.4


@pytest.mark.django_db
def test_approve__value_type_edited_since_the_proposal__failed_as_stale_and_nothing_applied(synced):
    request = propose_retail(1.4)
    value_type_update(value_type=multipliers(), actor="carol", channel="admin", reason="other edit", ttl=timedelta(hours=2))
    entries = AuditEntry.objects.count()

    result = change_request_approve(change_request=request, actor="bob")

    assert result.state == ChangeRequest.State.FAILED
    assert result.failure.startswith("Stale: the value type 'industry_multipliers' changed since this request was proposed")
    assert "propose it again" in result.failure
    assert multipliers().fallback_value["retail"] != 1.4
    assert AuditEntry.objects.count() == entries


@pytest.mark.django_db
def test_approve__override_refused_by_rules_narrowed_since__failed_and_not_created(synced):
    value_type = multipliers()
    value = {**value_type.fallback_value, "retail": 2.5}
    edit = override_create_edit(value_type=value_type, value=value, reason=REASON, actor="alice", context_match={"region": "us"})
    request = change_request_propose(edits=[edit], reason=REASON, actor="alice", channel="api")
    value_type_update(value_type=value_type, actor="carol", channel="admin", reason="tighter", field_bounds={"*": {"min": 0.3, "max": 2.0}})

    result = change_request_approve(change_request=request, actor="bob")

    assert result.state == ChangeRequest.State.FAILED
    assert result.failure.startswith("Refused by today's rules: value:")
    assert not Override.objects.exists()


@pytest.mark.django_db
def test_approve__source_link_weight_edited_since__failed_naming_the_field(synced):
    link = ValueTypeSource.objects.filter(value_type__key=KEY).order_by("pk").first()
    link.weight = 0.5
    request = change_request_propose(edits=[edit_of(link)], reason=REASON, actor="alice", channel="admin")
    ValueTypeSource.objects.filter(pk=link.pk).update(weight=0.9)

    result = change_request_approve(change_request=request, actor="bob")

    assert result.state == ChangeRequest.State.FAILED
    assert "changed since this request was proposed (weight)" in result.failure
    assert ValueTypeSource.objects.get(pk=link.pk).weight == 0.9


@pytest.mark.django_db
def test_approve__source_link_weight__applied(synced):
    link = ValueTypeSource.objects.filter(value_type__key=KEY).order_by("pk").first()
    link.weight = 0.5
    request = change_request_propose(edits=[edit_of(link)], reason=REASON, actor="alice", channel="admin")

    result = change_request_approve(change_request=request, actor="bob")

    assert result.state == ChangeRequest.State.APPLIED
    assert ValueTypeSource.objects.get(pk=link.pk).weight == 0.5


@pytest.mark.django_db
def test_reject__with_a_note__rejected_nothing_applied_and_no_later_approval(synced):
    request = propose_retail(1.4)

    rejected = change_request_reject(change_request=request, actor="bob", note="not this quarter")

    assert (rejected.state, rejected.decided_by, rejected.decision_note) == (ChangeRequest.State.REJECTED, "bob", "not this quarter")
    with pytest.raises(ValidationError, match="is rejected"):
        change_request_approve(change_request=request, actor="bob")
    assert multipliers().fallback_value["retail"] != 1.4


@pytest.mark.django_db
def test_reject__without_a_note__refused_and_still_pending(synced):
    request = propose_retail(1.4)

    with pytest.raises(ValidationError):
        change_request_reject(change_request=request, actor="bob", note="")

    request.refresh_from_db()
    assert request.state == ChangeRequest.State.PENDING


# Scheduling ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_approve__with_a_future_time__scheduled_applied_only_once_due_and_only_once(synced):
    request = propose_retail(1.4)
    apply_at = timezone.now() + timedelta(hours=1)

    scheduled = change_request_approve(change_request=request, actor="bob", apply_at=apply_at)

    assert (scheduled.state, scheduled.apply_at) == (ChangeRequest.State.SCHEDULED, apply_at)
    assert change_request_apply_due(now=apply_at - timedelta(seconds=1)) == []
    assert multipliers().fallback_value["retail"] != 1.4

    [applied] = change_request_apply_due(now=apply_at)

    assert applied.pk == request.pk and applied.state == ChangeRequest.State.APPLIED
    assert multipliers().fallback_value["retail"] == 1.4
    assert change_request_apply_due(now=apply_at + timedelta(minutes=1)) == []
    assert AuditEntry.objects.filter(actor="alice (approved by bob)").count() == 1


@pytest.mark.django_db(transaction=True)
def test_apply_due__two_workers_at_once__each_request_applied_once(synced):
    requests = [propose_retail(1.4, actor="alice")]
    override_edit = override_create_edit(
        value_type=multipliers(), value=multipliers().fallback_value, reason=REASON, actor="alice", context_match={"region": "de"}
    )
    requests.append(change_request_propose(edits=[override_edit], reason=REASON, actor="alice", channel="api"))
    apply_at = timezone.now() + timedelta(hours=1)
    for request in requests:
        change_request_approve(change_request=request, actor="bob", apply_at=apply_at)
    start = threading.Barrier(2)
    applied: list[list[int]] = []

    def worker() -> None:
        try:
            start.wait()
            applied.append([each.pk for each in change_request_apply_due(now=apply_at)])
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # A run that PostgreSQL chose as a deadlock's victim rolled back whole and left its request
    # scheduled: a later run applies it. What must never happen is a request applied twice.
    later = [each.pk for each in change_request_apply_due(now=apply_at)]

    assert sorted([*(pk for done in applied for pk in done), *later]) == sorted(request.pk for request in requests)
    assert set(ChangeRequest.objects.values_list("state", flat=True)) == {ChangeRequest.State.APPLIED}
    assert AuditEntry.objects.filter(actor="alice (approved by bob)").count() == 2
    assert Override.objects.filter(context_match={"region": "de"}).count() == 1


@pytest.mark.django_db(transaction=True)
def test_scheduled_request__celery_beat_and_worker__applied_when_due(synced, tmp_path):
    request = propose_retail(1.4)
    change_request_approve(change_request=request, actor="bob", apply_at=timezone.now() + timedelta(seconds=3))

    with CeleryProcess.worker(tmp_path) as worker, CeleryProcess.beat(tmp_path, DYNCONFIG_DISPATCH_INTERVAL="1") as beat:
        deadline = time.monotonic() + 90
        while ChangeRequest.objects.get(pk=request.pk).state == ChangeRequest.State.SCHEDULED:
            assert time.monotonic() < deadline, f"not applied\n{worker.output()[-3000:]}\n{beat.output()[-2000:]}"
            assert worker.process.poll() is None and beat.process.poll() is None
            time.sleep(0.3)
        log = worker.output()

    assert ChangeRequest.objects.get(pk=request.pk).state == ChangeRequest.State.APPLIED
    assert "Task values.tasks.apply_due_change_requests[" in log
    assert multipliers().fallback_value["retail"] == 1.4


def test_changed_keys__object_values__names_each_changed_added_and_removed_key():
    assert changed_keys({"retail": 1.1, "finance": 1.3, "old": 1}, {"retail": 1.4, "finance": 1.3, "toys": 1.2}) == (
        "old: removed; retail: 1.1 → 1.4; toys: added 1.2"
    )
    assert changed_keys([1], [2]) == ""
