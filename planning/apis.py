"""The planning API: classify a budget, project spends per channel. Both are reads (they change
nothing), computed from the dynamic values with their provenance; the rules are in
planning.budget and planning.projections (docs/planning.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import CanReadValues
from access.throttling import ReadRateThrottle
from dynconfig_site.api_schema import error_responses
from planning.budget import TIERS, budget_classify
from planning.inputs import MAX_AMOUNT, PlanningInputError, UnusableValueError, name
from planning.projections import channel_project

# Money in and out: cents, up to MAX_AMOUNT (13 digits before the point).
MONEY_DIGITS = 15


class PlanningRateThrottle(ReadRateThrottle):
    """These POSTs compute over reads and change nothing: they count against the read rate."""

    def applies_to(self, method: str) -> bool:
        return True


class UnusableValue(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "unusable_value"
    default_detail = "A dynamic value cannot be used for this computation."


def _money_field(**options) -> serializers.DecimalField:
    """An amount in the output: cents, any size (a cost per conversion can reach 10¹⁴)."""
    return serializers.DecimalField(max_digits=None, decimal_places=2, **options)


def _money_input_field(**options) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=MONEY_DIGITS, decimal_places=2, min_value=0, max_value=MAX_AMOUNT, **options
    )


def _name_field(help_text: str) -> serializers.CharField:
    return serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=64,
        validators=[_validate_name], help_text=help_text,
    )


def _validate_name(given: str) -> None:
    try:
        name("name", given)
    except PlanningInputError as error:
        raise serializers.ValidationError(error.message) from error


# Input --------------------------------------------------------------------------------------


class BudgetTierInputSerializer(serializers.Serializer):
    monthly_budget = _money_input_field(help_text="USD per month, at most 2 decimals.")
    region = _name_field("A region name, e.g. `us` (optional).")
    industry = _name_field("An industry name, e.g. `retail` (optional); its multiplier scales the thresholds.")


class ProjectionInputSerializer(serializers.Serializer):
    channels = serializers.DictField(
        child=_money_input_field(),
        allow_empty=False,
        help_text="Channel name → monthly spend (USD, at most 2 decimals), e.g. `{\"search_advertising\": \"1000.00\"}`.",
    )
    region = _name_field("A region name, e.g. `us` (optional).")
    industry = _name_field("An industry name, e.g. `retail` (optional).")

    def validate_channels(self, channels: dict) -> dict:
        problems = {}
        for given in channels:
            try:
                name("channels", given)
            except PlanningInputError as error:
                problems[given] = [error.message]
        if problems:
            raise serializers.ValidationError(problems)
        return channels


# Output -------------------------------------------------------------------------------------


class PlanningSourceUseOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    weight = serializers.FloatField()
    confidence = serializers.FloatField()
    fetched_at = serializers.DateTimeField()


class PlanningProvenanceOutputSerializer(serializers.Serializer):
    """Where a value came from: the read API's provenance (docs/api.md)."""

    tier = serializers.CharField(help_text="override, l1, l2, l3, primary, secondary, tertiary, stale or fallback")
    origin = serializers.CharField()
    sources = PlanningSourceUseOutputSerializer(many=True)
    confidence = serializers.FloatField()
    fetched_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    stale = serializers.BooleanField()
    errors = serializers.ListField(child=serializers.CharField())


class TierAmountsOutputSerializer(serializers.Serializer):
    micro = _money_field()
    small = _money_field()
    medium = _money_field()
    large = _money_field()
    enterprise = _money_field()


class BudgetProvenanceOutputSerializer(serializers.Serializer):
    budget_thresholds = PlanningProvenanceOutputSerializer()
    industry_multipliers = PlanningProvenanceOutputSerializer(
        allow_null=True, help_text="null when no industry was given (not read)."
    )


class BudgetTierOutputSerializer(serializers.Serializer):
    monthly_budget = _money_field()
    tier = serializers.ChoiceField(choices=TIERS, allow_null=True, help_text="null: below the micro threshold.")
    region = serializers.CharField(allow_null=True)
    industry = serializers.CharField(allow_null=True)
    multiplier = serializers.DecimalField(max_digits=None, decimal_places=None)
    thresholds = TierAmountsOutputSerializer(help_text="budget_thresholds as read, per tier.")
    effective_thresholds = TierAmountsOutputSerializer(help_text="Each threshold × multiplier, to the cent.")
    notes = serializers.ListField(child=serializers.CharField())
    provenance = BudgetProvenanceOutputSerializer()


class CountSpanOutputSerializer(serializers.Serializer):
    low = serializers.IntegerField()
    high = serializers.IntegerField()


class ConversionSpanOutputSerializer(serializers.Serializer):
    low = serializers.DecimalField(max_digits=None, decimal_places=2)
    high = serializers.DecimalField(max_digits=None, decimal_places=2)


class CostSpanOutputSerializer(serializers.Serializer):
    low = _money_field(allow_null=True, help_text="null: no conversions at the high end.")
    high = _money_field(allow_null=True, help_text="null: no conversions at the low end.")


class EstimateOutputSerializer(serializers.Serializer):
    spend = _money_field()
    clicks = CountSpanOutputSerializer()
    impressions = CountSpanOutputSerializer()
    conversions = ConversionSpanOutputSerializer()
    cost_per_conversion = CostSpanOutputSerializer()


class PerformanceOutputSerializer(serializers.Serializer):
    cpc_range = serializers.ListField(child=serializers.DecimalField(max_digits=None, decimal_places=None))
    ctr_range = serializers.ListField(child=serializers.DecimalField(max_digits=None, decimal_places=None))
    conversion_rate_range = serializers.ListField(
        child=serializers.DecimalField(max_digits=None, decimal_places=None)
    )


class ChannelEstimateOutputSerializer(EstimateOutputSerializer):
    performance = PerformanceOutputSerializer(help_text="The channel_performance ranges projected with.")


class ProjectionProvenanceOutputSerializer(serializers.Serializer):
    channel_performance = PlanningProvenanceOutputSerializer()


class ProjectionOutputSerializer(serializers.Serializer):
    region = serializers.CharField(allow_null=True)
    industry = serializers.CharField(allow_null=True)
    channels = serializers.DictField(child=ChannelEstimateOutputSerializer())
    totals = EstimateOutputSerializer()
    provenance = ProjectionProvenanceOutputSerializer()


# Examples for the schema --------------------------------------------------------------------

PROVENANCE_EXAMPLE = {
    "tier": "l1",
    "origin": "primary",
    "sources": [{"name": "market_research_api", "weight": 0.6, "confidence": 1.0, "fetched_at": "2026-11-24T20:26:53+00:00"}],
    "confidence": 1.0,
    "fetched_at": "2026-11-24T20:26:53+00:00",
    "expires_at": "2026-11-25T02:26:53+00:00",
    "stale": False,
    "errors": [],
}
BUDGET_TIER_EXAMPLE = {
    "monthly_budget": "7000.00",
    "tier": "small",
    "region": "us",
    "industry": "finance",
    "multiplier": "1.3",
    "thresholds": {"micro": "500.00", "small": "5000.00", "medium": "50000.00", "large": "500000.00", "enterprise": "2000000.00"},
    "effective_thresholds": {"micro": "650.00", "small": "6500.00", "medium": "65000.00", "large": "650000.00", "enterprise": "2600000.00"},
    "notes": [],
    "provenance": {"budget_thresholds": PROVENANCE_EXAMPLE, "industry_multipliers": {**PROVENANCE_EXAMPLE, "sources": []}},
}
ESTIMATE_EXAMPLE = {
    "spend": "1000.00",
    "clicks": {"low": 125, "high": 666},
    "impressions": {"low": 1562, "high": 33300},
    "conversions": {"low": "2.50", "high": "79.92"},
    "cost_per_conversion": {"low": "12.51", "high": "400.00"},
}
PROJECTION_EXAMPLE = {
    "region": "us",
    "industry": None,
    "channels": {
        "search_advertising": {
            **ESTIMATE_EXAMPLE,
            "performance": {"cpc_range": ["1.5", "8.0"], "ctr_range": ["0.02", "0.08"], "conversion_rate_range": ["0.02", "0.12"]},
        }
    },
    "totals": ESTIMATE_EXAMPLE,
    "provenance": {"channel_performance": PROVENANCE_EXAMPLE},
}


# Views --------------------------------------------------------------------------------------


class BudgetTierApi(APIView):
    """POST /api/v1/planning/budget-tier/"""

    permission_classes = [CanReadValues]
    throttle_classes = [PlanningRateThrottle]

    @extend_schema(
        operation_id="planning_budget_tier",
        summary="Classify a monthly budget into a tier",
        description=(
            "The tier (micro, small, medium, large, enterprise; null below micro) of a monthly budget, "
            "from `budget_thresholds` for {region, industry}, each threshold × the industry's "
            "`industry_multipliers` entry (1 for an unlisted industry, with a note). A budget exactly "
            "at a threshold is in the tier it opens. Changes nothing. Amounts are decimal strings."
        ),
        request=BudgetTierInputSerializer,
        responses={200: BudgetTierOutputSerializer, **error_responses(400, 409)},
        examples=[
            OpenApiExample(
                "A finance budget", value={"monthly_budget": "7000.00", "region": "us", "industry": "finance"},
                request_only=True,
            ),
            OpenApiExample("Its tier", value=BUDGET_TIER_EXAMPLE, response_only=True, status_codes=["200"]),
        ],
    )
    def post(self, request: Request) -> Response:
        serializer = BudgetTierInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = _computed(budget_classify, **serializer.validated_data)
        return Response(BudgetTierOutputSerializer(result).data)


class ProjectionApi(APIView):
    """POST /api/v1/planning/projections/"""

    permission_classes = [CanReadValues]
    throttle_classes = [PlanningRateThrottle]

    @extend_schema(
        operation_id="planning_projections",
        summary="Project clicks, impressions, conversions per channel",
        description=(
            "Low-high ranges per channel from `channel_performance` for {channels, region, industry}: "
            "clicks = spend / CPC (whole, rounded down), impressions = clicks / CTR (the widest range), "
            "conversions = clicks × conversion rate (hundredths, rounded down), cost per conversion = "
            "spend / conversions (cents; null without conversions), and totals. An unknown channel is "
            "a 400 naming the known ones. Changes nothing. Amounts are decimal strings."
        ),
        request=ProjectionInputSerializer,
        responses={200: ProjectionOutputSerializer, **error_responses(400, 409)},
        examples=[
            OpenApiExample(
                "Search spend", value={"channels": {"search_advertising": "1000.00"}, "region": "us"},
                request_only=True,
            ),
            OpenApiExample("Its projection", value=PROJECTION_EXAMPLE, response_only=True, status_codes=["200"]),
        ],
    )
    def post(self, request: Request) -> Response:
        serializer = ProjectionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = _computed(
            channel_project,
            budget_by_channel=data["channels"],
            region=data.get("region"),
            industry=data.get("industry"),
        )
        return Response(ProjectionOutputSerializer(result).data)


def _computed(compute: Callable[..., Any], **inputs: Any) -> Any:
    """`compute(**inputs)`, its refusals as API errors: the caller's input a 400 with the field,
    an unusable value a 409 (an operator has to correct it)."""
    try:
        return compute(**inputs)
    except PlanningInputError as error:
        detail = {error.item: [error.message]} if error.item else [error.message]
        raise ValidationError({error.field: detail}) from error
    except UnusableValueError as error:
        raise UnusableValue(str(error)) from error
