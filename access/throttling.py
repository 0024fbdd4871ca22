"""API rate limits: one for reads (GET, HEAD, OPTIONS), one for writes, per token; per client IP
for anonymous requests and admin sessions.

Rates come from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] ("read", "write"; settings read them
from DYNCONFIG_THROTTLE_READ / DYNCONFIG_THROTTLE_WRITE), read when a request is checked, so a
settings change (or override_settings in tests) applies at once; DRF's own throttles read them
once, when their class is defined.

The count is a fixed window per client in Django's default cache (Redis when configured, so
shared by every process): one atomic INCR per request, where DRF's SimpleRateThrottle reads and
rewrites a list of every request's time (6000 entries at the default read rate), racily. A
client may get up to twice its rate across a window boundary; that is the price of one INCR.
If the cache fails, requests are let through (logged): a rate limit must not take the API down.
"""

from __future__ import annotations

import logging
import time

from django.core.cache import caches
from rest_framework.permissions import SAFE_METHODS
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from access.principals import TokenPrincipal

logger = logging.getLogger(__name__)

# After a cache error, how long requests go unthrottled before the cache is tried again: a
# Redis that hangs would otherwise add its timeout to every request.
CACHE_RETRY_AFTER = 5.0


class _MethodRateThrottle(SimpleRateThrottle):
    """Counts the requests whose method `applies_to`, against the rate of `scope`."""

    cache_format = "throttle:%(scope)s:%(ident)s:%(window)d"
    _cache_down_until = 0.0  # time.monotonic(); shared by every throttle of the process

    def applies_to(self, method: str) -> bool:
        raise NotImplementedError

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view) -> str:
        user = request.user
        # A token's own budget; sessions (staff in a browser) and anonymous clients by address.
        ident = user.pk if isinstance(user, TokenPrincipal) else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident, "window": self._window(self.timer())}

    def allow_request(self, request, view) -> bool:
        if self.rate is None or not self.applies_to(request.method):
            return True
        if time.monotonic() < _MethodRateThrottle._cache_down_until:
            return True
        key = self.get_cache_key(request, view)
        try:
            count = self._count(key)
        except Exception as error:  # noqa: BLE001 - fails open, whatever the cache backend raised
            _MethodRateThrottle._cache_down_until = time.monotonic() + CACHE_RETRY_AFTER
            logger.warning("Rate limit cache unavailable, not throttling for %.0fs: %s", CACHE_RETRY_AFTER, error)
            return True
        return count <= self.num_requests

    def wait(self) -> float:
        """Seconds until the current window ends (the Retry-After of a 429)."""
        now = self.timer()
        return max(1.0, (self._window(now) + 1) * self.duration - now)

    def _window(self, now: float) -> int:
        return int(now // self.duration)

    def _count(self, key: str) -> int:
        cache = caches["default"]
        try:
            return cache.incr(key)
        except ValueError:  # the window's first request: no counter yet
            # The key outlives its window by a little, so that no clock skew revives it.
            if cache.add(key, 1, timeout=self.duration + 1):
                return 1
            return cache.incr(key)  # another request created it in between


class ReadRateThrottle(_MethodRateThrottle):
    scope = "read"

    def applies_to(self, method: str) -> bool:
        return method in SAFE_METHODS


class WriteRateThrottle(_MethodRateThrottle):
    scope = "write"

    def applies_to(self, method: str) -> bool:
        return method not in SAFE_METHODS
