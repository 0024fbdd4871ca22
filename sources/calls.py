"""`call_source`: the one way the engine calls a source.

It picks the adapter for the source's kind, refuses disabled sources, and retries RETRYABLE
failures with exponential backoff (or the provider's `Retry-After`) while the call's
`timeout_budget` lasts: at most `MAX_ATTEMPTS` tries, never a sleep past the budget. Every other
kind of failure is raised at once, and so is a source that cannot be reached at all (its breaker
opens at once: sources.breaker). An urgent call (`SourceCall.is_urgent`: a consumer is
waiting) makes one attempt and never waits for a rate-limit token: retries and waits belong to
background refreshes. Each failure is logged at WARNING with the source's name,
kind and the error's reason (which never carries a credential); refusals by the breaker or the
rate limit, which make no request, at INFO.

Every attempt, retries included, first passes the source's circuit breaker (sources.breaker:
BREAKER_OPEN if it refuses) and takes a token of its rate limit (sources.ratelimit: waiting for
one within the budget, else RATE_LIMITED); neither refusal is retried. The attempt's outcome is
then fed back to the breaker (an urgent call's timeout excepted when the read's budget, not the
source's own timeout, ran out), and every attempt, refusals included, is recorded for source
health and counted in the metrics (sources.health.call_observed, which never raises).

Each thread keeps one `requests.Session`, so connections to a source are reused across calls.
"""

from __future__ import annotations

import http.cookiejar
import logging
import threading
import time
from dataclasses import replace

import requests

from sources.adapters import adapter_for
from sources.adapters.base import ErrorKind, SourceAdapter, SourceCall, SourceError, SourceResult
from sources.breaker import breaker_allow, breaker_record
from sources.health import call_observed
from sources.ratelimit import rate_limit_acquire

logger = logging.getLogger(__name__)

# Three tries ride out a blip (a dropped connection, one 503) without hammering a sick source.
MAX_ATTEMPTS = 3
# Backoff before the 2nd and 3rd try: 0.1 s, then 0.2 s.
FIRST_BACKOFF_SECONDS = 0.1
# Not worth another try with less time than this left: it could only time out.
MIN_ATTEMPT_SECONDS = 0.05
_thread_state = threading.local()


def call_source(call: SourceCall) -> SourceResult:
    """Fetch `call` from its source, retrying transient failures within `call.timeout_budget`.

    Raises SourceError: DISABLED for a switched-off source or an unknown kind; BREAKER_OPEN or
    RATE_LIMITED when an attempt was refused before any request; otherwise the last attempt's
    classified error.
    """
    source = call.source
    adapter_class = adapter_for(source.kind)
    if adapter_class is None:
        raise _logged(call, SourceError(ErrorKind.DISABLED, f"no adapter for kind {source.kind}"))
    if not source.is_enabled:
        raise _logged(call, SourceError(ErrorKind.DISABLED, f"source {source.name} is disabled"))

    adapter = adapter_class()
    deadline = time.monotonic() + call.timeout_budget
    backoff = FIRST_BACKOFF_SECONDS
    attempts = 1 if call.is_urgent else MAX_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            return _attempt(adapter, call, deadline)
        except SourceError as error:
            _logged(call, error, attempt, attempts)
            # An unreachable source has just opened its breaker: a retry would only be refused.
            if error.kind is not ErrorKind.RETRYABLE or error.is_unreachable or attempt == attempts:
                raise
            wait = error.retry_after if error.retry_after is not None else backoff
            if time.monotonic() + wait + MIN_ATTEMPT_SECONDS > deadline:
                raise  # the next try could not finish within the budget
            time.sleep(wait)
            backoff *= 2
    raise AssertionError("unreachable: the last attempt returns or raises")


def _attempt(adapter: SourceAdapter, call: SourceCall, deadline: float) -> SourceResult:
    """One try, admitted by the breaker and the rate limit; its outcome goes to the breaker and,
    refusals included, to the health record and the metrics (sources.health.call_observed)."""
    started = time.monotonic()
    try:
        permit = breaker_allow(call.source)
    except SourceError as refusal:
        call_observed(call.source.name, refusal, time.monotonic() - started)
        raise
    outcome: SourceResult | SourceError | None = None  # None: the try never finished
    given = 0.0  # seconds the source had to answer
    try:
        # A token is worth waiting for only while an attempt could still follow it, and only
        # when nobody is waiting for the call.
        max_wait = 0.0 if call.is_urgent else deadline - time.monotonic() - MIN_ATTEMPT_SECONDS
        rate_limit_acquire(call.source, max_wait=max_wait)
        # The source's response time, not our wait for a token.
        started = time.monotonic()
        # The adapter sees only what is left, so its timeouts shrink with each retry.
        given = deadline - time.monotonic()
        if given <= 0:
            raise SourceError(ErrorKind.RETRYABLE, "no time left in the call's budget", is_timeout=True)
        outcome = adapter.fetch(replace(call, timeout_budget=given), _session())
        return outcome
    except SourceError as error:
        outcome = error
        raise
    finally:
        breaker_record(call.source, permit, _breaker_outcome(call, outcome, given))
        call_observed(call.source.name, outcome, time.monotonic() - started)


def _breaker_outcome(
    call: SourceCall, outcome: SourceResult | SourceError | None, given: float
) -> SourceResult | SourceError | None:
    """What the breaker hears of an attempt. An urgent call that timed out before the source's
    own timeouts could run out was cut short by the read's budget (150 ms), not failed by the
    source: no verdict (None). Counting it would let consumers' reads shut every source slower
    than their budget (Google Ads answers in hundreds of milliseconds) and, with it, the
    refreshes that keep its values fresh. A hanging source is found out by the refreshes, whose
    timeouts count."""
    own_timeout = min(call.source.connect_timeout, call.source.read_timeout)
    if call.is_urgent and isinstance(outcome, SourceError) and outcome.is_timeout and given < own_timeout:
        return None
    return outcome


def _session() -> requests.Session:
    session = getattr(_thread_state, "session", None)
    if session is None:
        session = requests.Session()
        # Sources are stateless APIs: a cookie set by one must never be sent to another.
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        _thread_state.session = session
    return session


def _logged(call: SourceCall, error: SourceError, attempt: int | None = None, attempts: int = MAX_ATTEMPTS) -> SourceError:
    is_refusal = error.kind in (ErrorKind.BREAKER_OPEN, ErrorKind.RATE_LIMITED)
    logger.log(
        logging.INFO if is_refusal else logging.WARNING,
        "source %s (%s) %s%s: %s: %s",
        call.source.name,
        call.source.kind,
        "refused" if is_refusal else "failed",
        f" on attempt {attempt}/{attempts}" if attempt else "",
        error.kind.value,
        error.reason,
        extra={"source": call.source.name, "value_type": call.value_type},
    )
    return error
