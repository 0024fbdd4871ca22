"""Change propagation: from an override's commit to a subscribed client's next read seeing it.

    .venv/bin/python bench/run.py --changes     # this section alone (about 30 s)

gunicorn (2 gthread workers of 4 threads: under WSGI a stream holds a thread) serves the project
on the bench's database and Redis. A dynconfig_client with subscribe=True and the server's TTLs
(`max-age`) reads budget_thresholds for one context, fetched from its sources and cached for its
TTL. SAMPLES times the bench changes what that read answers through the API, alternately: an
override for the region appears (POST), then goes (DELETE with If-Match: the sourced value is
back); from the moment the API answers (the change is committed then) it reads with the client
in a loop until the new value comes back: that time is one sample. (An override's answer
itself is never cached by clients: it has no expiry, so its max-age is 0.) Without the
subscription the client would serve its cached answer until its TTL, shown beside.

All traffic goes to 127.0.0.1; gunicorn is stopped at the end, also on an error.
"""

from __future__ import annotations

import os
import queue
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = 50
KEY = "budget_thresholds"
CONTEXT = {"region": "us", "industry": "retail"}
# A sample that never sees its value ends after this: the figure would be a failure, not a wait.
GIVE_UP_AFTER = 30.0
# Between two changes: the previous one settled in every process.
PAUSE = 0.2


def measure_changes(results_dir: Path, samples: int = SAMPLES) -> dict:
    """Milliseconds from each change's commit to the client's read of it (see the docstring)."""
    from access.authentication import token_hash
    from access.models import ApiToken
    from values.models import Override, ValueType

    client_package = str(ROOT / "client")
    if client_package not in sys.path:
        sys.path.insert(0, client_package)
    from dynconfig_client import DynConfigClient

    token = "dcfg_bench_" + secrets.token_hex(16)
    ApiToken.objects.filter(name="bench-changes").delete()
    ApiToken.objects.create(
        name="bench-changes", prefix=token[:8], token_hash=token_hash(token), scopes=["values:read", "values:write"]
    )
    Override.objects.filter(value_type__key=KEY).delete()
    fallback = ValueType.objects.get(key=KEY).fallback_value
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = results_dir / "gunicorn-changes.log"
    process = _start_gunicorn(port, log_path)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    try:
        _wait_until_serving(base, process, log_path)
        with DynConfigClient(base, token=token, subscribe=True, timeout=5.0) as client:
            if not client.wait_subscribed(10):
                raise SystemExit("bench: the client's change stream did not open within 10 s")
            # Fetched from the sources now (a refresh waits for them), then cached for its max-age.
            session.post(f"{base}/api/v1/values/{KEY}/refresh/", params=CONTEXT, timeout=30).raise_for_status()
            sourced = client.get(KEY, **CONTEXT)
            ttl = _max_age(session.get(f"{base}/api/v1/values/{KEY}/", params=CONTEXT, timeout=5))
            samples_ms: list[float] = []
            events_ms: list[float] = []
            listener = _EventTimes(f"{base}/api/v1/values/stream/?keys={KEY}", token)
            override_id = None
            for index in range(samples):
                if override_id is None:  # an override appears...
                    value = {**fallback, "small_threshold": fallback["small_threshold"] + index + 1}
                    response = session.post(
                        f"{base}/api/v1/overrides/",
                        json={"value_type": KEY, "context_match": {"region": "us"}, "value": value,
                              "reason": f"bench changes {index}"},
                        timeout=10,
                    )  # fmt: skip
                    response.raise_for_status()
                    override_id, version = response.json()["id"], response.json()["version"]
                else:  # ...and goes: the sourced value again
                    value = sourced.value
                    response = session.delete(
                        f"{base}/api/v1/overrides/{override_id}/",
                        json={"reason": f"bench changes {index}"},
                        headers={"If-Match": f'"{version}"'},
                        timeout=10,
                    )
                    response.raise_for_status()
                    override_id = None
                committed = time.perf_counter()  # the API answers after the commit
                events_ms.append((listener.next_arrival() - committed) * 1000)
                while client.get(KEY, **CONTEXT).value != value:
                    if time.perf_counter() - committed > GIVE_UP_AFTER:
                        raise SystemExit(f"bench: change {index} not seen within {GIVE_UP_AFTER} s")
                    time.sleep(0.001)
                samples_ms.append((time.perf_counter() - committed) * 1000)
                time.sleep(PAUSE)
            listener.close()
        assert sourced.provenance and sourced.provenance["tier"] in ("primary", "secondary", "l1", "l2", "l3"), sourced
    finally:
        session.close()
        _stop(process)
        Override.objects.filter(value_type__key=KEY, reason__startswith="bench changes").delete()
        ApiToken.objects.filter(name="bench-changes").delete()
    ordered = sorted(samples_ms)
    events = sorted(events_ms)
    return {
        "event_median": statistics.median(events),
        "event_p99": _p99(events),
        "samples": len(ordered),
        "median": statistics.median(ordered),
        "p99": _p99(ordered),
        "max": ordered[-1],
        "ttl": ttl,
    }


def render_changes(result: dict) -> list[str]:
    return [
        f"Change propagation: an override made or deleted through the API → a subscribed dynconfig_client's "
        f"next read sees it ({result['samples']} changes)",
        f"  median {result['median']:.1f} ms   p99 {result['p99']:.1f} ms   max {result['max']:.1f} ms   "
        f"(without subscribe: until the answer's max-age, {result['ttl']:.0f} s here)",
        f"  of which the event's arrival (a raw stream reader beside the client): median {result['event_median']:.1f} ms, "
        f"p99 {result['event_p99']:.1f} ms; the rest is the server processes applying the change (registry check)",
        "  gunicorn 2 gthread workers × 4 threads on 127.0.0.1; the client polls its cache every 1 ms after the commit",
    ]


def _p99(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, max(0, -(-99 * len(ordered) // 100) - 1))]


class _EventTimes:
    """When each change event arrives on a stream read by a thread of its own."""

    def __init__(self, url: str, token: str):
        self._arrivals: queue.Queue[float] = queue.Queue()
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        self._response = requests.get(url, headers=headers, stream=True, timeout=(5, 60))
        self._response.raise_for_status()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        line = bytearray()
        try:
            for byte in self._response.iter_content(chunk_size=1):
                if byte != b"\n":
                    line += byte
                    continue
                if line == b"event: change":
                    self._arrivals.put(time.perf_counter())
                line.clear()
        except (requests.RequestException, OSError, AttributeError, ValueError):
            pass  # closed

    def next_arrival(self) -> float:
        return self._arrivals.get(timeout=GIVE_UP_AFTER)

    def close(self) -> None:
        self._response.close()


def _start_gunicorn(port: int, log_path: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "gunicorn", "dynconfig_site.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", "2", "--worker-class", "gthread", "--threads", "4",
        "--log-level", "warning", "--graceful-timeout", "2",
    ]  # fmt: skip
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "dynconfig_site.settings", "PYTHONPATH": str(ROOT)}
    with open(log_path, "w") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_until_serving(base: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: gunicorn exited ({process.returncode}):\n{log_path.read_text()[-2000:]}")
        try:
            if requests.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: gunicorn did not answer within 30 s:\n{log_path.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM gunicorn's group (its streams end with their workers), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass


def _max_age(response: requests.Response) -> float:
    for directive in response.headers.get("Cache-Control", "").split(","):
        name, _, value = directive.strip().partition("=")
        if name == "max-age":
            return float(value)
    return 0.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
