"""API token writes: create (the token is returned once, only its hash is kept) and revoke.

Both are recorded in the history (audit.history.audit_record); the snapshots there leave
out the token hash, like every other place that shows a token.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from access.authentication import forget_token, forget_token_everywhere, token_hash
from access.models import ApiToken, Scope
from audit.history import audit_record, snapshot

# Every token starts with it, so that a leaked one is recognizable (secret scanners, logs).
TOKEN_MARKER = "dct_"
# 32 random bytes: 256 bits, the token's whole strength (the marker adds none).
TOKEN_RANDOM_BYTES = 32
# What the admin and the history show to recognize a token: the marker and 8 random characters.
DISPLAYED_PREFIX_LENGTH = 12
# Snapshot fields that must never reach the history.
SECRET_FIELDS = {"token_hash"}


def api_token_create(
    *, name: str, scopes: Iterable[str], actor: str, channel: str = "command"
) -> tuple[ApiToken, str]:
    """Create a token for consumer `name` holding `scopes`; return it with the token itself,
    which exists nowhere else afterwards (only its SHA-256 is stored).

    Raises ValidationError, and changes nothing, for an empty or taken name (revoked tokens
    keep theirs), no scopes, or a scope that does not exist."""
    name = name.strip()
    wanted_scopes = list(dict.fromkeys(scopes))  # order kept, repeats dropped
    errors: dict[str, list[str]] = {}
    if not name:
        errors["name"] = ["A token needs a name: the consumer it is for."]
    elif len(name) > ApiToken._meta.get_field("name").max_length:
        errors["name"] = [f"A token name has at most {ApiToken._meta.get_field('name').max_length} characters."]
    elif ApiToken.objects.filter(name=name).exists():
        errors["name"] = [f"A token named {name!r} already exists (revoked tokens keep their name)."]
    unknown = [scope for scope in wanted_scopes if scope not in Scope.values]
    if not wanted_scopes:
        errors["scopes"] = [f"A token needs at least one scope, of: {', '.join(Scope.values)}."]
    elif unknown:
        errors["scopes"] = [f"Unknown scope {', '.join(map(repr, unknown))}; scopes are: {', '.join(Scope.values)}."]
    if errors:
        raise ValidationError(errors)

    token = TOKEN_MARKER + secrets.token_urlsafe(TOKEN_RANDOM_BYTES)
    try:
        with transaction.atomic():
            row = ApiToken.objects.create(
                name=name,
                prefix=token[:DISPLAYED_PREFIX_LENGTH],
                token_hash=token_hash(token),
                scopes=wanted_scopes,
                created_by=actor,
            )
            audit_record(actor=actor, channel=channel, instance=row, before=None, after=_public_snapshot(row))
    except IntegrityError as error:  # the same name created concurrently, after the check above
        raise ValidationError({"name": [f"A token named {name!r} already exists."]}) from error
    return row, token


def api_token_revoke(*, token: ApiToken, actor: str, reason: str, channel: str = "command") -> ApiToken:
    """Revoke a token: it stops authenticating at once in this process, and in every other
    within DYNCONFIG_TOKEN_CACHE_SECONDS (their cache of recent lookups), database outages
    included (its shared cache entry is deleted on commit). Needs a reason;
    refuses a token already revoked (ValidationError, nothing changed)."""
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": ["Say why the token is revoked: the reason goes into the history."]})
    with transaction.atomic():
        row = ApiToken.objects.select_for_update().get(pk=token.pk)
        if row.revoked_at is not None:
            raise ValidationError(f"The token {row.name!r} was already revoked at {row.revoked_at:%Y-%m-%d %H:%M} UTC.")
        before = _public_snapshot(row)
        row.revoked_at = timezone.now()
        row.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor, channel=channel, instance=row, before=before, after=_public_snapshot(row), reason=reason
        )
    # Now, and again after the commit: a request in between could have cached the row as it
    # was before the commit. The shared cache after the commit only: it is what vouches for the
    # token during a database outage, in every process.
    forget_token(row.token_hash)
    transaction.on_commit(lambda: forget_token_everywhere(row.token_hash))
    token.revoked_at = row.revoked_at
    return row


def _public_snapshot(row: ApiToken) -> dict[str, Any]:
    return {field: value for field, value in snapshot(row).items() if field not in SECRET_FIELDS}
