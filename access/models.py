"""API tokens: one per consumer, with scopes. Only a hash of each token is stored."""

from __future__ import annotations

from django.db import models


class Scope(models.TextChoices):
    VALUES_READ = "values:read", "Read values"
    VALUES_WRITE = "values:write", "Write overrides and fallbacks (and read values)"
    SOURCES_MANAGE = "sources:manage", "Manage sources: reset breakers"
    VALUES_APPROVE = "values:approve", "Approve or reject others' change requests (and read values)"
    WEBHOOKS_MANAGE = "webhooks:manage", "Register webhooks and see their deliveries (and read values)"


class ApiToken(models.Model):
    name = models.CharField(max_length=100, unique=True, help_text="The consumer this token is for.")
    prefix = models.CharField(max_length=16, help_text="The token's first characters, to recognize it.")
    token_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the token.")
    scopes = models.JSONField(default=list)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
