"""The incident database: one SQLite file (WAL, ``synchronous=FULL``) with snapshots as JPEG files beside it.

``IncidentStore`` is what the agent, the CLI and the command post open. It writes incidents and their evidence
itself and hands the rest to its parts, each in its own module: ``alerts`` (alert states, acks, escalation),
``outbox`` (delivery) and ``deliveries`` (the other outputs' state), ``sensors`` (rejected input, health),
``ledger`` (the hash chain and ``verify``), ``retention`` and ``snapshots``; the box's map (``site_maps``, newest
few) it keeps itself. The tables and their migrations are in ``schema``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from edge_agent.contract.acks import Ack, Receipt
from edge_agent.contract.alert import Alert, Evidence, json_depth, refuse_constant
from edge_agent.incidents.alerts import AckResult, AlertLog
from edge_agent.incidents.connection import LogConnection
from edge_agent.incidents.ledger import Ledger, Problem
from edge_agent.incidents.outbox import Outbox, OutboxItem, ReceiptOutcome
from edge_agent.incidents.record import Incident, incident_row, insert_evidence
from edge_agent.incidents.retention import Removal, Retention, disk_free
from edge_agent.incidents.sensorlog import Rejected, SensorLog
from edge_agent.incidents.snapshots import SnapshotFolder

SITE_MAPS_KEPT = 20  # the box's map is kept as it was the last few times it changed
SITE_MAP_MAX_DEPTH = 16  # a stored map nested deeper than GeoJSON ever is was not written by the agent


class IncidentStore:
    """The incident log of one box. Every method commits before it returns."""

    def __init__(self, path: Path | str, max_rejects: int = 10_000, snapshot_max_bytes: int = 200_000) -> None:
        self.path = Path(path)
        self.conn = LogConnection(self.path)
        self.db = self.conn.db
        self.snapshots = SnapshotFolder(self.path.parent, snapshot_max_bytes)
        self.snapshot_dir = self.snapshots.folder
        self.ledger = Ledger(self.db)
        self.outbox = Outbox(self.conn)
        self.deliveries = self.outbox.deliveries
        self.alerts = AlertLog(self.conn, self.ledger, self.outbox, self.snapshots)
        self.sensors = SensorLog(self.conn, max_rejects)
        self.retention = Retention(self.conn, self.ledger, self.snapshots)

    @property
    def version(self) -> int:
        return self.conn.version

    # -- incidents and evidence ------------------------------------------------------------------------

    def add_evidence(self, inc: Incident, evidence: Evidence) -> None:
        """An incident gained evidence: write both, chain the incident."""
        with self.conn.tx():
            self.db.table("incidents").upsert(incident_row(inc), pk="id")
            insert_evidence(self.db, inc.incident_id, [evidence])
            self.ledger.chain_incident(inc.incident_id)

    def close_incident(self, incident_id: str, ts: float) -> None:
        with self.conn.tx():
            self.db.execute("UPDATE incidents SET state = 'closed', closed = ? WHERE id = ? AND closed IS NULL",
                            [ts, incident_id])
            self.ledger.chain_incident(incident_id)

    def close_open(self, ts: float) -> int:
        """At start-up: incidents a previous run left open cannot gain evidence any more (fusion state lives
        in memory), so they are closed at their last update, and their alerts go out again as ``closed`` (the
        command post would otherwise show them open for ever). An unacknowledged critical one still escalates."""
        with self.conn.tx():
            rows = self.db.execute("SELECT id, MIN(updated, ?) FROM incidents WHERE state = 'open'", [ts]).fetchall()
            for incident_id, closed in rows:
                self.db.execute("UPDATE incidents SET state = 'closed', closed = ? WHERE id = ?",
                                [closed, incident_id])
                self.ledger.chain_incident(incident_id)
                self.alerts.close_of(incident_id, ts)
        return len(rows)

    # -- alerts, acks and escalation -------------------------------------------------------------------

    def queue_alert(self, alert: Alert, snapshot: bytes | None = None) -> int:
        """Commit an alert (and its snapshot) to the outbox before anything is published. Returns its seq."""
        with self.conn.tx():
            return self.alerts.queue(alert, snapshot)

    def alert(self, alert_id: str) -> Alert | None:
        """The alert's last state as stored (None for an unknown alert)."""
        return self.alerts.alert(alert_id)

    def acknowledge(self, ack: Ack, received: float | None = None) -> Alert | None:
        """Record an ack from the command post. Returns the alert in state ``acknowledged`` to publish, or None
        when the alert is unknown (nothing stored) or was acknowledged before (the ack is stored); ``record_ack``
        says which."""
        return self.alerts.record_ack(ack, received).alert

    def record_ack(self, ack: Ack, received: float | None = None) -> AckResult:
        return self.alerts.record_ack(ack, received)

    def due_escalations(self, now: float, after_s: float) -> list[Alert]:
        return self.alerts.due_escalations(now, after_s)

    # -- delivery (the outbox) -------------------------------------------------------------------------

    def pending(self, limit: int = 100, exclude: Iterable[int] = (), now: float | None = None) -> list[OutboxItem]:
        return self.outbox.pending(limit, exclude, now)

    def attempted(self, seqs: Iterable[int], ts: float) -> None:
        self.outbox.attempted(seqs, ts)

    def delivered(self, seqs: Iterable[int], ts: float, receipt_timeout_s: float | None = None) -> None:
        self.outbox.delivered(seqs, ts, receipt_timeout_s)

    def record_receipt(self, receipt: Receipt, received: float | None = None) -> ReceiptOutcome:
        return self.outbox.record_receipt(receipt, received)

    def waive_receipts(self) -> int:
        return self.outbox.waive_receipts()

    def backlog(self, now: float | None = None) -> tuple[int, float]:
        return self.outbox.backlog(now)

    # -- sensors and bad input -------------------------------------------------------------------------

    def sensor_state(self, sensor: str, state: str, detail: str = "", ts: float | None = None) -> None:
        self.sensors.state(sensor, state, detail, ts)

    def add_rejects(self, rows: Iterable[Rejected]) -> int:
        return self.sensors.add_rejects(rows)

    def rejects(self, sensor: str | None = None, limit: int = 100) -> list[Rejected]:
        return self.sensors.rejects(sensor, limit)

    def reject_count(self) -> int:
        return self.sensors.reject_count()

    # -- the box's map -------------------------------------------------------------------------------

    def save_site_map(self, site_map: dict[str, Any], ts: float | None = None) -> None:
        """Keep the box's map (the ``site`` topic's GeoJSON); only the newest ``SITE_MAPS_KEPT`` stay."""
        text = json.dumps(site_map, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        with self.conn.tx():
            self.db.table("site_maps").insert({"ts": time.time() if ts is None else ts, "geojson": text})
            self.db.execute("DELETE FROM site_maps WHERE id <= (SELECT MAX(id) FROM site_maps) - ?", [SITE_MAPS_KEPT])

    def latest_site_map(self) -> dict[str, Any] | None:
        """The newest map kept, or None when there is none, or the stored text is no JSON object (a tampered or
        damaged row is nothing to draw)."""
        with self.conn.lock:
            row = self.db.execute("SELECT geojson FROM site_maps ORDER BY id DESC LIMIT 1").fetchone()
        if row is None or not isinstance(row[0], str | bytes):
            return None
        try:
            value = json.loads(row[0], parse_constant=refuse_constant)
        except (ValueError, RecursionError):
            return None
        return value if isinstance(value, dict) and json_depth(value, SITE_MAP_MAX_DEPTH) <= SITE_MAP_MAX_DEPTH \
            else None

    # -- tamper evidence, retention, housekeeping ------------------------------------------------------

    def verify(self) -> list[Problem]:
        """Walk the ledger and compare every incident and ack with its last entry; list snapshot paths that the
        store would refuse to read or delete."""
        with self.conn.lock:
            return self.ledger.verify(self.snapshots.refusal)

    def ledger_head(self) -> str:
        with self.conn.lock:
            return self.ledger.head()

    def snapshot_file(self, rel: object) -> Path:
        return self.snapshots.file(rel)

    def retain(self, now: float, max_age_s: float, critical_age_s: float, min_free_bytes: int = 0,
               free: Callable[[Path], int] = disk_free) -> list[Removal]:
        return self.retention.retain(now, max_age_s, critical_age_s, min_free_bytes, free)

    def integrity(self) -> str:
        return self.conn.integrity()

    def close(self) -> None:
        self.conn.close()
