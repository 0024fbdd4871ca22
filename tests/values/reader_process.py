"""A reader in a process of its own, for the cross-process tests (tests/values/test_concurrency.py).

    python tests/values/reader_process.py read --threads 10 --key budget_thresholds --context region=us
    python tests/values/reader_process.py watch --key budget_thresholds --context region=us \
        --until-tier override --timeout 5

The parent passes the database and Redis through the environment, and the script refuses to start
without them (it must never fall back to the settings' own defaults, another database):

    DATABASE_URL     the test database (the parent builds it from connection.settings_dict)
    REDIS_URL        the same Redis database as the parent
    DYNCONFIG_ENV    test
    and the sources' credential variables, as the parent has them.

Protocol, one line each on stdout (flushed), JSON after the first word:

`read`: the process loads its configuration, starts its threads, and once every one waits at
a barrier prints `READY` and waits for a line on stdin (`GO`); all threads are then released
together and call `values.get_value` once. It prints `RESULT {...}` per thread (tier, origin, value, errors, when)
and `DONE`, and exits 0. EOF on stdin (the parent went away) exits 2 without reading.

`watch`: reads once and prints `READY {...}` (the first answer), then reads every `--interval`
seconds, printing `CHANGE {...}` whenever tier or value changes. A line on stdin holding a Unix
time (the moment the parent committed its change) is the reference for `elapsed`. When the
answer is the awaited one (every one given of --until-tier, --until-origin, --until-value
matches) it prints
`SEEN {"at": unix time, "elapsed": at - reference, ...}` and exits 0; after --timeout seconds
(from the reference, or from READY before one arrives) it prints `TIMEOUT {...}` and exits 1.

A watchdog (faulthandler) dumps every thread's stack to stderr and exits 3 after --deadline
seconds, so a hanging engine can never leave this process behind.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REQUIRED_ENVIRONMENT = ("DATABASE_URL", "REDIS_URL", "DYNCONFIG_ENV")


def main(argv: list[str]) -> int:
    arguments = _parser().parse_args(argv)
    missing = [name for name in REQUIRED_ENVIRONMENT if not os.environ.get(name)]
    if missing:
        print(f"ERROR missing environment: {', '.join(missing)}", flush=True)
        return 4
    if arguments.command == "watch" and not (
        arguments.until_tier or arguments.until_origin or arguments.until_value is not None
    ):
        print("ERROR watch needs --until-tier, --until-origin or --until-value", flush=True)
        return 4
    faulthandler.dump_traceback_later(arguments.deadline, exit=True)

    sys.path.insert(0, str(PROJECT_ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "dynconfig_site.settings"
    import django

    django.setup()
    context = _context(arguments.context)
    if arguments.command == "read":
        return _read(arguments, context)
    return _watch(arguments, context)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("read", "watch"):
        command = commands.add_parser(name)
        command.add_argument("--key", required=True)
        command.add_argument("--context", action="append", default=[], metavar="NAME=VALUE")
        command.add_argument("--deadline", type=float, default=50.0, help="watchdog: exit 3 after this long")
    commands.choices["read"].add_argument("--threads", type=int, default=10)
    watch = commands.choices["watch"]  # at least one --until-* is required (checked in main)
    watch.add_argument("--until-tier", default=None, help="the tier the answer must have")
    watch.add_argument("--until-origin", default=None, help="the origin the answer must have")
    watch.add_argument("--until-value", type=json.loads, default=None, help="JSON the value must equal")
    watch.add_argument("--timeout", type=float, default=5.0)
    watch.add_argument("--interval", type=float, default=0.01)
    return parser


def _context(pairs: list[str]) -> dict[str, str]:
    context = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        context[name] = value
    return context


def _say(word: str, data: dict | None = None) -> None:
    print(word if data is None else f"{word} {json.dumps(data, sort_keys=True)}", flush=True)


def _described(answer) -> dict:
    return {
        "tier": answer.provenance.tier,
        "origin": answer.provenance.origin,
        "value": answer.value,
        "errors": list(answer.provenance.errors),
    }


# read ------------------------------------------------------------------------------------------


def _read(arguments: argparse.Namespace, context: dict[str, str]) -> int:
    from django.db import connections

    from values import get_value

    _load_configuration()  # the process is warm; the value's caches stay cold
    start = threading.Barrier(arguments.threads + 1)  # no timeout of its own: the watchdog has one
    results: list[dict] = []
    results_lock = threading.Lock()

    def reader(index: int) -> None:
        # No database connection is opened ahead: each thread opens its own during its read and
        # closes it right after, so that the connections (max_connections is shared with every
        # other test run on the machine) are held for a read, not for the whole wait. Should the
        # server refuse one, the engine fails open (no L3), which changes nothing for the test.
        try:
            start.wait()
            began = time.time()
            try:
                result = _described(get_value(arguments.key, context))
            except Exception as error:  # noqa: BLE001 - reported to the parent, which fails the test
                result = {"exception": f"{type(error).__name__}: {error}"}
            result.update(thread=index, pid=os.getpid(), began=began, ended=time.time())
            with results_lock:
                results.append(result)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=reader, args=(index,), daemon=True) for index in range(arguments.threads)]
    for thread in threads:
        thread.start()
    waited_until = time.monotonic() + 20
    while start.n_waiting < arguments.threads:  # every thread at the barrier
        if time.monotonic() > waited_until:
            _say("ERROR", {"threads_at_barrier": start.n_waiting})
            return 5
        time.sleep(0.005)
    _say("READY")
    line = sys.stdin.readline()
    if line.strip() != "GO":
        start.abort()
        _say("ERROR", {"stdin": line})
        return 2
    start.wait()
    for thread in threads:
        thread.join(timeout=30)
    if any(thread.is_alive() for thread in threads):
        _say("ERROR", {"hung_threads": sum(thread.is_alive() for thread in threads)})
        return 5
    for result in sorted(results, key=lambda result: result["thread"]):
        _say("RESULT", result)
    _say("DONE")
    return 0


def _load_configuration(timeout: float = 20.0) -> None:
    """Load the registry's snapshot from the database, retrying while the server refuses
    connections (a busy machine); without it the engine would serve its built-in types."""
    from django.db import connections

    from values.registry import registry

    deadline = time.monotonic() + timeout
    snapshot = registry.refresh(force=True)
    while snapshot.version is None and time.monotonic() < deadline:
        time.sleep(0.2)
        snapshot = registry.refresh(force=True)
    if snapshot.version is None:
        _say("ERROR", {"configuration": "the database could not be read"})
        sys.exit(6)
    connections.close_all()


# watch -----------------------------------------------------------------------------------------


def _watch(arguments: argparse.Namespace, context: dict[str, str]) -> int:
    from values import get_value

    references: queue.Queue[float] = queue.Queue()

    def listen() -> None:
        for line in sys.stdin:
            try:
                references.put(float(line.strip()))
            except ValueError:
                pass

    threading.Thread(target=listen, daemon=True).start()

    _load_configuration()
    answer = _described(get_value(arguments.key, context))
    _say("READY", answer)
    last = (answer["tier"], answer["value"])
    reference: float | None = None
    deadline = time.time() + arguments.timeout
    while True:
        if reference is None and not references.empty():
            reference = references.get()
            deadline = reference + arguments.timeout
        answer = _described(get_value(arguments.key, context))
        now = time.time()
        if (answer["tier"], answer["value"]) != last:
            last = (answer["tier"], answer["value"])
            _say("CHANGE", {**answer, "at": now})
        if _awaited(answer, arguments):
            if reference is None:
                try:  # the parent writes its reference right after its commit: it is on its way
                    reference = references.get(timeout=2.0)
                except queue.Empty:
                    pass
            _say("SEEN", {**answer, "at": now, "elapsed": None if reference is None else now - reference})
            return 0
        if now > deadline:
            _say("TIMEOUT", {**answer, "at": now, "reference": reference})
            return 1
        time.sleep(arguments.interval)


def _awaited(answer: dict, arguments: argparse.Namespace) -> bool:
    return (
        (arguments.until_tier is None or answer["tier"] == arguments.until_tier)
        and (arguments.until_origin is None or answer["origin"] == arguments.until_origin)
        and (arguments.until_value is None or answer["value"] == arguments.until_value)
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
