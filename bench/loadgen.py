"""A small HTTP load generator, the fallback when wrk is not installed.

    python bench/loadgen.py http://127.0.0.1:8000/path --connections 16 --duration 10

Runs in its own process (bench/run.py starts it as a subprocess), `--connections` threads each
with one keep-alive connection (reopened when the server closes it, as gunicorn's sync workers
do after every response), for `--duration` seconds, then stops by itself. It refuses any host
but the loopback. Prints one JSON line: requests, requests_per_second, non_2xx, errors.

It is slower than wrk (one Python process, the GIL), so its figures are lower bounds of what the
server can do; the ratio of two endpoints measured alike is still meaningful.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import socket
import threading
import time
from urllib.parse import urlsplit


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(url: str, connections: int, duration: float) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    if not is_loopback(host):
        raise SystemExit(f"loadgen sends traffic to the loopback only, not to {host!r}")
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + duration
    totals = {"requests": 0, "non_2xx": 0, "errors": 0}
    lock = threading.Lock()

    def worker() -> None:
        done = non_2xx = errors = 0
        connection: http.client.HTTPConnection | None = None
        while time.monotonic() < deadline:
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(host, port, timeout=5)
                connection.request("GET", target, headers={"Accept": "application/json"})
                response = connection.getresponse()
                response.read()
                done += 1
                if not 200 <= response.status < 300:
                    non_2xx += 1
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException, socket.timeout):
                errors += 1
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()
        with lock:
            totals["requests"] += done
            totals["non_2xx"] += non_2xx
            totals["errors"] += errors

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + 10)
    elapsed = time.monotonic() - started
    return {**totals, "seconds": round(elapsed, 3), "requests_per_second": totals["requests"] / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    print(json.dumps(run(args.url, args.connections, args.duration)))


if __name__ == "__main__":
    main()
