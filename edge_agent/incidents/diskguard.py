"""A full disk degrades the box, it never stops it.

The state directory holds a reserve file (``incident_log.reserve_mb``). When a write of an incident or an alert
fails because the filesystem is full, the reserve is given up so that the write can go through; while the disk is
short, snapshots and rejected input are dropped (counted), and writes that still fail wait in memory, in order,
until there is room again (``UnwrittenQueue``). When space returns the reserve is taken back and writing goes on by
itself, with no restart.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RESERVE_NAME = ".disk-reserve"
UNWRITTEN_MAX = 20_000  # writes held in memory while the disk is full (about an hour of a busy site)


def is_disk_full(exc: BaseException) -> bool:
    """An error that means "no space left", from SQLite or from the filesystem."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "disk is full" in str(exc) or "disk I/O error" in str(exc)
    return False


@dataclass(slots=True)
class DiskCounters:
    dropped_snapshots: int = 0
    dropped_rejects: int = 0
    unwritten_lost: int = 0  # writes dropped because the in-memory queue was full too
    full_episodes: int = 0


class DiskGuard:
    """The reserve file and the "disk is full" state of one state directory."""

    def __init__(self, folder: Path, reserve_bytes: int, free: Callable[[Path], int] | None = None) -> None:
        self.folder = folder
        self.reserve = folder / RESERVE_NAME
        self.reserve_bytes = reserve_bytes
        self._free = free or (lambda p: shutil.disk_usage(p).free)
        self.full = False
        self.counters = DiskCounters()

    def free_bytes(self) -> int | None:
        try:
            return int(self._free(self.folder))
        except OSError:
            return None

    def hold_reserve(self) -> bool:
        """Create the reserve file when it is missing and there is room for it and a margin besides."""
        if self.reserve_bytes <= 0 or self.reserve.exists():
            return True
        free = self.free_bytes()
        if free is None or free < 2 * self.reserve_bytes:
            return False
        try:
            with open(self.reserve, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, self.reserve_bytes)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            self.reserve.unlink(missing_ok=True)
            log.warning("cannot hold a %d MB disk reserve in %s: %s", self.reserve_bytes >> 20, self.folder, exc)
            return False
        return True

    def give_up_reserve(self) -> bool:
        """The disk is full: free the reserve so incidents and the outbox can be written. True if it freed any."""
        if not self.full:
            self.full = True
            self.counters.full_episodes += 1
            log.error("the disk of %s is full: snapshots and rejected input are dropped, retention frees space, "
                      "incidents and alerts keep being written", self.folder)
        try:
            self.reserve.unlink()
        except FileNotFoundError:
            return False
        log.warning("disk reserve given up (%d MB) for incidents and the outbox", self.reserve_bytes >> 20)
        return True

    def check(self) -> bool:
        """Update the state from the free space; returns whether the disk counts as full."""
        free = self.free_bytes()
        if free is None:
            return self.full
        low = free < max(self.reserve_bytes, 1 << 20)
        if low and not self.full:
            self.give_up_reserve()
        elif self.full and not low and free >= 2 * self.reserve_bytes and self.hold_reserve():
            self.full = False
            log.info("the disk of %s has room again (%d MB free): writing as usual", self.folder, free >> 20)
        return self.full


class UnwrittenQueue:
    """Incident-log writes that failed for want of space, kept in order and retried until they go through."""

    def __init__(self, counters: DiskCounters, limit: int = UNWRITTEN_MAX) -> None:
        self._items: deque[tuple[str, Callable[[], None]]] = deque()
        self.counters = counters
        self.limit = limit

    def __len__(self) -> int:
        return len(self._items)

    def add(self, what: str, write: Callable[[], None]) -> None:
        if len(self._items) >= self.limit:
            dropped, _ = self._items.popleft()
            self.counters.unwritten_lost += 1
            log.error("disk full for too long: %s could not be written and is lost", dropped)
        self._items.append((what, write))

    def flush(self) -> int:
        """Write what waits, oldest first, until one fails for want of space again. Returns how many went."""
        done = 0
        while self._items:
            what, write = self._items[0]
            try:
                write()
            except Exception as exc:
                if is_disk_full(exc):
                    break
                log.exception("%s could not be written and is dropped", what)
            self._items.popleft()
            done += 1
        return done
