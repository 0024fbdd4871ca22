"""The structured editor in a real browser: Debian's Chromium, headless, driven by Playwright.

An operator opens industry_multipliers, types 5.0 into the Retail input of the emergency
fallback and saves: the server refuses it and the refusal shows beside that input. They type
1.4, give a reason and save (through the confirmation step where edits are previewed): it is
saved, with one history entry. The pages are saved to test-artifacts/ (admin-editor.png,
admin-editor-refusal.png, admin-editor-preview.png, admin-editor-saved.png) for a person to see.

The database is read only before and after the browser runs: Playwright's sync API runs an event
loop in this thread, inside which Django refuses ORM calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from audit.models import AuditEntry
from playwright.sync_api import sync_playwright
from tests.monitoring.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, LOCAL_HOSTS, SCREENSHOT, TIMEOUT_MS
from values.models import ValueType

ARTIFACTS = SCREENSHOT.parent
USERNAME, PASSWORD = "marketing-ops", "a-long-password-2"
RETAIL_INPUT = '.field-fallback_value input[name="rjf§retail"]'
RETAIL_ROW = f".field-fallback_value .rjf-form-row:has({RETAIL_INPUT.split(' ', 1)[1]})"


@dataclass
class Visit:
    page_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # the fallback editor's input labels
    bounds_beside_retail: str = ""
    refusal_beside_retail: str = ""
    refusal_in_field_errors: str = ""
    was_previewed: bool = False
    saved_message: str = ""


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser(USERNAME, "ops@example.com", PASSWORD)


def edit_retail_multiplier(live_server, value_type_pk: int) -> Visit:
    assert CHROMIUM.exists(), "Debian's chromium is missing: run bin/browser (bin/test does)"
    ARTIFACTS.mkdir(exist_ok=True)
    visit = Visit()
    change_url = f"{live_server.url}/{settings.ADMIN_PATH}values/valuetype/{value_type_pk}/change/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("request", lambda request: visit.requested.append(request.url))
            page.on("pageerror", lambda error: visit.page_errors.append(str(error)))
            page.on("response", lambda response: response.status >= 400 and visit.failed.append(response.url))

            page.goto(f"{live_server.url}/{settings.ADMIN_PATH}login/?next={urlsplit(change_url).path}")
            page.fill("#id_username", USERNAME)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_selector(RETAIL_INPUT)
            visit.labels = page.locator(".field-fallback_value .rjf-form-row label").all_inner_texts()
            visit.bounds_beside_retail = page.locator(RETAIL_ROW).inner_text()
            page.locator(".field-fallback_value").screenshot(path=str(ARTIFACTS / "admin-editor.png"))

            # 5.0: refused, beside the input.
            page.fill(RETAIL_INPUT, "5.0")
            page.fill("#id_change_reason", "Holiday demand")
            page.click("input[name=_continue]")
            page.wait_for_selector(RETAIL_INPUT)
            visit.refusal_beside_retail = page.locator(RETAIL_ROW).inner_text()
            visit.refusal_in_field_errors = page.locator(".field-fallback_value ul.errorlist").first.inner_text()
            page.locator(".field-fallback_value").screenshot(path=str(ARTIFACTS / "admin-editor-refusal.png"))

            # 1.4 with a reason: saved (confirmed on the preview where edits are previewed).
            page.fill(RETAIL_INPUT, "1.4")
            page.fill("#id_change_reason", "Holiday demand")
            page.click("input[name=_save]")
            page.wait_for_load_state()
            confirm = page.locator("input[name=_confirm]")
            if confirm.count():
                visit.was_previewed = True
                page.screenshot(path=str(ARTIFACTS / "admin-editor-preview.png"), full_page=True)
                confirm.click()
                page.wait_for_load_state()
            visit.saved_message = page.locator("ul.messagelist").inner_text()
            page.screenshot(path=str(ARTIFACTS / "admin-editor-saved.png"), full_page=True)
        finally:
            browser.close()
    return visit


def test_multiplier_editor__in_chromium__5_refused_beside_its_input_then_1_4_saved_with_reason(
    synced, operator, live_server
):
    value_type = ValueType.objects.get(key="industry_multipliers")
    stored_retail = value_type.fallback_value["retail"]

    visit = edit_retail_multiplier(live_server, value_type.pk)

    assert visit.page_errors == []
    assert [url for url in visit.failed if urlsplit(url).path != "/favicon.ico"] == []
    assert {urlsplit(url).hostname for url in visit.requested} <= LOCAL_HOSTS
    assert visit.labels == ["Finance", "Healthcare", "Manufacturing", "Retail", "Services", "Technology"]
    assert "Allowed: 0.3 to 3.0" in visit.bounds_beside_retail
    assert "is above the maximum 3.0" in visit.refusal_beside_retail, visit
    assert visit.refusal_in_field_errors.startswith("retail: 5")
    assert "changed successfully" in visit.saved_message
    value_type.refresh_from_db()
    assert value_type.fallback_value["retail"] == 1.4
    # One entry, from the stored value: the refused 5.0 was never saved.
    [entry] = AuditEntry.objects.filter(channel="admin", object_type="values.valuetype")
    assert (entry.actor, entry.reason) == (USERNAME, "Holiday demand")
    assert (entry.before["fallback_value"]["retail"], entry.after["fallback_value"]["retail"]) == (stored_retail, 1.4)
    for name in ("admin-editor.png", "admin-editor-refusal.png", "admin-editor-saved.png"):
        assert (ARTIFACTS / name).stat().st_size > 0
