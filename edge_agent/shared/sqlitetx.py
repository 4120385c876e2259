"""The one SQLite write transaction of the product's databases (the incident log and the command post's store)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import sqlite_utils


@contextmanager
def write_tx(db: sqlite_utils.Database, lock: threading.RLock) -> Iterator[None]:
    """One write transaction (``BEGIN IMMEDIATE``) under ``lock``, committed on leaving, rolled back on an
    exception: for any SQLite file of the product opened in autocommit mode (``isolation_level=None``)."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            db.execute("COMMIT")  # a full disk can fail the commit itself: rolled back below
        except BaseException:
            if db.conn.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
