"""Alerts in the log: each alert's last payload (``alerts``), its states queued in the outbox with their
snapshots, and the state changes the box makes by itself: acknowledged, escalated, closed."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Literal

from edge_agent.contract.acks import BY_MAX, NOTE_MAX, Ack
from edge_agent.contract.alert import Alert, parse_alert
from edge_agent.contract.topics import OUTBOX_ALERTS, outbox_snapshot
from edge_agent.incidents.connection import LogConnection
from edge_agent.incidents.ledger import Ledger
from edge_agent.incidents.outbox import Outbox
from edge_agent.incidents.record import alert_incident_row, insert_evidence
from edge_agent.incidents.schema import SEV_RANK
from edge_agent.incidents.snapshots import SnapshotFolder

AckOutcome = Literal["acknowledged", "already_acknowledged", "unknown_alert"]


@dataclass(frozen=True, slots=True)
class AckResult:
    """What an ack did. ``alert`` is the alert in state ``acknowledged`` to publish (the first ack only);
    ``ack`` is the ack as stored (bounded fields), None for an unknown alert (nothing is stored)."""

    outcome: AckOutcome
    alert: Alert | None = None
    ack: Ack | None = None


def stored_alert(payload: str | bytes) -> Alert:
    """An ``alerts`` row's payload (the alert's last state, as the box published it) back as the typed alert,
    through the contract's one parser; ``BadAlert`` for a damaged row."""
    return parse_alert(payload)


def bounded_ack(ack: Ack, received: float) -> Ack:
    """An ack as the store keeps it, whatever a caller passed: ``by`` printable and at most 64 characters,
    ``note`` at most 1000 characters (line breaks kept, other control characters dropped), ``ts`` finite (else
    the time the ack was received)."""
    by = "".join(ch for ch in str(ack.by) if ch.isprintable()).strip()[:BY_MAX] or "unknown"
    note = "".join(ch for ch in str(ack.note or "")[:NOTE_MAX] if ch.isprintable() or ch in "\n\t")
    try:
        ts = float(ack.ts) if not isinstance(ack.ts, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        ts = math.nan
    return Ack(str(ack.alert_id), by, ts if math.isfinite(ts) else received, note)


class AlertLog:
    """Writes alerts inside the store's transactions: the ``alerts`` row, outbox rows, snapshot, incident row."""

    def __init__(self, conn: LogConnection, ledger: Ledger, outbox: Outbox, snapshots: SnapshotFolder) -> None:
        self.conn = conn
        self.ledger = ledger
        self.outbox = outbox
        self.snapshots = snapshots

    def queue(self, alert: Alert, snapshot: bytes | None) -> int:
        """Commit an alert (and its snapshot) to the outbox, inside the caller's transaction. Returns its seq."""
        db = self.conn.db
        now = time.time()
        rank = SEV_RANK[alert.severity]
        snap_rel = self.snapshots.write(alert.alert_id, snapshot) if snapshot is not None else None
        known = db.execute("SELECT created, acked, escalated, payload FROM alerts WHERE alert_id = ?",
                           [alert.alert_id]).fetchone()
        if alert.snapshot is None and known is not None:  # later states point at the first state's snapshot
            earlier = stored_alert(known[3]).snapshot
            if earlier:
                alert = replace(alert, snapshot=earlier)
        payload = alert.to_json()
        db.table("alerts").upsert({
            "alert_id": alert.alert_id, "incident_id": alert.incident_id, "kind": alert.kind,
            "severity": alert.severity, "sev_rank": rank, "state": alert.state,
            "created": known[0] if known else alert.ts, "updated": alert.ts,
            "acked": known[1] if known else 0, "escalated": known[2] if known else 0,
            "payload": payload.decode("utf-8"),
        }, pk="alert_id")
        seq = self.outbox.add(alert.alert_id, OUTBOX_ALERTS, alert.state, rank, payload, now)
        if snap_rel is not None:
            self.outbox.add(alert.alert_id, outbox_snapshot(alert.alert_id), alert.state, rank, snapshot or b"", now)
        self._sync_incident(alert, snap_rel)
        return seq

    def _sync_incident(self, alert: Alert, snap_rel: str | None) -> None:
        db = self.conn.db
        if db.execute("SELECT 1 FROM incidents WHERE id = ?", [alert.incident_id]).fetchone() is None:
            # alerts of their own (sensor faults) make their incident here
            db.table("incidents").insert(alert_incident_row(alert))
            insert_evidence(db, alert.incident_id, alert.evidence)
        sets = {"summary": alert.summary, "alert_id": alert.alert_id}
        if alert.state == "closed":
            sets.update(state="closed")
            db.execute("UPDATE incidents SET closed = COALESCE(closed, ?) WHERE id = ?", [alert.ts, alert.incident_id])
        if snap_rel is not None:
            sets["snapshot"] = snap_rel
        assign = ", ".join(f"{k} = ?" for k in sets)
        db.execute(f"UPDATE incidents SET {assign} WHERE id = ?", [*sets.values(), alert.incident_id])
        self.ledger.chain_incident(alert.incident_id)

    def close_of(self, incident_id: str, ts: float) -> None:
        """Queue the incident's alert again as ``closed`` (inside the caller's transaction), unless it is."""
        row = self.conn.db.execute("SELECT payload FROM alerts WHERE incident_id = ? AND state != 'closed'",
                                   [incident_id]).fetchone()
        if row is not None:
            self.queue(stored_alert(row[0]).with_state("closed", ts), None)

    def alert(self, alert_id: str) -> Alert | None:
        """The alert's last state as stored, None for an alert the log does not know."""
        with self.conn.lock:
            row = self.conn.db.execute("SELECT payload FROM alerts WHERE alert_id = ?", [alert_id]).fetchone()
        return stored_alert(row[0]) if row else None

    def record_ack(self, ack: Ack, received: float | None = None) -> AckResult:
        """Record an ack from the command post, with its fields bounded (``by`` at most 64 printable characters,
        ``note`` at most 1000, a finite ``ts`` or else the time it was received), and say what it did."""
        received = received or time.time()
        ack = bounded_ack(ack, received)
        db = self.conn.db
        with self.conn.tx():
            row = db.execute("SELECT incident_id, acked, payload FROM alerts WHERE alert_id = ?",
                             [ack.alert_id]).fetchone()
            if row is None:
                return AckResult("unknown_alert")
            incident_id, acked, payload = row
            db.table("acks").insert({"alert_id": ack.alert_id, "incident_id": incident_id, "by": ack.by, "ts": ack.ts,
                               "note": ack.note, "received": received})
            self.ledger.chain("ack", str(db.execute("SELECT last_insert_rowid()").fetchone()[0]))
            if acked:
                return AckResult("already_acknowledged", None, ack)
            db.execute("UPDATE alerts SET acked = 1 WHERE alert_id = ?", [ack.alert_id])
            db.execute("UPDATE incidents SET acked_by = ?, acked_ts = ?, ack_note = ? WHERE id = ?",
                       [ack.by, ack.ts, ack.note, incident_id])
            self.ledger.chain_incident(incident_id)
            alert = stored_alert(payload).with_state("acknowledged", received)
            self.queue(alert, None)
        return AckResult("acknowledged", alert, ack)

    def due_escalations(self, now: float, after_s: float) -> list[Alert]:
        """Critical alerts nobody acknowledged within ``after_s``, each once, queued again as ``escalated``."""
        with self.conn.lock:
            rows = self.conn.db.execute(
                "SELECT alert_id, payload FROM alerts WHERE sev_rank = ? AND acked = 0 AND escalated = 0 "
                "AND state NOT IN ('closed', 'acknowledged') AND created <= ?",
                [SEV_RANK["critical"], now - after_s]).fetchall()
        out = []
        for alert_id, payload in rows:
            alert = stored_alert(payload).with_state("escalated", now)
            with self.conn.tx():
                self.conn.db.execute("UPDATE alerts SET escalated = 1 WHERE alert_id = ?", [alert_id])
                self.queue(alert, None)
            out.append(alert)
        return out
