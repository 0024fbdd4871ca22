"""`Authorization: Bearer <token>`: the API token authentication (tokens: access.models).

The read endpoint must cost little more than a bare view, so each process keeps the tokens it
recently authenticated for DYNCONFIG_TOKEN_CACHE_SECONDS (default 5): a revoked token keeps
working in another process for at most that long (in the process that revoked it, not at all).
Only successful lookups are kept, so unknown tokens cannot fill the cache; they cost one query
each. `last_used_at` is written at most once a minute per token and process, in one UPDATE.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import monotonic

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from rest_framework import authentication, exceptions

from access.models import ApiToken
from access.principals import TokenPrincipal

# How stale `last_used_at` may be: it tells operators whether a token is still in use, not
# how much; writing it on every request would make each read a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_hash(token: str) -> str:
    # Tokens are 256-bit random strings: a fast hash is enough (no dictionary to guess from).
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class _KnownToken:
    principal: TokenPrincipal
    expires_at: float  # monotonic()
    last_used_at: datetime | None  # as far as this process knows


# token hash -> what the last lookup found. Plain dict operations are atomic under the GIL, and
# a lost race only costs one more query.
_known_tokens: dict[str, _KnownToken] = {}


def forget_token(hashed: str) -> None:
    """Drop one token from this process's cache (its revocation takes effect here at once)."""
    _known_tokens.pop(hashed, None)


def forget_all_tokens() -> None:
    """Empty this process's cache of authenticated tokens."""
    _known_tokens.clear()


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode(errors="replace").lower() != self.keyword.lower():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send the token as `Authorization: Bearer <token>`.")
        known = _known_token(token_hash(header[1].decode(errors="replace")))
        if known is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked token.")
        _note_use(known)
        return known.principal, None

    def authenticate_header(self, request) -> str:
        return self.keyword


def _known_token(hashed: str) -> _KnownToken | None:
    now = monotonic()
    known = _known_tokens.get(hashed)
    if known is not None and known.expires_at > now:
        return known
    row = (
        ApiToken.objects.filter(token_hash=hashed, revoked_at__isnull=True)
        .only("pk", "name", "scopes", "last_used_at")
        .first()
    )
    if row is None:
        forget_token(hashed)
        return None
    known = _KnownToken(
        principal=TokenPrincipal(token_id=row.pk, name=row.name, scopes=frozenset(row.scopes)),
        expires_at=now + settings.DYNCONFIG_TOKEN_CACHE_SECONDS,
        last_used_at=row.last_used_at,
    )
    if settings.DYNCONFIG_TOKEN_CACHE_SECONDS > 0:
        _known_tokens[hashed] = known
    return known


def _note_use(known: _KnownToken) -> None:
    now = timezone.now()
    due_before = now - LAST_USED_RESOLUTION
    if known.last_used_at is not None and known.last_used_at > due_before:
        return
    # Conditional, so that other processes that noted a use within the minute make this a no-op.
    ApiToken.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=due_before), pk=known.principal.token_id
    ).update(last_used_at=now)
    known.last_used_at = now
