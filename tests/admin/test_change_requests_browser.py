"""The four-eyes save flow in a real browser: Debian's Chromium, headless, driven by Playwright.

With change requests on, alice opens industry_multipliers (its "Served now" block), sets the
Retail multiplier of the emergency fallback to 1.4 with a reason and saves: the preview shows
the diff, the validation result and the served answers that change, and says that confirming
proposes the edit. She confirms: a pending change request, nothing applied. bob, another
operator, opens the request, sees the diff and approves it: it applies, and the values API
serves the new fallback (every source is down, so the fallback is what is served).

Screenshots go to test-artifacts/: admin-served-now.png, admin-preview.png,
admin-change-request-proposed.png, admin-change-request-approved.png, api-after-approval.png.
The database is read only before and after the browser runs: Playwright's sync API runs an event
loop in this thread, inside which Django refuses ORM calls.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import override_settings
from playwright.sync_api import sync_playwright

from audit.models import AuditEntry
from tests.api.conftest import sources_down  # noqa: F401
from tests.monitoring.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, LOCAL_HOSTS, SCREENSHOT, TIMEOUT_MS
from tests.values.conftest import engine  # noqa: F401
from values import get_value
from values.models import ChangeRequest, ContextReads, ValueType

ARTIFACTS = SCREENSHOT.parent
PASSWORD = "a-long-password-3"
RETAIL_INPUT = '.field-fallback_value input[name="rjf§retail"]'
REASON = "Holiday demand in US retail"
# The propagation limit of an operator's change (PRODUCT.md), with room for a loaded machine.
SERVED_WITHIN = 10.0


@dataclass
class Flow:
    page_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    served_now: str = ""
    preview: str = ""
    proposed_message: str = ""
    request_url: str = ""
    approved_message: str = ""
    api_answer: dict = field(default_factory=dict)


def _watch(page, flow: Flow) -> None:
    page.set_default_timeout(TIMEOUT_MS)
    page.on("request", lambda request: flow.requested.append(request.url))
    page.on("pageerror", lambda error: flow.page_errors.append(str(error)))
    page.on("response", lambda response: response.status >= 400 and flow.failed.append(response.url))


def _log_in(page, base: str, username: str, next_path: str) -> None:
    page.goto(f"{base}/{settings.ADMIN_PATH}login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


def propose_and_approve(live_server, value_type_pk: int) -> Flow:
    assert CHROMIUM.exists(), "Debian's chromium is missing: run bin/browser (bin/test does)"
    ARTIFACTS.mkdir(exist_ok=True)
    flow = Flow()
    base = live_server.url
    change_path = f"/{settings.ADMIN_PATH}values/valuetype/{value_type_pk}/change/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            alice = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            _watch(alice, flow)
            _log_in(alice, base, "alice", change_path)
            alice.wait_for_selector(RETAIL_INPUT)
            flow.served_now = alice.locator("table.served-now").inner_text()
            alice.locator("fieldset.served-now").screenshot(path=str(ARTIFACTS / "admin-served-now.png"))

            alice.fill(RETAIL_INPUT, "1.4")
            alice.fill("#id_change_reason", REASON)
            alice.click("input[name=_save]")
            alice.wait_for_selector("input[name=_confirm]")
            flow.preview = alice.locator("#content-main").inner_text()
            alice.screenshot(path=str(ARTIFACTS / "admin-preview.png"), full_page=True)

            alice.click("input[name=_confirm]")
            alice.wait_for_selector("ul.messagelist")
            flow.proposed_message = alice.locator("ul.messagelist").inner_text()
            flow.request_url = alice.url
            alice.screenshot(path=str(ARTIFACTS / "admin-change-request-proposed.png"), full_page=True)

            bob = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            _watch(bob, flow)
            _log_in(bob, base, "bob", urlsplit(flow.request_url).path)
            bob.wait_for_selector("input[name=_approve]")
            bob.fill("#id_note", "Checked with the retail team")
            bob.click("input[name=_approve]")
            bob.wait_for_selector("ul.messagelist")
            flow.approved_message = bob.locator("ul.messagelist").inner_text()
            bob.screenshot(path=str(ARTIFACTS / "admin-change-request-approved.png"), full_page=True)

            # What a consumer is served now, over the API, in the same browser.
            deadline = time.monotonic() + SERVED_WITHIN
            while True:
                bob.goto(f"{base}/api/v1/values/industry_multipliers/?region=us")
                flow.api_answer = json.loads(bob.locator("body").inner_text())
                if flow.api_answer["value"]["retail"] == 1.4 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            bob.screenshot(path=str(ARTIFACTS / "api-after-approval.png"), full_page=True)
        finally:
            browser.close()
    return flow


@pytest.fixture
def operators(django_user_model):
    for name in ("alice", "bob"):
        django_user_model.objects.create_superuser(name, f"{name}@example.com", PASSWORD)


@override_settings(DYNCONFIG_CHANGE_REQUESTS=True, DYNCONFIG_ANONYMOUS_READS=True)
def test_change_request__proposed_by_alice_in_chromium__approved_by_bob__then_served_by_the_api(
    sources_down, operators, live_server  # noqa: F811
):
    value_type = ValueType.objects.get(key="industry_multipliers")
    stored_retail = value_type.fallback_value["retail"]
    get_value("industry_multipliers", {"region": "us"})  # a consumer's read: served from the fallback
    ContextReads.objects.update_or_create(
        value_type=value_type, context_key="region=us", defaults={"context": {"region": "us"}, "reads": 12}
    )

    flow = propose_and_approve(live_server, value_type.pk)

    assert flow.page_errors == []
    assert [url for url in flow.failed if urlsplit(url).path != "/favicon.ico"] == []
    assert {urlsplit(url).hostname for url in flow.requested} <= LOCAL_HOSTS
    assert "(empty context)" in flow.served_now and "region=us" in flow.served_now
    assert "Valid: the edit passes" in flow.preview
    assert "fallback_value" in flow.preview
    assert "changes: Served from the emergency fallback: the new fallback." in flow.preview
    assert "Change requests are on: confirming proposes this edit" in flow.preview
    assert "Not applied yet: proposed as change request" in flow.proposed_message
    [change_request] = ChangeRequest.objects.all()
    assert (change_request.proposed_by, change_request.decided_by, change_request.state) == ("alice", "bob", "applied")
    assert "approved and applied" in flow.approved_message
    assert flow.api_answer["value"]["retail"] == 1.4
    assert flow.api_answer["provenance"]["tier"] == "fallback"
    [entry] = AuditEntry.objects.filter(object_type="values.valuetype", channel="admin")
    assert (entry.actor, entry.reason) == ("alice (approved by bob)", f"change request {change_request.pk}: {REASON}")
    assert (entry.before["fallback_value"]["retail"], entry.after["fallback_value"]["retail"]) == (stored_retail, 1.4)
    for name in ("admin-served-now.png", "admin-preview.png", "admin-change-request-proposed.png",
                 "admin-change-request-approved.png", "api-after-approval.png"):  # fmt: skip
        assert (ARTIFACTS / name).stat().st_size > 0
