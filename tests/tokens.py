"""API tokens for tests: a client that sends a fresh token of the given scopes."""

from __future__ import annotations

import secrets

from rest_framework.test import APIClient

from access.authentication import token_hash
from access.models import ApiToken


def token_client(name: str, scopes: list[str]) -> APIClient:
    """An API client sending a new token of `scopes` (unique, so no process cache can mix them up)."""
    token = secrets.token_urlsafe(32)
    ApiToken.objects.create(name=name, prefix=token[:8], token_hash=token_hash(token), scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client
