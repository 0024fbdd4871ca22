"""The README's first command, end to end: `bin/start` in a subprocess, as a developer runs it.

One platform is started for the module, on the embedded default in a temporary directory
(SQLite, no Redis, the filesystem broker) with the development environment, whose
budget_classification refreshes every PT3S here and whose dispatcher runs every second. The
tests read a value over HTTP, wait for a scheduled refresh to land in the database, check that a
dying process takes the others down, and finally stop it with Ctrl-C (SIGINT to its process
group) and look for anything left behind in its session. The platform runs in a session of its
own, so that whatever happens, the fixture kills every process in it at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "bin" / "start"
READY_SECONDS = 90  # setup (bin/setup, migrate, sync_config, ensure_admin) and first answer
REFRESH_SECONDS = 60
STOP_SECONDS = 20
SHORT_SCHEDULE = "PT3S"
CONTEXT = {"region": "us", "industry": "retail"}
DEVELOPMENT_SOURCES = {"market_research_api", "industry_benchmarks_api"}  # budget_thresholds' primary tier
CACHE_TIERS = {"l1", "l2", "l3"}  # an answer from these was not fetched by the read that got it
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
# Variables of this test process (tests/environment.py) that would steer the platform elsewhere.
NOT_INHERITED = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DYNCONFIG_SIMULATOR_URL", "PORT"}


class Platform:
    """A running `bin/start`: its process (a session leader), environment, port and output."""

    def __init__(self, process: subprocess.Popen, env: dict[str, str], port: int, log: Path):
        self.process = process
        self.env = env
        self.port = port
        self.log = log
        self.timings: dict[str, float] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def output(self, last: int = 60) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-last:])

    def get_json(self, path: str) -> dict:
        with _LOCAL.open(self.url + path, timeout=10) as response:
            return json.load(response)

    def get_value_from_database(self) -> dict:
        """`manage.py get_value --json` in a fresh process: no L1, no L2 here, so the database's answer."""
        command = [sys.executable, "manage.py", "get_value", "budget_thresholds", "--json"]
        command += [f"--context={name}={value}" for name, value in CONTEXT.items()]
        result = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _session_members(session: int) -> list[str]:
    """Every process in this session, from /proc (the platform's children have groups of their own)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        state, _parent, _group, member_session = stat.rsplit(")", 1)[1].split()[:4]
        # A zombie has exited already; it only waits to be reaped by whoever adopted it.
        if int(member_session) == session and state != "Z":
            members.append(f"{entry.name} ({state}) {cmdline.strip()}")
    return members


def _kill_session(session: int) -> None:
    for member in _session_members(session):
        try:
            os.kill(int(member.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _development_config(directory: Path) -> Path:
    """A copy of config/environments whose development budget_classification refreshes every few seconds."""
    shutil.copytree(ROOT / "config" / "environments", directory)
    development = directory / "development.yaml"
    text = development.read_text()
    assert text.count('update_frequency: "PT5M"') == 1, "development.yaml no longer looks as expected"
    development.write_text(text.replace('update_frequency: "PT5M"', f'update_frequency: "{SHORT_SCHEDULE}"'))
    return directory


def _platform_env(tmp: Path, port: int, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in NOT_INHERITED}
    env.update(
        PORT=str(port),
        DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}",
        DYNCONFIG_VAR_DIR=str(tmp / "var"),
        DYNCONFIG_ENV="development",
        DYNCONFIG_CONFIG_DIR=str(tmp / "environments"),
        DYNCONFIG_DISPATCH_INTERVAL="1",
        DYNCONFIG_ADMIN_PASSWORD="platform-smoke-test-password",
    )
    env.update(extra)
    return env


def _wait_for_output(platform: Platform, text: str, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while text not in platform.log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            pytest.fail(f"bin/start never printed {text!r}:\n{platform.output()}")
        time.sleep(0.1)


def _wait_until_healthy(platform: Platform, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if platform.process.poll() is not None:
            pytest.fail(f"bin/start exited with {platform.process.returncode}:\n{platform.output()}")
        try:
            if platform.get_json("healthz") == {"status": "ok"}:
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"no /healthz within {seconds} s:\n{platform.output()}")


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("platform")
    _development_config(tmp / "environments")
    port = _free_port()
    env = _platform_env(tmp, port)
    log = tmp / "bin-start.log"
    began = time.monotonic()
    with open(log, "wb") as output:
        # A session of its own: the terminal's Ctrl-C is a SIGINT to this group, and every process
        # the platform starts can be found (and killed) by its session id.
        process = subprocess.Popen(
            [str(START)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    running = Platform(process, env, port, log)
    try:
        _wait_until_healthy(running, READY_SECONDS)
        running.timings["healthy"] = time.monotonic() - began
        yield running
    finally:
        _kill_session(process.pid)
        process.kill()
        process.wait()
        print("bin/start timings (s):", {name: round(value, 1) for name, value in running.timings.items()})


def test_start__first_command__serves_a_value_from_the_development_sources(platform):
    answer = platform.get_json("api/v1/values/budget_thresholds/?region=us&industry=retail")

    provenance = answer["provenance"]
    # Fetched by this read from the simulators, or already by a refresh: never a fallback.
    assert provenance["tier"] in {"primary"} | CACHE_TIERS, answer
    assert {source["name"] for source in provenance["sources"]} == DEVELOPMENT_SOURCES
    assert answer["value"]["micro_threshold"] < answer["value"]["enterprise_threshold"]
    _wait_for_output(platform, '"GET /simulators/market_research/')  # this web process serves them
    _wait_for_output(platform, "platform | DynConfig is up: " + platform.url)
    _wait_for_output(platform, "platform | Created admin user 'admin'")


def test_start__scheduled_refresh__lands_without_a_read(platform):
    if not (ROOT / "values" / "tasks.py").exists():
        pytest.xfail("refresh tasks not built yet (values/tasks.py)")
    began = time.monotonic()
    first = platform.get_value_from_database()  # fetched by a read if no one had yet
    seen = {first["provenance"]["fetched_at"]}
    own_fetches = set() if first["provenance"]["tier"] in CACHE_TIERS else {first["provenance"]["fetched_at"]}
    deadline = began + REFRESH_SECONDS
    while time.monotonic() < deadline:
        assert platform.process.poll() is None, platform.output()
        answer = platform.get_value_from_database()
        provenance = answer["provenance"]
        fetched_at = provenance["fetched_at"]
        if provenance["tier"] not in CACHE_TIERS:
            own_fetches.add(fetched_at)  # this read fetched (its L3 row had expired): not a refresh
        elif fetched_at not in own_fetches and _later(fetched_at, max(seen, key=_parse)):
            platform.timings["refresh seen"] = time.monotonic() - began
            assert {source["name"] for source in provenance["sources"]} == DEVELOPMENT_SOURCES
            return
        seen.add(fetched_at)
        time.sleep(1)
    pytest.fail(
        f"no scheduled refresh within {REFRESH_SECONDS} s (update_frequency {SHORT_SCHEDULE}); "
        f"fetched_at stayed {sorted(seen)}:\n{platform.output()}"
    )


def test_start__one_process_dies__the_others_stop_and_the_status_is_not_zero(platform, tmp_path):
    # A second platform on the first one's port: its web server cannot bind, and exits.
    env = dict(
        platform.env, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", DYNCONFIG_VAR_DIR=str(tmp_path / "var")
    )
    began = time.monotonic()
    second = subprocess.Popen(
        [str(START)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        output, _ = second.communicate(timeout=READY_SECONDS)
        left_behind = _session_members(second.pid)
    finally:
        _kill_session(second.pid)
        second.kill()
        second.wait()
    platform.timings["second start failed"] = time.monotonic() - began

    assert second.returncode == 1, output[-3000:]
    assert "web exited with status 1: stopping the others" in output, output[-3000:]
    assert "stopped (web 1, worker " in output, output[-3000:]
    assert left_behind == []
    assert platform.process.poll() is None  # the first one is untouched


def test_start__ctrl_c__stops_every_process_cleanly(platform):
    session = platform.process.pid
    assert len(_session_members(session)) >= 4, _session_members(session)  # bin/platform, web, worker, beat
    began = time.monotonic()

    os.killpg(session, signal.SIGINT)  # what Ctrl-C in its terminal sends
    try:
        status = platform.process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"bin/start still running {STOP_SECONDS} s after Ctrl-C:\n{platform.output()}")
    platform.timings["stopped"] = time.monotonic() - began

    assert status == 0, platform.output()
    assert "stopped (web 0, worker 0, beat 0)" in platform.output(), platform.output()
    with pytest.raises(ProcessLookupError):
        os.killpg(session, 0)
    assert _session_members(session) == []


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def _later(stamp: str, than: str) -> bool:
    return _parse(stamp) > _parse(than)
