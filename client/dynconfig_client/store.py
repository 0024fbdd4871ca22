"""The persistent last-known-good store: one SQLite file, one row per (key, context).

Every answer the server gives is written here (and every 304 refreshes the row's time), so that
a process started while the server is down, or a client made after a restart, still has the last
values it saw. SQLite in WAL mode is safe across threads and processes: readers never wait for
a writer, and writers wait for each other up to BUSY_TIMEOUT.

The store is a fallback: a failure of its own (a locked or unwritable file, a full disk, a
corrupt database) is logged and never raised to the caller, who then simply gets the next
fallback (a default).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("dynconfig_client")

# Writers from several processes queue for the lock this long before a write is given up (and
# logged): far longer than any write takes, far shorter than a caller would wait for a value.
BUSY_TIMEOUT = 2.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT NOT NULL,
    context TEXT NOT NULL,
    answer TEXT NOT NULL,
    etag TEXT,
    stored_at REAL NOT NULL,
    PRIMARY KEY (key, context)
)
"""


@dataclass(frozen=True)
class StoredAnswer:
    answer: str  # the server's JSON answer, as received
    etag: str | None
    stored_at: float  # seconds since the epoch: when the server last gave or confirmed it


class LastKnownStore:
    """Rows keyed by the requested key and the canonical requested context (a JSON text)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # one connection, used by one thread at a time
        self._connection: sqlite3.Connection | None = None
        self._pid = 0  # the process that opened the connection: a fork must not share it
        self._is_closed = False

    def get(self, key: str, context: str) -> StoredAnswer | None:
        try:
            with self._lock:
                row = self._connect().execute(
                    "SELECT answer, etag, stored_at FROM answers WHERE key = ? AND context = ?",
                    (key, context),
                ).fetchone()
        except (sqlite3.Error, OSError) as error:
            logger.warning("last-known store %s unreadable: %s", self.path, error)
            return None
        if row is None:
            return None
        return StoredAnswer(answer=row[0], etag=row[1], stored_at=row[2])

    def put(self, key: str, context: str, *, answer: str, etag: str | None, stored_at: float) -> None:
        self._write(
            "INSERT INTO answers (key, context, answer, etag, stored_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key, context) DO UPDATE SET "
            "answer = excluded.answer, etag = excluded.etag, stored_at = excluded.stored_at",
            (key, context, answer, etag, stored_at),
        )

    def touch(self, key: str, context: str, *, stored_at: float) -> None:
        """The server confirmed the stored answer (304): only its time changes."""
        self._write(
            "UPDATE answers SET stored_at = ? WHERE key = ? AND context = ?", (stored_at, key, context)
        )

    def close(self) -> None:
        with self._lock:
            self._is_closed = True
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    def _write(self, statement: str, parameters: tuple[object, ...]) -> None:
        try:
            with self._lock:
                self._connect().execute(statement, parameters)
        except (sqlite3.Error, OSError) as error:
            logger.warning("last-known store %s not written: %s", self.path, error)

    def _connect(self) -> sqlite3.Connection:
        """The connection of this process, opened on first use (under the lock)."""
        if self._is_closed:
            raise sqlite3.ProgrammingError("the store is closed")
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        # A connection inherited through fork() belongs to the parent: leave it, open our own.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            # In WAL mode, NORMAL loses at most the last writes on a power cut, never consistency.
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(_SCHEMA)
        except BaseException:
            connection.close()
            raise
        self._connection, self._pid = connection, os.getpid()
        return connection
