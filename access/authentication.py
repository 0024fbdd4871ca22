"""`Authorization: Bearer <token>`: the API token authentication (tokens: access.models).

The read endpoint must cost little more than a bare view, so each process keeps the tokens it
recently authenticated for DYNCONFIG_TOKEN_CACHE_SECONDS (default 5): a revoked token keeps
working in another process for at most that long (in the process that revoked it, not at all).
Only successful lookups are kept, so unknown tokens cannot fill the cache; they cost one query
(and one delete in the shared cache, below) each. `last_used_at` is written at most once a
minute per token and process, in one UPDATE.

When the database cannot be reached, a token that a lookup found valid within
DYNCONFIG_TOKEN_OUTAGE_GRACE (default 10 minutes) keeps working, so that consumers keep reading
values through the outage:

- every successful lookup also writes {token id, name, scopes, validated_at} to the shared
  cache (Django's default cache: Redis), under a key made from the token's hash, expiring after
  the grace; so a process started during the outage knows the tokens others looked up;
- revocation deletes that entry (access.services.api_token_revoke), and so does any lookup that
  finds the token revoked: during an outage a token is accepted only while its shared entry
  exists, and this process's own memory serves only when the shared cache cannot be reached;
- a token neither source vouches for gets 503 database_unavailable (dynconfig_site/api_errors.py),
  not 401: while the database is away, nobody knows whether it is valid. It is never accepted.

The shared cache fails open: an error is logged, the cache skipped for SHARED_CACHE_RETRY_AFTER
seconds, and the request goes on. `last_used_at` bookkeeping never fails a request.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import monotonic
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone
from rest_framework import authentication, exceptions

from access.models import ApiToken
from access.principals import TokenPrincipal

logger = logging.getLogger(__name__)

# How stale `last_used_at` may be: it tells operators whether a token is still in use, not
# how much; writing it on every request would make each read a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# After a shared cache (Redis) error, how long it is skipped: a dead Redis must not cost every
# token lookup its timeout.
SHARED_CACHE_RETRY_AFTER = 5.0
# At most one warning per kind of trouble in this many seconds: an outage touches every
# request, and a line per request would bury everything else in the logs.
OUTAGE_LOG_INTERVAL = 60.0
# The shared entries' key prefix; the version changes if their content ever does.
SHARED_KEY_PREFIX = "access:token:v1:"


def token_hash(token: str) -> str:
    # Tokens are 256-bit random strings: a fast hash is enough (no dictionary to guess from).
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class _KnownToken:
    principal: TokenPrincipal
    trusted_until: float  # monotonic(): used without a query until then
    validated_at: float  # monotonic(): when a database lookup last found it valid
    last_used_at: datetime | None  # as far as this process knows


# token hash -> what the last lookup found. Plain dict operations are atomic under the GIL, and
# a lost race only costs one more query.
_known_tokens: dict[str, _KnownToken] = {}


class _OccasionalWarning:
    """A warning logged at most once per OUTAGE_LOG_INTERVAL. Two threads may both log at the
    interval's start: a duplicate line is cheaper than a lock on every request."""

    def __init__(self) -> None:
        self._next_at = 0.0

    def __call__(self, message: str, *args: Any) -> None:
        now = monotonic()
        if now >= self._next_at:
            self._next_at = now + OUTAGE_LOG_INTERVAL
            logger.warning(message, *args)


_warn_outage_authentication = _OccasionalWarning()
_warn_last_used_not_written = _OccasionalWarning()
_warn_shared_cache_unavailable = _OccasionalWarning()
_shared_cache_down_until = 0.0  # monotonic(); shared by every thread of the process


def forget_token(hashed: str) -> None:
    """Drop one token from this process's cache (its revocation takes effect here at once)."""
    _known_tokens.pop(hashed, None)


def forget_token_everywhere(hashed: str) -> None:
    """Drop one token from this process's cache and from the shared cache, so that no process
    vouches for it during a database outage (revocation; call it after the commit)."""
    forget_token(hashed)
    _shared_delete(hashed, is_revocation=True)


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
    """The token if valid, None if unknown or revoked; raises the database's error when the
    database cannot say and nothing else vouches for the token."""
    now = monotonic()
    known = _known_tokens.get(hashed)
    if known is not None and known.trusted_until > now:
        return known
    try:
        row = (
            ApiToken.objects.filter(token_hash=hashed, revoked_at__isnull=True)
            .only("pk", "name", "scopes", "last_used_at")
            .first()
        )
    except DatabaseError:
        vouched = _vouched_during_outage(hashed, known, now)
        if vouched is None:
            # 503 database_unavailable (dynconfig_site/api_errors.py), not 401: whether the token
            # is valid is unknown.
            raise
        return vouched
    if row is None:
        # From the shared cache too: a process that looked it up just before its revocation
        # committed may have written it back after the revocation deleted it.
        forget_token(hashed)
        _shared_delete(hashed)
        return None
    known = _KnownToken(
        principal=TokenPrincipal(token_id=row.pk, name=row.name, scopes=frozenset(row.scopes)),
        trusted_until=now + settings.DYNCONFIG_TOKEN_CACHE_SECONDS,
        validated_at=now,
        last_used_at=row.last_used_at,
    )
    # Kept even with DYNCONFIG_TOKEN_CACHE_SECONDS at 0 (then trusted for no time at all): the
    # outage grace needs to know when it was last valid.
    _known_tokens[hashed] = known
    _shared_set(hashed, known.principal)
    return known


def _vouched_during_outage(hashed: str, known: _KnownToken | None, now: float) -> _KnownToken | None:
    """The token as last validated within the grace, by the shared cache (or, only when that
    cannot be reached, by this process's memory); None when neither vouches for it."""
    grace = settings.DYNCONFIG_TOKEN_OUTAGE_GRACE.total_seconds()
    entry = _shared_get(hashed)
    if entry is _UNREACHABLE:
        # No word of a revocation can reach this process now: its own memory is all there is.
        if known is None or now - known.validated_at > grace:
            return None
        validated_at, principal, source = known.validated_at, known.principal, "this process's memory"
    else:
        if entry is None:  # revoked (revocation deletes it), expired, or never looked up
            return None
        age = time.time() - entry["validated_at"]
        if age > grace:
            return None
        validated_at = now - max(age, 0.0)
        principal = TokenPrincipal(
            token_id=entry["token_id"], name=entry["name"], scopes=frozenset(entry["scopes"])
        )
        source = "the shared cache"
    _warn_outage_authentication(
        "Database unavailable: authenticating tokens validated within the last %s from %s (e.g. %s)",
        settings.DYNCONFIG_TOKEN_OUTAGE_GRACE,
        source,
        principal.name,
    )
    vouched = _KnownToken(
        principal=principal,
        # Trusted like a lookup, so that the outage costs one failed query per token and
        # DYNCONFIG_TOKEN_CACHE_SECONDS, not one per request.
        trusted_until=now + settings.DYNCONFIG_TOKEN_CACHE_SECONDS,
        validated_at=validated_at,  # unchanged: the grace counts from the last real lookup
        last_used_at=known.last_used_at if known is not None else None,
    )
    _known_tokens[hashed] = vouched
    return vouched


def _note_use(known: _KnownToken) -> None:
    now = timezone.now()
    due_before = now - LAST_USED_RESOLUTION
    if known.last_used_at is not None and known.last_used_at > due_before:
        return
    try:
        # Conditional, so that other processes that noted a use within the minute make this a no-op.
        ApiToken.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=due_before), pk=known.principal.token_id
        ).update(last_used_at=now)
    except DatabaseError as error:
        # Bookkeeping: the request goes on. Not retried before LAST_USED_RESOLUTION either, so
        # that an outage does not cost every request one more failed query.
        _warn_last_used_not_written("last_used_at of API tokens not written (database error): %s", error)
    known.last_used_at = now


# The shared cache: fails open, whatever its backend raises ------------------------------------

_UNREACHABLE = object()  # _shared_get's answer when the shared cache could not be asked


def _shared_key(hashed: str) -> str:
    # From the hash, never the token: what Redis holds authenticates nobody by itself.
    return SHARED_KEY_PREFIX + hashed


def _shared_get(hashed: str) -> dict | None | object:
    if monotonic() < _shared_cache_down_until:
        return _UNREACHABLE
    try:
        return caches["default"].get(_shared_key(hashed))
    except Exception as error:  # noqa: BLE001 - fails open, whatever the cache backend raised
        _shared_cache_failed("read", error)
        return _UNREACHABLE


def _shared_set(hashed: str, principal: TokenPrincipal) -> None:
    grace = settings.DYNCONFIG_TOKEN_OUTAGE_GRACE.total_seconds()
    if grace <= 0 or monotonic() < _shared_cache_down_until:
        return
    entry = {
        "token_id": principal.token_id,
        "name": principal.name,
        "scopes": sorted(principal.scopes),
        "validated_at": time.time(),  # wall clock: other processes, maybe other hosts, compare it
    }
    try:
        caches["default"].set(_shared_key(hashed), entry, timeout=grace)
    except Exception as error:  # noqa: BLE001 - fails open, whatever the cache backend raised
        _shared_cache_failed("write", error)


def _shared_delete(hashed: str, *, is_revocation: bool = False) -> None:
    # A revocation tries even while the cache is being skipped: it is rare, and worth a timeout.
    if not is_revocation and monotonic() < _shared_cache_down_until:
        return
    try:
        caches["default"].delete(_shared_key(hashed))
    except Exception as error:  # noqa: BLE001 - fails open, whatever the cache backend raised
        if is_revocation:
            logger.error(
                "Revoked token not removed from the shared cache (%s): until its entry expires "
                "(DYNCONFIG_TOKEN_OUTAGE_GRACE), a database outage could let it in",
                error,
            )
        _shared_cache_failed("delete", error)


def _shared_cache_failed(operation: str, error: Exception) -> None:
    global _shared_cache_down_until
    _shared_cache_down_until = monotonic() + SHARED_CACHE_RETRY_AFTER
    _warn_shared_cache_unavailable(
        "Shared token cache unavailable (%s failed), skipped for %.0fs: %s", operation, SHARED_CACHE_RETRY_AFTER, error
    )
