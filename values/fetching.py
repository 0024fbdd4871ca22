"""Fetch one tier of a value type's sources, concurrently, and blend what is valid.

Every source of the tier is called at once (each through `sources.calls.call_source`, the one
way to call a source). Each answer is validated against the type's rules and against the
reference value (the last known good, or the fallback) by the ratio bounds; an invalid answer
counts as that source's failure, with the reason. The valid ones are blended by weight
(core.blending); the blend is rounded by the type's field precision (core.validation.round_value)
and validated again. A tier that yields nothing valid says why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from contextvars import copy_context
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sources.adapters.base import ErrorKind, SourceCall, SourceError, SourceResult
from sources.calls import call_source
from core.answers import SourceUse
from core.blending import Blend, Contribution, QuorumNotMet, blend
from values.registry import LinkConfig, ValueTypeConfig
from core.validation import ratio_problems, round_value, value_problems

logger = logging.getLogger(__name__)

# Source calls of all reads share these threads; a tier's calls run side by side.
_executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="dynconfig-fetch")


# How a source of a tier failed, for the answer's reason (core.answers.REASONS).
OUT_OF_TIME, BREAKER_OPEN, FAILED = "out_of_time", "breaker_open", "failed"


@dataclass(frozen=True)
class TierOutcome:
    blend: Blend | None
    uses: tuple[SourceUse, ...]
    errors: tuple[str, ...]
    ttl: timedelta | None  # the shortest freshness a contributing source claimed
    failures: tuple[str, ...] = ()  # per failed source: OUT_OF_TIME, BREAKER_OPEN or FAILED


def fetch_tier(
    value_type: ValueTypeConfig,
    context: Mapping[str, Any],
    links: tuple[LinkConfig, ...],
    reference: Any,
    deadline: float,
    *,
    is_urgent: bool,
) -> TierOutcome:
    """Call `links` concurrently until `deadline` (time.monotonic()), validate, and blend what
    arrived. `is_urgent`: a consumer is waiting (one attempt per source, no rate-limit wait).
    Calls still running at the deadline go on in their threads; their answers are dropped."""
    wanted_channels = tuple(context.get("channels", ())) if value_type.is_channel_keyed else ()
    if wanted_channels:
        links = tuple(
            link for link in links if not link.channels or set(link.channels) & set(wanted_channels)
        )
    if not links:
        return TierOutcome(None, (), ("no sources cover this context",), None)
    budget = deadline - time.monotonic()
    if budget <= 0:
        return TierOutcome(None, (), ("no time left for this tier",), None, (OUT_OF_TIME,) * len(links))
    try:
        futures = {
            # In the caller's context, so that the call's log lines carry its request id.
            _executor.submit(
                copy_context().run, call_source, source_call(value_type, context, link, reference, budget, is_urgent)
            ): link
            for link in links
        }
    except RuntimeError:  # the interpreter is exiting (a command's background refresh): no new calls
        return TierOutcome(None, (), ("the process is exiting",), None, (FAILED,) * len(links))
    done, _ = wait(futures, timeout=budget)
    contributions, uses, errors, ttls, failures = [], [], [], [], []
    for future, link in futures.items():
        name = link.source.name
        result: SourceResult | None = None
        if future not in done:
            errors.append(f"{name}: no answer within {budget:.2f}s")
            failures.append(OUT_OF_TIME)
        elif isinstance(future.exception(), SourceError):
            error = future.exception()
            errors.append(f"{name}: {error}")
            failures.append(_failure_of(error))
        elif future.exception() is not None:
            logger.error("source %s raised unexpectedly", name, exc_info=future.exception())
            errors.append(f"{name}: unexpected error {type(future.exception()).__name__}")
            failures.append(FAILED)
        else:
            result = future.result()
            problems = value_problems(result.data, value_type.rules) + ratio_problems(
                result.data, reference, value_type.rules
            )
            if problems:
                errors.append(f"{name}: invalid data: {'; '.join(problems[:3])}")
                failures.append(FAILED)
                result = None
        contributions.append(
            Contribution(
                source=name,
                weight=link.weight,
                data=result.data if result else None,
                confidence=result.confidence if result else 0.0,
                channels=link.channels,
            )
        )
        if result:
            uses.append(SourceUse(name, link.weight, result.confidence, result.fetched_at))
            if result.ttl:
                ttls.append(result.ttl)
    if time.monotonic() > deadline:
        logger.info("tier of %s took longer than its budget", value_type.key)
    try:
        units = _units(value_type, wanted_channels, contributions)
        blended = blend(contributions, units=units, quorum=value_type.quorum, method=value_type.blend_method)
    except QuorumNotMet as error:
        return TierOutcome(None, tuple(uses), (*errors, error.reason), None, tuple(failures))
    # Rounded once, here where the value is made, so every tier, the history and the API agree.
    blended = replace(blended, value=round_value(blended.value, value_type.field_precision))
    problems = value_problems(blended.value, value_type.rules) + ratio_problems(
        blended.value, reference, value_type.rules
    )
    if problems:
        invalid = f"blend invalid: {'; '.join(problems[:3])}"
        return TierOutcome(None, tuple(uses), (*errors, invalid), None, (*failures, FAILED))
    used = tuple(use for use in uses if use.name in blended.contributors)
    return TierOutcome(blended, used, tuple(errors), min(ttls) if ttls else None, tuple(failures))


def _failure_of(error: SourceError) -> str:
    if error.kind is ErrorKind.BREAKER_OPEN:
        return BREAKER_OPEN
    return OUT_OF_TIME if error.is_timeout else FAILED


def source_call(
    value_type: ValueTypeConfig,
    context: Mapping[str, Any],
    link: LinkConfig,
    reference: Any,
    budget: float,
    is_urgent: bool = False,
) -> SourceCall:
    """The request to one linked source, as the engine makes it."""
    return SourceCall(
        source=link.source,
        value_type=value_type.key,
        context=context,
        params=link.params,
        field_mapping=link.field_mapping,
        channels=link.channels,
        timeout_budget=budget,
        is_urgent=is_urgent,
        reference=reference,
        baseline=value_type.fallback,
    )


def _units(
    value_type: ValueTypeConfig, wanted: tuple[str, ...], contributions: list[Contribution]
) -> tuple[str, ...] | None:
    """The channels to blend separately (None: the value is blended whole)."""
    if not value_type.is_channel_keyed:
        return None
    if wanted:
        return wanted
    units: set[str] = set()
    for contribution in contributions:
        units.update(contribution.channels)
        if not contribution.channels and contribution.data:
            units.update(contribution.data)
    return tuple(sorted(units))
