"""Channel projections: what a spend per channel buys, as low-high ranges, from the dynamic
`channel_performance` value (the seed design's CTR, CPC and conversion-rate ranges)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_FLOOR, Decimal
from typing import Any, Generic, TypeVar

from planning.inputs import CENT, PlanningInputError, UnusableValueError, decimal_of, money, name, to_cents
from planning.reading import read_value

CHANNEL_PERFORMANCE = "channel_performance"
RANGE_FIELDS = ("cpc_range", "ctr_range", "conversion_rate_range")
# The smallest CPC projected with: below it, clicks (spend / CPC) leave the precision that keeps
# every derived number exact to the cent. A hundredth of a cent is no real price anyway.
MIN_CPC = Decimal("0.0001")

T = TypeVar("T")


@dataclass(frozen=True)
class Span(Generic[T]):
    """A low-high range of one quantity."""

    low: T
    high: T


@dataclass(frozen=True)
class Estimate:
    """What a spend buys: whole clicks and impressions (rounded down), conversions to the
    hundredth (rounded down), cost per conversion to the cent (half up; None where there are
    no conversions to divide by)."""

    spend: Decimal
    clicks: Span[int]
    impressions: Span[int]
    conversions: Span[Decimal]
    cost_per_conversion: Span[Decimal | None]


@dataclass(frozen=True)
class ChannelEstimate(Estimate):
    # The ranges projected with, as read: {"cpc_range": [low, high], "ctr_range": ..., ...}.
    performance: dict[str, list[Decimal]]


@dataclass(frozen=True)
class ChannelProjection:
    region: str | None
    industry: str | None
    channels: dict[str, ChannelEstimate]  # by normalized channel name, in the order given
    totals: Estimate
    provenance: dict[str, dict[str, Any]]  # {"channel_performance": Provenance.as_dict()}


def channel_project(
    *,
    budget_by_channel: Mapping[str, Decimal | float],
    region: str | None = None,
    industry: str | None = None,
) -> ChannelProjection:
    """Project a monthly spend per channel with `channel_performance` for {channels, region, industry}.

    Per channel, with spend S and the value's ranges [low, high] of CPC, CTR and conversion rate:
    - clicks:       S / cpc_high … S / cpc_low, each rounded down to a whole click;
    - impressions:  clicks_low / ctr_high … clicks_high / ctr_low, rounded down: the widest range
                    the two independent ranges allow (few clicks at a high CTR need the fewest
                    impressions, many clicks at a low CTR the most);
    - conversions:  clicks_low × cvr_low … clicks_high × cvr_high, rounded down to the hundredth
                    (an expected count, so fractional);
    - cost per conversion: S / conversions_high … S / conversions_low, to the cent (half up);
                    None where that end has no conversions.
    Each number derives from the rounded numbers shown before it, so a reader can check it.
    Totals add spends, clicks, impressions and conversions; their cost per conversion is total
    spend / total conversions, the same way. Spend is money (see planning.inputs): rounded to
    the cent; zero projects zeros.

    Raises PlanningInputError for no channels, a negative or non-finite spend, a malformed or
    unknown channel (the message lists the channels the value has), and UnusableValueError when
    the value read cannot be projected with (a CPC under MIN_CPC, a CTR of zero, a rate above 1).
    """
    region = name("region", region)
    industry = name("industry", industry)
    spends = _spends(budget_by_channel)

    # First the whole value for the context, to refuse unknown channels before they become a
    # context of their own (each new context is a cache entry and, cold, a call to the sources);
    # then the value for exactly these channels, which is what operators' overrides by channel match.
    known = read_value(CHANNEL_PERFORMANCE, {"region": region, "industry": industry}).value
    if not isinstance(known, Mapping):
        raise UnusableValueError(f"{CHANNEL_PERFORMANCE} is not an object: {known!r}")
    known_channels = sorted(known)
    for channel in spends:
        if channel not in known_channels:
            raise PlanningInputError(
                "channels",
                f"unknown channel {channel!r} (allowed: {', '.join(known_channels) or 'none'})",
                item=channel,
            )
    answer = read_value(
        CHANNEL_PERFORMANCE, {"channels": sorted(spends), "region": region, "industry": industry}
    )
    performance = answer.value if isinstance(answer.value, Mapping) else {}

    estimates = {}
    for channel, spend in spends.items():
        if channel not in performance:
            raise UnusableValueError(f"{CHANNEL_PERFORMANCE} has no entry for {channel!r} in this context")
        estimates[channel] = _estimate(spend, _ranges(channel, performance[channel]))
    return ChannelProjection(
        region=region,
        industry=industry,
        channels=estimates,
        totals=_totals(estimates.values()),
        provenance={CHANNEL_PERFORMANCE: answer.provenance.as_dict()},
    )


def _spends(budget_by_channel: Mapping[str, Any]) -> dict[str, Decimal]:
    if not isinstance(budget_by_channel, Mapping) or not budget_by_channel:
        raise PlanningInputError("channels", "give at least one channel and its spend")
    spends: dict[str, Decimal] = {}
    for given, amount in budget_by_channel.items():
        channel = name("channels", given, item=str(given))
        if channel is None:
            raise PlanningInputError("channels", "a channel name is blank", item=str(given))
        if channel in spends:
            raise PlanningInputError("channels", f"{channel!r} is given twice", item=str(given))
        spends[channel] = money("channels", amount, item=channel)
    return spends


def _ranges(channel: str, entry: Any) -> dict[str, Span[Decimal]]:
    """The channel's ranges as Decimal spans, checked for what the arithmetic needs."""
    if not isinstance(entry, Mapping):
        raise UnusableValueError(f"{CHANNEL_PERFORMANCE}.{channel} is not an object: {entry!r}")
    ranges = {}
    for field in RANGE_FIELDS:
        pair = entry.get(field)
        ends = [decimal_of(end) for end in pair] if isinstance(pair, (list, tuple)) and len(pair) == 2 else []
        if len(ends) != 2 or any(end is None or end < 0 for end in ends):
            raise UnusableValueError(f"{CHANNEL_PERFORMANCE}.{channel}.{field} is not a [low, high] range: {pair!r}")
        if field != "cpc_range" and max(ends) > 1:
            raise UnusableValueError(f"{CHANNEL_PERFORMANCE}.{channel}.{field} is a rate above 1: {pair!r}")
        ranges[field] = Span(min(ends), max(ends))
    if ranges["cpc_range"].low < MIN_CPC:
        raise UnusableValueError(
            f"{CHANNEL_PERFORMANCE}.{channel}.cpc_range low {ranges['cpc_range'].low} is under {MIN_CPC}:"
            " clicks cannot be projected"
        )
    if ranges["ctr_range"].low == 0:
        raise UnusableValueError(
            f"{CHANNEL_PERFORMANCE}.{channel}.ctr_range low is 0: impressions cannot be projected"
        )
    return ranges


def _estimate(spend: Decimal, ranges: Mapping[str, Span[Decimal]]) -> ChannelEstimate:
    cpc, ctr, cvr = ranges["cpc_range"], ranges["ctr_range"], ranges["conversion_rate_range"]
    clicks = Span(_whole(spend / cpc.high), _whole(spend / cpc.low))
    impressions = Span(_whole(clicks.low / ctr.high), _whole(clicks.high / ctr.low))
    conversions = Span(_hundredths(clicks.low * cvr.low), _hundredths(clicks.high * cvr.high))
    return ChannelEstimate(
        spend=spend,
        clicks=clicks,
        impressions=impressions,
        conversions=conversions,
        cost_per_conversion=_cost_per_conversion(spend, conversions),
        performance={field: [ranges[field].low, ranges[field].high] for field in RANGE_FIELDS},
    )


def _totals(estimates) -> Estimate:
    estimates = list(estimates)
    spend = sum((estimate.spend for estimate in estimates), Decimal("0.00"))
    conversions = Span(
        sum((estimate.conversions.low for estimate in estimates), Decimal("0.00")),
        sum((estimate.conversions.high for estimate in estimates), Decimal("0.00")),
    )
    return Estimate(
        spend=spend,
        clicks=Span(sum(e.clicks.low for e in estimates), sum(e.clicks.high for e in estimates)),
        impressions=Span(sum(e.impressions.low for e in estimates), sum(e.impressions.high for e in estimates)),
        conversions=conversions,
        cost_per_conversion=_cost_per_conversion(spend, conversions),
    )


def _cost_per_conversion(spend: Decimal, conversions: Span[Decimal]) -> Span[Decimal | None]:
    # The most conversions make each one cheapest: the low cost comes from the high count.
    return Span(
        to_cents(spend / conversions.high) if conversions.high else None,
        to_cents(spend / conversions.low) if conversions.low else None,
    )


def _whole(quantity: Decimal) -> int:
    return int(quantity.to_integral_value(rounding=ROUND_FLOOR))


def _hundredths(quantity: Decimal) -> Decimal:
    return quantity.quantize(CENT, rounding=ROUND_DOWN)
