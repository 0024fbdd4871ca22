"""A local HTTP server that stands in for external APIs in tests (the suite never touches the internet).

    with LocalServer() as server:
        server.route("GET", "/v1/rates", json={"rate": 0.05})
        server.route("GET", "/slow", json={}, delay=2.0)          # other requests are not blocked
        server.route("GET", "/stuck", hang=True)                  # accepted, never answered
        server.route("POST", "/echo", handler=lambda request: (200, {}, request.body))
        requests.get(server.url + "/v1/rates")
        assert server.calls("/v1/rates") == 1

Each request is served on its own thread, so a slow or hanging route does not hold up the others.
Requests are counted as they arrive over TCP, so calls from other processes count too. Unknown
paths answer 404 with a JSON body. Test folders make their own fixture from `LocalServer`
(see `tests/sources/conftest.py`).
"""

from __future__ import annotations

import json as jsonlib
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import urlsplit


class RecordedRequest(NamedTuple):
    """One request as the server received it (also what a dynamic route's handler is given)."""

    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes


# A dynamic route: request in, (status, headers, body) out. A body that is neither bytes nor str
# is sent as JSON.
RouteHandler = Callable[[RecordedRequest], tuple[int, Mapping[str, str | None], Any]]


@dataclass(frozen=True)
class _Route:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str | None] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    handler: RouteHandler | None = None


def _encode(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return jsonlib.dumps(body).encode()


class LocalServer:
    """A threading HTTP server on 127.0.0.1 and a free port, serving canned or dynamic routes."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], _Route] = {}
        self._default_route: _Route | None = None  # answers what no route matches (serve_all)
        self._lock = threading.Lock()  # guards routes, requests and open connections
        self._stopping = threading.Event()  # wakes delayed and hanging handlers on stop
        self._open_connections: set[socket.socket] = set()
        self.requests: list[RecordedRequest] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host}:{port}"
        # A short poll interval: `stop()` waits up to one interval for the serving loop to end.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def route(
        self,
        method: str,
        path: str,
        *,
        status: int = 200,
        json: Any = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str | None] | None = None,
        delay: float = 0.0,
        hang: bool = False,
        handler: RouteHandler | None = None,
    ) -> None:
        """Answer `method path` (query string ignored) from now on; replaces an earlier route.

        `json` is serialized (and Content-Type set); `body` is sent as is. A header given as None
        is left out: `headers={"Content-Length": None}` sends the body without a length and
        closes the connection after it. `delay` waits before answering; `hang` never answers
        until `stop()`. `handler` computes the answer from the request instead.
        """
        response_headers: dict[str, str | None] = {}
        payload = b""
        if json is not None:
            payload = _encode(json)
            response_headers["Content-Type"] = "application/json"
        elif body is not None:
            payload = _encode(body)
        response_headers.update(headers or {})
        with self._lock:
            self._routes[(method.upper(), path)] = _Route(
                status, payload, response_headers, delay, hang, handler
            )

    def serve_all(self, handler: RouteHandler) -> None:
        """Answer every request that no `route` matches with `handler` (e.g. a simulator)."""
        with self._lock:
            self._default_route = _Route(handler=handler)

    def calls(self, path: str | None = None) -> int:
        """How many requests arrived, for one path (query string ignored) or in all."""
        with self._lock:
            if path is None:
                return len(self.requests)
            return sum(1 for request in self.requests if urlsplit(request.path).path == path)

    def stop(self) -> None:
        """Stop serving and close every connection: the port refuses connections afterwards."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        # Kept-alive connections would otherwise go on being served by their handler threads.
        with self._lock:
            connections = list(self._open_connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client

    # The handler's side -------------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> _Route | None:
        with self._lock:
            self.requests.append(request)
            return self._routes.get((request.method, urlsplit(request.path).path), self._default_route)

    def _track(self, connection: socket.socket, is_open: bool) -> None:
        with self._lock:
            if is_open:
                self._open_connections.add(connection)
            else:
                self._open_connections.discard(connection)


def _make_handler(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Headers and body go out in separate writes: without this, Nagle's algorithm holds the
        # body back ~40 ms on a kept-alive connection, and `delay=` routes would lie.
        disable_nagle_algorithm = True

        protocol_version = "HTTP/1.1"  # keep-alive, so that clients can reuse connections

        def setup(self) -> None:
            super().setup()
            server._track(self.connection, True)

        def finish(self) -> None:
            server._track(self.connection, False)
            super().finish()

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = RecordedRequest(
                self.command, self.path, dict(self.headers.items()), self.rfile.read(length)
            )
            route = server._record(request)
            if route is None:
                self._respond(
                    404,
                    {"Content-Type": "application/json"},
                    _encode({"error": f"no route for {self.command} {urlsplit(self.path).path}"}),
                )
                return
            if route.hang:
                server._stopping.wait()
                self.close_connection = True
                return
            if route.delay and server._stopping.wait(route.delay):
                self.close_connection = True
                return
            if route.handler is not None:
                status, headers, body = route.handler(request)
                self._respond(status, headers, _encode(body))
            else:
                self._respond(route.status, route.headers, route.body)

        def _respond(self, status: int, headers: Mapping[str, str | None], body: bytes) -> None:
            all_headers: dict[str, str | None] = {"Content-Length": str(len(body)), **headers}
            try:
                self.send_response(status)
                for name, value in all_headers.items():
                    if value is not None:
                        self.send_header(name, value)
                if all_headers.get("Content-Length") is None:
                    # Without a length, the end of the body is the end of the connection.
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (a timeout, or it stopped reading an oversized body).
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler
