"""The incident database (one SQLite file, WAL): for now the rejected-input table every sensor writes to.

Bad input is never silently dropped: each rejected line or frame is kept here with its sensor, time and
reason, bounded to the newest ``max_rejects`` rows (oldest first out).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils


@dataclass(frozen=True, slots=True)
class Rejected:
    sensor: str
    ts: float
    reason: str
    data: bytes


class IncidentStore:
    def __init__(self, path: Path | str, max_rejects: int = 10_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rejects = max_rejects
        self._lock = threading.Lock()
        conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # rejects are diagnostics; incidents will use FULL
        if "rejected_input" not in self.db.table_names():
            self.db["rejected_input"].create(
                {"id": int, "sensor": str, "ts": float, "reason": str, "data": bytes}, pk="id"
            )
            self.db["rejected_input"].create_index(["sensor", "ts"])

    def add_rejects(self, rows: Iterable[Rejected]) -> int:
        batch = [{"sensor": r.sensor, "ts": r.ts, "reason": r.reason[:500], "data": r.data[:512]} for r in rows]
        if not batch:
            return 0
        with self._lock, self.db.conn:
            self.db["rejected_input"].insert_all(batch)
            self.db.execute(
                "DELETE FROM rejected_input WHERE id <= (SELECT MAX(id) FROM rejected_input) - ?",
                [self.max_rejects],
            )
        return len(batch)

    def rejects(self, sensor: str | None = None, limit: int = 100) -> list[Rejected]:
        where, args = ("WHERE sensor = ?", [sensor]) if sensor else ("", [])
        rows = self.db.execute(
            f"SELECT sensor, ts, reason, data FROM rejected_input {where} ORDER BY id DESC LIMIT ?", [*args, limit]
        ).fetchall()
        return [Rejected(s, t, r, bytes(d)) for s, t, r, d in rows]

    def reject_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM rejected_input").fetchone()[0])

    def close(self) -> None:
        self.db.conn.close()
