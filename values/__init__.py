"""Dynamic values. Consumers read them with `values.get_value(key, context)`, or in async code
`await values.aget_value(key, context)` and `await values.aget_many([(key, context), ...])`:

    from values import get_value
    answer = get_value("budget_thresholds", {"region": "us", "industry": "retail"})
    answer.value["small_threshold"], answer.provenance.tier

It always answers (see values.resolution for the precedence chain); it raises only for an
unknown key (values.resolution.UnknownValueType) or a context the type does not accept
(core.context.ContextError).

The three are values.resolution's own functions, looked up on first use (PEP 562): Django loads
this package before its models, which resolution imports; and a read pays no wrapper call.
"""

PUBLIC_READS = ("get_value", "aget_value", "aget_many")


def __getattr__(name):
    if name in PUBLIC_READS:
        from values import resolution

        return getattr(resolution, name)
    raise AttributeError(f"module 'values' has no attribute {name!r}")
