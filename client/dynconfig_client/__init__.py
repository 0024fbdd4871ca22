"""A client of the DynConfig values API that keeps answering when the server is down.

    from dynconfig_client import DynConfigClient

    with DynConfigClient("https://dynconfig.internal", token=TOKEN, store_path="/var/lib/app/dynconfig.sqlite3") as client:
        thresholds = client.get("budget_thresholds", region="us", industry="retail").value

See README.md and DynConfigClient's docstring for the fallback chain.
"""

from dynconfig_client.client import MISSING, ContextValue, DynConfigClient, ServedFrom, Value, __version__
from dynconfig_client.errors import (
    AuthenticationError,
    DynConfigError,
    DynConfigUnavailable,
    InvalidContextError,
    PermissionDeniedError,
    RequestRejected,
    UnknownKeyError,
)

__all__ = [
    "MISSING",
    "AuthenticationError",
    "ContextValue",
    "DynConfigClient",
    "DynConfigError",
    "DynConfigUnavailable",
    "InvalidContextError",
    "PermissionDeniedError",
    "RequestRejected",
    "ServedFrom",
    "UnknownKeyError",
    "Value",
    "__version__",
]
