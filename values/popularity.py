"""Which contexts consumers read, counted cheaply, so that refreshes go where reads are.

`record()` is called by every consumer's read (values.resolution.get_value) once its canonical
context is known. It adds one to a counter in this process's memory: a dict lookup and an
integer increment, no lock, no I/O. Two threads incrementing at once may lose a count; these are
popularity figures, not accounts, and the ranking they feed survives that.

The counts reach the database (values.models.ContextReads) at most every FLUSH_INTERVAL seconds:
the first read that notices the interval passed writes them (one atomic `F()` increment per
context, a row created on first sight, tolerant of another process creating it at the same
moment), and the dispatcher flushes its own process before it ranks contexts. One exception: the
first read of a context in a process writes that context's row at once, so that the dispatcher learns of every context read
anywhere, even in a process that reads rarely or exits soon (a command); that read is a cold one
anyway, it happens once per context per process, and it writes nothing else, so that a burst of
new contexts costs each read one row, not all of them. A read inside a
transaction (`atomic`) leaves the flush to a later read, so that it never adds writes or locks
to a caller's transaction. Recording fails open: an error is logged and the read goes on.
Reads made with `use_cache=False` (refreshes, an operator's diagnosis) are not counted: a
refresh must not make its own context more popular.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from values.models import ContextReads
from values.registry import registry

logger = logging.getLogger(__name__)

# At most this many seconds of counts are only in memory: popularity moves over hours, and one
# write round per process every 10 s costs the database nothing noticeable.
FLUSH_INTERVAL = 10.0
# How many contexts a process remembers having seen (each one's first read flushes at once);
# past it the memory starts over, which costs one more early flush per context.
KNOWN_CONTEXTS_LIMIT = 10_000


def _nothing_logged() -> None:
    pass


# Counts the reads logged elsewhere and not yet given to `record`: values.resolution's L1 fast
# path logs its hits and sets this (it sits above this module). Called before each flush and by
# `pending()`, so that they see every read made so far.
count_logged_reads: Callable[[], None] = _nothing_logged


class ReadCounter:
    """Counts per (value type key, canonical context key), kept in memory until flushed."""

    def __init__(self, flush_interval: float = FLUSH_INTERVAL):
        self.flush_interval = flush_interval
        # (key, context_key) -> [reads, canonical context]; replaced whole by each flush.
        self._pending: dict[tuple[str, str], list] = {}
        self._known: set[tuple[str, str]] = set()  # contexts this process has read before
        self._flush_due_at = time.monotonic() + flush_interval
        self._flushing = threading.Lock()

    def record(
        self, key: str, context_key: str, context: Mapping[str, Any], *, is_consumer_read: bool = True, reads: int = 1
    ) -> None:
        """Count one read (or `reads` at once: the L1 hits values.resolution counts later); flush
        if the interval passed. Never raises."""
        if not is_consumer_read:
            return
        try:
            entry = self._pending.get((key, context_key))
            is_first_sight = False
            if entry is None:  # the first read of this context since the last flush
                entry = self._pending[(key, context_key)] = [0, context]
                if (key, context_key) not in self._known:
                    self._remember((key, context_key))
                    is_first_sight = True  # never seen by this process: written now
            entry[0] += reads
            if is_first_sight:
                self._write_first_sight(key, context_key)
            elif time.monotonic() >= self._flush_due_at:
                self._flush_from_read()
        except Exception:  # noqa: BLE001 - counting must never break a read: fail open, log
            logger.exception("read of %s in [%s] not counted", key, context_key)

    @property
    def flush_due_at(self) -> float:
        """When (time.monotonic()) the next read should flush: values.resolution's L1 fast path
        leaves a read to the full path from then on, so that a reading thread flushes."""
        return self._flush_due_at

    def pending(self) -> dict[tuple[str, str], int]:
        """What is counted and not yet flushed (for tests and diagnosis)."""
        count_logged_reads()
        return {name: entry[0] for name, entry in list(self._pending.items())}

    def clear(self) -> None:
        self._pending = {}
        self._known = set()

    def _remember(self, name: tuple[str, str]) -> None:
        if len(self._known) >= KNOWN_CONTEXTS_LIMIT:
            self._known = set()
        self._known.add(name)

    def flush(self, *, now: datetime | None = None) -> int:
        """Add the counts to the database now; returns how many contexts were written.

        A database error is logged and those counts are dropped (they are approximate anyway).
        """
        self._flush_due_at = time.monotonic() + self.flush_interval  # first: the reads counted next do not flush
        count_logged_reads()
        pending, self._pending = self._pending, {}
        if not pending:
            return 0
        now = now or timezone.now()
        snapshot = registry.snapshot()
        written = 0
        try:
            # Sorted: processes flushing the same rows take their locks in the same order.
            for (key, context_key), (reads, context) in sorted(pending.items(), key=lambda item: item[0]):
                value_type = snapshot.value_type(key)
                if value_type is None or value_type.id is None:
                    continue  # a built-in type the database does not hold: nothing to refresh
                _add_reads(value_type.id, context_key, context, reads, now)
                written += 1
        except DatabaseError as error:
            logger.warning("read counts not written, %d contexts dropped: %s", len(pending) - written, error)
        return written

    def _flush_from_read(self) -> None:
        if connection.in_atomic_block:
            return  # not inside a caller's transaction: a later read flushes
        if not self._flushing.acquire(blocking=False):
            return  # another thread of this process is flushing
        try:
            self.flush()
        finally:
            self._flushing.release()

    def _write_first_sight(self, key: str, context_key: str) -> None:
        """The first read of a context in this process: its one row written now (one statement
        for a context new to the database), the other counts left for the interval's flush, so
        that a burst of new contexts does not make one read write them all."""
        if connection.in_atomic_block:
            self._flush_due_at = 0.0  # not inside a caller's transaction: a later read flushes
            return
        entry = self._pending.pop((key, context_key), None)
        if entry is None:
            return
        value_type = registry.snapshot().value_type(key)
        if value_type is None or value_type.id is None:
            return  # a built-in type the database does not hold: nothing to refresh
        try:
            _add_reads(value_type.id, context_key, entry[1], entry[0], timezone.now())
        except DatabaseError as error:
            logger.warning("read count of [%s] not written: %s", context_key, error)


def _add_reads(value_type_id: int, context_key: str, context: Mapping[str, Any], reads: int, now: datetime) -> None:
    """One atomic increment of a context's reads, the row created on first sight."""
    rows = ContextReads.objects.filter(value_type_id=value_type_id, context_key=context_key)
    if rows.update(reads=F("reads") + reads, last_read_at=now):
        return
    try:
        with transaction.atomic():
            ContextReads.objects.create(
                value_type_id=value_type_id,
                context_key=context_key,
                context=dict(context),
                reads=reads,
                last_read_at=now,
            )
    except IntegrityError:
        # Another process created the row between our UPDATE and INSERT: add to it.
        rows.update(reads=F("reads") + reads, last_read_at=now)


counter = ReadCounter()
record = counter.record
flush = counter.flush
