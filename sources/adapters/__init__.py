"""Source adapters, one module per provider, and the registry that picks one by source kind.

`sources.calls.call_source` is the only caller: it asks `adapter_for(kind)`. Modules are
imported when first used, so a provider's module costs nothing where it is not configured.

Beside the providers' modules: `base` (the interface every adapter implements), `http` (the one
HTTP layer they all send through) and `scaling` (the baseline scaling of the economic sources).
"""

from __future__ import annotations

from django.utils.module_loading import import_string

from sources.adapters.base import SourceAdapter

ADAPTERS: dict[str, str] = {
    "http_json": "sources.adapters.http_json.HttpJsonAdapter",
    "world_bank": "sources.adapters.world_bank.WorldBankAdapter",
    "imf": "sources.adapters.imf.ImfAdapter",
    "google_ads": "sources.adapters.google_ads.GoogleAdsAdapter",
    "facebook_marketing": "sources.adapters.facebook_marketing.FacebookMarketingAdapter",
    "semrush": "sources.adapters.semrush.SemrushAdapter",
}


def adapter_for(kind: str) -> type[SourceAdapter] | None:
    """The adapter class of a source kind, or None for a kind nobody implements."""
    path = ADAPTERS.get(kind)
    return import_string(path) if path else None
