"""The command post's own store (SQLite, WAL, sqlite-utils ``Migrations``): boxes with their status and latest
health, each alert by ``alert_id`` with every state it went through (de-duplicated by ``alert_id`` + ``state``
+ ``ts``), snapshots, acks with who and when, each box's site map, users and the page's session key.

One connection and one lock: the MQTT thread writes, the web server's threads read. Every write commits
before the call returns, so an alert state is on disk before its receipt goes back to the box."""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils import Migrations

from edge_agent.contract.alert import SEVERITIES, Alert
from edge_agent.shared.sqlitetx import write_tx

SEV_RANK = {s: i for i, s in enumerate(SEVERITIES)}
OPEN_STATES = ("new", "updated", "escalated")

migrations = Migrations("edge-agent/commandpost")


@migrations()
def m001_tables(db: sqlite_utils.Database) -> None:
    db.table("boxes").create({"key": str, "site": str, "box": str, "state": str, "state_ts": float,
                              "version": str, "health": str, "health_ts": float, "first_seen": float},
                             pk="key")
    db.table("alerts").create({
        "alert_id": str, "site": str, "box": str, "incident_id": str, "kind": str, "severity": str, "sev_rank": int,
        "state": str, "zone_id": str, "zone_name": str, "lat": float, "lon": float, "summary": str,
        "ts": float, "first_seen": float, "updated": float, "payload": str,
        "acked_by": str, "acked_ts": float, "ack_note": str,
    }, pk="alert_id", not_null={"site", "box", "kind", "severity", "sev_rank", "state", "ts", "updated"})
    for cols in (["updated"], ["ts"], ["site", "box", "ts"], ["zone_id", "ts"], ["sev_rank", "ts"], ["state", "ts"]):
        db.table("alerts").create_index(cols)
    db.table("alert_states").create({"id": int, "alert_id": str, "state": str, "ts": float, "received": float,
                                     "payload": str}, pk="id")
    db.table("alert_states").create_index(["alert_id", "state", "ts"], unique=True)
    db.table("snapshots").create({"alert_id": str, "data": bytes, "received": float}, pk="alert_id")
    db.table("acks").create({"id": int, "alert_id": str, "by": str, "note": str, "sent": float,
                             "confirmed": float}, pk="id")
    db.table("acks").create_index(["alert_id"])
    db.table("site_maps").create({"key": str, "site": str, "box": str, "geojson": str, "received": float},
                                 pk="key")
    db.table("users").create({"name": str, "role": str, "hash": str, "created": float, "changed": float},
                             pk="name", not_null={"role", "hash"})
    db.table("meta").create({"key": str, "value": str}, pk="key")


@dataclass(frozen=True, slots=True)
class Stored:
    """What storing an alert state did: ``new`` false for a copy already stored; ``latest`` true when this state
    is now the alert's newest (an older state arriving late does not overwrite a newer one)."""

    new: bool
    latest: bool


class CommandPostStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a receipt goes back only for what survives a power cut
        migrations.apply(self.db)

    def close(self) -> None:
        with self.lock:
            self.db.conn.close()

    def tx(self) -> AbstractContextManager[None]:
        return write_tx(self.db, self.lock)

    def rows(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.lock:
            cur = self.db.execute(sql, list(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    # -- from the boxes ------------------------------------------------------------------------------------

    def add_alert(self, alert: Alert, received: float) -> Stored:
        """Store one alert state, as the contract's one serialiser writes it."""
        text = alert.to_json().decode("utf-8")
        zone_id, zone_name = alert.zone or (None, None)
        lat, lon = alert.location or (None, None)
        with self.tx():
            cur = self.db.execute("INSERT OR IGNORE INTO alert_states (alert_id, state, ts, received, payload) "
                                  "VALUES (?, ?, ?, ?, ?)", [alert.alert_id, alert.state, alert.ts, received, text])
            if cur.rowcount != 1:
                return Stored(False, False)
            row = self.db.execute("SELECT ts, first_seen FROM alerts WHERE alert_id = ?", [alert.alert_id]).fetchone()
            if row is not None and row[0] > alert.ts:
                return Stored(True, False)
            acked = {}
            if alert.state == "acknowledged":
                ack = self.db.execute("SELECT by, sent, note FROM acks WHERE alert_id = ? ORDER BY id DESC LIMIT 1",
                                      [alert.alert_id]).fetchone()
                if ack is not None:
                    acked = {"acked_by": ack[0], "acked_ts": ack[1], "ack_note": ack[2]}
                self.db.execute("UPDATE acks SET confirmed = ? WHERE alert_id = ? AND confirmed IS NULL",
                                [received, alert.alert_id])
            self.db.table("alerts").upsert({
                "alert_id": alert.alert_id, "site": alert.site, "box": alert.box, "incident_id": alert.incident_id,
                "kind": alert.kind, "severity": alert.severity, "sev_rank": SEV_RANK[alert.severity],
                "state": alert.state, "zone_id": zone_id, "zone_name": zone_name, "lat": lat, "lon": lon,
                "summary": alert.summary, "ts": alert.ts, "first_seen": row[1] if row is not None else received,
                "updated": received, "payload": text, **acked,
            }, pk="alert_id")
        return Stored(True, True)

    def add_snapshot(self, alert_id: str, data: bytes, received: float) -> None:
        with self.tx():
            self.db.table("snapshots").upsert({"alert_id": alert_id, "data": data, "received": received},
                                              pk="alert_id")

    def snapshot(self, alert_id: str) -> bytes | None:
        with self.lock:
            row = self.db.execute("SELECT data FROM snapshots WHERE alert_id = ?", [alert_id]).fetchone()
        return bytes(row[0]) if row else None

    def box_status(self, site: str, box: str, state: str, version: str | None, received: float) -> bool:
        """True when the box's state changed."""
        key = f"{site}/{box}"
        with self.tx():
            row = self.db.execute("SELECT state FROM boxes WHERE key = ?", [key]).fetchone()
            self.db.table("boxes").upsert({"key": key, "site": site, "box": box, "state": state,
                                           "state_ts": received, "version": version}, pk="key")
            if row is None:
                self.db.execute("UPDATE boxes SET first_seen = ? WHERE key = ?", [received, key])
        return row is None or row[0] != state

    def box_health(self, site: str, box: str, health: dict[str, Any], received: float) -> None:
        key = f"{site}/{box}"
        with self.tx():
            exists = self.db.execute("SELECT 1 FROM boxes WHERE key = ?", [key]).fetchone()
            if exists is None:
                self.db.table("boxes").insert({"key": key, "site": site, "box": box, "state": "unknown",
                                               "first_seen": received})
            self.db.execute("UPDATE boxes SET health = ?, health_ts = ? WHERE key = ?",
                            [json.dumps(health, separators=(",", ":")), received, key])

    def site_map(self, site: str, box: str, geojson: dict[str, Any], received: float) -> None:
        with self.tx():
            self.db.table("site_maps").upsert({"key": f"{site}/{box}", "site": site, "box": box,
                                               "geojson": json.dumps(geojson, separators=(",", ":")),
                                               "received": received}, pk="key")

    # -- from the page -------------------------------------------------------------------------------------

    def ack_sent(self, alert_id: str, by: str, note: str, sent: float) -> None:
        with self.tx():
            self.db.table("acks").insert({"alert_id": alert_id, "by": by, "note": note, "sent": sent})

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        found = self.rows("SELECT * FROM alerts WHERE alert_id = ?", [alert_id])
        return found[0] if found else None

    def states_of(self, alert_id: str) -> list[dict[str, Any]]:
        return self.rows("SELECT state, ts, received, payload FROM alert_states WHERE alert_id = ? ORDER BY ts, id",
                         [alert_id])

    def acks_of(self, alert_id: str) -> list[dict[str, Any]]:
        return self.rows("SELECT by, note, sent, confirmed FROM acks WHERE alert_id = ? ORDER BY id", [alert_id])

    def has_snapshot(self, alert_ids: list[str]) -> set[str]:
        if not alert_ids:
            return set()
        marks = ",".join("?" * len(alert_ids))
        return {r["alert_id"] for r in self.rows(f"SELECT alert_id FROM snapshots WHERE alert_id IN ({marks})",
                                                 alert_ids)}

    def boxes(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM boxes ORDER BY site, box")

    def site_maps(self) -> list[dict[str, Any]]:
        return self.rows("SELECT site, box, geojson, received FROM site_maps ORDER BY site, box")

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {t: self.db.table(t).count for t in ("alerts", "alert_states", "snapshots", "acks", "boxes")}

    # -- the page's key ------------------------------------------------------------------------------------

    def secret(self) -> str:
        """The key that signs session cookies; made once, so sign-ins survive a restart."""
        with self.tx():
            row = self.db.execute("SELECT value FROM meta WHERE key = 'session_key'").fetchone()
            if row is not None:
                return str(row[0])
            key = secrets.token_urlsafe(48)
            self.db.table("meta").insert({"key": "session_key", "value": key})
            return key

