"""How planning reads dynamic values: through `values.get_value` only, the public interface.

Planning knows nothing of caches, sources or the ORM: it asks for a value for a context and gets
an answer (`.value`, `.provenance`), which always comes, whatever is down.
"""

from __future__ import annotations

from typing import Any

from values import get_value

from planning.inputs import UnusableValueError


def read_value(key: str, context: dict[str, Any]):
    """The answer of value type `key` for `context`, None entries left out.

    `get_value` raises a ValueError (values' ContextError) only for a context the type does not
    accept; planning checks names beforehand, so that means the type's context keys were changed
    by an operator: a configuration problem, not the caller's."""
    given = {name: entry for name, entry in context.items() if entry is not None}
    try:
        return get_value(key, given)
    except ValueError as error:
        raise UnusableValueError(f"{key} does not accept the context {given}: {error}") from error
