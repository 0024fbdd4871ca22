"""How the API's authentication appears in the OpenAPI schema (drf-spectacular extensions).

Loaded by AccessConfig.ready(): drf-spectacular finds an extension by subclass registration,
so the module only has to be imported."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import permissions

from access.permissions import CanReadValues, ReadOrWriteValues


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "access.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "An API token: `Authorization: Bearer <token>`. Its scopes decide what it may do: "
                "`values:read` reads; `values:write` also writes overrides and fallbacks, refreshes "
                "and rolls back; `sources:manage` also opens and resets source breakers."
            ),
        }

    def get_security_requirement(self, auto_schema) -> list[dict]:
        requirements = [{self.name: []}]
        if _is_anonymous_read(auto_schema):
            requirements.append({})  # OpenAPI's way to say "or no credential at all"
        return requirements


def _is_anonymous_read(auto_schema) -> bool:
    """Whether this deployment serves the operation without sign-in (DYNCONFIG_ANONYMOUS_READS):
    a read, by its permissions (planning's POSTs and the batch read are reads too)."""
    if not settings.DYNCONFIG_ANONYMOUS_READS:
        return False
    is_safe_method = auto_schema.method in permissions.SAFE_METHODS
    view_permissions = auto_schema.view.get_permissions()
    return bool(view_permissions) and all(
        isinstance(permission, CanReadValues) or (is_safe_method and isinstance(permission, ReadOrWriteValues))
        for permission in view_permissions
    )
