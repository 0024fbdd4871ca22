"""DynConfigClient: reads values from a DynConfig server, and keeps answering when it is down.

A read goes down this chain and stops at the first step that answers:

1. the local cache, while the answer is fresh (`cache_ttl`, or the server's `max-age`):
   no request at all (served_from "cache");
2. the server: a GET, with `If-None-Match` when an answer is known, so that an unchanged value
   costs a 304 ("revalidated") and a new one a 200 ("server"); every answer is written to the
   cache and to the last-known-good store;
3. if the server cannot be used (connection refused, timeouts, 5xx, 429, a body that is not an
   answer), after `retries` retries with exponential backoff: the last answer known, from
   memory or from the store file ("last_known");
4. the caller's `default`, then the client's `defaults` mapping ("default");
5. else `DynConfigUnavailable`.

A 4xx answer (unknown key, bad context, no or wrong token) raises a `RequestRejected` subclass
at step 2 instead: those are bugs of the caller and must not be hidden by a fallback.

After the server could not be used, the client does not try it again for `cooldown` seconds
(or the server's Retry-After, if longer): during an outage each read answers from steps 3-5 at
once instead of waiting for timeouts again.

With `subscribe=True` a background thread follows the server's change stream (stream.py): on a
change event, the cached answers it affects stop being fresh at once, so the next read asks the
server (an ETag revalidation) instead of serving the old value until its TTL. The server's
processes take up to half a second to apply a change, so for SETTLE_SECONDS after an event an
answer it affects is kept only SETTLE_RECHECK_SECONDS, then asked again (a cheap 304 if unchanged). When the stream is
down the client relies on its TTLs, and the thread reconnects with backoff and resumes after
the last event it saw.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, Literal, Union
from urllib.parse import quote, urlsplit

import requests

from dynconfig_client.errors import DynConfigUnavailable, RequestRejected, rejection
from dynconfig_client.store import LastKnownStore
from dynconfig_client.stream import ChangeSubscription

logger = logging.getLogger("dynconfig_client")

__version__ = "0.1.0"

ServedFrom = Literal["server", "revalidated", "cache", "last_known", "default"]
# A context value: one name, or several (`channels=["search_advertising", "email_marketing"]`,
# sent as "search_advertising,email_marketing").
ContextValue = Union[str, int, Sequence[str]]

# The longest Retry-After the client waits for within one call; a longer one ends the call with
# a fallback at once (and keeps the server untried for that long), because a caller blocked
# longer than a read's timeout is worse off than with the last-known value.
MAX_RETRY_AFTER = 2.0
# Reads sent in one batch request; more are sent in several.
BATCH_SIZE = 50
# For this long after a change event, the answers it affects are not trusted for their TTL: a
# server process applies a change within half a second of its commit (its registry's version
# check), so an answer read meanwhile may predate it...
SETTLE_SECONDS = 1.0
# ...and is asked for again (an ETag revalidation) after this long, until the settling is over.
SETTLE_RECHECK_SECONDS = 0.1


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # `get()` without a default


@dataclass(frozen=True)
class Value:
    """One value and where it came from.

    `key` and `context` are the server's (aliases resolved, the context normalized) when the
    value comes from an answer of the server, else the requested ones. `provenance` is the
    server's (tier, sources, confidence, fetched_at, expires_at, stale, ...), None for a
    default. `fetched_at` is when the server last gave or confirmed this answer to a client
    (None for a default). `error` says why the server was not used, when it was not.
    """

    key: str
    context: Mapping[str, Any]
    value: Any
    provenance: Mapping[str, Any] | None
    served_from: ServedFrom
    fetched_at: datetime | None
    error: str | None = None


@dataclass(frozen=True)
class _Read:
    key: str
    context: tuple[tuple[str, str], ...]  # canonical: sorted by name, each value a string

    @classmethod
    def of(cls, key: str, context: Mapping[str, ContextValue]) -> _Read:
        if not isinstance(key, str) or not key:
            raise ValueError(f"a key is a non-empty string, not {key!r}")
        return cls(key, tuple(sorted((str(name), _context_text(value)) for name, value in context.items())))

    @property
    def context_text(self) -> str:
        """The context as the store's key: a JSON object with sorted names."""
        return json.dumps(dict(self.context), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class _Entry:
    """An answer known to this client. Kept after it expires: it is the last-known value."""

    answer: str  # the server's JSON answer, parsed anew for each Value (callers may mutate theirs)
    etag: str | None
    expires_at: float  # time.monotonic(); 0 for an answer loaded from the store (not fresh)
    fetched_at: datetime

    def value(self, served_from: ServedFrom, error: str | None = None) -> Value:
        answer = json.loads(self.answer)
        return Value(
            key=answer["key"],
            context=answer.get("context") or {},
            value=answer["value"],
            provenance=answer.get("provenance"),
            served_from=served_from,
            fetched_at=self.fetched_at,
            error=error,
        )


class _Unavailable(Exception):
    """The server could not be used; `reason` says why (no secrets: no headers in it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _UnusableAnswer(_Unavailable):
    """The server answered, but not with something usable (an unexpected status, a body that
    is not an answer: a proxy's page, a half-deployed server): an outage all the same."""


class _BatchUnsupported(Exception):
    """The server has no batch endpoint (404/405): read one by one instead."""


class DynConfigClient:
    """A thread-safe client of one DynConfig server (see the module docstring for the chain).

    base_url: the server's root, e.g. "https://dynconfig.internal" (the API is under /api/v1/).
    token: an API token with the `values:read` scope, sent as `Authorization: Bearer`.
    timeout: seconds per request attempt; a number for both connecting and reading, or a
        (connect, read) pair.
    retries: further attempts after a connection error, a timeout, a 5xx or a 429 (never after
        another 4xx); backoff: the wait before the first retry, doubled for each next one.
    cache_ttl: seconds an answer is served from the local cache before revalidation; None: the
        server's Cache-Control max-age (what is left of the value's TTL on the server).
    store_path: a file for the persistent last-known-good store (SQLite; shareable by threads
        and processes); None: the last-known values live in memory only.
    defaults: key -> value, used when the server is unavailable and nothing is known.
    cooldown: seconds during which the server is not tried again after it could not be used.
    session_factory: makes each thread's requests.Session (proxies, TLS, adapters, hooks);
        the client adds its Authorization and User-Agent headers to it.
    subscribe: follow the server's change stream in a background thread and drop cached
        answers as soon as they change (see the module docstring); needs a token (or anonymous
        reads) like any read. stream_read_timeout: seconds without a byte (the server sends a
        heartbeat every 15 s by default) after which the stream is taken for dead and reopened.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float | tuple[float, float] = 2.0,
        retries: int = 2,
        backoff: float = 0.2,
        cache_ttl: float | None = None,
        store_path: str | os.PathLike[str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        cooldown: float = 5.0,
        session_factory: Callable[[], requests.Session] | None = None,
        subscribe: bool = False,
        stream_read_timeout: float = 45.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL such as https://host:8000, not {base_url!r}")
        if retries < 0 or backoff < 0 or cooldown < 0 or (cache_ttl is not None and cache_ttl < 0):
            raise ValueError("retries, backoff, cooldown and cache_ttl cannot be negative")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.cache_ttl = cache_ttl
        self.cooldown = cooldown
        self.defaults: Mapping[str, Any] = dict(defaults or {})
        self._store = LastKnownStore(store_path) if store_path is not None else None
        self._session_factory = session_factory or requests.Session
        self._entries: dict[_Read, _Entry] = {}
        self._lock = threading.Lock()  # guards _entries, _sessions, _unavailable_until/_reason
        self._local = threading.local()  # each thread's (pid, session)
        self._sessions: list[requests.Session] = []
        self._unavailable_until = 0.0  # time.monotonic()
        self._unavailable_reason = ""
        self._is_closed = False
        # (key, context match, until): answers these events affect are fresh only until then.
        self._settling: list[tuple[str, Mapping[str, Any], float]] = []
        self._subscription: ChangeSubscription | None = None
        if subscribe:
            connect_timeout = self.timeout[0] if isinstance(self.timeout, tuple) else self.timeout
            self._subscription = ChangeSubscription(
                f"{self.base_url}/api/v1/values/stream/",
                session_factory=self._new_session,
                on_change=self._drop_affected,
                on_reset=self._drop_all,
                connect_timeout=connect_timeout,
                read_timeout=stream_read_timeout,
            )
            self._subscription.start()

    def __repr__(self) -> str:
        token = "'********'" if self._token else "None"  # never the token, nor a part of it
        store = f"'{self._store.path}'" if self._store else "None"
        return f"DynConfigClient(base_url={self.base_url!r}, token={token}, store_path={store})"

    def __enter__(self) -> DynConfigClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def is_subscribed(self) -> bool:
        """Whether the change stream is open now (False without `subscribe`, or while it is down)."""
        return self._subscription is not None and self._subscription.is_connected

    def wait_subscribed(self, timeout: float) -> bool:
        """Wait until the change stream is open (at most `timeout` seconds); whether it is."""
        return self._subscription is not None and self._subscription.wait_connected(timeout)

    def close(self) -> None:
        """Close every thread's HTTP session and the store. The client cannot be used after."""
        if self._subscription is not None:
            self._subscription.stop()
        with self._lock:
            self._is_closed = True
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        if self._store is not None:
            self._store.close()

    # Reading --------------------------------------------------------------------------------

    def get(self, key: str, /, default: Any = MISSING, **context: ContextValue) -> Value:
        """The value of `key` in `context` (keyword arguments: region="us", channels=[...]).

        Never raises because the server is down when a value is known or a default exists
        (`default`, or the client's `defaults[key]`); raises DynConfigUnavailable otherwise,
        and a RequestRejected subclass when the server refuses the request (4xx).
        """
        read = _Read.of(key, context)
        entry = self._entry(read)
        if entry is not None and entry.expires_at > time.monotonic():
            return entry.value("cache")
        headers = {"If-None-Match": entry.etag} if entry is not None and entry.etag else {}
        try:
            response = self._exchange("GET", self._value_url(key), params=dict(read.context), headers=headers)
            if response.status_code == 304 and entry is not None:
                return self._revalidated(read, entry, response).value("revalidated")
            if response.status_code == 200:
                ttl = self.cache_ttl if self.cache_ttl is not None else _max_age(response)
                etag = response.headers.get("ETag")
                return self._remember(read, _answer_text(response.content), etag=etag, ttl=ttl).value("server")
            raise _UnusableAnswer(f"unexpected HTTP {response.status_code} from the server")
        except _Unavailable as failure:
            if isinstance(failure, _UnusableAnswer):
                self._mark_unavailable(failure.reason, 0.0)
            return self._fallback(read, entry, default, failure.reason)

    def get_many(self, reads: Iterable[tuple[str, Mapping[str, ContextValue]]]) -> list[Value]:
        """The values of (key, context) pairs, in order: fresh cache hits locally, the others in
        one batch request (several beyond BATCH_SIZE reads). The server being unavailable is
        handled per read as in `get()`, with the client's `defaults` as the only defaults; the
        first read that has neither a value nor a default raises DynConfigUnavailable, and the
        first read the server refuses raises its RequestRejected subclass.
        """
        requested = [_Read.of(key, context) for key, context in reads]
        results: list[Value | None] = [None] * len(requested)
        pending: dict[_Read, list[int]] = {}  # reads to ask the server, each once
        known: dict[_Read, _Entry | None] = {}
        now = time.monotonic()
        for index, read in enumerate(requested):
            entry = known[read] = known[read] if read in known else self._entry(read)
            if entry is not None and entry.expires_at > now:
                results[index] = entry.value("cache")
            else:
                pending.setdefault(read, []).append(index)
        unique = list(pending)
        for start in range(0, len(unique), BATCH_SIZE):
            chunk = unique[start : start + BATCH_SIZE]
            for read, value in zip(chunk, self._fetch_chunk(chunk, known)):
                for index in pending[read]:
                    results[index] = value
        return [value for value in results if value is not None]

    # The chain's steps ----------------------------------------------------------------------

    def _entry(self, read: _Read) -> _Entry | None:
        """What this client knows of `read`: from memory, else from the store (not fresh)."""
        with self._lock:
            if self._is_closed:
                raise RuntimeError("this DynConfigClient is closed")
            entry = self._entries.get(read)
        if entry is not None or self._store is None:
            return entry
        stored = self._store.get(read.key, read.context_text)
        if stored is None:
            return None
        entry = _Entry(
            answer=stored.answer,
            etag=stored.etag,
            expires_at=0.0,
            fetched_at=datetime.fromtimestamp(stored.stored_at, timezone.utc),
        )
        with self._lock:
            return self._entries.setdefault(read, entry)

    def _remember(self, read: _Read, answer: str, *, etag: str | None, ttl: float) -> _Entry:
        """Keep a new answer of the server: in memory, and in the store."""
        fetched_at = datetime.now(timezone.utc)
        expires_at = self._fresh_until(answer, time.monotonic() + ttl)
        entry = _Entry(answer=answer, etag=etag, expires_at=expires_at, fetched_at=fetched_at)
        with self._lock:
            self._entries[read] = entry
        if self._store is not None:
            self._store.put(read.key, read.context_text, answer=answer, etag=etag, stored_at=fetched_at.timestamp())
        return entry

    def _revalidated(self, read: _Read, entry: _Entry, response: requests.Response) -> _Entry:
        """The server confirmed `entry` (304): fresh again for a TTL."""
        ttl = self.cache_ttl if self.cache_ttl is not None else _max_age(response)
        fetched_at = datetime.now(timezone.utc)
        entry = replace(entry, expires_at=self._fresh_until(entry.answer, time.monotonic() + ttl), fetched_at=fetched_at)
        with self._lock:
            self._entries[read] = entry
        if self._store is not None:
            self._store.touch(read.key, read.context_text, stored_at=fetched_at.timestamp())
        return entry

    def _fallback(self, read: _Read, entry: _Entry | None, default: Any, reason: str) -> Value:
        if entry is not None:
            logger.debug("%s: serving the last-known value (%s)", read.key, reason)
            return entry.value("last_known", reason)
        if default is MISSING and read.key in self.defaults:
            default = self.defaults[read.key]
        if default is MISSING:
            raise DynConfigUnavailable(read.key, dict(read.context), reason)
        logger.debug("%s: serving the default (%s)", read.key, reason)
        return Value(
            key=read.key,
            context=dict(read.context),
            value=default,
            provenance=None,
            served_from="default",
            fetched_at=None,
            error=reason,
        )

    def _fetch_chunk(self, chunk: list[_Read], known: Mapping[_Read, _Entry | None]) -> list[Value]:
        body = {"reads": [{"key": read.key, "context": dict(read.context)} for read in chunk]}
        try:
            response = self._exchange(
                "POST", f"{self.base_url}/api/v1/values/batch/", json_body=body, passed_statuses=(404, 405)
            )
            if response.status_code in (404, 405):
                raise _BatchUnsupported
            if response.status_code != 200:
                raise _UnusableAnswer(f"unexpected HTTP {response.status_code} from the batch endpoint")
            items = _batch_items(response.content, len(chunk))
        except _BatchUnsupported:
            return [self.get(read.key, **dict(read.context)) for read in chunk]
        except _Unavailable as failure:
            if isinstance(failure, _UnusableAnswer):
                self._mark_unavailable(failure.reason, 0.0)
            return [self._fallback(read, known[read], MISSING, failure.reason) for read in chunk]
        server_now = _server_time(response)
        values = []
        for read, item in zip(chunk, items):
            error = item.get("error")
            if error is None:
                ttl = self.cache_ttl if self.cache_ttl is not None else _remaining(item, server_now)
                # No ETag per result: the next GET of it is a 200, not a 304.
                values.append(self._remember(read, json.dumps(item), etag=None, ttl=ttl).value("server"))
                continue
            status = error.get("status") if isinstance(error, Mapping) else None
            if isinstance(status, int) and 400 <= status < 500 and status != 429:
                raise rejection(status, error)
            reason = f"the server could not answer this read: {error}"
            values.append(self._fallback(read, known[read], MISSING, reason))
        return values

    # Change events (subscribe=True) ----------------------------------------------------------

    def _drop_affected(self, key: str, match: Mapping[str, Any]) -> None:
        """A change event: the answers of `key` whose context holds `match` are stale now."""
        now = time.monotonic()
        with self._lock:
            self._settling = [item for item in self._settling if item[2] > now]
            self._settling.append((key, dict(match), now + SETTLE_SECONDS))
            for read, entry in self._entries.items():
                if entry.expires_at > 0 and _is_affected(entry.answer, key, match):
                    self._entries[read] = replace(entry, expires_at=0.0)  # kept: still the last known value

    def _drop_all(self) -> None:
        """Events may have been missed: no cached answer is fresh any more. (No settling: the
        changes missed are not recent ones that a server process may not have applied yet.)"""
        with self._lock:
            for read, entry in self._entries.items():
                if entry.expires_at > 0:
                    self._entries[read] = replace(entry, expires_at=0.0)

    def _fresh_until(self, answer: str, expires_at: float) -> float:
        """`expires_at`, or much sooner while a recent change event that affects this answer
        settles (SETTLE_SECONDS, SETTLE_RECHECK_SECONDS)."""
        with self._lock:
            settling = list(self._settling)
        now = time.monotonic()
        if any(until > now and _is_affected(answer, key, match) for key, match, until in settling):
            return min(expires_at, now + SETTLE_RECHECK_SECONDS)
        return expires_at

    # HTTP ------------------------------------------------------------------------------------

    def _value_url(self, key: str) -> str:
        return f"{self.base_url}/api/v1/values/{quote(key, safe='')}/"

    def _exchange(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        passed_statuses: tuple[int, ...] = (),
    ) -> requests.Response:
        """One request with bounded retries: the response (never a 5xx or 429), or
        _Unavailable; a 4xx not in `passed_statuses` is raised as RequestRejected."""
        self._check_cooldown()
        session = self._session()
        reason = ""
        retry_after = 0.0
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(max(self.backoff * 2 ** (attempt - 1), retry_after))
            retry_after = 0.0
            try:
                response = session.request(
                    method, url, params=params, headers=headers, json=json_body, timeout=self.timeout
                )
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
                reason = f"{type(error).__name__}: {error}"
                continue
            except requests.RequestException as error:  # not worth retrying (e.g. a bad redirect)
                reason = f"{type(error).__name__}: {error}"
                break
            status = response.status_code
            if status != 429 and status < 500:
                if 400 <= status < 500 and status not in passed_statuses:
                    raise rejection(status, _error_member(response.content))
                self._mark_available()
                return response
            reason = f"HTTP {status} from the server"
            retry_after = _retry_after(response)
            if retry_after > MAX_RETRY_AFTER:
                break
        self._mark_unavailable(reason, retry_after)
        raise _Unavailable(reason)

    def _session(self) -> requests.Session:
        """This thread's session (one per thread: requests.Session is not thread-safe)."""
        pid_session: tuple[int, requests.Session] | None = getattr(self._local, "pid_session", None)
        if pid_session is not None and pid_session[0] == os.getpid():
            return pid_session[1]
        # None yet in this thread, or one inherited through fork() that shares the parent's sockets.
        session = self._new_session()
        with self._lock:
            self._sessions.append(session)
        self._local.pid_session = (os.getpid(), session)
        return session

    def _new_session(self) -> requests.Session:
        session = self._session_factory()
        session.headers["User-Agent"] = f"dynconfig-client/{__version__}"
        session.headers["Accept"] = "application/json"
        if self._token:
            session.headers["Authorization"] = f"Bearer {self._token}"
        return session

    def _check_cooldown(self) -> None:
        with self._lock:
            remaining = self._unavailable_until - time.monotonic()
            reason = self._unavailable_reason
        if remaining > 0:
            raise _Unavailable(f"{reason}; not tried again for another {remaining:.1f} s")

    def _mark_unavailable(self, reason: str, retry_after: float) -> None:
        pause = max(self.cooldown, retry_after)
        with self._lock:
            was_available = self._unavailable_until == 0.0
            self._unavailable_until = time.monotonic() + pause
            self._unavailable_reason = reason
        if was_available:
            logger.warning(
                "DynConfig server %s unavailable (%s): serving last-known values and defaults, "
                "next attempt in %.1f s", self.base_url, reason, pause,
            )

    def _mark_available(self) -> None:
        with self._lock:
            was_unavailable = self._unavailable_until != 0.0
            self._unavailable_until = 0.0
        if was_unavailable:
            logger.warning("DynConfig server %s available again", self.base_url)


# Parsing the server's answers (a proxy or a half-deployed server may say anything) ------------


def _context_text(value: ContextValue) -> str:
    if isinstance(value, (str, int)):
        return str(value)
    return ",".join(str(item) for item in value)


def _is_affected(answer: str, key: str, match: Mapping[str, Any]) -> bool:
    """Whether a change of `key` in the contexts holding `match` affects this cached answer
    (its key is the server's, aliases resolved; a list in the match must be within the answer's)."""
    try:
        data = json.loads(answer)
    except ValueError:
        return True
    if not isinstance(data, dict) or data.get("key") != key:
        return False
    context = data.get("context") or {}
    for name, wanted in match.items():
        given = context.get(name) if isinstance(context, dict) else None
        if isinstance(wanted, list) or (name == "channels" and isinstance(wanted, str)):
            wanted_names = set(wanted.split(",") if isinstance(wanted, str) else map(str, wanted))
            given_names = set(given.split(",") if isinstance(given, str) else map(str, given or []))
            if not wanted_names <= given_names:
                return False
        elif given is None or str(given) != str(wanted):
            return False
    return True


def _is_answer(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("key"), str) and "value" in data


def _answer_text(content: bytes) -> str:
    """The body of a 200 as the text to keep, if it is an answer; else _Unavailable."""
    try:
        data = json.loads(content)
    except ValueError:
        raise _UnusableAnswer("the server's answer is not JSON") from None
    if not _is_answer(data):
        raise _UnusableAnswer("the server's answer has no key and value")
    return json.dumps(data)


def _batch_items(content: bytes, count: int) -> list[dict[str, Any]]:
    try:
        results = json.loads(content).get("results")
    except (ValueError, AttributeError):
        raise _UnusableAnswer("the batch answer is not a JSON object") from None
    if not isinstance(results, list) or len(results) != count:
        raise _UnusableAnswer(f"the batch answer does not hold {count} results")
    for item in results:
        if not (_is_answer(item) or (isinstance(item, dict) and isinstance(item.get("error"), dict))):
            raise _UnusableAnswer("a batch result is neither an answer nor an error")
    return results


def _error_member(content: bytes) -> Any:
    try:
        return json.loads(content).get("error")
    except (ValueError, AttributeError):
        return None


def _max_age(response: requests.Response) -> float:
    """Cache-Control max-age in seconds; 0 (revalidate every time) without one."""
    for directive in response.headers.get("Cache-Control", "").split(","):
        name, _, argument = directive.strip().partition("=")
        if name.lower() in ("no-store", "no-cache"):
            return 0.0
        if name.lower() == "max-age":
            try:
                return max(0.0, float(argument.strip('"')))
            except ValueError:
                return 0.0
    return 0.0


def _retry_after(response: requests.Response) -> float:
    """Retry-After in seconds (a number or an HTTP date); 0 without one."""
    header = response.headers.get("Retry-After", "").strip()
    if not header:
        return 0.0
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


def _server_time(response: requests.Response) -> datetime:
    """The server's clock at the answer (its Date header), so that expiry times it sends are
    turned into TTLs without depending on this machine's clock; this machine's without one."""
    try:
        return email.utils.parsedate_to_datetime(response.headers["Date"])
    except (KeyError, TypeError, ValueError):
        return datetime.now(timezone.utc)


def _remaining(answer: Mapping[str, Any], server_now: datetime) -> float:
    """The TTL of an answer without Cache-Control (in a batch): what is left until its
    provenance's expires_at; 0 if it has none."""
    provenance = answer.get("provenance")
    expires_at = provenance.get("expires_at") if isinstance(provenance, Mapping) else None
    if not isinstance(expires_at, str):
        return 0.0
    try:
        moment = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if moment.tzinfo is None:
        return 0.0
    return max(0.0, (moment - server_now).total_seconds())
