"""The incident database file: one SQLite connection (WAL, ``synchronous=FULL``) and one lock.

The agent's stages call in from their threads. Every write is a transaction that commits before the call
returns, so a returned call survives a power cut (FULL sync fsyncs the WAL on commit)."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager, suppress
from pathlib import Path

import sqlite_utils

from edge_agent.incidents import schema
from edge_agent.incidents.errors import StoreError
from edge_agent.shared.sqlitetx import write_tx

_FIX_ACCESS = "check that the folder exists, is writable by the agent's user and the disk is not full"


class LogConnection:
    """The open database, brought up to the current schema; ``tx()`` for a write, ``lock`` for a read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a committed incident or outbox row survives power loss
            self.db.execute("PRAGMA foreign_keys=ON")
            schema.upgrade(self.db, path)
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise StoreError(f"incident database {path}: {exc}: it is damaged or not an SQLite file; move "
                                 "it aside (keep it for the record) and the agent starts a new one") from exc
            raise StoreError(f"incident database {path}: {exc}; {_FIX_ACCESS}") from exc
        except OSError as exc:
            raise StoreError(f"incident database {path}: {exc}; {_FIX_ACCESS}") from exc

    @property
    def version(self) -> int:
        return schema.user_version(self.db)

    def tx(self) -> AbstractContextManager[None]:
        """One write transaction (``BEGIN IMMEDIATE``), committed on leaving, rolled back on an exception."""
        return write_tx(self.db, self.lock)

    def integrity(self) -> str:
        with self.lock:
            return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self.lock:
            with suppress(sqlite3.Error):
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.conn.close()
