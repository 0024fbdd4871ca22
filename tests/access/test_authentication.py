"""`Authorization: Bearer <token>` over HTTP: header variants, scopes, revocation and the
per-process cache of lookups, and how often `last_used_at` is written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from access import authentication
from access.models import ApiToken
from access.services import api_token_revoke
from tests.access.conftest import PROBE_URL, VALUE_TYPES_URL, assert_json_error, bearer

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.access.urls")]

no_anonymous_reads = override_settings(DYNCONFIG_ANONYMOUS_READS=False)


def token_queries(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in queries.captured_queries if "access_apitoken" in query["sql"]]


# Header variants ----------------------------------------------------------------------------


@no_anonymous_reads
def test_read__no_authorization_header__401_not_authenticated_with_bearer_challenge(api_client):
    response = api_client.get(VALUE_TYPES_URL)

    assert_json_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Bearer"


@no_anonymous_reads
@pytest.mark.parametrize("header", ["Bearer", "Bearer two parts", "Bearer  "])
def test_read__malformed_bearer_header__401_authentication_failed(api_client, make_token, header):
    make_token("planner", "values:read")

    response = api_client.get(VALUE_TYPES_URL, HTTP_AUTHORIZATION=header)

    assert_json_error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"] == "Bearer"


@no_anonymous_reads
@pytest.mark.parametrize("transform", [lambda t: t[:-1], lambda t: t + "x", lambda t: "dct_" + "A" * 43, str.upper])
def test_read__wrong_token__401_authentication_failed(api_client, make_token, transform):
    token = make_token("planner", "values:read")

    response = api_client.get(VALUE_TYPES_URL, **bearer(transform(token)))

    assert_json_error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"] == "Bearer"


@no_anonymous_reads
@pytest.mark.parametrize("scheme", ["Token", "Basic"])
def test_read__other_authorization_scheme__treated_as_no_credentials_401(api_client, make_token, scheme):
    token = make_token("planner", "values:read")

    response = api_client.get(VALUE_TYPES_URL, HTTP_AUTHORIZATION=f"{scheme} {token}")

    assert_json_error(response, 401, "not_authenticated")


@no_anonymous_reads
def test_read__lowercase_bearer_keyword__200(api_client, make_token):
    token = make_token("planner", "values:read")

    assert api_client.get(VALUE_TYPES_URL, HTTP_AUTHORIZATION=f"bearer {token}").status_code == 200


# Scopes -------------------------------------------------------------------------------------


@no_anonymous_reads
@pytest.mark.parametrize("scope", ["values:read", "values:write", "sources:manage"])
def test_read__any_scope__200(api_client, make_token, scope):
    token = make_token("planner", scope)

    assert api_client.get(VALUE_TYPES_URL, **bearer(token)).status_code == 200
    assert api_client.get(PROBE_URL, **bearer(token)).json() == {"read": True}


@pytest.mark.parametrize("scope", ["values:read", "sources:manage"])
def test_write__token_without_values_write__403_permission_denied(api_client, make_token, scope):
    token = make_token("planner", scope)

    response = api_client.post(PROBE_URL, {}, format="json", **bearer(token))

    assert_json_error(response, 403, "permission_denied")


def test_write__values_write_token__200(api_client, make_token):
    token = make_token("planner", "values:write")

    response = api_client.post(PROBE_URL, {}, format="json", **bearer(token))

    assert response.status_code == 200 and response.json() == {"written": True}


def test_write__anonymous_even_with_anonymous_reads__401(api_client, settings):
    assert settings.DYNCONFIG_ANONYMOUS_READS is True

    assert_json_error(api_client.post(PROBE_URL, {}, format="json"), 401, "not_authenticated")


# Revocation and the lookup cache ------------------------------------------------------------


@no_anonymous_reads
def test_revoke__through_the_service__401_at_once_in_this_process(api_client, make_token):
    token = make_token("planner", "values:read")
    assert api_client.get(VALUE_TYPES_URL, **bearer(token)).status_code == 200

    api_token_revoke(token=ApiToken.objects.get(name="planner"), actor="test", reason="rotated")

    assert_json_error(api_client.get(VALUE_TYPES_URL, **bearer(token)), 401, "authentication_failed")


@no_anonymous_reads
def test_revoke__by_another_process__token_works_until_the_cache_ttl_then_401(api_client, make_token, monkeypatch):
    token = make_token("planner", "values:read")
    assert api_client.get(VALUE_TYPES_URL, **bearer(token)).status_code == 200  # cached here
    # Another process revokes it: this process's cache does not hear of it.
    ApiToken.objects.filter(name="planner").update(revoked_at=timezone.now())

    assert api_client.get(VALUE_TYPES_URL, **bearer(token)).status_code == 200  # within the TTL

    later = authentication.monotonic() + 5.01  # DYNCONFIG_TOKEN_CACHE_SECONDS defaults to 5
    monkeypatch.setattr(authentication, "monotonic", lambda: later)
    assert_json_error(api_client.get(VALUE_TYPES_URL, **bearer(token)), 401, "authentication_failed")


@no_anonymous_reads
@override_settings(DYNCONFIG_TOKEN_CACHE_SECONDS=0)
def test_revoke__by_another_process_with_cache_off__401_on_the_next_request(api_client, make_token):
    token = make_token("planner", "values:read")
    assert api_client.get(VALUE_TYPES_URL, **bearer(token)).status_code == 200

    ApiToken.objects.filter(name="planner").update(revoked_at=timezone.now())

    assert_json_error(api_client.get(VALUE_TYPES_URL, **bearer(token)), 401, "authentication_failed")


@no_anonymous_reads
def test_unknown_token__refused__not_kept_in_the_cache(api_client, make_token):
    assert_json_error(api_client.get(VALUE_TYPES_URL, **bearer("dct_unknown")), 401)

    assert authentication._known_tokens == {}


def test_authentication__cached_token__no_token_query(api_client, make_token):
    token = make_token("planner", "values:read")
    api_client.get(PROBE_URL, **bearer(token))

    with CaptureQueriesContext(connection) as queries:
        assert api_client.get(PROBE_URL, **bearer(token)).status_code == 200

    assert token_queries(queries) == []


# last_used_at -------------------------------------------------------------------------------


def test_last_used_at__first_use__set_with_one_select_and_one_update(api_client, make_token):
    token = make_token("planner", "values:read")
    before = timezone.now()

    with CaptureQueriesContext(connection) as queries:
        api_client.get(PROBE_URL, **bearer(token))

    assert ApiToken.objects.get().last_used_at >= before
    assert [sql.split()[0] for sql in token_queries(queries)] == ["SELECT", "UPDATE"]


def test_last_used_at__used_again_within_a_minute__not_written_again(api_client, make_token):
    token = make_token("planner", "values:read")
    api_client.get(PROBE_URL, **bearer(token))
    first_use = ApiToken.objects.get().last_used_at
    authentication.forget_all_tokens()  # even after a fresh lookup

    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            api_client.get(PROBE_URL, **bearer(token))

    assert ApiToken.objects.get().last_used_at == first_use
    assert [sql.split()[0] for sql in token_queries(queries)] == ["SELECT"]


def test_last_used_at__last_written_over_a_minute_ago__written_once_more(api_client, make_token):
    token = make_token("planner", "values:read")
    api_client.get(PROBE_URL, **bearer(token))
    long_ago = timezone.now() - timedelta(minutes=2)
    ApiToken.objects.update(last_used_at=long_ago)
    authentication._known_tokens[authentication.token_hash(token)].last_used_at = long_ago

    with CaptureQueriesContext(connection) as queries:
        api_client.get(PROBE_URL, **bearer(token))
        api_client.get(PROBE_URL, **bearer(token))

    assert ApiToken.objects.get().last_used_at > long_ago
    assert [sql.split()[0] for sql in token_queries(queries)] == ["UPDATE"]
