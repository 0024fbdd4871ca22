"""The audit log of operator changes, and the configuration version every process watches.

Both are written only through audit.history, by whichever app records an operator change.
"""

from __future__ import annotations

from django.db import models


class AuditEntry(models.Model):
    """One operator change, immutable: who, when, what before and after, and why."""

    class Action(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"
        DELETE = "delete"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=150, help_text="User name, or the command that acted.")
    channel = models.CharField(max_length=30, help_text="admin, sync_config, api, ...")
    action = models.CharField(max_length=10, choices=Action.choices)
    object_type = models.CharField(max_length=100, help_text="app_label.model")
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["object_type", "object_id"], name="values_audi_object__db2600_idx")]
        db_table = "values_auditentry"  # made by the values app, which held it until the layering

    def __str__(self) -> str:
        return f"{self.action} {self.object_type} {self.object_repr} by {self.actor}"

    def save(self, *args, **kwargs) -> None:
        # History is append-only: an entry, once written, is never rewritten.
        if self.pk is not None:
            raise ValueError("Audit entries are immutable.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit entries are immutable.")


class ConfigVersion(models.Model):
    """One row counting operator changes, bumped in each change's own transaction.

    Processes compare it with the version of their snapshot (values.registry). The bump locks
    the row until commit, so versions rise in commit order and no change can hide behind a
    later one.
    """

    version = models.BigIntegerField(default=0)
    # Bumped when a background refresh changes a value: processes drop their L1 copies.
    data_version = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "configuration version"
        db_table = "values_configversion"  # made by the values app, which held it until the layering
