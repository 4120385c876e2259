"""Retention: what is past its age goes, then, while the disk is short, the oldest snapshots and incidents.

Unacknowledged critical incidents are kept to their own, longer age and go last; an incident with undelivered
alerts is never removed. Every removal is logged in ``retention_log`` and chained in the ledger, so ``verify``
tells it from tampering."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from edge_agent.incidents.connection import LogConnection
from edge_agent.incidents.ledger import Ledger
from edge_agent.incidents.schema import SEV_RANK
from edge_agent.incidents.snapshots import SnapshotFolder

KEEP_PENDING = ("id NOT IN (SELECT a.incident_id FROM alerts a JOIN outbox o USING (alert_id) "
                "WHERE o.delivered IS NULL OR o.seq IN (SELECT seq FROM output_queue WHERE sent IS NULL))")
CRITICAL_UNACKED = f"(sev_rank = {SEV_RANK['critical']} AND acked_by IS NULL)"

Removal = tuple[str, str, str]  # (incident id, what: "incident" or "snapshot", reason: "age" or "disk")


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


class Retention:
    def __init__(self, conn: LogConnection, ledger: Ledger, snapshots: SnapshotFolder) -> None:
        self.conn = conn
        self.ledger = ledger
        self.snapshots = snapshots

    def retain(self, now: float, max_age_s: float, critical_age_s: float, min_free_bytes: int = 0,
               free: Callable[[Path], int] = disk_free) -> list[Removal]:
        """Remove what is past its age, then, while the disk is short of ``min_free_bytes``, the oldest snapshots
        and then the oldest incidents. Returns what was removed."""
        folder = self.conn.path.parent
        removed = self._by_age(now, max_age_s, critical_age_s)
        if min_free_bytes <= 0 or free(folder) >= min_free_bytes:
            return removed
        with self.conn.lock:
            snaps = self.conn.db.execute("SELECT id, snapshot FROM incidents WHERE snapshot IS NOT NULL "
                                         f"ORDER BY {CRITICAL_UNACKED}, opened").fetchall()
        for incident_id, rel in snaps:
            if free(folder) >= min_free_bytes:
                return removed
            if self._remove_snapshot(incident_id, rel, now):
                removed.append((incident_id, "snapshot", "disk"))
        while free(folder) < min_free_bytes:
            with self.conn.lock:
                row = self.conn.db.execute(f"SELECT id FROM incidents WHERE {KEEP_PENDING} AND state = 'closed' "
                                           f"ORDER BY {CRITICAL_UNACKED}, opened LIMIT 1").fetchone()
            if row is None:
                break
            self._remove_incident(row[0], "disk", now)
            removed.append((row[0], "incident", "disk"))
        return removed

    def _by_age(self, now: float, max_age_s: float, critical_age_s: float) -> list[Removal]:
        with self.conn.lock:
            old = self.conn.db.execute(
                f"SELECT id FROM incidents WHERE {KEEP_PENDING} AND state = 'closed' AND ("
                f"(NOT {CRITICAL_UNACKED} AND opened < ?) OR ({CRITICAL_UNACKED} AND opened < ?)) ORDER BY opened",
                [now - max_age_s, now - critical_age_s]).fetchall()
        for (incident_id,) in old:
            self._remove_incident(incident_id, "age", now)
        return [(incident_id, "incident", "age") for (incident_id,) in old]

    def _remove_snapshot(self, incident_id: str, rel: str, now: float) -> bool:
        if not self.snapshots.remove(incident_id, rel):
            return False
        with self.conn.tx():
            self.conn.db.execute("UPDATE incidents SET snapshot = NULL WHERE id = ?", [incident_id])
            self.conn.db.table("retention_log").insert({"ts": now, "incident_id": incident_id,
                                                        "what": f"snapshot {rel}", "reason": "disk"})
            self.ledger.chain_incident(incident_id)
        return True

    def _remove_incident(self, incident_id: str, reason: str, now: float) -> None:
        db = self.conn.db
        with self.conn.tx():
            snap = db.execute("SELECT snapshot FROM incidents WHERE id = ?", [incident_id]).fetchone()
            ack_ids = [r[0] for r in db.execute("SELECT id FROM acks WHERE incident_id = ?", [incident_id])]
            for table, col in (("evidence", "incident_id"), ("acks", "incident_id"), ("incidents", "id")):
                db.execute(f"DELETE FROM {table} WHERE {col} = ?", [incident_id])
            owned = "SELECT alert_id FROM alerts WHERE incident_id = ?"
            db.execute(f"DELETE FROM output_queue WHERE seq IN (SELECT seq FROM outbox WHERE alert_id IN ({owned}))",
                       [incident_id])
            db.execute(f"DELETE FROM outbox WHERE alert_id IN ({owned})", [incident_id])
            db.execute("DELETE FROM alerts WHERE incident_id = ?", [incident_id])
            db.table("retention_log").insert({"ts": now, "incident_id": incident_id, "what": "incident",
                                              "reason": reason})
            self.ledger.chain("removed", f"incident:{incident_id}", reason)
            for ack_id in ack_ids:
                self.ledger.chain("removed", f"ack:{ack_id}", reason)
        self.ledger.forget(incident_id)
        if snap and snap[0]:
            self.snapshots.remove(incident_id, snap[0])
