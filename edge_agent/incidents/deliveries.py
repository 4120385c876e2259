"""Delivery state of the outputs besides MQTT (Cursor on Target, SAPIENT): one ``output_queue`` row per alert
state per output, written in the same transaction as the outbox row, so an output that is down loses nothing.
A row is owed until the output took it (``sent``); a failed try makes it due again after a backoff; rows sent
shortly before a connection was found dead can be made due again (``resend``), since a TCP peer that died may
never have read them."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from edge_agent.incidents.connection import LogConnection


@dataclass(frozen=True, slots=True)
class OwedState:
    """One alert state owed to one output."""

    seq: int  # the outbox row's
    alert_id: str
    state: str
    payload: bytes  # the contract's alert payload
    attempts: int


@dataclass(frozen=True, slots=True)
class OutputBacklog:
    owed: int
    oldest_s: float
    sent: int


def _marks(values: list[int]) -> str:
    return ",".join("?" * len(values))


class Deliveries:
    """The ``output_queue`` table; see the module docstring. ``outputs`` names the outputs an alert state is
    queued for when it enters the outbox."""

    def __init__(self, conn: LogConnection) -> None:
        self.conn = conn
        self.outputs: tuple[str, ...] = ()

    def enqueue(self, seq: int, now: float) -> None:
        """Inside the outbox's transaction: this outbox row is owed to every configured output."""
        for output in self.outputs:
            self.conn.db.execute("INSERT OR IGNORE INTO output_queue (output, seq, due, attempts) VALUES (?, ?, ?, 0)",
                                 [output, seq, now])

    def forget_others(self) -> int:
        """Rows owed to outputs no longer configured are dropped (they would be owed for ever); returns how many."""
        with self.conn.tx():
            keep = list(self.outputs)
            where = f"AND output NOT IN ({','.join('?' * len(keep))})" if keep else ""
            return int(self.conn.db.execute(f"DELETE FROM output_queue WHERE sent IS NULL {where}", keep).rowcount)

    def owed(self, output: str, limit: int = 50, now: float | None = None) -> list[OwedState]:
        """States due now for ``output``, oldest first (an alert's states stay in order)."""
        now = time.time() if now is None else now
        with self.conn.lock:
            rows = self.conn.db.execute(
                "SELECT q.seq, o.alert_id, o.state, o.payload, q.attempts FROM output_queue q JOIN outbox o "
                "ON o.seq = q.seq WHERE q.output = ? AND q.sent IS NULL AND q.due <= ? ORDER BY q.seq LIMIT ?",
                [output, now, limit]).fetchall()
        return [OwedState(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    def next_due(self, output: str) -> float | None:
        """When the earliest owed row of ``output`` is due (None: nothing owed)."""
        with self.conn.lock:
            row = self.conn.db.execute("SELECT MIN(due) FROM output_queue WHERE output = ? AND sent IS NULL",
                                       [output]).fetchone()
        return None if row[0] is None else float(row[0])

    def sent(self, output: str, seqs: Iterable[int], ts: float, note: str | None = None) -> None:
        """The output took these rows (``note``: why a row was done without sending, e.g. not for this output)."""
        seqs = list(seqs)
        if seqs:
            with self.conn.tx():
                self.conn.db.execute(f"UPDATE output_queue SET sent = ?, error = ?, attempts = attempts + 1, "
                                     f"last_attempt = ? WHERE output = ? AND seq IN ({_marks(seqs)})",
                                     [ts, note, ts, output, *seqs])

    def failed(self, output: str, seqs: Iterable[int], ts: float, error: str, retry_min_s: float,
               retry_max_s: float) -> None:
        """A try failed: each row is due again after ``retry_min_s``, doubling with its attempts, at most
        ``retry_max_s``."""
        seqs = list(seqs)
        if seqs:
            with self.conn.tx():
                self.conn.db.execute(
                    f"UPDATE output_queue SET attempts = attempts + 1, last_attempt = ?, error = ?, "
                    f"due = ? + MIN(? * (1 << MIN(attempts, 20)), ?) WHERE output = ? AND seq IN ({_marks(seqs)})",
                    [ts, error[:500], ts, retry_min_s, retry_max_s, output, *seqs])

    def resend(self, output: str, since: float, now: float) -> int:
        """Rows sent at or after ``since`` are owed again, due now; returns how many."""
        with self.conn.tx():
            return int(self.conn.db.execute(
                "UPDATE output_queue SET sent = NULL, due = ? WHERE output = ? AND sent >= ? AND error IS NULL",
                [now, output, since]).rowcount)

    def retry_now(self, output: str, now: float) -> None:
        """A fresh connection: rows waiting out a backoff are due at once."""
        with self.conn.tx():
            self.conn.db.execute("UPDATE output_queue SET due = ? WHERE output = ? AND sent IS NULL AND due > ?",
                                 [now, output, now])

    def backlog(self, output: str, now: float | None = None) -> OutputBacklog:
        now = time.time() if now is None else now
        with self.conn.lock:
            owed, oldest = self.conn.db.execute(
                "SELECT COUNT(*), MIN(o.created) FROM output_queue q JOIN outbox o ON o.seq = q.seq "
                "WHERE q.output = ? AND q.sent IS NULL", [output]).fetchone()
            sent = self.conn.db.execute("SELECT COUNT(*) FROM output_queue WHERE output = ? AND sent IS NOT NULL",
                                        [output]).fetchone()[0]
        return OutputBacklog(int(owed), round(now - oldest, 1) if oldest is not None else 0.0, int(sent))
