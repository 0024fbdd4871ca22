"""Database servers of a test's own, for tests that stop and start them: a private PostgreSQL
cluster and a private Redis, each on a free port, gone when the `with` block ends.

    with private_postgres() as cluster, private_redis() as redis_url:
        environment = {"DATABASE_URL": cluster.database_url, "REDIS_URL": redis_url}
        ...
        cluster.stop()    # immediate: what a crash or a killed server looks like to clients
        cluster.start()   # crash recovery, then connections are accepted again

The suite's own PostgreSQL (tests/environment.py) is never touched. PostgreSQL refuses to run as
root, so its programs run as the `postgres` user (runuser), in a temporary directory it owns.

For a test that runs in one process, `database_unreachable()` is the cheap stand-in: every
query of this process refused, as when PostgreSQL is stopped (the test needs
`django_db(transaction=True)`: its connection is closed).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from django.db import connection

# The system account PostgreSQL's programs run as (the Debian package's).
POSTGRES_USER = "postgres"
# The database the cluster is created with, for the application (`postgres` stays for admin).
DATABASE_NAME = "dynconfig"
# initdb, a start after an immediate stop (crash recovery) and a clean stop, on a loaded
# machine: generous, far below a hang.
SERVER_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_bin_dir() -> Path:
    """The newest installed PostgreSQL's programs (initdb, pg_ctl)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda path: int(Path(path).parts[4]))
    if not found:
        raise RuntimeError("no PostgreSQL server programs under /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster that only this test uses: stop it, start it, read its log."""

    directory: Path  # owned by postgres: data/, the socket, the server log
    port: int

    @property
    def database_url(self) -> str:
        return f"postgres://{POSTGRES_USER}@127.0.0.1:{self.port}/{DATABASE_NAME}"

    @property
    def data_directory(self) -> Path:
        return self.directory / "data"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    def start(self) -> None:
        """Start the server and wait until it accepts connections (after crash recovery)."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.directory}"
        self._pg_ctl("start", "-w", "-t", str(int(SERVER_TIMEOUT)), "-l", str(self.log_file), "-o", options)

    def stop(self) -> None:
        """Stop at once, as a crash would: every connection is cut, nothing is flushed politely."""
        self._pg_ctl("stop", "-m", "immediate", "-w")

    def is_running(self) -> bool:
        command = [str(postgres_bin_dir() / "pg_ctl"), "status", "-D", str(self.data_directory)]
        return _as_postgres(command, check=False).returncode == 0

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _pg_ctl(self, *arguments: str) -> None:
        _as_postgres([str(postgres_bin_dir() / "pg_ctl"), *arguments, "-D", str(self.data_directory)])


@contextmanager
def private_postgres() -> Iterator[PrivateCluster]:
    """A new cluster on a free port, running, with an empty database DATABASE_NAME; stopped
    and deleted on leaving."""
    directory = Path(tempfile.mkdtemp(prefix="dynconfig-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(directory, user=POSTGRES_USER, group=POSTGRES_USER)
    cluster = PrivateCluster(directory=directory, port=free_port())
    try:
        _as_postgres(
            [
                str(postgres_bin_dir() / "initdb"),
                "-D", str(cluster.data_directory),
                "-U", POSTGRES_USER,
                "--auth=trust",  # only 127.0.0.1 and a socket in a private directory reach it
                "--encoding=UTF8",
                "--no-sync",  # a throwaway cluster: durability is not what is tested
            ]
        )
        cluster.start()
        administration = {"host": "127.0.0.1", "port": cluster.port, "user": POSTGRES_USER, "dbname": "postgres"}
        with psycopg.connect(**administration, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {DATABASE_NAME}")
        yield cluster
    finally:
        if cluster.data_directory.exists() and cluster.is_running():
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of its own on a free port, without persistence; yields its URL."""
    with redis_server() as (_, url):
        yield url


@contextmanager
def redis_server() -> Iterator[tuple[subprocess.Popen, str]]:
    """As private_redis, also yielding the server's process, for tests that kill or freeze it."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + SERVER_TIMEOUT
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        yield process, f"redis://127.0.0.1:{port}/0"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def _as_postgres(command: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    # PostgreSQL refuses to run as root; runuser needs no password when root asks.
    wrapped = ["runuser", "-u", POSTGRES_USER, "--", *command] if os.geteuid() == 0 else command
    result = subprocess.run(wrapped, capture_output=True, text=True, timeout=SERVER_TIMEOUT, cwd="/")
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@contextmanager
def database_unreachable() -> Iterator[None]:
    """Every query of this process refused until the block ends (the connection is pointed at
    port 1, where nothing listens), as when PostgreSQL is stopped."""
    database = connection.settings_dict
    port = database["PORT"]
    connection.close()
    database["PORT"] = "1"
    try:
        yield
    finally:
        database["PORT"] = port
        connection.close()
