"""Who is calling the API, and what they may do: one answer for tokens and admin sessions.

Scopes:
    values:read      read values (GET values, batch reads, history, sources and their health)
    values:write     everything values:read allows, plus overrides, fallbacks, refresh, rollback
    sources:manage   everything values:read allows, plus source actions (reset a breaker)
    values:approve   everything values:read allows, plus approving or rejecting change requests
                     that someone else proposed (values.change_requests); not proposing them
    webhooks:manage  everything values:read allows, plus registering webhooks (URLs that receive
                     every change event) and reading their deliveries
A staff user signed in to the admin holds every scope, values:approve only with the Django
permission values.approve_changerequest (a superuser has it); another signed-in user only
values:read.
"""

from __future__ import annotations

from dataclasses import dataclass

from access.models import Scope

READ_SCOPES = frozenset(
    {Scope.VALUES_READ, Scope.VALUES_WRITE, Scope.SOURCES_MANAGE, Scope.VALUES_APPROVE, Scope.WEBHOOKS_MANAGE}
)
# The Django permission that lets a staff session approve, as the admin's approve action checks it.
APPROVE_PERMISSION = "values.approve_changerequest"


@dataclass(frozen=True)
class TokenPrincipal:
    """request.user for a request authenticated by an API token."""

    token_id: int
    name: str
    scopes: frozenset[str]

    is_authenticated = True
    is_active = True
    is_staff = False
    is_anonymous = False

    @property
    def pk(self) -> str:
        return f"token:{self.token_id}"  # what DRF's throttles key on

    @property
    def username(self) -> str:
        return f"token:{self.name}"

    def __str__(self) -> str:
        return self.username


def scopes_of(user) -> frozenset[str]:
    """The scopes a request's user holds (empty for anonymous)."""
    if isinstance(user, TokenPrincipal):
        return user.scopes
    if user is not None and user.is_authenticated:
        if not user.is_staff:
            return frozenset({Scope.VALUES_READ})
        if user.has_perm(APPROVE_PERMISSION):
            return frozenset(Scope.values)
        return frozenset(Scope.values) - {Scope.VALUES_APPROVE}
    return frozenset()


def actor_of(user) -> str:
    """The name an operator change is recorded under: the user name, or `token:<name>`."""
    return user.username if isinstance(user, TokenPrincipal) else user.get_username()
