"""Property-based tests of the whole API against its own OpenAPI schema (schemathesis), in-process
through the WSGI application: no input, valid or not, makes any endpoint answer 5xx, and every
answer matches the schema.

Bounded so the suite stays quick: a fixed seed (the same cases every run), a few examples per
operation, the examples, coverage and fuzzing phases. Sources are pointed at a closed port, so
reads fall back at once instead of waiting for upstream timeouts. The token holds every scope, so
the write endpoints run their real code, not just the permission check."""

from __future__ import annotations

import secrets

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from access.authentication import token_hash
from access.models import ApiToken, Scope
from dynconfig_site.wsgi import application

# Cases per operation in the fuzzing phase (the examples and coverage phases add their own, few).
MAX_EXAMPLES = 20
SEED = 20261124

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]

FUZZ_CONFIG = {
    "seed": SEED,
    "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
    "phases": {
        "examples": {"enabled": True},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": False},
    },
}


# Loaded at collection, through the WSGI application like any client would (the schema needs no
# database; the test environment allows anonymous reads); every operation becomes one test.
schema = schemathesis.openapi.from_wsgi(
    "/api/schema/?format=json", application, config=SchemathesisConfig.from_dict(FUZZ_CONFIG)
).exclude(
    # The change stream stays open (Server-Sent Events): the WSGI client would wait for its end.
    # Its refusals and bounded runs are tested in tests/values/test_change_stream.py.
    path="/api/v1/values/stream/"
)


@pytest.fixture
def wsgi_in_test_transaction():
    """The raw WSGI application closes the database connection after each request, as it should in
    production; here that connection holds the test's transaction. Django's test client keeps it
    open the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def every_scope_headers(engine, sources_down, wsgi_in_test_transaction) -> dict[str, str]:
    token = secrets.token_urlsafe(32)
    ApiToken.objects.create(
        name="schemathesis",
        prefix=token[:8],
        token_hash=token_hash(token),
        scopes=[Scope.VALUES_READ, Scope.VALUES_WRITE, Scope.SOURCES_MANAGE, Scope.WEBHOOKS_MANAGE],
    )
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(
    # The runs are deterministic and short by design: the timing health checks would only report
    # the speed of a shared machine. The token fixture is meant to be shared by an operation's cases.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_api__any_generated_input__no_server_error_and_answers_match_the_schema(case, every_scope_headers):
    case.call_and_validate(headers=every_scope_headers, checks=CHECKS)
