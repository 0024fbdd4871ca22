"""Source adapters, one module per provider, and the registry that picks one by source kind.

`sources.calls.call_source` is the only caller: it looks a source's `kind` up in `ADAPTERS`.
"""

from sources.adapters.base import SourceAdapter
from sources.adapters.http_json import HttpJsonAdapter

ADAPTERS: dict[str, type[SourceAdapter]] = {
    "http_json": HttpJsonAdapter,
}
