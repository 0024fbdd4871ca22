"""Input and output serializers of the values API (values.apis): shapes only, no business rules
(those are the services' and the models' clean())."""

from __future__ import annotations

import math
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from core.answers import DEGRADED_ORIGINS, REASONS, SOURCE_TIERS, TIERS
from values.change_requests import change_request_diff
from values.models import ChangeRequest, Override

# Batch reads: enough for a page of a planner's values in one round trip, few enough that one
# request cannot hold a worker for long when every read misses the caches.
BATCH_MAX_READS = 100
# History: what the history endpoint returns by default, and the most it returns.
HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 500
# The largest integer a JSON value may hold: beyond it numbers lose meaning as floats, and the
# validation of bounds (which compares as floats) cannot take them.
LARGEST_JSON_INTEGER = 2**63 - 1
# How deep a JSON value may nest: values are small documents, not trees of arbitrary depth.
DEEPEST_JSON_NESTING = 32
# Bigger than any id the database hands out; larger numbers are refused as input.
LARGEST_ID = 2**63 - 1


def plain_json_problem(value: Any, depth: int = 0) -> str | None:
    """Why `value` cannot be stored as given, or None: a NUL character (PostgreSQL refuses it),
    a number that is not finite or too large, or too deep a nesting."""
    if depth > DEEPEST_JSON_NESTING:
        return f"nested deeper than {DEEPEST_JSON_NESTING} levels"
    if isinstance(value, str):
        return "contains a NUL character" if "\x00" in value else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if abs(value) <= LARGEST_JSON_INTEGER else f"{value} is too large a number"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not a finite number"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = plain_json_problem(key, depth + 1) or plain_json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, list):
        for item in value:
            problem = plain_json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    return f"{type(value).__name__} is not JSON"


def _plain_json(value: Any) -> None:
    problem = plain_json_problem(value)
    if problem:
        raise serializers.ValidationError(problem)


class PlainJSONField(serializers.JSONField):
    """Any JSON value the database can store (see plain_json_problem)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.validators.append(_plain_json)


class ContextField(serializers.DictField):
    """A read's context, e.g. {"region": "us", "channels": ["email_marketing"]}."""

    def __init__(self, **kwargs: Any):
        # null is let through to the context check, so that a batch refuses that read alone.
        kwargs.setdefault("child", PlainJSONField(allow_null=True))
        kwargs.setdefault("help_text", 'A read\'s context, e.g. {"region": "us", "industry": "retail"}.')
        super().__init__(**kwargs)
        self.validators.append(_plain_json)


class ReasonField(serializers.CharField):
    def __init__(self, **kwargs: Any):
        kwargs.setdefault("max_length", 2000)
        kwargs.setdefault("help_text", "Why: recorded in the history with the change.")
        super().__init__(**kwargs)


class VersionField(serializers.IntegerField):
    def __init__(self, **kwargs: Any):
        kwargs.setdefault("required", False)
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", LARGEST_ID)
        kwargs.setdefault("help_text", "The version you read (or send it as `If-Match`); one of the two is required.")
        super().__init__(**kwargs)


# Answers --------------------------------------------------------------------------------------


class SourceUseOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    weight = serializers.FloatField()
    confidence = serializers.FloatField()
    fetched_at = serializers.DateTimeField()


class ForecastWindowOutputSerializer(serializers.Serializer):
    oldest = serializers.DateTimeField(help_text="When the oldest value used was fetched.")
    newest = serializers.DateTimeField(help_text="When the newest value used was fetched.")
    points = serializers.IntegerField(help_text="How many past values the forecast came from.")


class ProvenanceOutputSerializer(serializers.Serializer):
    tier = serializers.ChoiceField(choices=TIERS, help_text="Where this answer was found or made.")
    origin = serializers.ChoiceField(
        choices=["override", *SOURCE_TIERS, *DEGRADED_ORIGINS], help_text="Where the value was made."
    )
    sources = SourceUseOutputSerializer(many=True)
    confidence = serializers.FloatField()
    fetched_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    stale = serializers.BooleanField(help_text="True only when the value is past its expiry.")
    errors = serializers.ListField(child=serializers.CharField())
    reason = serializers.ChoiceField(
        choices=REASONS, allow_null=True, help_text="Why a degraded answer (stale ... fallback) was given; else null."
    )
    refreshing = serializers.BooleanField(help_text="A refresh of this value was left running in the background.")
    context_used = serializers.DictField(
        allow_null=True, help_text="A widened answer: the wider context whose value this is; else null."
    )
    window = ForecastWindowOutputSerializer(
        allow_null=True, help_text="A predicted answer: the history it came from; else null."
    )


class AnswerOutputSerializer(serializers.Serializer):
    """A resolved value: core.answers.Answer.as_dict() (documentation only: views send as_dict())."""

    key = serializers.CharField()
    context = serializers.DictField()
    value = serializers.JSONField()
    provenance = ProvenanceOutputSerializer()


# Batch reads ----------------------------------------------------------------------------------


class BatchReadInputSerializer(serializers.Serializer):
    key = serializers.CharField(max_length=200, help_text="A value type's key or alias.")
    context = ContextField(required=False, default=dict)


class BatchInputSerializer(serializers.Serializer):
    reads = serializers.ListField(
        child=BatchReadInputSerializer(), min_length=1, max_length=BATCH_MAX_READS, help_text="1 to 100 reads."
    )


class ItemErrorSerializer(serializers.Serializer):
    status = serializers.IntegerField(help_text="What GET values/{key}/ would have answered: 400 or 404.")
    code = serializers.CharField(help_text="`invalid_context` or `not_found`.")
    message = serializers.CharField()


class BatchReadErrorSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="The key as asked.")
    context = serializers.DictField(help_text="The context as asked.")
    error = ItemErrorSerializer()


class BatchOutputSerializer(serializers.Serializer):
    results = serializers.ListField(
        child=PolymorphicProxySerializer(
            component_name="BatchReadResult",
            serializers=[AnswerOutputSerializer, BatchReadErrorSerializer],
            resource_type_field_name=None,
        ),
        help_text="One per read, in the order of the reads: an answer, or that read's error.",
    )


# Overrides ------------------------------------------------------------------------------------


class OverrideOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    value_type = serializers.CharField(source="value_type.key")
    context_match = serializers.DictField()
    value = serializers.JSONField()
    reason = serializers.CharField(help_text="Why the override exists (given when it was created).")
    author = serializers.CharField()
    starts_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    is_active = serializers.SerializerMethodField()
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_is_active(self, override: Override) -> bool:
        now = self.context.get("now") or timezone.now()
        return override.starts_at <= now and (override.expires_at is None or now < override.expires_at)


class OverrideListFilterSerializer(serializers.Serializer):
    value_type = serializers.CharField(required=False, max_length=200, help_text="A value type's key or alias.")
    active = serializers.BooleanField(required=False, allow_null=True, default=None)


class OverrideCreateInputSerializer(serializers.Serializer):
    value_type = serializers.CharField(max_length=200, help_text="A value type's key or alias.")
    context_match = ContextField(
        required=False, default=dict, help_text='The contexts it applies to, e.g. {"region": "us"}; {} matches all.'
    )
    value = PlainJSONField(help_text="Checked against the type's schema and bounds.")
    reason = ReasonField(help_text="Why this override exists (required).")
    starts_at = serializers.DateTimeField(required=False, help_text="Default: now.")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, help_text="Default: never.")


class OverrideUpdateInputSerializer(serializers.Serializer):
    context_match = ContextField(required=False)
    value = PlainJSONField(required=False)
    starts_at = serializers.DateTimeField(required=False)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    reason = ReasonField(help_text="Why this change (required); the override's own reason stays.")
    version = VersionField()


class OverrideDeleteInputSerializer(serializers.Serializer):
    reason = ReasonField(
        required=False, allow_blank=True, default="", help_text="Why it is deleted: here or as `?reason=` (required)."
    )
    version = VersionField()


# Fallback, rollback, refresh, history -----------------------------------------------------------


class FallbackOutputSerializer(serializers.Serializer):
    key = serializers.CharField()
    value = serializers.JSONField()
    version = serializers.IntegerField(help_text="The value type's version (every edit of the type raises it).")


class FallbackUpdateInputSerializer(serializers.Serializer):
    value = PlainJSONField(help_text="Checked against the type's schema and bounds.")
    reason = ReasonField()
    version = VersionField()


class RollbackInputSerializer(serializers.Serializer):
    record_id = serializers.IntegerField(min_value=1, max_value=LARGEST_ID, help_text="A value id from the history.")
    reason = ReasonField()
    expires_at = serializers.DateTimeField(required=False, allow_null=True, help_text="Default: never.")


class RefreshOutcomeSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="False when no source gave a value: the answer is then the best one kept.")
    status = serializers.ChoiceField(choices=["refreshed", "unchanged", "failed"])
    reason = serializers.CharField()


class RefreshOutputSerializer(AnswerOutputSerializer):
    refresh = RefreshOutcomeSerializer()


class HistoryQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        required=False, default=HISTORY_DEFAULT_LIMIT, min_value=1, max_value=HISTORY_MAX_LIMIT
    )


class ValueRecordOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    value = serializers.JSONField()
    provenance = serializers.DictField()
    fetched_at = serializers.DateTimeField()


class AuditEntryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    at = serializers.DateTimeField(source="created_at")
    actor = serializers.CharField()
    channel = serializers.CharField()
    action = serializers.ChoiceField(choices=["create", "update", "delete"])
    object_type = serializers.CharField(help_text="values.valuetype, values.override or sources.valuetypesource.")
    object_id = serializers.CharField()
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)
    reason = serializers.CharField()


class HistoryOutputSerializer(serializers.Serializer):
    key = serializers.CharField()
    context = serializers.DictField()
    values = ValueRecordOutputSerializer(many=True)
    changes = AuditEntryOutputSerializer(many=True)


# Change requests ------------------------------------------------------------------------------


class ChangeRequestDiffLineSerializer(serializers.Serializer):
    object = serializers.CharField(source="object_label", help_text="What is done to which object.")
    field = serializers.CharField()
    before = serializers.JSONField(allow_null=True, help_text="When proposed; null for a new object.")
    after = serializers.JSONField(allow_null=True, help_text="As proposed; null for a deleted object.")


class ChangeRequestOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    summary = serializers.CharField()
    value_type = serializers.CharField(source="value_type_key", help_text="The value type it concerns.")
    state = serializers.ChoiceField(
        choices=["pending", "scheduled", "applied", "rejected", "failed"],
        help_text="pending → applied or scheduled (then applied) or failed; or pending → rejected.",
    )
    reason = serializers.CharField()
    proposed_by = serializers.CharField()
    channel = serializers.CharField(help_text="Where it was proposed: admin or api.")
    diff = serializers.SerializerMethodField()
    items = serializers.JSONField(help_text="The edits, each with the object's state when proposed.")
    decided_by = serializers.CharField(help_text="Who approved or rejected it; empty while pending.")
    decided_at = serializers.DateTimeField(allow_null=True)
    decision_note = serializers.CharField()
    apply_at = serializers.DateTimeField(allow_null=True, help_text="When a scheduled request is applied.")
    applied_at = serializers.DateTimeField(allow_null=True)
    failure = serializers.CharField(help_text="Why a failed request was not applied (stale, or refused).")
    created_at = serializers.DateTimeField()

    @extend_schema_field(ChangeRequestDiffLineSerializer(many=True))
    def get_diff(self, change_request: ChangeRequest) -> list[dict[str, Any]]:
        return ChangeRequestDiffLineSerializer(change_request_diff(change_request), many=True).data


class ChangeRequestListFilterSerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        required=False, choices=["pending", "scheduled", "applied", "rejected", "failed"]
    )
    value_type = serializers.CharField(required=False, max_length=200, help_text="A value type's key.")


class ChangeRequestApproveInputSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    apply_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Apply it then (scheduled) instead of now; a past time: now."
    )


class ChangeRequestRejectInputSerializer(serializers.Serializer):
    note = ReasonField(help_text="Why it is rejected (required).")
