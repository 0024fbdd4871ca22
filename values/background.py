"""Refreshes that consumers' reads leave behind, run on this process's background threads.

A consumer's read waits for sources only as long as its read budget (values.resolution). When
the budget runs out, or the sources failed fast, it answers at once with the best it has and
hands the refresh of its pair to this module, which fetches it with the long budget (retries,
rate-limit waits), so that a later read finds the fresh value in the caches.

At most one refresh per pair is pending or running in a process (across processes the engine's
fetch lock sees to it), at most MAX_PENDING wait (past that a refresh is dropped: the next read
or the dispatcher asks again), and nothing here ever blocks the caller. The threads are daemons,
started on first use in each process (so also after a fork), and each job closes its thread's
database connections when it ends.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from contextvars import copy_context
from functools import partial

from django.db import connections

logger = logging.getLogger(__name__)

# Threads per process: refreshes wait mostly on the network, and a few at a time keep a burst of
# cold reads during an outage from holding many source-call threads.
WORKERS = 4
# Refreshes waiting at most; a burst of distinct cold contexts beyond it is refreshed later.
MAX_PENDING = 1000


class BackgroundRefreshes:
    """A bounded queue of refresh jobs, one per key at a time, run by daemon threads."""

    def __init__(self, workers: int = WORKERS, max_pending: int = MAX_PENDING):
        self.workers = workers
        self._jobs: queue.Queue[tuple[str, Callable[[], None]]] = queue.Queue(max_pending)
        self._keys: set[str] = set()  # pending or running
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._started_in: int | None = None  # the pid whose threads serve the queue

    def submit(self, key: str, job: Callable[[], None]) -> bool:
        """Queue `job` for `key` unless one is pending or running already, or the queue is full.
        True if this call queued it, or one was queued already. Never blocks, never raises."""
        with self._lock:
            self._start_if_needed()
            if key in self._keys:
                return True
            try:
                # In the caller's context: the refresh's log lines carry the read's request id.
                self._jobs.put_nowait((key, partial(copy_context().run, job)))
            except queue.Full:
                logger.info("background refresh of %s dropped: %d already waiting", key, self._jobs.maxsize)
                return False
            self._keys.add(key)
            return True

    def is_pending(self, key: str) -> bool:
        with self._lock:
            return key in self._keys

    def wait_until_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or running (tests, benchmarks, a command's exit)."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._keys, timeout)

    def _start_if_needed(self) -> None:
        if self._started_in == os.getpid():
            return
        # A forked child inherits the parent's queue and key set but none of its threads.
        self._jobs = queue.Queue(self._jobs.maxsize)
        self._keys = set()
        self._started_in = os.getpid()
        for number in range(self.workers):
            threading.Thread(target=self._serve, name=f"dynconfig-background-{number}", daemon=True).start()

    def _serve(self) -> None:
        jobs = self._jobs
        while True:
            key, job = jobs.get()
            try:
                job()
            except Exception:  # noqa: BLE001 - a failed refresh must not end the thread; logged
                logger.exception("background refresh of %s failed", key)
            finally:
                connections.close_all()  # this thread's own connections
                with self._idle:
                    self._keys.discard(key)
                    self._idle.notify_all()


refreshes = BackgroundRefreshes()
