"""A process calling one source through `call_source`, for the cross-process tests of the circuit
breaker and the rate limit (tests/sources/test_breaker.py, tests/sources/test_ratelimit.py).

    python tests/sources/source_process.py --source '{"name": "...", "base_url": "...", ...}'

`--source` is the SourceConfig as JSON (breaker_recovery_timeout in seconds; the request is a
GET of `path`, the answer's JSON taken as is). The parent passes the test database and Redis
through the environment, and the script refuses to start without them (it must never fall back
to the settings' own defaults): DATABASE_URL, REDIS_URL, DYNCONFIG_ENV=test.

Protocol: the process prints `READY` once Django is set up and Redis answers, then takes one JSON
command per line on stdin and answers each with one line `RESULT {...}` (flushed):

    {"op": "call", "threads": 3, "budget": 2.0, "start_at": <unix time>}
        `threads` calls at once, released together at `start_at` (default: now);
        RESULT {"outcomes": ["ok" | error kind, ...]}
    {"op": "hammer", "seconds": 1.0, "budget": 0.2, "start_at": <unix time>}
        calls one after another from `start_at` until `seconds` later;
        RESULT {"outcomes": {"ok": n, "rate_limited": m, ...}, "waited": longest call in seconds}

EOF on stdin exits 0. A watchdog (faulthandler) dumps the stacks and exits 3 after --deadline
seconds, so that a hang can never leave this process behind. The tests drive it through
`SourceProcess` (below), with the environment `process_environment()` builds.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))  # run as a script, the project is not on the path yet

from tests.processes import LineProcess, child_environment  # noqa: E402
REQUIRED_ENVIRONMENT = ("DATABASE_URL", "REDIS_URL", "DYNCONFIG_ENV")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, type=json.loads)
    parser.add_argument("--deadline", type=float, default=40.0, help="watchdog: exit 3 after this long")
    arguments = parser.parse_args(argv)
    missing = [name for name in REQUIRED_ENVIRONMENT if not os.environ.get(name)]
    if missing:
        _say("ERROR", {"missing environment": missing})
        return 4
    faulthandler.dump_traceback_later(arguments.deadline, exit=True)

    os.environ["DJANGO_SETTINGS_MODULE"] = "dynconfig_site.settings"
    import django

    django.setup()
    from sources.breaker import breaker_state
    from sources.health import recorder

    source = _source(arguments.source)
    if breaker_state(source.name).store != "redis":
        _say("ERROR", {"redis": "not reachable"})
        return 5
    _say("READY")
    for line in sys.stdin:
        command = json.loads(line)
        _wait_until(command.get("start_at"))
        if command["op"] == "call":
            result = {"outcomes": _call_at_once(source, command["threads"], command["budget"])}
        elif command["op"] == "hammer":
            result = _hammer(source, command["seconds"], command["budget"])
        else:
            _say("ERROR", {"unknown op": command["op"]})
            continue
        recorder.flush()  # the calls are on record before the test hears of them (it may kill us next)
        _say("RESULT", result)
    return 0


def _source(data: dict):
    from sources.adapters.base import SourceConfig

    data = dict(data)
    path = data.pop("path")
    data["breaker_recovery_timeout"] = timedelta(seconds=data["breaker_recovery_timeout"])
    return SourceConfig(kind="http_json", request_template={"method": "GET", "path": path}, **data)


def _one_call(source, budget: float) -> str:
    from sources.adapters.base import SourceCall, SourceError
    from sources.calls import call_source

    try:
        call_source(SourceCall(source=source, value_type="test", context={}, timeout_budget=budget))
    except SourceError as error:
        return error.kind.value
    return "ok"


def _call_at_once(source, threads: int, budget: float) -> list[str]:
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def run() -> None:
        start.wait()
        outcome = _one_call(source, budget)
        with lock:
            outcomes.append(outcome)

    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sorted(outcomes)


def _hammer(source, seconds: float, budget: float) -> dict:
    outcomes: Counter[str] = Counter()
    longest = 0.0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        began = time.monotonic()
        outcome = _one_call(source, budget)
        outcomes[outcome] += 1
        longest = max(longest, time.monotonic() - began)
        if outcome != "ok":
            time.sleep(0.005)  # hammering, not spinning: two of these share a busy machine
    return {"outcomes": dict(outcomes), "waited": longest}


def _wait_until(moment: float | None) -> None:
    if moment is not None:
        time.sleep(max(0.0, moment - time.time()))


def _say(word: str, data: dict | None = None) -> None:
    print(word if data is None else f"{word} {json.dumps(data, sort_keys=True)}", flush=True)


# The parent's side ------------------------------------------------------------------------------


class SourceProcess(LineProcess):
    """This script in a subprocess, driven from a test: `command()` sends a line, `result()`
    waits for its answer. Use as a context manager: the process is killed and reaped on exit."""

    def __init__(self, source: dict, environment: dict[str, str], startup_timeout: float = 40.0):
        import tempfile

        stderr = tempfile.NamedTemporaryFile("w+", suffix=".stderr")
        super().__init__(Path(__file__), ["--source", json.dumps(source)], environment, stderr, "source process")
        self._startup_timeout = startup_timeout

    def ready(self) -> None:
        self.expect("READY", self._startup_timeout)

    def command(self, **command) -> None:
        self.send(json.dumps(command))

    def result(self, timeout: float = 20.0) -> dict:
        return self.expect("RESULT", timeout)


def process_environment() -> dict[str, str]:
    """The environment of a SourceProcess: this test's database and Redis, the test settings."""
    return child_environment(LOG_LEVEL="ERROR")



if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
