"""Sources of market data, and the record of calls to them (which value types a source feeds:
values.models.ValueTypeSource).

Credentials are never stored: a source names the environment variables that hold them.
"""

from __future__ import annotations

import math
import os
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator, URLValidator
from django.db import models

from core.validation import identifier_validator

env_var_validator = RegexValidator(r"^[A-Z_][A-Z0-9_]*$", "Environment variable names are UPPER_CASE.")
url_validator = URLValidator(schemes=["http", "https"])


class SourceKind(models.TextChoices):
    HTTP_JSON = "http_json", "Generic JSON over HTTP"
    WORLD_BANK = "world_bank", "World Bank Indicators API"
    IMF = "imf", "IMF DataMapper API"
    GOOGLE_ADS = "google_ads", "Google Ads API"
    FACEBOOK_MARKETING = "facebook_marketing", "Meta Marketing API"
    SEMRUSH = "semrush", "Semrush Analytics API"


class Source(models.Model):
    """An external API (or a generic JSON service) that answers value types."""

    name = models.CharField(max_length=100, unique=True, validators=[identifier_validator])
    kind = models.CharField(max_length=30, choices=SourceKind.choices)
    description = models.TextField(blank=True)
    base_url = models.CharField(max_length=500, validators=[url_validator])
    credential_variables = models.JSONField(
        default=dict,
        blank=True,
        help_text='Credential role to environment variable NAME, e.g. {"access_token": "FACEBOOK_ACCESS_TOKEN"}.',
    )
    is_enabled = models.BooleanField(default=True)
    connect_timeout = models.FloatField(default=3.0, validators=[MinValueValidator(0.01)])
    read_timeout = models.FloatField(default=10.0, validators=[MinValueValidator(0.01)])
    requests_per_minute = models.PositiveIntegerField(default=60, validators=[MinValueValidator(1)])
    burst_allowance = models.PositiveIntegerField(default=10)
    breaker_failure_threshold = models.PositiveIntegerField(
        default=5, validators=[MinValueValidator(1)], help_text="Failures in a row that open the breaker."
    )
    breaker_recovery_timeout = models.DurationField(
        default=timedelta(seconds=60), help_text="How long the breaker stays open before a trial."
    )
    breaker_half_open_trials = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="Trial calls admitted when half-open."
    )
    request_template = models.JSONField(
        default=dict, blank=True, help_text="Method, path, query and body, with {context} placeholders."
    )
    field_mapping = models.JSONField(
        default=dict, blank=True, help_text="Value field to JMESPath expression over the response."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def credential_status(self) -> dict[str, bool]:
        """Each credential variable's name and whether it is set. Never the value."""
        return {name: bool(os.environ.get(name)) for name in self.credential_variables.values()}

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if not isinstance(self.credential_variables, dict):
            errors["credential_variables"] = ["Must be a JSON object of role to variable name."]
        else:
            for role, name in self.credential_variables.items():
                try:
                    env_var_validator(name if isinstance(name, str) else "")
                except ValidationError:
                    errors.setdefault("credential_variables", []).append(
                        f"{role}: {name!r} is not an environment variable name (store the name, never the secret)."
                    )
        for name in ("request_template", "field_mapping"):
            if not isinstance(getattr(self, name), dict):
                errors[name] = ["Must be a JSON object."]
        if self.breaker_recovery_timeout is not None and self.breaker_recovery_timeout <= timedelta(0):
            errors["breaker_recovery_timeout"] = ["Must be a positive duration."]
        if errors:
            raise ValidationError(errors)


class CallOutcome(models.TextChoices):
    """How one attempt to call a source ended (sources.health.call_outcome decides)."""

    SUCCESS = "success"
    TIMEOUT = "timeout"  # the source did not answer within the time it was given
    HTTP_ERROR = "http_error"  # refused connection, 5xx, 4xx: the source answered nothing usable
    INVALID_DATA = "invalid_data"  # it answered, but not what its wire format promises
    RATE_LIMITED = "rate_limited"  # the provider throttled us (429, quota), or our own limit did
    BREAKER_OPEN = "breaker_open"  # our breaker refused the attempt: no request was made
    DISABLED = "disabled"  # a credential variable is not set: no request was made


class SourceCall(models.Model):
    """One attempt to call a source, by any process: the shared record that source health is
    computed from (sources.health). Written by `sources.health.call_record`; pruned after
    DYNCONFIG_HEALTH_RETENTION. Not to be confused with `sources.adapters.base.SourceCall`, the
    request an attempt makes."""

    source_name = models.CharField(max_length=100)
    outcome = models.CharField(max_length=20, choices=CallOutcome.choices)
    seconds = models.FloatField(help_text="How long the attempt took, refusals included (about 0).")
    reason = models.TextField(blank=True, help_text="Why it failed; never a credential.")
    called_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-called_at", "-id"]
        indexes = [models.Index(fields=["source_name", "-called_at"], name="source_call_recent")]
        verbose_name = "source call"

    def __str__(self) -> str:
        return f"{self.source_name} {self.outcome} at {self.called_at:%Y-%m-%d %H:%M:%S}"
