"""What the log keeps about the sensors themselves: input that was rejected (bounded, oldest first out) and
changes of each sensor's health state."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from edge_agent.incidents.connection import LogConnection


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line or frame that could not be used, kept with its reason."""

    sensor: str
    ts: float
    reason: str
    data: bytes


class SensorLog:
    def __init__(self, conn: LogConnection, max_rejects: int) -> None:
        self.conn = conn
        self.max_rejects = max_rejects

    def state(self, sensor: str, state: str, detail: str = "", ts: float | None = None) -> None:
        with self.conn.tx():
            self.conn.db.table("sensor_health").insert({"sensor": sensor, "ts": ts or time.time(), "state": state,
                                                  "detail": detail[:500]})

    def add_rejects(self, rows: Iterable[Rejected]) -> int:
        """Keep rejected input (reason and data cut short), then drop all but the newest ``max_rejects``."""
        batch = [{"sensor": r.sensor, "ts": r.ts, "reason": r.reason[:500], "data": r.data[:512]} for r in rows]
        if not batch:
            return 0
        with self.conn.tx():
            self.conn.db.table("rejected_input").insert_all(batch)
            self.conn.db.execute(
                "DELETE FROM rejected_input WHERE id <= (SELECT MAX(id) FROM rejected_input) - ?", [self.max_rejects])
        return len(batch)

    def rejects(self, sensor: str | None = None, limit: int = 100) -> list[Rejected]:
        where, args = ("WHERE sensor = ?", [sensor]) if sensor else ("", [])
        with self.conn.lock:
            rows = self.conn.db.execute(f"SELECT sensor, ts, reason, data FROM rejected_input {where} "
                                        "ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
        return [Rejected(s, t, r, bytes(d)) for s, t, r, d in rows]

    def reject_count(self) -> int:
        with self.conn.lock:
            return int(self.conn.db.execute("SELECT COUNT(*) FROM rejected_input").fetchone()[0])
