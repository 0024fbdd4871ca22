"""The admin dashboard's page and JSON data endpoint, through Django's test client (the
browser test, test_dashboard_browser.py, checks that the charts are drawn)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from sources.models import Source
from tests.monitoring.dashboard_seed import CHANNEL_HISTORY, MULTIPLIER_HISTORY, seed_dashboard
from tests.values.conftest import engine, local_server  # noqa: F401
from values.models import ValueRecord, ValueType

DASHBOARD_URL = f"/{settings.ADMIN_PATH}dashboard/"
DATA_URL = f"{DASHBOARD_URL}data/"


@pytest.fixture
def seeded(engine, local_server):  # noqa: F811
    seed_dashboard(local_server)
    return local_server


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("operator", "operator@example.com", "a-long-password-1")
    client.force_login(user)
    return client


def history_of(data: dict, key: str) -> dict:
    return next(history for history in data["histories"] if history["value_type"] == key)


def test_dashboard_data__seeded_engine__reports_every_panel(seeded, staff_client):
    response = staff_client.get(DATA_URL, {"hours": 24})

    assert response.status_code == 200
    data = response.json()
    assert data["hours"] == 24
    sources = {source["name"]: source for source in data["sources"]}
    assert set(sources) == set(Source.objects.values_list("name", flat=True))
    economic = sources["economic_intelligence_api"]
    assert economic["status"] == "healthy"
    assert economic["window_calls"] >= len(MULTIPLIER_HISTORY)
    assert any(bucket["p50"] is not None and bucket["p95"] >= bucket["p50"] for bucket in economic["series"])
    google = sources["google_ads_api"]
    assert google["window_errors"] >= 1
    assert any((bucket["error_rate"] or 0) > 0 for bucket in google["series"])
    assert {row["tier"] for row in data["cache"]} >= {"l1"}
    assert all(row["hit_rate"] is None or 0 <= row["hit_rate"] <= 1 for row in data["cache"])
    answers = {row["value_type"]: row["tiers"] for row in data["answers"]}
    assert answers["channel_performance"].get("fallback", 0) >= 1
    assert any(row["value_type"] == "channel_performance" and row["kind"] == "fallback" for row in data["degraded"])
    assert {history["value_type"] for history in data["histories"]} == set(ValueType.objects.values_list("key", flat=True))


def test_dashboard_data__industry_multipliers_history__one_line_per_industry_in_time_order(seeded, staff_client):
    data = staff_client.get(DATA_URL).json()

    history = history_of(data, "industry_multipliers")
    assert history["context_key"] == ""
    [group] = history["groups"]
    lines = {series["label"]: series for series in group["series"]}
    assert set(lines) == set(MULTIPLIER_HISTORY[0])
    retail = lines["retail"]
    assert retail["kind"] == "line"
    assert [point[1] for point in retail["points"]] == [values["retail"] for values in MULTIPLIER_HISTORY]
    times = [point[0] for point in retail["points"]]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_dashboard_data__range_values__one_band_per_channel_grouped_by_field(seeded, staff_client):
    data = staff_client.get(DATA_URL).json()

    history = history_of(data, "channel_performance")
    groups = {group["name"]: group["series"] for group in history["groups"]}
    assert set(groups) == {"ctr_range", "cpc_range", "conversion_rate_range"}
    bands = {series["label"]: series for series in groups["cpc_range"]}
    assert set(bands) == {"search_advertising", "social_media"}
    assert bands["search_advertising"]["kind"] == "band"
    expected = [value["search_advertising"]["cpc_range"] for value in CHANNEL_HISTORY]
    assert [point[1:] for point in bands["search_advertising"]["points"]] == expected


def test_dashboard_data__context_parameter__charts_that_context(seeded, staff_client):
    value_type = ValueType.objects.get(key="industry_multipliers")
    ValueRecord.objects.create(
        value_type=value_type, context_key="region=de", context={"region": "de"},
        value={"retail": 0.8}, fetched_at=timezone.now(),
    )

    default = history_of(staff_client.get(DATA_URL).json(), "industry_multipliers")
    chosen = history_of(
        staff_client.get(DATA_URL, {"context_industry_multipliers": "region=de"}).json(), "industry_multipliers"
    )

    assert {context["context_key"] for context in default["contexts"]} == {"", "region=de"}
    assert default["context_key"] == ""
    assert chosen["context_key"] == "region=de"
    [group] = chosen["groups"]
    [series] = group["series"]
    assert (series["label"], [point[1] for point in series["points"]]) == ("retail", [0.8])


def test_dashboard_data__records_older_than_the_window__history_is_empty(synced, staff_client):
    value_type = ValueType.objects.get(key="industry_multipliers")
    ValueRecord.objects.create(
        value_type=value_type, context_key="", context={}, value={"retail": 1.0},
        fetched_at=timezone.now() - timedelta(hours=3),
    )

    data = staff_client.get(DATA_URL, {"hours": 1}).json()

    history = history_of(data, "industry_multipliers")
    assert history["context_key"] is None
    assert history["contexts"] == []
    assert history["groups"] == []


@pytest.mark.parametrize("hours", ["0", "721", "a day"])
def test_dashboard_data__invalid_hours__answers_400_in_the_error_format(synced, staff_client, hours):
    response = staff_client.get(DATA_URL, {"hours": hours})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == 400
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {"hours"}


@pytest.mark.parametrize("url", [DASHBOARD_URL, DATA_URL])
@pytest.mark.parametrize("is_logged_in", [False, True])
def test_dashboard__not_staff__redirected_to_admin_login(db, client, django_user_model, url, is_logged_in):
    if is_logged_in:
        client.force_login(django_user_model.objects.create_user("planner", password="a-long-password-1"))

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith(f"/{settings.ADMIN_PATH}login/")


def test_admin_index__staff__links_to_the_dashboard_and_keeps_the_apps(synced, staff_client):
    response = staff_client.get(f"/{settings.ADMIN_PATH}")

    html = response.content.decode()
    assert response.status_code == 200
    assert f'href="{DASHBOARD_URL}"' in html
    assert "Value types" in html  # the app list is still there


def test_dashboard_page__staff__loads_only_local_static_files(synced, staff_client):
    response = staff_client.get(DASHBOARD_URL)

    html = response.content.decode()
    assert response.status_code == 200
    assert f'data-url="{DATA_URL}"' in html
    assert "monitoring/vendor/chart.umd.min.js" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<script>" not in html  # no inline script: a strict CSP holds
