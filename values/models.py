"""Value types, overrides, resolved values (the database cache tier) and the history of edits."""

from __future__ import annotations

import math
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from core.context import ContextError, canonical_context
from core.errors import format_path
from core.validation import (
    MAX_READ_BUDGET,
    ValueRules,
    identifier_validator,
    precision_problems,
    rules_problems,
    value_problems,
)
from sources.models import Source


def _positive_duration(duration: timedelta) -> None:
    if duration <= timedelta(0):
        raise ValidationError("Must be a positive duration.")


def _string_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        return [f"Must be a list of {what}."]
    if len(set(value)) != len(value):
        return ["Must not repeat an entry."]
    return []


class BlendMethod(models.TextChoices):
    MEAN = "mean", "Weighted mean"
    MEDIAN = "median", "Weighted median"


class ValueType(models.Model):
    """A kind of dynamic value (budget thresholds, ...) and the rules every value of it obeys."""

    key = models.CharField(max_length=100, unique=True, validators=[identifier_validator])
    aliases = models.JSONField(default=list, blank=True, help_text="Other keys that name this type.")
    description = models.TextField(blank=True)
    schema = models.JSONField(help_text="JSON Schema (2020-12) every value must match.")
    context_keys = models.JSONField(
        default=list, blank=True, help_text="Context keys a read may give, e.g. region, industry."
    )
    update_frequency = models.DurationField(validators=[_positive_duration])
    ttl = models.DurationField(validators=[_positive_duration], help_text="How long a fetched value is fresh.")
    max_staleness = models.DurationField(
        validators=[_positive_duration],
        help_text="How long past its expiry the last known good value may still be served.",
    )
    fallback_value = models.JSONField(help_text="Emergency fallback, served when nothing better is known.")
    field_bounds = models.JSONField(
        default=dict, blank=True, help_text='Per-field bounds, e.g. {"*": {"min": 0.3, "max": 3.0}}.'
    )
    ascending_fields = models.JSONField(
        default=list, blank=True, help_text="Fields whose numbers must be strictly ascending."
    )
    min_ratio = models.FloatField(null=True, blank=True, help_text="Lowest new/previous ratio.")
    max_ratio = models.FloatField(null=True, blank=True, help_text="Highest new/previous ratio.")
    field_precision = models.JSONField(
        default=dict,
        blank=True,
        help_text="How each number of a blended value is rounded, once, when it is made, by field pattern: "
        '{"*": {"decimals": 2}} to the cent, {"*.ctr_range": {"significant": 4}}; the most specific '
        "pattern wins. Empty: no rounding. Fallbacks and overrides are kept as typed.",
    )
    quorum = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0)],
        help_text="Least total weight of valid sources for a tier to count (0: any one source).",
    )
    version = models.PositiveIntegerField(
        default=1, help_text="Raised by each edit; an API update must name the version it read."
    )
    blend_method = models.CharField(
        max_length=10,
        choices=BlendMethod.choices,
        default=BlendMethod.MEAN,
        help_text="How a tier's sources are combined: weighted mean, or weighted median (resists one bad source).",
    )
    read_budget = models.DurationField(
        null=True,
        blank=True,
        validators=[_positive_duration, MaxValueValidator(MAX_READ_BUDGET)],
        help_text="How long a consumer's read waits for sources before answering with the best it has "
        "(empty: DYNCONFIG_READ_BUDGET, 150 ms by default).",
    )
    widening_order = models.JSONField(
        default=list,
        blank=True,
        help_text="Context keys dropped, least significant first, to answer with a wider context's value "
        'when a context has none, e.g. ["industry", "region"]. Empty: never widened.',
    )
    is_prediction_enabled = models.BooleanField(
        default=True,
        help_text="Whether a forecast from this value's history may be served when nothing fresher is known.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key

    @property
    def rules(self) -> ValueRules:
        return ValueRules(
            schema=self.schema,
            field_bounds=self.field_bounds,
            ascending_fields=tuple(self.ascending_fields),
            min_ratio=self.min_ratio,
            max_ratio=self.max_ratio,
        )

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        for name in ("aliases", "context_keys", "ascending_fields", "widening_order"):
            problems = _string_list(getattr(self, name), "non-empty strings")
            if problems:
                errors[name] = problems
        if "widening_order" not in errors and "context_keys" not in errors:
            unknown = [name for name in self.widening_order if name not in self.context_keys]
            if unknown or len(set(self.widening_order)) != len(self.widening_order):
                errors["widening_order"] = [
                    f"Name each of the context keys ({', '.join(self.context_keys) or 'none'}) at most once."
                ]
        if not isinstance(self.schema, dict):
            errors["schema"] = ["Must be a JSON object (a JSON Schema)."]
        if "aliases" not in errors:
            errors.update(self._alias_problems())
        precision = [
            f"{format_path(where)}: {problem}" if where else problem
            for where, problem in precision_problems(self.field_precision)
        ]
        if precision:
            errors["field_precision"] = precision
        if not errors:
            errors.update(rules_problems(self.rules))
        if not errors and self.fallback_value is not None:
            problems = value_problems(self.fallback_value, self.rules)
            if problems:
                errors["fallback_value"] = problems
        if errors:
            raise ValidationError(errors)

    def _alias_problems(self) -> dict[str, list[str]]:
        problems = []
        names = set(self.aliases)
        if self.key in names:
            problems.append("An alias must differ from the key.")
        others = ValueType.objects.exclude(pk=self.pk)
        for other in others.only("key", "aliases"):
            clash = names & ({other.key} | set(other.aliases))
            if clash:
                problems.append(f"{', '.join(sorted(clash))} already names value type {other.key}.")
            if self.key in other.aliases:
                problems.append(f"{self.key} is already an alias of value type {other.key}.")
        for alias in self.aliases:
            try:
                identifier_validator(alias)
            except ValidationError:
                problems.append(f"{alias!r}: use lowercase letters, digits and underscores.")
        return {"aliases": problems} if problems else {}


class Override(models.Model):
    """An operator's value for a value type in the contexts it matches, for a while."""

    value_type = models.ForeignKey(ValueType, on_delete=models.CASCADE, related_name="overrides")
    context_match = models.JSONField(
        default=dict,
        blank=True,
        help_text='Context it applies to, e.g. {"region": "us"}; {} matches every context.',
    )
    value = models.JSONField()
    reason = models.TextField(help_text="Why this override exists.")
    author = models.CharField(max_length=150)
    starts_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(
        default=1, help_text="Raised by each edit; an API update must name the version it read."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["value_type__key", "-starts_at"]

    def __str__(self) -> str:
        return f"{self.value_type_id and self.value_type.key} {self.context_match}"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if not (self.reason or "").strip():
            errors["reason"] = ["A reason is required."]
        if self.expires_at and self.starts_at and self.expires_at <= self.starts_at:
            errors["expires_at"] = ["Must be after the start."]
        if not isinstance(self.context_match, dict) or not all(
            isinstance(item, (str, int, float, bool)) for item in self.context_match.values()
        ):
            errors["context_match"] = ["Must be a JSON object of context key to a plain value."]
        elif self.value_type_id:
            unknown = set(self.context_match) - set(self.value_type.context_keys)
            if unknown:
                allowed = ", ".join(self.value_type.context_keys) or "none"
                errors["context_match"] = [
                    f"Unknown context key {', '.join(sorted(unknown))} (allowed: {allowed})."
                ]
            else:
                # Every process's registry reads each override's match back as a context: one it
                # could not read (`<script>`, 1.5) would break every reload, so it never gets in.
                try:
                    canonical_context(self.context_match, self.value_type.context_keys, self.value_type.key)
                except ContextError as error:
                    errors["context_match"] = [str(error)]
        if self.value_type_id:
            problems = value_problems(self.value, self.value_type.rules)
            if problems:
                errors["value"] = problems
        if errors:
            raise ValidationError(errors)


class ResolvedValue(models.Model):
    """The database cache tier: the last good value resolved for a type and a context."""

    value_type = models.ForeignKey(ValueType, on_delete=models.CASCADE, related_name="resolved_values")
    context_key = models.CharField(max_length=500, help_text="Canonical form of the context.")
    context = models.JSONField(default=dict, blank=True)
    value = models.JSONField()
    provenance = models.JSONField(default=dict)
    fingerprint = models.CharField(
        max_length=32, blank=True, help_text="The type's configuration this value was resolved under."
    )
    fetched_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["value_type", "context_key"], name="unique_resolved_value")
        ]
        ordering = ["value_type__key", "context_key"]

    def __str__(self) -> str:
        return f"{self.value_type_id and self.value_type.key} [{self.context_key}]"


class ValueRecord(models.Model):
    """The history of resolved values: one row per value fetched from sources (append-only).

    ResolvedValue keeps only the latest value per context; this keeps each one, for the
    history API, rollback and the dashboard's charts."""

    value_type = models.ForeignKey(ValueType, on_delete=models.CASCADE, related_name="records")
    context_key = models.CharField(max_length=500, blank=True, help_text="Canonical form of the context.")
    context = models.JSONField(default=dict, blank=True)
    value = models.JSONField()
    provenance = models.JSONField(default=dict)
    fetched_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-fetched_at", "-id"]
        indexes = [models.Index(fields=["value_type", "context_key", "-fetched_at"], name="value_record_history")]

    def __str__(self) -> str:
        return f"{self.value_type_id and self.value_type.key} [{self.context_key}] at {self.fetched_at:%Y-%m-%d %H:%M:%S}"


class RefreshSchedule(models.Model):
    """When the dispatcher last queued a round of a value type's refreshes (values.refresh).

    Only the time is stored, never the next one: at every tick the dispatcher adds the type's
    *current* update_frequency to it, so an operator's change applies at the next tick.
    """

    value_type = models.OneToOneField(ValueType, on_delete=models.CASCADE, related_name="refresh_schedule")
    last_dispatched_at = models.DateTimeField(null=True, blank=True)
    last_refreshed_at = models.DateTimeField(
        null=True, blank=True, help_text="The last refresh of any of its contexts that brought a value."
    )

    def __str__(self) -> str:
        return f"{self.value_type_id and self.value_type.key} refresh schedule"


class ContextReads(models.Model):
    """How often consumers read a value type in one context, and the state of its refreshes.

    Reads are counted in memory and added here by values.popularity; the refresh fields are
    written by values.refresh: `next_refresh_at` is the end of a backoff after failures,
    `queued_until` the lease of a refresh queued and not yet run.
    """

    value_type = models.ForeignKey(ValueType, on_delete=models.CASCADE, related_name="context_reads")
    context_key = models.CharField(max_length=500, blank=True, help_text="Canonical form of the context.")
    context = models.JSONField(default=dict, blank=True)
    reads = models.BigIntegerField(default=0)
    last_read_at = models.DateTimeField(null=True, blank=True)
    next_refresh_at = models.DateTimeField(null=True, blank=True, help_text="Not refreshed before (backoff).")
    queued_until = models.DateTimeField(null=True, blank=True, help_text="A refresh is queued until then.")
    failures = models.PositiveIntegerField(default=0, help_text="Refreshes failed in a row.")
    last_error = models.TextField(blank=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["value_type", "context_key"], name="unique_context_reads")
        ]
        indexes = [models.Index(fields=["value_type", "-reads"], name="context_reads_popularity")]
        ordering = ["value_type__key", "-reads"]
        verbose_name_plural = "context reads"

    def __str__(self) -> str:
        return f"{self.value_type_id and self.value_type.key} [{self.context_key}]"


class Tier(models.TextChoices):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    TERTIARY = "tertiary"


class ValueTypeSource(models.Model):
    """One source feeding one value type: its tier, its weight in the blend, what it covers."""

    # Its history entries keep the name they had when the sources app held the model.
    audit_object_type = "sources.valuetypesource"

    value_type = models.ForeignKey(ValueType, on_delete=models.CASCADE, related_name="source_links")
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="value_type_links")
    tier = models.CharField(max_length=10, choices=Tier.choices, default=Tier.PRIMARY)
    weight = models.FloatField(help_text="Share in the tier's blend, in (0, 1].")
    channels = models.JSONField(
        default=list, blank=True, help_text="Channels this source covers; empty: all."
    )
    request_params = models.JSONField(default=dict, blank=True)
    field_mapping = models.JSONField(
        default=dict, blank=True, help_text="Overrides the source's field mapping for this type."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["value_type", "source"], name="unique_value_type_source")
        ]
        ordering = ["value_type__key", "tier", "source__name"]
        verbose_name = "value type source"
        db_table = "sources_valuetypesource"  # made by the sources app, which held it until the layering

    def __str__(self) -> str:
        return f"{self.source_id and self.source.name} ({self.tier}, {self.weight})"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.weight is None or not (math.isfinite(self.weight) and 0 < self.weight <= 1):
            errors["weight"] = [f"Weight must be in (0, 1], not {self.weight}."]
        if not isinstance(self.channels, list) or not all(
            isinstance(channel, str) and channel for channel in self.channels
        ):
            errors["channels"] = ["Must be a list of channel names."]
        for name in ("request_params", "field_mapping"):
            if not isinstance(getattr(self, name), dict):
                errors[name] = ["Must be a JSON object."]
        if errors:
            raise ValidationError(errors)


class ChangeRequest(models.Model):
    """An operator's edit held until a second operator approves it (values.change_requests).

    `items` are the edits, applied together or not at all, each as JSON data:
    {"object_type": "values.valuetype", "object_id": "3" (None: created), "object_repr": ...,
     "action": "create" | "update" | "delete", "before": the object's snapshot when proposed
     (None: created), "fields": {field attname: the proposed value}, "parent_item": index of the
     item that creates this one's value type (a new type's source links), or absent}.
    `before` is what the apply compares the object with: changed since, the request is stale.
    """

    class State(models.TextChoices):
        PENDING = "pending"  # waiting for an approver
        SCHEDULED = "scheduled"  # approved, applied at `apply_at` (values.tasks)
        APPLIED = "applied"
        REJECTED = "rejected"
        FAILED = "failed"  # approved, but refused at apply: changed since (stale) or invalid now

    summary = models.CharField(max_length=200, help_text="What it changes, e.g. update value type industry_multipliers.")
    value_type_key = models.CharField(max_length=100, blank=True, db_index=True)
    items = models.JSONField(default=list)
    reason = models.TextField(help_text="Why the proposer wants this change.")
    proposed_by = models.CharField(max_length=150)
    channel = models.CharField(max_length=30, help_text="admin or api: where it was proposed.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True, help_text="The approver's or rejecter's words.")
    apply_at = models.DateTimeField(null=True, blank=True, help_text="When a scheduled request is applied.")
    applied_at = models.DateTimeField(null=True, blank=True)
    failure = models.TextField(blank=True, help_text="Why it could not be applied.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "apply_at"], name="change_request_due")]
        permissions = [("approve_changerequest", "Can approve or reject change requests")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.summary} ({self.state})"
