"""create_api_token and revoke_api_token, as an operator runs them: the token is printed once,
only its hash is stored, bad input changes nothing, and both are in the history."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from access.models import ApiToken
from tests.access.conftest import VALUE_TYPES_URL, assert_json_error, bearer
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db


def create_token(*args: str) -> tuple[str, str]:
    """Run create_api_token; return (stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("create_api_token", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def revoke_token(*args: str) -> str:
    stdout = io.StringIO()
    call_command("revoke_api_token", *args, stdout=stdout)
    return stdout.getvalue()


def token_entries() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(object_type="access.apitoken").order_by("pk"))


# create_api_token ---------------------------------------------------------------------------


def test_create_api_token__valid__prints_the_token_alone_on_stdout_and_says_it_is_shown_once():
    stdout, stderr = create_token("planner", "--scope", "values:read")

    token = stdout.strip()
    assert stdout == token + "\n"
    assert token.startswith("dct_") and len(token) == 4 + 43  # 32 random bytes, base64url
    assert "shown only once" in stderr
    assert token not in stderr


def test_create_api_token__valid__stores_only_the_sha256_and_a_12_character_prefix():
    token = create_token("planner", "--scope", "values:read", "--scope", "sources:manage")[0].strip()

    row = ApiToken.objects.get(name="planner")
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.prefix == token[:12]
    assert row.scopes == ["values:read", "sources:manage"]
    assert row.revoked_at is None
    stored = [str(value) for value in ApiToken.objects.values().get(pk=row.pk).values()]
    assert not any(token in value for value in stored)


@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_create_api_token__printed_token__authenticates(api_client):
    token = create_token("planner", "--scope", "values:read")[0].strip()

    assert api_client.get(VALUE_TYPES_URL, **bearer(token)).status_code == 200
    assert_json_error(api_client.get(VALUE_TYPES_URL), 401)


def test_create_api_token__valid__one_history_entry_without_the_hash():
    create_token("planner", "--scope", "values:read")

    [entry] = token_entries()
    assert (entry.action, entry.channel, entry.before) == ("create", "command", None)
    assert entry.actor.startswith("command")
    assert entry.after["name"] == "planner" and entry.after["scopes"] == ["values:read"]
    assert "token_hash" not in entry.after


@pytest.mark.parametrize(
    "args, message",
    [
        (["planner", "--scope", "values:delete"], "Unknown scope 'values:delete'"),
        (["planner", "--scope", "values:read", "--scope", "admin"], "Unknown scope 'admin'"),
        (["planner"], "at least one scope"),
        (["  ", "--scope", "values:read"], "needs a name"),
    ],
)
def test_create_api_token__bad_input__command_error_and_nothing_changed(args, message):
    with pytest.raises(CommandError, match=message):
        create_token(*args)

    assert not ApiToken.objects.exists()
    assert token_entries() == []


def test_create_api_token__name_taken__command_error_and_the_first_token_unchanged():
    create_token("planner", "--scope", "values:read")
    first = ApiToken.objects.values().get(name="planner")

    with pytest.raises(CommandError, match="already exists"):
        create_token("planner", "--scope", "values:write")

    assert list(ApiToken.objects.values()) == [first]
    assert len(token_entries()) == 1


def test_create_api_token__name_of_a_revoked_token__refused():
    create_token("planner", "--scope", "values:read")
    revoke_token("planner", "--reason", "rotated")

    with pytest.raises(CommandError, match="revoked tokens keep their name"):
        create_token("planner", "--scope", "values:read")


# revoke_api_token ---------------------------------------------------------------------------


@override_settings(DYNCONFIG_ANONYMOUS_READS=False)
def test_revoke_api_token__used_token__401_at_once_in_this_process(api_client):
    token = create_token("planner", "--scope", "values:read")[0].strip()
    assert api_client.get(VALUE_TYPES_URL, **bearer(token)).status_code == 200  # now cached

    output = revoke_token("planner", "--reason", "laptop stolen")

    assert "Revoked token 'planner'" in output and "within 5 s" in output
    response = api_client.get(VALUE_TYPES_URL, **bearer(token))
    assert_json_error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"] == "Bearer"


def test_revoke_api_token__valid__history_entry_with_the_reason_and_without_the_hash():
    create_token("planner", "--scope", "values:read")

    revoke_token("planner", "--reason", "laptop stolen")

    entry = token_entries()[-1]
    assert (entry.action, entry.channel, entry.reason) == ("update", "command", "laptop stolen")
    assert entry.before["revoked_at"] is None and entry.after["revoked_at"] is not None
    assert "token_hash" not in entry.before and "token_hash" not in entry.after


def test_revoke_api_token__unknown_name__command_error():
    with pytest.raises(CommandError, match="No token named 'nobody'"):
        revoke_token("nobody", "--reason", "x")


def test_revoke_api_token__already_revoked__command_error_and_revoked_at_unchanged():
    create_token("planner", "--scope", "values:read")
    revoke_token("planner", "--reason", "rotated")
    revoked_at = ApiToken.objects.get().revoked_at

    with pytest.raises(CommandError, match="already revoked"):
        revoke_token("planner", "--reason", "again")

    assert ApiToken.objects.get().revoked_at == revoked_at
    assert len(token_entries()) == 2


@pytest.mark.parametrize("args", [["planner"], ["planner", "--reason", "  "]])
def test_revoke_api_token__no_reason__command_error_and_token_still_active(args):
    create_token("planner", "--scope", "values:read")

    with pytest.raises(CommandError):
        revoke_token(*args)

    assert ApiToken.objects.get().is_active
