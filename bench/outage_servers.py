#!/usr/bin/env python
"""The outage section's upstreams, in a process of their own (bench/outage.py starts it).

    .venv/bin/python bench/outage_servers.py
    {"answering": "http://127.0.0.1:41023", "hanging": "http://127.0.0.1:39611"}

Two `tests/servers.py` LocalServers on 127.0.0.1: `answering` serves budget_thresholds' two
primary paths as the bench's own source server does (after 100 ms), `hanging` accepts every
request and never answers it. Both count the requests they receive, which
`GET <url>/_bench/requests` returns (`{"requests": n}`, itself not counted). It prints their
URLs as one JSON line, serves until its standard input closes (or SIGTERM), then stops both.

Why another process: a real upstream does not share the readers' interpreter. In the bench's
process, the servers' threads would wait for the GIL behind 16 readers and their source calls,
and a source that answers after 100 ms would answer late for a reason no deployment has.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402 - after the path is set
    INDUSTRY_BENCHMARKS,
    INDUSTRY_BENCHMARKS_ANSWER,
    MARKET_RESEARCH,
    MARKET_RESEARCH_ANSWER,
)
from tests.servers import LocalServer  # noqa: E402

# The answering source of "one of two hanging": a healthy API answers in tens of milliseconds,
# well inside the 150 ms read budget (the cold-read figure's 100 ms sources are slow on purpose).
ANSWERING_DELAY = 0.03

COUNT_PATH = "/_bench/requests"


def counted(server: LocalServer) -> LocalServer:
    """`server` with COUNT_PATH answering how many other requests it received."""
    server.route(
        "GET", COUNT_PATH, handler=lambda request: (200, {}, {"requests": server.calls() - server.calls(COUNT_PATH)})
    )
    return server


def on_sigterm(signum, frame):  # noqa: ARG001 - the signal handler's signature
    raise SystemExit(0)  # through main's finally block, which stops the servers


def main() -> int:
    released = threading.Event()

    def never_answer(request):  # noqa: ARG001 - a route handler's signature
        released.wait()
        return 503, {}, b""

    answering = counted(LocalServer())
    # As the bench's own source server (bench/run.py:start_source_server): no Nagle delay.
    answering._httpd.RequestHandlerClass.disable_nagle_algorithm = True
    answering.route("GET", MARKET_RESEARCH[1], json=MARKET_RESEARCH_ANSWER, delay=ANSWERING_DELAY)
    answering.route("GET", INDUSTRY_BENCHMARKS[1], json=INDUSTRY_BENCHMARKS_ANSWER, delay=ANSWERING_DELAY)
    hanging = counted(LocalServer())
    # World Bank's path names the region (/v2/country/R00;US/...): no fixed route would catch
    # it, so every path hangs, through the catch-all.
    hanging.serve_all(never_answer)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        print(json.dumps({"answering": answering.url, "hanging": hanging.url}), flush=True)
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    finally:
        released.set()
        answering.stop()
        hanging.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
