"""Production hardening, checked in fresh processes with production's environment variables:
`check --deploy` is clean, responses carry the security headers and secure cookies, plain http
is redirected; development keeps working over http; the admin moves with DYNCONFIG_ADMIN_PATH;
the rate limits come from the environment."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def production_environment(**overrides: str) -> dict[str, str]:
    return {
        "DYNCONFIG_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "dynconfig.example.com,testserver",
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],  # the production environment file requires it
        **overrides,
    }


def run(arguments: list[str], **environ: str) -> subprocess.CompletedProcess:
    """Run Python in a fresh process with exactly these variables (plus PATH)."""
    env = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "dynconfig_site.settings", **environ}
    return subprocess.run(
        [sys.executable, *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def run_django(code: str, **environ: str) -> dict:
    """Run `code` after django.setup(); it prints one JSON document, returned here."""
    result = run(["-c", f"import django, json\ndjango.setup()\n{code}"], **environ)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


RESPONSES = """
from django.test import Client
client = Client()

def described(response):
    cookies = {
        name: {"secure": bool(morsel["secure"]), "httponly": bool(morsel["httponly"])}
        for name, morsel in response.cookies.items()
    }
    return {"status": response.status_code, "headers": dict(response.items()), "cookies": cookies}

print(json.dumps({
    "https": described(client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")),
    "http": described(client.get("/api/v1/nothing-here/")),  # answered without a database
    "probe": described(client.get("/healthz")),
}))
"""


def test_check_deploy__production_settings__no_issues():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **production_environment())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production__https_response__security_headers():
    headers = run_django(RESPONSES, **production_environment())["https"]["headers"]

    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"


def test_production__cookies__secure_and_httponly():
    cookies = run_django(RESPONSES, **production_environment())["https"]["cookies"]

    assert cookies["csrftoken"] == {"secure": True, "httponly": True}


def test_production__plain_http__redirected_to_https_but_not_the_liveness_probe():
    responses = run_django(RESPONSES, **production_environment())

    assert responses["http"]["status"] == 301
    assert responses["http"]["headers"]["Location"] == "https://testserver/api/v1/nothing-here/"
    assert responses["probe"]["status"] == 200


def test_production__hsts_options__from_the_environment():
    environment = production_environment(
        SECURE_HSTS_SECONDS="3600", SECURE_HSTS_INCLUDE_SUBDOMAINS="false", SECURE_HSTS_PRELOAD="false"
    )

    headers = run_django(RESPONSES, **environment)["https"]["headers"]

    assert headers["Strict-Transport-Security"] == "max-age=3600"


def test_production__csrf_trusted_origins__from_the_environment():
    settings = run_django(
        "from django.conf import settings\nprint(json.dumps(settings.CSRF_TRUSTED_ORIGINS))",
        **production_environment(CSRF_TRUSTED_ORIGINS="https://ops.example.com,https://dynconfig.example.com"),
    )

    assert settings == ["https://ops.example.com", "https://dynconfig.example.com"]


def test_development__plain_http__served_without_hsts_and_with_plain_cookies(tmp_path):
    responses = run_django(RESPONSES, DYNCONFIG_ENV="development", DYNCONFIG_VAR_DIR=str(tmp_path))

    assert responses["http"]["status"] == 404  # answered, not redirected
    assert responses["probe"]["status"] == 200
    assert "Strict-Transport-Security" not in responses["https"]["headers"]
    assert responses["https"]["headers"]["X-Frame-Options"] == "DENY"
    assert responses["https"]["cookies"]["csrftoken"] == {"secure": False, "httponly": True}


ADMIN_URLS = """
from django.test import Client
from django.urls import reverse
client = Client()
print(json.dumps({
    "index": reverse("admin:index"),
    "moved": client.get("/ops-7f3a/login/").status_code,
    "default": client.get("/admin/login/").status_code,
}))
"""


def test_admin_path__set__admin_served_there_and_not_at_admin():
    urls = run_django(ADMIN_URLS, DYNCONFIG_ENV="test", DYNCONFIG_ADMIN_PATH="ops-7f3a/")

    assert urls == {"index": "/ops-7f3a/", "moved": 200, "default": 404}


RATES = "from django.conf import settings\nprint(json.dumps(settings.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']))"


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, {"read": "6000/min", "write": "120/min"}),
        (
            {"DYNCONFIG_THROTTLE_READ": "50/s", "DYNCONFIG_THROTTLE_WRITE": "10/hour"},
            {"read": "50/s", "write": "10/hour"},
        ),
        ({"DYNCONFIG_THROTTLE_READ": "off"}, {"read": None, "write": "120/min"}),
    ],
)
def test_throttle_rates__from_the_environment(environ, expected):
    assert run_django(RATES, DYNCONFIG_ENV="test", **environ) == expected


def test_throttle_rates__not_a_rate__refuses_to_start():
    result = run(["-c", "import django; django.setup()"], DYNCONFIG_ENV="test", DYNCONFIG_THROTTLE_WRITE="lots")

    assert result.returncode != 0
    assert "DYNCONFIG_THROTTLE_WRITE='lots' is not a rate" in result.stderr
