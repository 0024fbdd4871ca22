"""Dynamic values. Consumers read them with `values.get_value(key, context)`:

    from values import get_value
    answer = get_value("budget_thresholds", {"region": "us", "industry": "retail"})
    answer.value["small_threshold"], answer.provenance.tier

It always answers (see values.resolution for the precedence chain); it raises only for an
unknown key (values.resolution.UnknownValueType) or a context the type does not accept
(core.context.ContextError).
"""


def get_value(key, context=None, *, use_cache=True):
    from values.resolution import get_value as resolve

    return resolve(key, context, use_cache=use_cache)
