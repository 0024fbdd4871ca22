"""`Authorization: Bearer <token>`: the API token authentication (tokens: access.models)."""

from __future__ import annotations

import hashlib

from rest_framework import authentication, exceptions

from access.models import ApiToken
from access.principals import TokenPrincipal


def token_hash(token: str) -> str:
    # Tokens are 256-bit random strings: a fast hash is enough (no dictionary to guess from).
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode(errors="replace").lower() != self.keyword.lower():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send the token as `Authorization: Bearer <token>`.")
        token = header[1].decode(errors="replace")
        row = ApiToken.objects.filter(token_hash=token_hash(token), revoked_at__isnull=True).first()
        if row is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked token.")
        return TokenPrincipal(token_id=row.pk, name=row.name, scopes=frozenset(row.scopes)), row

    def authenticate_header(self, request) -> str:
        return self.keyword
