"""A rate limit per source: a token bucket shared by every process through Redis.

The bucket holds up to `burst_allowance` tokens (1 if that is 0) and refills at
`requests_per_minute` / 60 tokens a second; every attempt at a source takes one, retries
included. A caller that finds no token reserves the next one and sleeps until it is due, if it
is due within the time the caller may wait (what is left of its read's budget); otherwise it
takes nothing and gets SourceError(RATE_LIMITED), and the source is not called. Reserving
(the bucket may go below zero) queues waiting callers in the order they came, with no polling.

The bucket is a Redis hash `dynconfig:ratelimit:<source>`, changed only by one Lua script, so
that taking a token is atomic across processes and timed by Redis's clock. Without REDIS_URL it
lives in this process's memory (thread-safe). If Redis fails, the limit fails open: calls go
through unlimited until Redis answers again (sources.breaker.SharedRedis, one warning per pause).
Like the breaker, the bucket belongs to the source's endpoint: a new base URL starts it full.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sources.adapters.base import ErrorKind, SourceConfig, SourceError
from sources.breaker import shared_redis

if TYPE_CHECKING:
    from sources.models import Source


def rate_limit_acquire(source: SourceConfig, max_wait: float) -> None:
    """Take a token for one call to `source`, sleeping up to `max_wait` seconds for it.

    Raises SourceError(RATE_LIMITED, retry_after=seconds until a token) when none comes in time.
    """
    capacity, rate = bucket_size(source)
    max_wait = max(max_wait, 0.0)
    if shared_redis.is_configured:
        reply = shared_redis.run(
            TAKE_SCRIPT, f"dynconfig:ratelimit:{source.name}", [capacity, rate, max_wait, source.base_url]
        )
        if reply is None:
            return  # Redis is down: fail open
        is_taken, wait = _reply(reply)
    else:
        is_taken, wait = _local.take(source, capacity, rate, max_wait, time.monotonic())
    if not is_taken:
        raise SourceError(
            ErrorKind.RATE_LIMITED,
            f"rate limit of {source.name} spent ({source.requests_per_minute}/min, burst "
            f"{capacity}): next call in {wait:.2f}s",
            retry_after=wait,
        )
    if wait > 0:
        time.sleep(wait)


def bucket_size(source: SourceConfig | Source) -> tuple[int, float]:
    """(capacity in tokens, refill in tokens per second) of the source's bucket."""
    return source.burst_allowance or 1, source.requests_per_minute / 60.0


# KEYS[1] the bucket; ARGV capacity, refill per second, longest wait, endpoint.
# Returns {taken, seconds until the token is due}.
TAKE_SCRIPT = """
local capacity, rate, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'endpoint')
local tokens = capacity
if b[1] and b[3] == ARGV[4] then
  tokens = math.min(capacity, tonumber(b[1]) + (now - tonumber(b[2])) * rate)
end
local wait = 0
if tokens < 1 then wait = (1 - tokens) / rate end
if wait > max_wait then return {0, tostring(wait)} end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now, 'endpoint', ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
return {1, tostring(wait)}
"""


def _reply(reply: list) -> tuple[bool, float]:
    is_taken, wait = reply
    return bool(is_taken), float(wait.decode() if isinstance(wait, bytes) else wait)


@dataclass
class _Bucket:
    endpoint: str
    tokens: float
    at: float


class _LocalBuckets:
    """The script's rules on this process's memory, under one lock."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(
        self, source: SourceConfig, capacity: int, rate: float, max_wait: float, now: float
    ) -> tuple[bool, float]:
        with self._lock:
            bucket = self._buckets.get(source.name)
            tokens = float(capacity)
            if bucket is not None and bucket.endpoint == source.base_url:
                tokens = min(capacity, bucket.tokens + (now - bucket.at) * rate)
            wait = (1 - tokens) / rate if tokens < 1 else 0.0
            if wait > max_wait:
                return False, wait
            self._buckets[source.name] = _Bucket(source.base_url, tokens - 1, now)
            return True, wait


_local = _LocalBuckets()
