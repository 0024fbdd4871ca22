"""A circuit breaker per source, its state shared by every process through Redis.

    closed ──(breaker_failure_threshold failures in a row)──> open
    open ──(breaker_recovery_timeout passed)──> half-open: at most breaker_half_open_trials trial
        calls in flight, every other call refused
    half-open ──(that many trials succeeded)──> closed;  ──(one trial failed)──> open again

An open breaker refuses calls with SourceError(BREAKER_OPEN, retry_after=seconds left), before
any request is made. A provider that names its own wait (`SourceError.retry_after`: Google's
`retryDelay`, Meta's `estimated_time_to_regain_access`, Semrush's `ERROR 132`) is obeyed: a wait
longer than the recovery timeout opens the breaker at once for that long, and a failure with a
wait keeps an open breaker open at least that long.

A source that cannot be reached at all (connection refused, host unknown:
`SourceError.is_unreachable`) is not slow but absent: its first such failure opens a closed
breaker at once for UNREACHABLE_OPEN_SECONDS, so that reads during an outage do not each try it.

What counts: RETRYABLE and INVALID_DATA are failures (the provider is down, throttling or
answering garbage). TERMINAL is neither failure nor success: it is a property of one request
(a bad parameter, a context the template cannot fill, refused credentials), which waiting does
not heal, and counting it would let one badly configured link shut the source for every value
type it feeds and hide the real reason behind "breaker open"; the rate limit already bounds how
often such a call reaches the provider. DISABLED, RATE_LIMITED and BREAKER_OPEN are our own
refusals and never count. A trial that ends in one of these frees its slot for another trial.

Where the state lives (Sentry's circuit_breaker2: the breaker itself keeps none): a Redis hash
`dynconfig:breaker:<source>`, changed only by the Lua scripts below, so every transition is
atomic across processes and timed by Redis's clock, not by the processes' clocks. Without
REDIS_URL, the same rules run on this process's memory. If Redis fails, the breaker fails open
per process: no call is ever refused because Redis is down; this process keeps its own state
(the same rules) until Redis answers again, and says so in one warning per REDIS_RETRY_AFTER.

The state belongs to the source's endpoint: when a source's base URL changes (a simulator for
the real API, another region), its breaker starts closed.

Why not pybreaker (1.4.1, which has a CircuitRedisStorage): its half-open state admits every
call instead of a limited number of trials; its transitions are read-then-write from each
process (two processes can both decide to open, close or try); it times the recovery with each
process's clock in whole seconds, so a breaker cannot open for a provider-named duration or a
sub-second timeout; and on a Redis error it falls back to one fixed state and logs on every
call. Fixing that would mean replacing its storage and its state machine, i.e. all of it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django_redis import get_redis_connection

from sources.adapters.base import ErrorKind, SourceConfig, SourceError, SourceResult

logger = logging.getLogger(__name__)

# After a Redis error, leave Redis alone this long: a dead Redis must not cost every call a
# timeout, nor the log a warning per call.
REDIS_RETRY_AFTER = 5.0
# A trial that reports nothing for this long is presumed lost (its process died mid-call), and
# its slot is given to another trial. Longer than any call's time budget.
TRIAL_LEASE_SECONDS = 60.0

# How long a closed breaker opens at once when its source cannot be reached (refused, unknown
# host): long enough that a burst of reads during an outage costs one failed connection, short
# enough that a restarted source is tried again within seconds.
UNREACHABLE_OPEN_SECONDS = 5.0

# A process that found a breaker open refuses calls to that source by itself for this long at
# most (never past the breaker's own time), instead of asking Redis for each: during an outage,
# every read of every cold context would. An operator's reset reaches it within this time.
SEEN_OPEN_SECONDS = 1.0

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
# What an attempt's outcome means to the breaker.
SUCCESS, FAILURE, NO_VERDICT = "success", "failure", "none"
COUNTED_FAILURES = (ErrorKind.RETRYABLE, ErrorKind.INVALID_DATA)


class BreakerUnavailable(Exception):
    """An operator's change could not reach the shared state (Redis is configured but down)."""


@dataclass(frozen=True)
class Permit:
    """Leave to make one attempt; hand it back to `breaker_record` with the attempt's outcome."""

    source_name: str
    endpoint: str  # the base URL the state belonged to when the permit was given
    trial: int  # the half-open period this trial belongs to; 0: not a trial
    store: str  # "redis" or "process": where the admission was decided, and is recorded


@dataclass(frozen=True)
class BreakerState:
    """A breaker as operators see it."""

    state: str  # closed | open | half_open (an open breaker past its time shows half_open)
    failures: int  # counted failures in a row, while closed
    opened_until: datetime | None  # when an open breaker starts admitting trials
    trials: int  # trial calls in flight, while half-open
    successes: int  # trials that succeeded in this half-open period
    store: str  # "redis" (shared by every process) or "process" (this process only)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["opened_until"] = self.opened_until.isoformat() if self.opened_until else None
        return data

    def summary(self) -> str:
        """One line for operators, e.g. "open until 2025-06-01 14:03:12 UTC"."""
        if self.state == OPEN and self.opened_until is not None:
            text = f"open until {self.opened_until:%Y-%m-%d %H:%M:%S} UTC"
        elif self.state == HALF_OPEN:
            text = f"half-open ({self.trials} trial{'s' if self.trials != 1 else ''} in flight)"
        else:
            text = f"closed ({self.failures} failure{'s' if self.failures != 1 else ''} in a row)"
        if self.store == "process" and shared_redis.is_configured:
            text += ", this process only: Redis unavailable"
        return text


# Public interface ---------------------------------------------------------------------------------


def breaker_allow(source: SourceConfig) -> Permit:
    """A permit for one attempt, or SourceError(BREAKER_OPEN) when the breaker refuses it."""
    open_until = _seen_open.get((source.name, source.base_url), 0.0)
    if time.monotonic() < open_until:  # refused a moment ago: no need to ask Redis again
        raise _refusal(source, open_until - time.monotonic())
    args = [source.base_url, source.breaker_half_open_trials, TRIAL_LEASE_SECONDS]
    reply = shared_redis.run(ALLOW_SCRIPT, _key(source.name), args)
    if reply is not None:
        (admitted, trial, retry_after), store = _decoded(reply), "redis"
    else:
        (admitted, trial, retry_after), store = _local.allow(source, time.time()), "process"
    if not admitted:
        if retry_after is not None:
            _seen_open[(source.name, source.base_url)] = time.monotonic() + min(retry_after, SEEN_OPEN_SECONDS)
        raise _refusal(source, retry_after)
    return Permit(source.name, source.base_url, trial, store)


def _refusal(source: SourceConfig, retry_after: float | None) -> SourceError:
    if retry_after is None:
        reason = f"breaker of {source.name} is half-open and its trial calls are in flight"
    else:
        reason = f"breaker of {source.name} is open for {retry_after:.1f}s more"
    return SourceError(ErrorKind.BREAKER_OPEN, reason, retry_after=retry_after)


def breaker_record(source: SourceConfig, permit: Permit, outcome: SourceResult | SourceError | None) -> None:
    """Feed an attempt's outcome back: its result, its error, or None if it never finished."""
    verdict = _verdict(outcome)
    is_failure = isinstance(outcome, SourceError) and verdict == FAILURE
    wait = (outcome.retry_after or 0.0) if is_failure else 0.0
    open_now = min(UNREACHABLE_OPEN_SECONDS, source.breaker_recovery_timeout.total_seconds())
    open_now = open_now if is_failure and outcome.is_unreachable else 0.0
    if permit.store == "process":
        _local.record(source, permit, verdict, wait, open_now, time.time())
        return
    if verdict == NO_VERDICT and permit.trial == 0:
        return  # nothing to count and no trial slot to free: no need to ask Redis
    # Granted by Redis: recorded there, or nowhere if Redis has gone meanwhile.
    args = [
        permit.endpoint,
        verdict,
        permit.trial,
        source.breaker_failure_threshold,
        source.breaker_recovery_timeout.total_seconds(),
        source.breaker_half_open_trials,
        wait,
        open_now,
    ]
    shared_redis.run(RECORD_SCRIPT, _key(source.name), args)


def breaker_state(source_name: str) -> BreakerState:
    """The breaker of `source_name` now (from this process's memory if Redis is down)."""
    client = shared_redis.client()
    if client is not None:
        try:
            pipeline = client.pipeline(transaction=False)
            pipeline.hgetall(_key(source_name))
            pipeline.time()
            fields, (seconds, microseconds) = pipeline.execute()
            fields = {name.decode(): value.decode() for name, value in fields.items()}
            return _state_of(fields, seconds + microseconds / 1e6, "redis")
        except Exception as error:  # noqa: BLE001 - shown from this process instead, and said so
            shared_redis.failed(error)
    return _state_of(_local.fields(source_name), time.time(), "process")


def breaker_reset(name: str) -> None:
    """Close the breaker of source `name` now, its counts cleared, in every process.

    Raises BreakerUnavailable if Redis is configured but cannot be reached.
    """
    client = _operator_client()
    _local.forget(name)
    _forget_seen_open(name)
    if client is not None:
        _operator_change(lambda: client.delete(_key(name)))


def _forget_seen_open(name: str) -> None:
    for seen in [seen for seen in list(_seen_open) if seen[0] == name]:
        _seen_open.pop(seen, None)


def breaker_force_open(name: str, duration: float) -> None:
    """Open the breaker of source `name` for `duration` seconds, in every process; after that it
    goes half-open as usual. Raises BreakerUnavailable if Redis is configured but down."""
    client = _operator_client()
    if client is None:
        _local.force_open(name, time.time() + duration)
        return
    _operator_change(lambda: client.register_script(FORCE_OPEN_SCRIPT)(keys=[_key(name)], args=[duration]))


# Redis ------------------------------------------------------------------------------------------


class SharedRedis:
    """The Redis that breakers and rate limits share (django-redis's "default" connection).

    Fails open: after an error it is left alone for REDIS_RETRY_AFTER seconds, with one warning,
    and `client()` and `run()` answer None meanwhile, as they do when REDIS_URL is not set.
    """

    def __init__(self) -> None:
        self._down_until = 0.0

    @property
    def is_configured(self) -> bool:
        return bool(settings.REDIS_URL)

    def client(self, *, retry_now: bool = False):
        """A redis-py client, or None (no Redis, or Redis failed a moment ago)."""
        if not self.is_configured or (time.monotonic() < self._down_until and not retry_now):
            return None
        try:
            return get_redis_connection("default")
        except Exception as error:  # noqa: BLE001 - fails open, whatever the backend raised
            self.failed(error)
            return None

    def run(self, script: str, key: str, args: list) -> list | None:
        """The Lua `script`'s reply on `key`, or None if Redis is not there to run it."""
        client = self.client()
        if client is None:
            return None
        try:
            return client.register_script(script)(keys=[key], args=args)
        except Exception as error:  # noqa: BLE001 - fails open, whatever Redis raised
            self.failed(error)
            return None

    def failed(self, error: Exception) -> None:
        if time.monotonic() >= self._down_until:
            logger.warning(
                "Redis unavailable, left alone for %.0fs: breakers keep this process's own state "
                "and rate limits are off meanwhile: %s",
                REDIS_RETRY_AFTER,
                error,
            )
        self._down_until = time.monotonic() + REDIS_RETRY_AFTER


shared_redis = SharedRedis()


def _key(source_name: str) -> str:
    return f"dynconfig:breaker:{source_name}"


def _decoded(reply: list) -> tuple[bool, int, float | None]:
    admitted, trial, retry_after = reply
    retry_after = retry_after.decode() if isinstance(retry_after, bytes) else retry_after
    return bool(admitted), int(trial), float(retry_after) if retry_after else None


def _operator_client():
    client = shared_redis.client(retry_now=True)
    if client is None and shared_redis.is_configured:
        raise BreakerUnavailable("Redis is unavailable: the breaker was not changed")
    return client


def _operator_change(change) -> None:
    try:
        change()
    except Exception as error:  # noqa: BLE001 - reported to the operator instead of half-done
        shared_redis.failed(error)
        raise BreakerUnavailable(f"Redis is unavailable: the breaker was not changed ({error})") from error


# The scripts. Each reads the clock with TIME and changes the hash in one step. Their rules are
# the ones of _LocalBreakers below, line for line: change both or neither.

_CLOCK = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
"""

# KEYS[1] the hash; ARGV endpoint, half-open trials, trial lease. Returns {admitted, trial, wait}.
ALLOW_SCRIPT = _CLOCK + """
local key, endpoint = KEYS[1], ARGV[1]
local trials_allowed, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
local f = redis.call('HMGET', key, 'state', 'endpoint', 'opened_until', 'trials', 'generation', 'trial_at')
if f[2] and f[2] ~= endpoint then
  redis.call('DEL', key)
  f = {false, false, false, false, false, false}
end
if f[2] ~= endpoint then redis.call('HSET', key, 'endpoint', endpoint) end
local state = f[1] or 'closed'
if state == 'closed' then return {1, 0, ''} end
local generation = tonumber(f[5]) or 0
local trials = tonumber(f[4]) or 0
if state == 'open' then
  local opened_until = tonumber(f[3]) or 0
  if now < opened_until then return {0, 0, tostring(opened_until - now)} end
  generation, trials = generation + 1, 0
  redis.call('HSET', key, 'state', 'half_open', 'generation', generation, 'successes', 0)
end
if trials >= trials_allowed and now - (tonumber(f[6]) or 0) > lease then trials = 0 end
if trials < trials_allowed then
  redis.call('HSET', key, 'trials', trials + 1, 'trial_at', now)
  return {1, generation, ''}
end
return {0, 0, ''}
"""

# KEYS[1] the hash; ARGV endpoint, verdict, trial, threshold, recovery, half-open trials, wait,
# open-now (seconds a closed breaker opens at once for an unreachable source; 0: not that).
RECORD_SCRIPT = _CLOCK + """
local key, endpoint, verdict, trial = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local threshold, recovery, trials_allowed = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local wait, open_now = tonumber(ARGV[7]) or 0, tonumber(ARGV[8]) or 0
local f = redis.call('HMGET', key, 'state', 'endpoint', 'failures', 'opened_until', 'generation',
                     'trials', 'successes')
if f[2] and f[2] ~= endpoint then return 0 end
local state = f[1] or 'closed'
local function open_for(seconds)
  redis.call('HSET', key, 'state', 'open', 'opened_until', now + seconds, 'failures', 0,
             'trials', 0, 'successes', 0, 'endpoint', endpoint)
end
if state == 'open' then
  if verdict == 'failure' and wait > 0 and now + wait > (tonumber(f[4]) or 0) then
    redis.call('HSET', key, 'opened_until', now + wait)
  end
  return 0
end
if verdict == 'failure' and wait > recovery then open_for(wait) return 0 end
if state == 'closed' then
  local failures = tonumber(f[3]) or 0
  if verdict == 'failure' then
    if failures + 1 >= threshold then open_for(math.max(recovery, wait))
    elseif open_now > 0 then open_for(math.max(open_now, wait))
    else redis.call('HSET', key, 'failures', failures + 1, 'endpoint', endpoint) end
  elseif verdict == 'success' and failures > 0 then
    redis.call('HSET', key, 'failures', 0)
  end
  return 0
end
if trial == 0 or trial ~= tonumber(f[5]) then return 0 end
if verdict == 'failure' then open_for(math.max(recovery, wait)) return 0 end
local trials = math.max(0, (tonumber(f[6]) or 0) - 1)
if verdict == 'success' then
  local successes = (tonumber(f[7]) or 0) + 1
  if successes >= trials_allowed then
    redis.call('HSET', key, 'state', 'closed', 'failures', 0, 'trials', 0, 'successes', 0)
  else
    redis.call('HSET', key, 'trials', trials, 'successes', successes)
  end
else
  redis.call('HSET', key, 'trials', trials)
end
return 0
"""

# KEYS[1] the hash; ARGV duration in seconds.
FORCE_OPEN_SCRIPT = _CLOCK + """
redis.call('HSET', KEYS[1], 'state', 'open', 'opened_until', now + tonumber(ARGV[1]),
           'failures', 0, 'trials', 0, 'successes', 0)
return 0
"""


# This process's memory: without Redis, or while it is down -----------------------------------


@dataclass
class _Record:
    state: str = CLOSED
    endpoint: str = ""
    failures: int = 0
    opened_until: float = 0.0
    generation: int = 0  # counts half-open periods, so a late trial of an earlier one is ignored
    trials: int = 0
    trial_at: float = 0.0
    successes: int = 0


class _LocalBreakers:
    """The scripts' rules on a dict, under one lock (wall-clock time, like Redis's TIME)."""

    def __init__(self) -> None:
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def allow(self, source: SourceConfig, now: float) -> tuple[bool, int, float | None]:
        with self._lock:
            record = self._records.get(source.name)
            if record is None or (record.endpoint and record.endpoint != source.base_url):
                record = self._records[source.name] = _Record()
            record.endpoint = source.base_url
            if record.state == CLOSED:
                return True, 0, None
            if record.state == OPEN:
                if now < record.opened_until:
                    return False, 0, record.opened_until - now
                record.state, record.generation, record.trials = HALF_OPEN, record.generation + 1, 0
                record.successes = 0
            allowed = source.breaker_half_open_trials
            if record.trials >= allowed and now - record.trial_at > TRIAL_LEASE_SECONDS:
                record.trials = 0
            if record.trials < allowed:
                record.trials += 1
                record.trial_at = now
                return True, record.generation, None
            return False, 0, None

    def record(
        self, source: SourceConfig, permit: Permit, verdict: str, wait: float, open_now: float, now: float
    ) -> None:
        recovery = source.breaker_recovery_timeout.total_seconds()
        with self._lock:
            record = self._records.setdefault(source.name, _Record(endpoint=permit.endpoint))
            if record.endpoint and record.endpoint != permit.endpoint:
                return

            def open_for(seconds: float) -> None:
                record.state, record.opened_until = OPEN, now + seconds
                record.failures = record.trials = record.successes = 0
                record.endpoint = permit.endpoint

            if record.state == OPEN:
                if verdict == FAILURE and wait > 0 and now + wait > record.opened_until:
                    record.opened_until = now + wait
                return
            if verdict == FAILURE and wait > recovery:
                open_for(wait)
                return
            if record.state == CLOSED:
                if verdict == FAILURE:
                    if record.failures + 1 >= source.breaker_failure_threshold:
                        open_for(max(recovery, wait))
                    elif open_now > 0:
                        open_for(max(open_now, wait))
                    else:
                        record.failures += 1
                        record.endpoint = permit.endpoint
                elif verdict == SUCCESS:
                    record.failures = 0
                return
            if permit.trial == 0 or permit.trial != record.generation:
                return
            if verdict == FAILURE:
                open_for(max(recovery, wait))
                return
            record.trials = max(0, record.trials - 1)
            if verdict == SUCCESS:
                record.successes += 1
                if record.successes >= source.breaker_half_open_trials:
                    record.state, record.failures, record.trials, record.successes = CLOSED, 0, 0, 0

    def fields(self, name: str) -> dict[str, str]:
        with self._lock:
            record = self._records.get(name)
            return {key: str(value) for key, value in asdict(record).items()} if record else {}

    def forget(self, name: str) -> None:
        with self._lock:
            self._records.pop(name, None)

    def force_open(self, name: str, until: float) -> None:
        with self._lock:
            record = self._records.setdefault(name, _Record())
            record.state, record.opened_until = OPEN, until
            record.failures = record.trials = record.successes = 0


_local = _LocalBreakers()
# (source name, base URL) -> time.monotonic() until which this process refuses by itself.
_seen_open: dict[tuple[str, str], float] = {}


def _verdict(outcome: SourceResult | SourceError | None) -> str:
    if isinstance(outcome, SourceResult):
        return SUCCESS
    if isinstance(outcome, SourceError) and outcome.kind in COUNTED_FAILURES:
        return FAILURE
    return NO_VERDICT


def _state_of(fields: dict[str, str], now: float, store: str) -> BreakerState:
    state = fields.get("state") or CLOSED
    opened_until = float(fields.get("opened_until") or 0)
    if state == OPEN and now >= opened_until:
        return BreakerState(HALF_OPEN, 0, None, 0, 0, store)  # what the next call will find
    is_half_open = state == HALF_OPEN
    return BreakerState(
        state=state,
        failures=int(fields.get("failures") or 0) if state == CLOSED else 0,
        opened_until=datetime.fromtimestamp(opened_until, tz=UTC) if state == OPEN else None,
        trials=int(fields.get("trials") or 0) if is_half_open else 0,
        successes=int(fields.get("successes") or 0) if is_half_open else 0,
        store=store,
    )
