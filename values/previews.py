"""What a value type serves now, and what an edit would do to it: the admin's "Served now" block
and its preview before saving (docs/change-requests.md).

`served_now` shows what the empty context and the contexts consumers read most (ContextReads)
are served from what is known now (override, L1, L2, the database tier), without fetching. `served_changes` says, for each of those answers,
what an edit of the type, its source links or its overrides would do, as far as it can be
known without fetching:

- an override edit: computed exactly, by the engine's own rule (`pick_override`) over the
  type's overrides with the edit and without it: the context gets the override's value, another
  override's, or goes back to its sources;
- a fallback edit, for an answer served from the fallback: the new fallback, exactly;
- any other edit that shapes resolved values (rules, TTLs, blending, source links, ...): the
  values cached under the old configuration are not served under the new one (the fingerprint,
  values.registry), so an answer from the sources is fetched and blended again at its next read:
  it "may change", and where its value breaks the new rules, the next fetch of it is refused;
- an edit of nothing that shapes values (description, aliases, update frequency): unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from audit.history import snapshot
from core.answers import Answer, Provenance
from core.context import ContextError, canonical_context
from core.validation import value_problems
from values.change_requests import DiffLine, ProposedEdit, edits_diff
from values.models import ContextReads, Override, ValueType, ValueTypeSource
from values.registry import OverrideConfig, ValueTypeConfig, load_snapshot, registry
from values.cache import cache_key, l1, l2, l3_get
from values.resolution import pick_override

# How many of the most-read contexts the value type page shows (besides the empty context).
SERVED_CONTEXTS = 5
# The fields of a value type that shape the values resolved for it (values.registry's fingerprint).
VALUE_SHAPING_FIELDS = frozenset({
    "context_keys", "ttl", "max_staleness", "fallback_value", "schema", "field_bounds",
    "ascending_fields", "min_ratio", "max_ratio", "quorum", "blend_method", "field_precision",
})  # fmt: skip
RULE_FIELDS = frozenset({"schema", "field_bounds", "ascending_fields", "min_ratio", "max_ratio"})

CHANGES, MAY_CHANGE, UNCHANGED = "changes", "may change", "unchanged"


@dataclass(frozen=True)
class Served:
    """The answer served now for one context (or why it could not be read)."""

    context: dict[str, Any]
    reads: int | None  # how often consumers read it; None for the empty context shown always
    value: Any = None
    tier: str = ""
    origin: str = ""
    sources: tuple[tuple[str, float], ...] = ()
    fetched_at: datetime | None = None
    expires_at: datetime | None = None
    is_degraded: bool = False
    error: str = ""


@dataclass(frozen=True)
class ServedChange:
    """What an edit does to one served answer: CHANGES (to `new_value`), MAY_CHANGE or UNCHANGED."""

    served: Served
    effect: str
    explanation: str
    new_value: Any = None


@dataclass(frozen=True)
class EditPreview:
    """What saving (or proposing) an edit would do: its diff, whether it is valid, and its
    effect on the answers served now (`served_note` says why there are none)."""

    diff: list[DiffLine]
    problems: list[str]  # empty: valid
    served: list[ServedChange]
    served_note: str = ""

    @property
    def is_valid(self) -> bool:
        return not self.problems


def edit_preview(*, edits: Sequence[ProposedEdit]) -> EditPreview:
    """The preview of `edits` (of one value type, its links or its overrides). Changes nothing."""
    try:
        diff, problems = edits_diff(edits), []
    except ValidationError as error:
        diff, problems = [], _messages(error)
    value_type = _stored_value_type(edits[0].instance)
    if value_type is None:
        return EditPreview(diff, problems, [], "A new value type: nothing is served for it yet.")
    also = [
        edit.instance.context_match
        for edit in edits
        if isinstance(edit.instance, Override) and isinstance(edit.instance.context_match, dict)
    ]
    served = served_now(value_type=value_type, also=also)
    return EditPreview(diff, problems, served_changes(edits=edits, served=served))


def served_now(*, value_type: ValueType, limit: int = SERVED_CONTEXTS, also: Sequence[dict[str, Any]] = ()) -> list[Served]:
    """The empty context's answer and those of the `limit` contexts read most, most read first;
    then those of the contexts `also` names (an override's own context), if not among them."""
    most_read = list(
        ContextReads.objects.filter(value_type=value_type)
        .exclude(context_key="")
        .order_by("-reads", "context_key")
        .values_list("context", "reads")[:limit]
    )
    empty_reads = ContextReads.objects.filter(value_type=value_type, context_key="").values_list("reads", flat=True).first()
    contexts = [({}, empty_reads), *most_read]
    for context in also:
        if context and all(context != shown_context for shown_context, _ in contexts):
            contexts.append((context, None))
    return [_served(value_type.key, context, reads) for context, reads in contexts]


def _stored_value_type(instance) -> ValueType | None:
    value_type_id = instance.pk if isinstance(instance, ValueType) else getattr(instance, "value_type_id", None)
    return ValueType.objects.filter(pk=value_type_id).first() if value_type_id is not None else None


def _messages(error: ValidationError) -> list[str]:
    if hasattr(error, "error_dict"):
        return [f"{name}: {message}" for name, messages in error.message_dict.items() for message in messages]
    return list(error.messages)


def _served(key: str, raw_context: dict[str, Any], reads: int | None) -> Served:
    value_type = registry.snapshot().value_type(key)
    if value_type is None:
        return Served(context=raw_context, reads=reads, error="not loaded by this process yet")
    try:
        context, context_key = canonical_context(raw_context, value_type.context_keys, value_type.key)
    except ContextError as error:  # a context recorded under the type's former context keys
        return Served(context=raw_context, reads=reads, error=str(error))
    answer = _known_answer(value_type, context, context_key)
    if answer is None:
        return Served(context=context, reads=reads, error="nothing cached now: its next read fetches it")
    provenance = answer.provenance
    return Served(
        context=answer.context,
        reads=reads,
        value=answer.value,
        tier=provenance.tier,
        origin=provenance.origin,
        sources=tuple((use.name, use.weight) for use in provenance.sources),
        fetched_at=provenance.fetched_at,
        expires_at=provenance.expires_at,
        is_degraded=provenance.is_degraded,
    )


def _known_answer(value_type: ValueTypeConfig, context: dict[str, Any], context_key: str) -> Answer | None:
    """What a read of a (canonical) context is served from what is known now, without fetching
    (a page must not call sources, wait on them, or count as a consumer's read): an active
    override, L1, L2, or the database tier's fresh value; None when none holds one."""
    override = pick_override(value_type.overrides, context, timezone.now()) if value_type.overrides else None
    if override is not None:
        provenance = Provenance(
            tier="override", origin="override", sources=(), confidence=1.0,
            fetched_at=override.updated_at, expires_at=override.expires_at,
        )  # fmt: skip
        return Answer(value_type.key, context, override.value, provenance)
    key_in_cache = cache_key(value_type, context_key)
    answer = l1.get(key_in_cache) or l2.get(key_in_cache)
    if answer is None:
        answer, _, _ = l3_get(value_type, context_key)
    return answer


def served_changes(*, edits: Sequence[ProposedEdit], served: Sequence[Served]) -> list[ServedChange]:
    """For each served answer, what `edits` (of one value type) would do to it (see above)."""
    return [_change(edits, each) for each in served]


def _change(edits: Sequence[ProposedEdit], served: Served) -> ServedChange:
    override_edits = [edit for edit in edits if isinstance(edit.instance, Override)]
    if override_edits:
        return _override_change(override_edits, served)
    type_edits = [edit for edit in edits if isinstance(edit.instance, ValueType)]
    link_edits = [edit for edit in edits if isinstance(edit.instance, ValueTypeSource)]
    changed = set()
    value_type = None
    for edit in type_edits:
        value_type = edit.instance
        changed |= {name for name in _changed_fields(edit) if name in VALUE_SHAPING_FIELDS}
    if not changed and not link_edits:
        return ServedChange(served, UNCHANGED, "This edit changes nothing that shapes values.")
    if served.error:
        return ServedChange(served, MAY_CHANGE, "Nothing cached now: its next read is made under the new configuration.")
    if served.origin == "override":
        return ServedChange(served, UNCHANGED, "Served from an override, which this edit leaves as it is.")
    if served.origin == "fallback" and "fallback_value" in changed:
        return ServedChange(served, CHANGES, "Served from the emergency fallback: the new fallback.", value_type.fallback_value)
    why = "Its value was made under the old configuration: it is fetched and blended again at its next read."
    if link_edits and not changed:
        why = "Its sources or their weights change: it is fetched and blended again at its next read."
    if value_type is not None and changed & RULE_FIELDS and served.value is not None:
        problems = value_problems(served.value, value_type.rules)
        if problems:
            why += f" The value served now breaks the new rules ({'; '.join(problems)}): a source giving it again is refused."
        else:
            why += " The value served now passes the new rules."
    return ServedChange(served, MAY_CHANGE, why)


def _override_change(edits: Sequence[ProposedEdit], served: Served) -> ServedChange:
    value_type = edits[0].instance.value_type
    config = load_snapshot().value_type(value_type.key)
    current = tuple(config.overrides) if config is not None else ()
    edited_ids = {edit.instance.pk for edit in edits if edit.instance.pk is not None}
    proposed = [override for override in current if override.id not in edited_ids]
    for index, edit in enumerate(edits):
        if not edit.is_delete:
            proposed.append(_override_config(edit.instance, value_type, placeholder_id=-(index + 1)))
    now = timezone.now()
    before = pick_override(current, served.context, now)
    after = pick_override(tuple(proposed), served.context, now)
    if after is None and before is None:
        return ServedChange(served, UNCHANGED, "No override matches this context, before or after.")
    if after is None:
        return ServedChange(served, MAY_CHANGE, "No override matches any more: served from its sources again (value known at its next read).")
    if before is not None and after.id == before.id and after.value == before.value:
        return ServedChange(served, UNCHANGED, "Still served from the same override, with the same value.")
    if after.value == served.value:
        return ServedChange(served, UNCHANGED, "Served from an override with the same value.")
    which = "this override" if after.id < 0 or after.id in edited_ids else f"override {after.id}"
    return ServedChange(served, CHANGES, f"Matched by {which}: serves its value.", after.value)


def _override_config(override: Override, value_type: ValueType, *, placeholder_id: int) -> OverrideConfig:
    context, _ = canonical_context(override.context_match, value_type.context_keys, value_type.key)
    return OverrideConfig(
        id=override.pk or placeholder_id,
        context=context,
        value=override.value,
        reason=override.reason,
        author=override.author,
        starts_at=override.starts_at or timezone.now(),
        expires_at=override.expires_at,
        updated_at=timezone.now(),
    )


def _changed_fields(edit: ProposedEdit) -> set[str]:
    after = snapshot(edit.instance)
    if edit.before is None:
        return set(after)
    return {name for name, value in after.items() if edit.before.get(name) != value}
