"""The home page and a revert from history in a real browser: Debian's Chromium, headless,
driven by Playwright.

The home page: an anonymous visitor (the test environment, where value reads need no sign-in)
opens `/` and sees what runs (environment, database, cache, broker), a link to each place
(admin, dashboard, API docs and schema, liveness and readiness, metrics) and each value type with
the tier and age of its answer, from values made through the engine's real paths
(tests/monitoring/dashboard_seed.py). Following the Admin link leads to the admin's login form,
the Liveness link to the probe's answer. Saved as test-artifacts/home.png.

The revert: an operator sets the Retail multiplier of industry_multipliers' emergency fallback
to 1.4 through the structured editor and its preview step, opens the value type's History, the
entry of that edit, its Revert link, gives a reason and confirms: the fallback is as it was, and
the history holds a new entry "revert of entry N: <reason>". Saved as
test-artifacts/admin-revert-confirmation.png and test-artifacts/admin-reverted.png.

The database is read only before and after the browser runs: Playwright's sync API runs an event
loop in this thread, inside which Django refuses ORM calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.urls import reverse
from playwright.sync_api import Page, expect, sync_playwright

from audit.models import AuditEntry
from core.answers import TIERS
from tests.api.conftest import sources_down  # noqa: F401
from tests.monitoring.dashboard_seed import seed_dashboard
from tests.monitoring.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, LOCAL_HOSTS, SCREENSHOT, TIMEOUT_MS
from tests.values.conftest import engine, local_server  # noqa: F401
from values.models import ValueType

ARTIFACTS = SCREENSHOT.parent
USERNAME, PASSWORD = "revert-operator", "a-long-password-4"
RETAIL_INPUT = '.field-fallback_value input[name="rjf§retail"]'
EDIT_REASON = "Holiday demand"
REVERT_REASON = "Holiday demand was a forecast, not a fact"
# The home page's links, in its order: (label, URL name).
HOME_LINKS = (
    ("Admin", "admin:index"),
    ("Dashboard", "monitoring_dashboard"),
    ("API docs", "api-docs"),
    ("OpenAPI schema", "schema"),
    ("Liveness", "healthz"),
    ("Readiness", "readyz"),
    ("Metrics", "metrics"),
)
AGE = re.compile(r"^\d.* ago$")  # Django's timesince: "5\xa0minutes ago", "3\xa0hours, 2\xa0minutes ago"


@dataclass
class Visit:
    """What the browser saw and asked for."""

    page_errors: list[str] = field(default_factory=list)  # exceptions thrown by the page's scripts
    failed: list[str] = field(default_factory=list)  # URLs answered with an error status
    requested: list[str] = field(default_factory=list)
    # The home page.
    running: dict[str, str] = field(default_factory=dict)  # "Environment" -> "test", ...
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, href)
    values: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # key -> (tier, age, note)
    admin_link_status: int = 0
    admin_link_path: str = ""
    health_link_status: int = 0
    health_link_body: str = ""
    # The revert.
    saved_message: str = ""
    confirmation: str = ""  # the confirmation page's diff table
    reverted_message: str = ""
    reverted_entry_path: str = ""


def _launch(playwright):
    assert CHROMIUM.exists(), "Debian's chromium is missing: run bin/browser (bin/test does)"
    ARTIFACTS.mkdir(exist_ok=True)
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def _watch(page: Page, visit: Visit) -> None:
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page.on("request", lambda request: visit.requested.append(request.url))
    page.on("pageerror", lambda error: visit.page_errors.append(str(error)))
    page.on("response", lambda response: response.status >= 400 and visit.failed.append(response.url))


def assert_clean(visit: Visit) -> None:
    """No script error, no failed request (but the favicon Chromium asks for by itself: the
    admin has none), and no request to another host."""
    assert visit.page_errors == []
    assert [url for url in visit.failed if urlsplit(url).path != "/favicon.ico"] == []
    assert {urlsplit(url).hostname for url in visit.requested} <= LOCAL_HOSTS


# --- the home page ---------------------------------------------------------------------------


def visit_home(live_server) -> Visit:
    """Open `/` anonymously, read what it shows, then follow its Admin and Liveness links."""
    visit = Visit()
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _watch(page, visit)
            page.goto(f"{live_server.url}/")
            expect(page.locator(".home-values tbody tr[data-value-type]").first).to_be_visible()
            for row in page.locator(".home-running tr").all():
                visit.running[row.locator("th").inner_text()] = row.locator("td").inner_text()
            for link in page.locator(".home-links th a").all():
                visit.links.append((link.inner_text(), link.get_attribute("href")))
            for row in page.locator(".home-values tbody tr[data-value-type]").all():
                cells = row.locator("td").all_inner_texts()
                visit.values[row.get_attribute("data-value-type")] = (cells[0], cells[2], cells[3])
            page.screenshot(path=str(ARTIFACTS / "home.png"), full_page=True)

            links = page.locator(".home-links")
            with page.expect_navigation() as navigation:
                links.get_by_role("link", name="Admin", exact=True).click()
            expect(page.locator("#id_username")).to_be_visible()  # anonymous: the admin asks to sign in
            visit.admin_link_status = navigation.value.status
            visit.admin_link_path = urlsplit(page.url).path

            page.go_back()
            with page.expect_navigation() as navigation:
                links.get_by_role("link", name="Liveness", exact=True).click()
            visit.health_link_status = navigation.value.status
            visit.health_link_body = page.locator("body").inner_text()
        finally:
            browser.close()
    return visit


@pytest.fixture
def served(engine, local_server):  # noqa: F811
    """Values made through the engine's real paths: some fetched from sources served locally
    (so with an age), the rest served from the fallback (their sources down, so without one)."""
    seed_dashboard(local_server)
    return local_server


def test_home__anonymous_in_chromium__what_runs_every_link_and_each_values_tier_and_age(served, live_server):
    keys = set(ValueType.objects.values_list("key", flat=True))
    expected_links = [(label, reverse(name)) for label, name in HOME_LINKS]

    visit = visit_home(live_server)

    assert_clean(visit)
    assert list(visit.running) == ["Environment", "Database", "Cache", "Celery broker"]
    assert visit.running["Environment"] == settings.DYNCONFIG_ENV
    assert visit.running["Database"].startswith(f"PostgreSQL {settings.DATABASES['default']['NAME']} on ")
    assert visit.running["Cache"].startswith("Redis redis://")
    assert visit.running["Celery broker"]
    assert visit.links == expected_links
    assert set(visit.values) == keys
    for key, (tier, age, note) in visit.values.items():
        assert tier in TIERS, (key, tier)
        # "—": a fallback, never fetched, and its row says why it is served.
        assert AGE.match(age) or (age == "—" and note), (key, tier, age, note)
    assert any(AGE.match(age) for _, age, _ in visit.values.values()), visit.values  # fetched values show their age
    assert (visit.admin_link_status, visit.admin_link_path) == (200, reverse("admin:login"))
    assert visit.health_link_status == 200 and visit.health_link_body.strip(), visit.health_link_body
    assert (ARTIFACTS / "home.png").stat().st_size > 0


# --- a revert from history -------------------------------------------------------------------


def edit_then_revert(live_server, value_type_pk: int) -> Visit:
    """Set Retail to 1.4 through the structured editor, then revert that edit from the value
    type's History."""
    visit = Visit()
    base = live_server.url
    change_path = f"/{settings.ADMIN_PATH}values/valuetype/{value_type_pk}/change/"
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _watch(page, visit)
            page.goto(f"{base}/{settings.ADMIN_PATH}login/?next={change_path}")
            page.fill("#id_username", USERNAME)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")

            # The edit: 1.4 with a reason, confirmed on the preview (edits of value types are previewed).
            page.fill(RETAIL_INPUT, "1.4")
            page.fill("#id_change_reason", EDIT_REASON)
            page.click("input[name=_save]")
            expect(page.locator("input[name=_confirm]")).to_be_visible()
            page.click("input[name=_confirm]")
            expect(page.locator("ul.messagelist")).to_contain_text("changed successfully")
            visit.saved_message = page.locator("ul.messagelist").inner_text()

            # History: the value type's audit entries; the operator's edit is the one from the admin.
            page.goto(f"{base}{change_path}")
            page.click("a.historylink")
            edit_row = page.locator("#result_list tbody tr").filter(has_text=USERNAME)
            expect(edit_row).to_have_count(1)
            edit_row.locator("a").first.click()
            page.click("a.revert-link")

            # The confirmation: what the revert changes, and why.
            expect(page.locator("table.revert-changes")).to_be_visible()
            visit.confirmation = page.locator("table.revert-changes").inner_text()
            page.fill("textarea[name=reason]", REVERT_REASON)
            page.screenshot(path=str(ARTIFACTS / "admin-revert-confirmation.png"), full_page=True)
            page.click("input[type=submit][value=Revert]")

            expect(page.locator("ul.messagelist")).to_contain_text("Reverted entry")
            visit.reverted_message = page.locator("ul.messagelist").inner_text()
            visit.reverted_entry_path = urlsplit(page.url).path
            page.screenshot(path=str(ARTIFACTS / "admin-reverted.png"), full_page=True)
        finally:
            browser.close()
    return visit


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser(USERNAME, "revert@example.com", PASSWORD)


def test_revert_from_history__operator_in_chromium__fallback_restored_and_revert_recorded(
    sources_down, operator, live_server  # noqa: F811
):
    assert settings.DYNCONFIG_CHANGE_REQUESTS is False  # the revert applies directly, not proposed
    value_type = ValueType.objects.get(key="industry_multipliers")
    before = dict(value_type.fallback_value)
    assert before["retail"] != 1.4

    visit = edit_then_revert(live_server, value_type.pk)

    assert_clean(visit)
    assert "changed successfully" in visit.saved_message
    [edit] = AuditEntry.objects.filter(object_type="values.valuetype", actor=USERNAME, reason=EDIT_REASON)
    assert (edit.before["fallback_value"], edit.after["fallback_value"]) == (before, {**before, "retail": 1.4})
    assert "fallback_value" in visit.confirmation and "1.4" in visit.confirmation, visit.confirmation
    value_type.refresh_from_db()
    assert value_type.fallback_value == before
    reverted = AuditEntry.objects.filter(object_type="values.valuetype", object_id=str(value_type.pk)).latest("pk")
    assert reverted.pk > edit.pk
    assert (reverted.actor, reverted.channel) == (USERNAME, "admin")
    assert reverted.reason == f"revert of entry {edit.pk}: {REVERT_REASON}"
    assert (reverted.before["fallback_value"], reverted.after["fallback_value"]) == ({**before, "retail": 1.4}, before)
    assert f"Reverted entry {edit.pk}: recorded as entry {reverted.pk}." in visit.reverted_message
    assert visit.reverted_entry_path == reverse("admin:audit_auditentry_change", args=[reverted.pk])
    for name in ("admin-revert-confirmation.png", "admin-reverted.png"):
        assert (ARTIFACTS / name).stat().st_size > 0
