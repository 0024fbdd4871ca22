"""The home page at `/`, through Django's test client: what runs, the links, each value's tier
and age; no credential ever shown; still an answer with every source down; and in production,
an anonymous visitor gets the links only."""

from __future__ import annotations

import html
import re

import pytest
from django.conf import settings
from django.urls import reverse

from core.answers import DEGRADED_ORIGINS, TIERS
from monitoring import home
from sources.models import Source
from tests.values.conftest import engine, local_server, reload_engine  # noqa: F401
from values.models import ValueType

PLANTED_SECRETS = (
    "planted-db-user",
    "planted-db-password",
    "planted-redis-password",
    "broker-user",
    "planted-broker-password",
    "planted-query-password",
)
# A value's row: its key and the tier of its answer.
ROW = re.compile(
    r'<tr class="[^"]*" data-value-type="(?P<key>[^"]+)">\s*'
    r'<th scope="row">[^<]*</th>\s*<td class="home-tier">(?P<tier>[^<]*)</td>'
)
LINK_NAMES = ("admin:index", "monitoring_dashboard", "api-docs", "schema", "healthz", "readyz", "metrics")


def links() -> list[str]:
    return [reverse(name) for name in LINK_NAMES]


def tiers_shown(body: str) -> dict[str, str]:
    return {match["key"]: html.unescape(match["tier"]) for match in ROW.finditer(body)}


def value_type_keys() -> set[str]:
    return set(ValueType.objects.values_list("key", flat=True))


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("operator", "operator@example.com", "a-long-password-1")
    client.force_login(user)
    return client


def test_home__development__html_with_every_link_and_each_value_types_tier(engine, client):  # noqa: F811
    response = client.get("/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    for url in links():
        assert f'href="{url}"' in body, url
    assert f'href="/{settings.ADMIN_PATH}"' in body  # DYNCONFIG_ADMIN_PATH, wherever it is
    assert "<script" not in body
    tiers = tiers_shown(body)
    assert set(tiers) == value_type_keys()
    assert set(tiers.values()) <= set(TIERS)
    assert f"<td>{settings.DYNCONFIG_ENV}</td>" in body
    assert "PostgreSQL" in body and "Redis redis://" in body


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_home__credentials_in_every_url__none_shown(engine, client, settings):  # noqa: F811
    database = settings.DATABASES["default"]
    settings.DATABASES = {
        "default": {
            **database,
            "USER": "planted-db-user",
            "PASSWORD": "planted-db-password",
            "HOST": "db.internal",
            "PORT": "6543",
        }
    }
    settings.REDIS_URL = "redis://:planted-redis-password@cache.internal:6380/2"
    settings.CELERY_BROKER_URL = (
        "redis://broker-user:planted-broker-password@broker.internal:6381/3?password=planted-query-password"
    )

    body = client.get("/").content.decode()

    for secret in PLANTED_SECRETS:
        assert secret not in body, secret
    assert f"PostgreSQL {database['NAME']} on db.internal:6543" in body
    assert "Redis redis://cache.internal:6380/2" in body
    assert "redis://broker.internal:6381/3" in body


def test_home__every_source_down__still_answers_with_degraded_tiers(engine, local_server, client):  # noqa: F811
    Source.objects.update(base_url=local_server.url)  # no routes: every call answers 404
    reload_engine()

    response = client.get("/")

    assert response.status_code == 200
    tiers = tiers_shown(response.content.decode())
    assert set(tiers) == value_type_keys()
    # No primary source answered; the secondaries that only scale the fallback (world_bank_api,
    # imf_api) need no call for the empty context, so some types may still say secondary.
    assert "primary" not in tiers.values(), tiers
    assert set(tiers.values()) & set(DEGRADED_ORIGINS), tiers
    assert local_server.calls() > 0  # the sources were asked, and failed


def test_home__one_value_fails_to_read__that_row_says_so(engine, client, monkeypatch):  # noqa: F811
    real_get_value = home.get_value

    def get_value(key, context=None, **options):
        if key == "industry_multipliers":
            raise RuntimeError("planted failure")
        return real_get_value(key, context, **options)

    monkeypatch.setattr(home, "get_value", get_value)

    response = client.get("/")

    assert response.status_code == 200
    body = response.content.decode()
    tiers = tiers_shown(body)
    assert set(tiers) == value_type_keys()
    assert tiers["industry_multipliers"] == "—"
    assert "could not be read: RuntimeError" in body
    assert all(tier in TIERS for key, tier in tiers.items() if key != "industry_multipliers")


def test_home__production_anonymous__links_only(engine, client, settings):  # noqa: F811
    settings.IS_PRODUCTION = True
    settings.DYNCONFIG_ANONYMOUS_READS = True  # even where value reads need no token

    response = client.get("/")

    assert response.status_code == 200
    body = response.content.decode()
    for url in links():
        assert f'href="{url}"' in body, url
    assert tiers_shown(body) == {}
    database_name = settings.DATABASES["default"]["NAME"]
    hidden = (*value_type_keys(), "<caption>What runs", "PostgreSQL", "Redis redis://", database_name)
    for text in hidden:
        assert text not in body, text
    assert "sign in" in body


def test_home__production_staff__sees_what_runs_and_the_values(engine, staff_client, settings):  # noqa: F811
    settings.IS_PRODUCTION = True

    body = staff_client.get("/").content.decode()

    assert "<caption>What runs</caption>" in body
    assert set(tiers_shown(body)) == value_type_keys()
