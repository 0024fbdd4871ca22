"""Webhooks: registering receivers over the API (the secret shown once, never stored nor
returned nor in the history; bad URLs refused; the webhooks:manage scope), and delivering change
events to a local receiver with a real Celery worker on the Redis broker: a correctly signed
POST, and for a receiver that fails, retries with backoff, then a recorded failure.

Changes are made through the services and committed (transactional tests): their events go to
Redis and to the broker from this process, as from any process that commits a change."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from access.models import Scope
from audit.models import AuditEntry
from tests.refresh.celery_processes import CeleryProcess
from tests.servers import LocalServer, RecordedRequest
from tests.tokens import token_client
from values.models import ValueType
from values.services import override_create
from webhooks.models import Webhook, WebhookDelivery
from webhooks.services import SIGNATURE_HEADER, webhook_create, webhook_secret

KEY = "budget_thresholds"
WEBHOOKS = "/api/v1/webhooks/"
WAIT = 90.0  # a worker on a busy 2-core machine: generous, far below a hang
# Receivers' signature check: a delivery signed more than this long ago is a replay.
TOLERANCE_SECONDS = 300


@pytest.fixture
def receiver():
    with LocalServer() as server:
        yield server


@pytest.fixture
def manager(engine) -> APIClient:
    return token_client("hooks", [Scope.WEBHOOKS_MANAGE])


def verify_signature(secret: str, request: RecordedRequest) -> bool:
    """What a receiver does (docs/api.md, Webhooks): recompute the HMAC of "<t>.<body>"."""
    parts = dict(item.split("=", 1) for item in request.headers[SIGNATURE_HEADER].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + request.body, hashlib.sha256).hexdigest()
    is_recent = abs(time.time() - int(parts["t"])) < TOLERANCE_SECONDS
    return hmac.compare_digest(expected, parts["v1"]) and is_recent


def make_override(region: str = "us") -> None:
    value_type = ValueType.objects.get(key=KEY)
    override_create(
        value_type=value_type, value=value_type.fallback_value, reason="campaign", actor="ops", channel="test",
        context_match={"region": region},
    )  # fmt: skip


def wait_until(condition: Callable[[], object], what: str, worker: CeleryProcess) -> object:
    deadline = time.monotonic() + WAIT
    while not (result := condition()):
        assert worker.process.poll() is None, f"worker exited:\n{worker.output()[-6000:]}"
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {WAIT}s:\n{worker.output()[-6000:]}")
        time.sleep(0.1)
    return result


# Registering -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api__webhook_registered__secret_shown_once_never_returned_stored_or_in_the_history(manager):
    response = manager.post(WEBHOOKS, {"url": "https://hooks.example.com/dynconfig", "keys": [KEY]}, format="json")

    assert response.status_code == 201, response.content
    created = response.json()
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    listed = manager.get(WEBHOOKS).json()
    detail = manager.get(f"{WEBHOOKS}{created['id']}/").json()
    assert [item["url"] for item in listed] == ["https://hooks.example.com/dynconfig"]
    assert "secret" not in listed[0] and "secret" not in detail
    webhook = Webhook.objects.get(pk=created["id"])
    stored = json.dumps([getattr(webhook, field.attname) for field in Webhook._meta.concrete_fields], default=str)
    assert secret not in stored and secret.removeprefix("whsec_") not in stored
    entry = AuditEntry.objects.get(object_type="webhooks.webhook", object_id=str(webhook.pk))
    assert entry.action == "create" and "secret_salt" not in entry.after and secret not in json.dumps(entry.after)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    ["ftp://hooks.example.com/x", "not a url", "https://user:password@hooks.example.com/x", "http:///no-host"],
)
def test_api__bad_url__400_and_nothing_registered(manager, url):
    response = manager.post(WEBHOOKS, {"url": url}, format="json")

    assert response.status_code == 400
    assert "url" in response.json()["error"]["fields"]
    assert not Webhook.objects.exists()


@pytest.mark.django_db
def test_api__secret_rotated__new_secret_shown_once_and_the_old_one_no_longer_signs(manager):
    webhook, old_secret = webhook_create(url="https://hooks.example.com/x", actor="ops", channel="test")

    response = manager.post(f"{WEBHOOKS}{webhook.pk}/rotate-secret/", {"reason": "leaked"}, format="json")

    assert response.status_code == 200
    new_secret = response.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != old_secret
    assert webhook_secret(Webhook.objects.get(pk=webhook.pk)) == new_secret  # what deliveries are signed with now


@pytest.mark.django_db
@pytest.mark.parametrize("scopes", [[Scope.VALUES_WRITE], [Scope.SOURCES_MANAGE], [Scope.VALUES_READ]])
def test_api__token_without_webhooks_manage__403_and_nothing_registered(engine, scopes):
    client = token_client("not hooks", scopes)

    response = client.post(WEBHOOKS, {"url": "https://hooks.example.com/x"}, format="json")

    assert response.status_code == 403
    assert client.get(WEBHOOKS).status_code == 403
    assert not Webhook.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_change__no_worker_running__edit_commits_and_no_delivery_is_attempted_in_its_process(engine, receiver):
    receiver.route("POST", "/hook", hang=True)  # a receiver that never answers
    webhook_create(url=f"{receiver.url}/hook", actor="ops", channel="test")

    make_override()

    assert receiver.requests == []  # the edit only queued a message: the worker delivers
    assert not WebhookDelivery.objects.exists()


# Delivering, with a real worker ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_delivery__receiver_answers_200__one_signed_post_of_the_event_and_delivered_recorded(engine, receiver, tmp_path):
    receiver.route("POST", "/hook", json={"ok": True})
    webhook, secret = webhook_create(url=f"{receiver.url}/hook", actor="ops", channel="test", keys=[KEY])
    webhook_create(url=f"{receiver.url}/other", actor="ops", channel="test", keys=["industry_multipliers"])

    with CeleryProcess.worker(tmp_path) as worker:
        worker.wait_for("ready.")
        make_override("us")
        wait_until(lambda: WebhookDelivery.objects.filter(status="delivered").exists(), "delivered", worker)

    [request] = receiver.requests
    assert request.path == "/hook"
    assert verify_signature(secret, request)
    assert not verify_signature("whsec_" + "0" * 64, request)
    event = json.loads(request.body)
    assert (event["kind"], event["key"], event["context_match"]) == ("override.created", KEY, {"region": "us"})
    assert request.headers["X-DynConfig-Event-Id"] == event["id"]
    assert request.headers["X-DynConfig-Event"] == "override.created"
    [delivery] = WebhookDelivery.objects.all()
    assert (delivery.webhook_id, delivery.event_id, delivery.attempts, delivery.last_status_code) == (
        webhook.pk, event["id"], 1, 200,
    )  # fmt: skip
    assert delivery.delivered_at is not None and delivery.last_error == ""


@pytest.mark.django_db(transaction=True)
def test_delivery__receiver_fails__retried_with_backoff_then_failure_recorded(engine, receiver, tmp_path):
    receiver.route("POST", "/hook", status=500, json={"error": "down"})
    webhook_create(url=f"{receiver.url}/hook", actor="ops", channel="test")

    settings = {"DYNCONFIG_WEBHOOK_ATTEMPTS": "3", "DYNCONFIG_WEBHOOK_BACKOFF": "0.2"}
    with CeleryProcess.worker(tmp_path, **settings) as worker:
        worker.wait_for("ready.")
        make_override("us")
        wait_until(lambda: WebhookDelivery.objects.filter(status="failed").exists(), "failed", worker)

    [delivery] = WebhookDelivery.objects.all()
    assert (delivery.attempts, delivery.last_status_code, delivery.next_attempt_at) == (3, 500, None)
    assert delivery.last_error.startswith("HTTP 500")
    assert len(receiver.requests) == 3
    signed_at = [int(request.headers[SIGNATURE_HEADER].split(",")[0].removeprefix("t=")) for request in receiver.requests]
    assert signed_at == sorted(signed_at)  # each attempt signed anew


# The admin ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin__webhook_added__secret_shown_once_on_the_next_page_and_the_change_audited(engine, admin_client):
    response = admin_client.post(
        "/admin/webhooks/webhook/add/",
        {"url": "https://hooks.example.com/admin", "description": "ops", "keys": "[]", "is_enabled": "on"},
        follow=True,
    )

    assert response.status_code == 200
    webhook = Webhook.objects.get()
    shown = [str(message) for message in response.context["messages"]]
    assert any(webhook_secret(webhook) in message for message in shown)
    assert AuditEntry.objects.filter(object_type="webhooks.webhook", channel="admin", action="create").exists()
    again = admin_client.get(f"/admin/webhooks/webhook/{webhook.pk}/change/")
    assert webhook_secret(webhook).encode() not in again.content


@pytest.mark.django_db
def test_admin__deliveries__listed_with_status_and_attempts_read_only(engine, admin_client):
    webhook, _ = webhook_create(url="https://hooks.example.com/x", actor="ops", channel="test")
    delivery = WebhookDelivery.objects.create(
        webhook=webhook, event_id="1-0", event_kind="override.created", payload={"id": "1-0"},
        status=WebhookDelivery.Status.FAILED, attempts=6, last_status_code=500, last_error="HTTP 500: down",
    )  # fmt: skip

    listed = admin_client.get("/admin/webhooks/webhookdelivery/")
    detail = admin_client.get(f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/")

    assert listed.status_code == detail.status_code == 200
    assert b"override.created" in listed.content and b"HTTP 500: down" in detail.content
    assert b'name="_save"' not in detail.content  # nothing to edit


@pytest.mark.django_db
def test_admin__url_with_credentials__form_error_and_nothing_added(engine, admin_client):
    response = admin_client.post(
        "/admin/webhooks/webhook/add/",
        {"url": "https://user:secret@hooks.example.com/x", "keys": "[]", "is_enabled": "on"},
    )

    assert response.status_code == 200  # the form again, with its error
    assert "No credentials in the URL" in response.content.decode()
    assert not Webhook.objects.exists()
