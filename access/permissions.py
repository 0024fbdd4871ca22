"""DRF permissions by scope (access.principals). Anonymous reads only where the deployment
allows them (DYNCONFIG_ANONYMOUS_READS, never in production)."""

from __future__ import annotations

from django.conf import settings
from rest_framework import permissions

from access.models import Scope
from access.principals import READ_SCOPES, scopes_of


class CanReadValues(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return settings.DYNCONFIG_ANONYMOUS_READS or bool(scopes_of(request.user) & READ_SCOPES)


class CanWriteValues(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return Scope.VALUES_WRITE in scopes_of(request.user)


class CanManageSources(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return Scope.SOURCES_MANAGE in scopes_of(request.user)


class CanApproveChanges(permissions.BasePermission):
    """values:approve: decide on change requests (that the caller did not propose: the service checks)."""

    def has_permission(self, request, view) -> bool:
        return Scope.VALUES_APPROVE in scopes_of(request.user)


class CanManageWebhooks(permissions.BasePermission):
    """webhooks:manage: register webhooks, read their deliveries."""

    def has_permission(self, request, view) -> bool:
        return Scope.WEBHOOKS_MANAGE in scopes_of(request.user)


class ReadOrWriteValues(permissions.BasePermission):
    """Safe methods need read access, the others values:write."""

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return CanReadValues().has_permission(request, view)
        return CanWriteValues().has_permission(request, view)
