"""The server's change stream, followed by a background thread (DynConfigClient(subscribe=True)).

GET /api/v1/values/stream/ is Server-Sent Events: `change` events name a value type and the
contexts whose answers changed, `reset` says events may have been missed. The thread hands each
to the client's callbacks, remembers the last event id, and when the connection drops (server
restarted, proxy timeout, network), reconnects with `Last-Event-ID` after a backoff that doubles
from `backoff` up to `backoff_cap` (with jitter, so that many clients do not come back at once).
While it is down the client simply relies on its TTLs, as without a subscription.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests

logger = logging.getLogger("dynconfig_client")

OnChange = Callable[[str, Mapping[str, Any]], None]
OnReset = Callable[[], None]


class ChangeSubscription:
    """A daemon thread reading the change stream of one server until `stop()`."""

    def __init__(
        self,
        url: str,
        *,
        session_factory: Callable[[], requests.Session],
        on_change: OnChange,
        on_reset: OnReset,
        connect_timeout: float,
        read_timeout: float,
        backoff: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self.url = url
        self._session_factory = session_factory
        self._on_change = on_change
        self._on_reset = on_reset
        self._timeout = (connect_timeout, read_timeout)
        self._backoff = backoff
        self._backoff_cap = backoff_cap
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._lock = threading.Lock()  # guards _response
        self._response: requests.Response | None = None
        self.last_event_id: str | None = None
        self._thread = threading.Thread(target=self._run, name="dynconfig-change-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def is_connected(self) -> bool:
        """Whether the stream is open now (its `ready` event received)."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """End the thread, at once: its read blocked on the socket is woken by shutting the
        socket down (closing the response from here would wait for that read to end)."""
        self._stopping.set()
        with self._lock:
            response = self._response
        if response is not None:
            _shut_down(response)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        session = self._session_factory()
        failures = 0
        try:
            while not self._stopping.is_set():
                reason = self._follow(session)
                self._connected.clear()
                if self._stopping.is_set():
                    return
                failures = 0 if reason is None else failures + 1
                pause = min(self._backoff * 2 ** max(failures - 1, 0), self._backoff_cap) * random.uniform(0.5, 1.0)
                if failures == 1:
                    logger.warning("change stream of %s unavailable (%s): relying on TTLs meanwhile", self.url, reason)
                self._stopping.wait(pause)
        finally:
            session.close()

    def _follow(self, session: requests.Session) -> str | None:
        """One connection, read until it ends: None if it ended cleanly after opening, else why not."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        is_resuming = self.last_event_id is not None
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        try:
            response = session.get(self.url, headers=headers, stream=True, timeout=self._timeout)
        except requests.RequestException as error:
            return f"{type(error).__name__}: {error}"
        with self._lock:
            self._response = response
        try:
            if response.status_code != 200:
                return f"HTTP {response.status_code}"
            for event, event_id, data in _messages(_lines(response)):
                if event_id is not None:
                    self.last_event_id = event_id
                self._dispatch(event, data, is_resuming)
            return None
        except (requests.RequestException, OSError, ValueError, AttributeError) as error:
            # A read timeout (no heartbeat for too long), a reset connection, or the response
            # closed by stop() (urllib3 then reads from a closed socket).
            return f"{type(error).__name__}: {error}"
        finally:
            with self._lock:
                self._response = None
            response.close()

    def _dispatch(self, event: str, data: str, is_resuming: bool) -> None:
        if event == "ready":
            if not is_resuming:
                # Without a Last-Event-ID, whatever was cached before this connection may have
                # changed unseen; a resumed one gets the missed events (or a `reset`).
                self._on_reset()
            self._connected.set()
        elif event == "reset":
            self._on_reset()
        elif event == "change":
            try:
                change = json.loads(data)
                key, match = change["key"], change.get("context_match") or {}
            except (ValueError, KeyError, TypeError):
                logger.warning("change stream of %s: an event that is not a change, ignored", self.url)
                return
            if isinstance(key, str) and isinstance(match, Mapping):
                self._on_change(key, match)


def _shut_down(response: requests.Response) -> None:
    """Shut the response's socket down, which ends a read blocked on it in another thread. Once
    the headers are read, urllib3's connection no longer holds the socket: the body's reader
    (http.client's file over the socket) does; found defensively, as these are internals."""
    candidates = [getattr(getattr(response.raw, "connection", None), "sock", None)]
    body = getattr(getattr(response.raw, "_fp", None), "fp", None)
    candidates.append(getattr(getattr(body, "raw", None), "_sock", None))
    for sock in candidates:
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
                return
            except OSError:
                continue  # closed already


def _lines(response: requests.Response) -> Iterator[str]:
    """The stream's lines as they arrive. One byte per read: a server that neither chunks nor
    sends a length (Django's runserver) would otherwise hold a partial block until more came."""
    buffer = bytearray()
    for byte in response.iter_content(chunk_size=1):
        if byte == b"\n":
            yield buffer.decode("utf-8", errors="replace").removesuffix("\r")
            buffer.clear()
        else:
            buffer += byte


def _messages(lines: Iterator[str]) -> Iterator[tuple[str, str | None, str]]:
    """(event, id or None, data) per SSE block; comments (heartbeats) give ("", id, "")."""
    event: str = ""
    event_id: str | None = None
    data: list[str] = []
    for line in lines:
        if line == "":
            if event or data or event_id is not None:
                yield event or "message", event_id, "\n".join(data)
            event, event_id, data = "", None, []
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "id":
                event_id = value
            elif name == "data":
                data.append(value)
