"""The admin dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

An operator logs in through the admin's login form, follows the index's Dashboard link, and
sees every chart drawn from data made through the engine's real paths (tests/monitoring/
dashboard_seed.py), with nothing loaded from another host. The pages are saved to
test-artifacts/ (admin-index.png, dashboard.png) for a person to look at.

The database is seeded before the browser starts: Playwright's sync API runs an event loop in
this thread, inside which Django refuses ORM calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from playwright.sync_api import sync_playwright

from sources.models import Source, SourceCall
from tests.monitoring.dashboard_seed import seed_dashboard
from tests.values.conftest import engine, local_server  # noqa: F401
from values.models import ValueRecord, ValueType

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (bin/browser installs it)
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SCREENSHOT = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard.png"
INDEX_SCREENSHOT = SCREENSHOT.with_name("admin-index.png")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}
USERNAME, PASSWORD = "operator", "a-long-password-1"
# Generous: a shared CI machine with two cores starts Chromium slowly. Not an assertion on speed.
TIMEOUT_MS = 60_000

# Per canvas: is it shown, how many points each of its chart's datasets has, and whether its
# card's "No data yet" shows instead.
CHARTS_DRAWN = """
() => Array.from(document.querySelectorAll("#dashboard canvas")).map((canvas) => {
  const chart = Chart.getChart(canvas);
  const empty = canvas.closest(".chart-card").querySelector(".empty-state");
  return {
    id: canvas.id,
    shown: !canvas.parentElement.hidden,
    points: chart ? chart.data.datasets.map((dataset) => dataset.data.length) : [],
    empty_state: empty && !empty.hidden ? empty.textContent : null,
  };
})
"""
DRAWN_CHARTS = {
    "chart-latency", "chart-errors", "chart-cache", "chart-answers", "chart-degraded",
    "chart-history-industry_multipliers", "chart-history-budget_thresholds",
    "chart-history-channel_performance",
}


@dataclass
class Visit:
    """What the browser saw and asked for while an operator opened the dashboard."""

    requested: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)  # exceptions thrown by the page's scripts
    failed: list[str] = field(default_factory=list)  # URLs answered with an error status
    charts: dict[str, dict] = field(default_factory=dict)  # canvas id -> CHARTS_DRAWN's entry
    tiles: int = 0


def visit_dashboard(live_server, *, screenshots: bool) -> Visit:
    """Log into the admin through its form, follow the index's Dashboard link, and wait until
    the page has drawn its data."""
    assert CHROMIUM.exists(), "Debian's chromium is missing: run bin/browser (bin/test does)"
    visit = Visit()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("request", lambda request: visit.requested.append(request.url))
            page.on("pageerror", lambda error: visit.page_errors.append(str(error)))
            page.on("response", lambda response: response.status >= 400 and visit.failed.append(response.url))

            page.goto(f"{live_server.url}/{settings.ADMIN_PATH}login/?next=/{settings.ADMIN_PATH}")
            page.fill("#id_username", USERNAME)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            if screenshots:
                SCREENSHOT.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(INDEX_SCREENSHOT))
            page.click("text=Dashboard")
            page.wait_for_function("() => document.getElementById('dashboard')?.dataset.renderedAt !== undefined")
            visit.charts = {chart["id"]: chart for chart in page.evaluate(CHARTS_DRAWN)}
            visit.tiles = page.locator(".source-tile").count()
            if screenshots:
                page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    return visit


def assert_clean(visit: Visit) -> None:
    """No script error, no failed request (but the favicon Chromium asks for by itself: the
    admin has none), and no request to another host."""
    assert visit.page_errors == []
    assert [url for url in visit.failed if urlsplit(url).path != "/favicon.ico"] == []
    assert {urlsplit(url).hostname for url in visit.requested} <= LOCAL_HOSTS


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser(USERNAME, "operator@example.com", PASSWORD)


@pytest.fixture
def seeded(engine, local_server, operator):  # noqa: F811
    seed_dashboard(local_server)
    return local_server


def test_dashboard__operator_in_chromium__every_chart_drawn_from_local_files_only(seeded, live_server):
    visit = visit_dashboard(live_server, screenshots=True)

    assert_clean(visit)
    assert DRAWN_CHARTS <= set(visit.charts)
    for name in DRAWN_CHARTS:
        chart = visit.charts[name]
        assert chart["shown"] and chart["empty_state"] is None and max(chart["points"], default=0) >= 1, chart
    assert max(visit.charts["chart-history-industry_multipliers"]["points"]) >= 2
    assert visit.tiles == Source.objects.count()
    assert SCREENSHOT.stat().st_size > 0


def test_dashboard__no_calls_and_no_values_yet__charts_say_no_data_yet(synced, operator, live_server):
    # Other tests' engine threads commit their calls outside any test transaction.
    SourceCall.objects.all().delete()
    ValueRecord.objects.all().delete()

    visit = visit_dashboard(live_server, screenshots=False)

    assert_clean(visit)
    empty = ["chart-latency", "chart-errors", *(f"chart-history-{key}" for key in ValueType.objects.values_list("key", flat=True))]
    for name in empty:
        chart = visit.charts[name]
        assert not chart["shown"] and chart["points"] == [], chart
        assert chart["empty_state"].startswith("No data yet"), chart
    assert visit.tiles == Source.objects.count()
