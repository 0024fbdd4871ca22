"""The development simulators served by the platform itself: only in mock mode."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from config.environment import load_environment
from sources import views


@pytest.fixture
def development(monkeypatch):
    """The shipped development environment (mock_mode on), without its simulated latency."""
    environment = replace(load_environment("development"), response_delay=timedelta(0))
    monkeypatch.setattr(views, "active_environment", lambda: environment)
    return environment


def test_simulator_view__mock_mode__answers_in_the_services_wire_format(development, client):
    response = client.get("/simulators/market_research/v1/budget-benchmarks", {"region": "us", "industry": "retail"})

    assert response.status_code == 200
    body = response.json()
    assert body["micro_business_spending_median"] < body["small_business_spending_median"]
    again = client.get("/simulators/market_research/v1/budget-benchmarks", {"region": "us", "industry": "retail"})
    assert again.json() == body  # deterministic per context


def test_simulator_view__mock_mode_unknown_simulator__404(development, client):
    assert client.get("/simulators/nope/anything").status_code == 404


def test_simulator_view__test_environment_without_mock_mode__404(client):
    assert client.get("/simulators/market_research/v1/budget-benchmarks").status_code == 404


def test_simulator_view__mock_mode_semrush_root__semicolon_text(development, client):
    response = client.get(
        "/simulators/semrush/", {"type": "phrase_related", "key": "x", "phrase": "online shopping", "database": "us", "export_columns": "Ph,Nq,Cp,Co"}
    )

    assert response.status_code == 200
    assert response.content.decode().splitlines()[0] == "Keyword;Search Volume;CPC;Competition"
