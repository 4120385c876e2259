"""The outbox: every state of every alert and snapshot, in the order to publish, until it is delivered.

Alert rows are also owed to each other configured output (``deliveries``), each with its own state.
A row counts as delivered to MQTT only on the broker's acknowledgement (PUBACK), and where a command post is
configured, only when that command post's receipt for it arrives; until then it is published again."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from edge_agent.contract.acks import Receipt
from edge_agent.contract.topics import OUTBOX_ALERTS
from edge_agent.incidents.connection import LogConnection
from edge_agent.incidents.deliveries import Deliveries

ReceiptOutcome = Literal["recorded", "repeated", "unknown"]  # unknown: no published row of that alert and state
RECEIPT_RETRY_MAX_S = 3600.0  # a row still without a receipt is published again at least this often


@dataclass(frozen=True, slots=True)
class OutboxItem:
    seq: int
    alert_id: str
    topic: str  # relative to the box's topic root: OUTBOX_ALERTS or outbox_snapshot(alert_id)
    state: str
    payload: bytes
    qos: int
    created: float
    attempts: int


def _marks(values: list[int]) -> str:
    return ",".join("?" * len(values))


class Outbox:
    def __init__(self, conn: LogConnection) -> None:
        self.conn = conn
        self.deliveries = Deliveries(conn)  # the other outputs' delivery state (Cursor on Target, SAPIENT)

    def add(self, alert_id: str, topic: str, state: str, rank: int, payload: bytes, now: float) -> int:
        """A row to publish (inside the caller's transaction): its seq. Rows of this alert still owed rise to
        this rank, so a later, more severe state does not wait behind less severe alerts."""
        db = self.conn.db
        db.execute("UPDATE outbox SET sev_rank = ? WHERE alert_id = ? AND delivered IS NULL AND sev_rank < ?",
                   [rank, alert_id, rank])
        cur = db.execute("INSERT INTO outbox (alert_id, topic, state, sev_rank, qos, created, payload, attempts) "
                         "VALUES (?, ?, ?, ?, 1, ?, ?, 0)", [alert_id, topic, state, rank, now, payload])
        seq = int(cur.lastrowid or 0)
        if topic == OUTBOX_ALERTS:
            self.deliveries.enqueue(seq, now)
        return seq

    def pending(self, limit: int = 100, exclude: Iterable[int] = (), now: float | None = None) -> list[OutboxItem]:
        """Outbox rows to publish, most severe alert first, then oldest: undelivered ones, and those the broker
        took whose required receipt is overdue (``receipt_due``)."""
        now = time.time() if now is None else now
        skip = list(exclude)
        where = f"AND seq NOT IN ({_marks(skip)})" if skip else ""
        cols = "seq, alert_id, topic, state, payload, qos, created, attempts, sev_rank"
        with self.conn.lock:
            # two queries, not one with OR: each walks its own partial index and stops at the limit
            rows = self.conn.db.execute(f"SELECT {cols} FROM outbox WHERE delivered IS NULL {where} "
                                        "ORDER BY sev_rank DESC, seq LIMIT ?", [*skip, limit]).fetchall()
            rows += self.conn.db.execute(f"SELECT {cols} FROM outbox WHERE receipt_due <= ? {where} "
                                         "ORDER BY sev_rank DESC, seq LIMIT ?", [now, *skip, limit]).fetchall()
        unique = sorted({r[0]: r for r in rows}.values(), key=lambda r: (-r[8], r[0]))[:limit]
        return [OutboxItem(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], r[7]) for r in unique]

    def attempted(self, seqs: Iterable[int], ts: float) -> None:
        seqs = list(seqs)
        if seqs:
            with self.conn.tx():
                self.conn.db.execute(f"UPDATE outbox SET attempts = attempts + 1, last_attempt = ? "
                                     f"WHERE seq IN ({_marks(seqs)})", [ts, *seqs])

    def delivered(self, seqs: Iterable[int], ts: float, receipt_timeout_s: float | None = None) -> None:
        """The broker took these rows (PUBACK). With ``receipt_timeout_s`` (receipts required) an alert row whose
        receipt has not come yet is owed one: it is published again after that long, twice as long after each
        further try, at most ``RECEIPT_RETRY_MAX_S`` apart (a command post away for hours finds a few copies
        queued for it, not hundreds), or at once when a receipt shows the command post got a later row."""
        seqs = list(seqs)
        if not seqs:
            return
        marks = _marks(seqs)
        with self.conn.tx():
            self.conn.db.execute(f"UPDATE outbox SET delivered = COALESCE(delivered, ?) WHERE seq IN ({marks})",
                                 [ts, *seqs])
            if receipt_timeout_s is not None:
                self.conn.db.execute(
                    f"UPDATE outbox SET receipt_due = ? + MIN(? * (1 << MIN(MAX(attempts, 1) - 1, 20)), ?) "
                    f"WHERE seq IN ({marks}) AND topic = ? AND receipt IS NULL",
                    [ts, receipt_timeout_s, max(receipt_timeout_s, RECEIPT_RETRY_MAX_S), *seqs, OUTBOX_ALERTS])

    def record_receipt(self, receipt: Receipt, received: float | None = None) -> ReceiptOutcome:
        """A command post stored this state of this alert: every published row of it is done (delivered too, in
        case the receipt outran the broker's PUBACK). ``unknown``: no such row was ever published.

        Rows the broker took before this one and still without a receipt are due again at once: a command post
        gets one box's messages in order and answers in order, so their copies were lost (a broker that died
        before it saved them) and waiting out their timeout would only delay them."""
        received = time.time() if received is None else received
        match = "alert_id = ? AND state = ? AND topic = ? AND attempts > 0"
        args = [receipt.alert_id, receipt.state, OUTBOX_ALERTS]
        with self.conn.tx():
            db = self.conn.db
            published = db.execute(f"SELECT MIN(last_attempt) FROM outbox WHERE {match}", args).fetchone()[0]
            if published is None:
                return "unknown"
            cur = db.execute(f"UPDATE outbox SET receipt = ?, receipt_by = ?, receipt_due = NULL, "
                             f"delivered = COALESCE(delivered, ?) WHERE {match} AND receipt IS NULL",
                             [received, receipt.by, received, *args])
            if not cur.rowcount:
                return "repeated"
            db.execute("UPDATE outbox SET receipt_due = ? WHERE receipt_due > ? AND last_attempt < ?",
                       [received, received, published])
            return "recorded"

    def waive_receipts(self) -> int:
        """Receipts are no longer required: rows the broker took count as delivered, as without receipts."""
        with self.conn.tx():
            return int(self.conn.db.execute(
                "UPDATE outbox SET receipt_due = NULL WHERE receipt_due IS NOT NULL").rowcount)

    def backlog(self, now: float | None = None) -> tuple[int, float]:
        """(rows still owed: undelivered, or taken by the broker but without the receipt required; the age of
        the oldest in seconds)."""
        with self.conn.lock:
            counts = [self.conn.db.execute(f"SELECT COUNT(*), MIN(created) FROM outbox WHERE {owed}").fetchone()
                      for owed in ("delivered IS NULL", "receipt_due IS NOT NULL")]
        oldest = min((c[1] for c in counts if c[1] is not None), default=None)
        return sum(int(c[0]) for c in counts), (((now or time.time()) - oldest) if oldest is not None else 0.0)
