"""The home page at `/`: the page a newcomer lands on after `bin/start`.

It says what is running (environment, database, cache, Celery broker), links to the admin, the
dashboard, the API docs and schema, the probes and the metrics, and lists each value type with
the tier and age of its answer for the empty context, read through `values.get_value` like any
consumer (it answers even with every source down; one value that fails shows as unavailable).

Who sees what: the links are for everyone (each target guards itself). What runs and the values
are shown to staff sessions, and to anyone where value reads need no sign-in outside production
(`DYNCONFIG_ANONYMOUS_READS`, on by default in development, test and staging): an anonymous
visitor of a production deployment learns nothing from this page that the login would protect
(hosts, the database's name, the numbers served). Credentials are never shown to anyone: URLs
are reduced to scheme, host, port and path, and the database's user and password are left out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache

from values import get_value
from values.registry import registry

logger = logging.getLogger(__name__)

# ENGINE's last part -> the name an operator knows.
DATABASE_NAMES = {"sqlite3": "SQLite", "postgresql": "PostgreSQL"}


@dataclass(frozen=True)
class Link:
    label: str
    url: str
    description: str


@dataclass(frozen=True)
class ValueRow:
    key: str
    tier: str | None  # None: the read failed (see `problem`)
    origin: str | None
    fetched_at: datetime | None  # when its value was made; None for a fallback
    is_degraded: bool
    problem: str  # why it is degraded, or why it could not be read; "" when all is well


@never_cache  # live values, and what a staff session sees must not be kept by a shared cache
def home(request: HttpRequest) -> HttpResponse:
    shows_details = _shows_details(request)
    context = {
        **admin.site.each_context(request),
        "title": "DynConfig",
        "is_nav_sidebar_enabled": False,  # a page of its own, and no script (the sidebar has one)
        "links": _links(),
        "shows_details": shows_details,
        "running": _running() if shows_details else [],
        "values": _value_rows() if shows_details else [],
    }
    return TemplateResponse(request, "monitoring/home.html", context)


def _shows_details(request: HttpRequest) -> bool:
    """What runs and the values served: staff always; others where reads need no sign-in."""
    user = request.user
    if user.is_authenticated and user.is_staff:
        return True
    return not settings.IS_PRODUCTION and settings.DYNCONFIG_ANONYMOUS_READS


def _links() -> list[Link]:
    return [
        Link("Admin", reverse("admin:index"), "value types, sources, overrides, history"),
        Link("Dashboard", reverse("monitoring_dashboard"), "source latency and errors, breakers, caches, fallbacks"),
        Link("API docs", reverse("api-docs"), "Swagger UI over the API's OpenAPI schema"),
        Link("OpenAPI schema", reverse("schema"), "YAML; ?format=json for JSON"),
        Link("Liveness", reverse("healthz"), "the process answers"),
        Link("Readiness", reverse("readyz"), "the database, Redis and the broker answer"),
        Link("Metrics", reverse("metrics"), "Prometheus, summed over every process of this host"),
    ]


def _running() -> list[tuple[str, str]]:
    """(what, which) for the environment, database, cache and broker; no credential in any."""
    return [
        ("Environment", settings.DYNCONFIG_ENV),
        ("Database", _database_description(settings.DATABASES["default"])),
        ("Cache", _cache_description(settings.REDIS_URL)),
        ("Celery broker", _broker_description(settings.CELERY_BROKER_URL)),
    ]


def _database_description(database: dict[str, Any]) -> str:
    engine = database["ENGINE"].rsplit(".", 1)[-1]
    name = DATABASE_NAMES.get(engine, engine)
    if engine == "sqlite3":
        return f"{name} {database['NAME']}"
    host = database.get("HOST") or "localhost"
    port = database.get("PORT") or "default port"
    return f"{name} {database['NAME']} on {host}:{port}"


def _cache_description(redis_url: str) -> str:
    return f"Redis {_without_credentials(redis_url)}" if redis_url else "in-process only (no REDIS_URL)"


def _broker_description(url: str) -> str:
    if url.startswith("filesystem://"):
        return "filesystem, folders under var/ (no server)"
    return _without_credentials(url)


def _without_credentials(url: str) -> str:
    """scheme://host:port/path: the user, password and query string (which may hold one) dropped."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a number: shown as no port rather than as the raw text
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def _value_rows() -> list[ValueRow]:
    """Each value type's answer for the empty context; a failed read is a row saying so."""
    keys = sorted({value_type.key for value_type in registry.snapshot().types.values()})  # aliases folded
    rows = []
    for key in keys:
        try:
            answer = get_value(key)
        except Exception as error:  # noqa: BLE001 - one value's failure must not break the page: shown, logged
            logger.exception("home page: %s could not be read", key, extra={"value_type": key})
            rows.append(ValueRow(key, None, None, None, True, f"could not be read: {type(error).__name__}"))
            continue
        provenance = answer.provenance
        rows.append(
            ValueRow(
                key=key,
                tier=provenance.tier,
                origin=provenance.origin,
                fetched_at=provenance.fetched_at,
                is_degraded=provenance.is_degraded,
                problem=(provenance.reason or "") if provenance.is_degraded else "",
            )
        )
    return rows
