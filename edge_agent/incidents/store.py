"""The incident database: one SQLite file (WAL, ``synchronous=FULL``) with snapshots as JPEG files beside it.

Tables (sqlite-utils): ``incidents`` and their ``evidence``; ``alerts`` (the last payload of each alert) and
the ``outbox`` (every state of every alert and snapshot, delivered or not, and a command post's receipt
where one is required); ``acks``; ``rejected_input`` (bounded, oldest first out); ``sensor_health`` (state
changes); ``retention_log`` (what retention removed)
and the ``ledger``: a hash chain over every write to an incident or an ack, which ``verify`` walks to find
rows changed or removed after the fact. ``PRAGMA user_version`` numbers the schema; ``MIGRATIONS`` bring an
older file up to date when it is opened.

One connection, one lock: the agent's stages call in from their threads. Every method commits before it
returns, so a returned call survives a power cut (FULL sync fsyncs the WAL on commit).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import sqlite_utils

from edge_agent.contract.alert import SEVERITIES, ULID_RE, Alert, Evidence, Incident
from edge_agent.incidents.errors import SnapshotPathError, StoreError
from sensors.events import parse_time

SEV_RANK = {s: i for i, s in enumerate(SEVERITIES)}
GENESIS = "0" * 64
DIGEST_V2 = "v2:"  # incident digests with a running evidence hash; older ledger entries have none
DIGEST_CACHE_SIZE = 1024  # incidents whose running evidence hash is kept in memory
RANGE_SCAN_MAX = 4096  # more evidence rows than this since an incident's last one: find its rows by index
# the only snapshot path the store writes, and so the only one it reads or deletes
SNAPSHOT_RE = re.compile(r"^snapshots/\d{4}-\d{2}-\d{2}/" + ULID_RE.pattern.removeprefix("^").removesuffix(r"\Z")
                         + r"\.jpg\Z")
ACK_BY_MAX, ACK_NOTE_MAX = 64, 1000

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rejected:
    sensor: str
    ts: float
    reason: str
    data: bytes


@dataclass(frozen=True, slots=True)
class OutboxItem:
    seq: int
    alert_id: str
    topic: str  # relative to the box's topic root: "alerts" or "snapshots/{alert_id}"
    state: str
    payload: bytes
    qos: int
    created: float
    attempts: int


@dataclass(frozen=True, slots=True)
class Receipt:
    """A command post has stored this state of this alert (end-to-end: more than the broker's PUBACK)."""

    alert_id: str
    state: str
    by: str
    ts: float


ReceiptOutcome = Literal["recorded", "repeated", "unknown"]  # unknown: no published row of that alert and state
RECEIPT_RETRY_MAX_S = 3600.0  # a row still without a receipt is published again at least this often


@dataclass(frozen=True, slots=True)
class Ack:
    alert_id: str
    by: str
    ts: float
    note: str = ""


AckOutcome = Literal["acknowledged", "already_acknowledged", "unknown_alert"]


@dataclass(frozen=True, slots=True)
class AckResult:
    """What an ack did. ``alert`` is the alert in state ``acknowledged`` to publish (the first ack only);
    ``ack`` is the ack as stored (bounded fields), None for an unknown alert (nothing is stored)."""

    outcome: AckOutcome
    alert: Alert | None = None
    ack: Ack | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    table: str
    ref: str
    what: str

    def __str__(self) -> str:
        return f"{self.table} {self.ref}: {self.what}"


@dataclass(slots=True)
class _EvidenceFold:
    """A running hash over one incident's evidence rows in id order, and the last row it took in."""

    hash: Any = field(default_factory=hashlib.sha256)
    count: int = 0
    last_id: int = 0
    last_line: bytes = b""  # sha256 of the last row's line: a rolled-back or removed row shows as a mismatch

    def add(self, row: tuple[Any, ...]) -> None:
        line = _evidence_line(row)
        self.hash.update(line)
        self.count += 1
        self.last_id, self.last_line = int(row[0]), hashlib.sha256(line).digest()


def _v1(db: sqlite_utils.Database) -> None:
    if "rejected_input" not in db.table_names():
        db["rejected_input"].create({"id": int, "sensor": str, "ts": float, "reason": str, "data": bytes}, pk="id")
        db["rejected_input"].create_index(["sensor", "ts"])


def _v2(db: sqlite_utils.Database) -> None:
    db["incidents"].create({
        "id": str, "rule": str, "kind": str, "severity": str, "sev_rank": int, "state": str, "zone_id": str,
        "zone_name": str, "lat": float, "lon": float, "opened": float, "updated": float, "closed": float,
        "sensors": str, "summary": str, "alert_id": str, "acked_by": str, "acked_ts": float, "ack_note": str,
        "snapshot": str, "degraded": str,
    }, pk="id", not_null={"rule", "kind", "severity", "sev_rank", "state", "opened", "updated"})
    for cols in (["opened"], ["zone_id", "opened"], ["sev_rank", "opened"], ["kind", "opened"], ["state", "opened"],
                 ["alert_id"]):
        db["incidents"].create_index(cols)
    db["evidence"].create({"id": int, "incident_id": str, "sensor": str, "type": str, "ts": float, "lat": float,
                           "lon": float, "data": str}, pk="id", not_null={"incident_id", "sensor", "type", "ts"})
    db["evidence"].create_index(["incident_id", "ts"])
    db["evidence"].create_index(["sensor", "ts"])
    db["evidence"].create_index(["incident_id", "sensor", "ts", "data"], unique=True)
    db["alerts"].create({"alert_id": str, "incident_id": str, "kind": str, "severity": str, "sev_rank": int,
                         "state": str, "created": float, "updated": float, "acked": int, "escalated": int,
                         "payload": str}, pk="alert_id")
    db["alerts"].create_index(["incident_id"])
    db["alerts"].create_index(["sev_rank", "acked", "escalated", "created"])
    db["outbox"].create({"seq": int, "alert_id": str, "topic": str, "state": str, "sev_rank": int, "qos": int,
                         "created": float, "payload": bytes, "attempts": int, "last_attempt": float,
                         "delivered": float}, pk="seq")
    db.execute("CREATE INDEX idx_outbox_pending ON outbox (sev_rank DESC, seq) WHERE delivered IS NULL")
    db["outbox"].create_index(["alert_id"])
    db["acks"].create({"id": int, "alert_id": str, "incident_id": str, "by": str, "ts": float, "note": str,
                       "received": float}, pk="id")
    db["acks"].create_index(["alert_id"])
    db["sensor_health"].create({"id": int, "sensor": str, "ts": float, "state": str, "detail": str}, pk="id")
    db["sensor_health"].create_index(["sensor", "ts"])
    db["retention_log"].create({"id": int, "ts": float, "incident_id": str, "what": str, "reason": str}, pk="id")
    db["ledger"].create({"seq": int, "ts": float, "kind": str, "ref": str, "digest": str, "prev": str, "hash": str},
                        pk="seq")
    db["ledger"].create_index(["kind", "ref"])


def _v3(db: sqlite_utils.Database) -> None:
    """End-to-end receipts: when a command post's receipt for an outbox row arrived and whose it was, and when a
    row the broker took (PUBACK) but no receipt confirmed is due to be published again (NULL: nothing owed)."""
    db["outbox"].add_column("receipt", float)
    db["outbox"].add_column("receipt_by", str)
    db["outbox"].add_column("receipt_due", float)
    db.execute("CREATE INDEX idx_outbox_receipt_due ON outbox (receipt_due) WHERE receipt_due IS NOT NULL")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3]  # index + 1 = user_version it gives
SCHEMA_VERSION = len(MIGRATIONS)


def _canon(row: object) -> str:
    return json.dumps(row, sort_keys=True, separators=(",", ":"), default=str)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_EVIDENCE_COLS = "id, sensor, type, ts, lat, lon, data"


def _evidence_line(row: tuple[Any, ...]) -> bytes:
    """One evidence row as the running hash takes it in: canonical JSON (no raw newline inside), then one."""
    return (_canon(list(row)) + "\n").encode("utf-8")


def _bounded_ack(ack: Ack, received: float) -> Ack:
    """An ack as the store keeps it, whatever a caller passed: ``by`` printable and at most 64 characters,
    ``note`` at most 1000 characters (line breaks kept, other control characters dropped), ``ts`` finite (else
    the time the ack was received)."""
    by = "".join(ch for ch in str(ack.by) if ch.isprintable()).strip()[:ACK_BY_MAX] or "unknown"
    note = "".join(ch for ch in str(ack.note or "")[:ACK_NOTE_MAX] if ch.isprintable() or ch in "\n\t")
    try:
        ts = float(ack.ts) if not isinstance(ack.ts, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        ts = math.nan
    return Ack(str(ack.alert_id), by, ts if math.isfinite(ts) else received, note)


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


class IncidentStore:
    def __init__(self, path: Path | str, max_rejects: int = 10_000, snapshot_max_bytes: int = 200_000) -> None:
        self.path = Path(path)
        self.snapshot_dir = self.path.parent / "snapshots"
        self.max_rejects = max_rejects
        self.snapshot_max_bytes = snapshot_max_bytes
        self._lock = threading.RLock()
        self._folds: OrderedDict[str, _EvidenceFold] = OrderedDict()  # incident id -> its evidence hash so far
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a committed incident or outbox row survives power loss
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise StoreError(f"incident database {self.path}: {exc}: it is damaged or not an SQLite file; move "
                                 "it aside (keep it for the record) and the agent starts a new one") from None
            raise StoreError(f"incident database {self.path}: {exc}; check that the folder exists, is writable "
                             "by the agent's user and the disk is not full") from None
        except OSError as exc:
            raise StoreError(f"incident database {self.path}: {exc}; check that the folder exists, is writable "
                             "by the agent's user and the disk is not full") from None

    # -- schema ----------------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.version
        if current > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {current}, newer than this agent's {SCHEMA_VERSION}; "
                             "upgrade the agent or open a copy")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            with self.db.conn:
                self.db.execute("BEGIN IMMEDIATE")
                MIGRATIONS[version - 1](self.db)
                self.db.execute(f"PRAGMA user_version = {version}")

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.db.execute("COMMIT")  # a full disk can fail the commit itself: rolled back below
            except BaseException:
                if self.db.conn.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
                    with suppress(sqlite3.Error):
                        self.db.execute("ROLLBACK")
                raise

    # -- incidents and evidence ------------------------------------------------------------------------

    def add_evidence(self, inc: Incident, evidence: Evidence) -> None:
        """An incident gained evidence (the fusion engine's ``on_evidence``): write both, chain the incident."""
        with self._tx():
            self._upsert_incident(inc)
            self._insert_evidence(inc.incident_id, [evidence])
            self._chain_incident(inc.incident_id)

    def _upsert_incident(self, inc: Incident, summary: str | None = None) -> None:
        loc = inc.location
        row: dict[str, Any] = {
            "id": inc.incident_id, "rule": inc.rule, "kind": inc.kind, "severity": inc.severity,
            "sev_rank": SEV_RANK[inc.severity], "state": "closed" if inc.closed else "open",
            "zone_id": inc.zone[0] if inc.zone else None, "zone_name": inc.zone[1] if inc.zone else None,
            "lat": loc[0] if loc else None, "lon": loc[1] if loc else None, "opened": inc.opened,
            "updated": inc.updated, "closed": inc.closed, "sensors": ",".join(sorted(inc.sensor_types)),
            "degraded": ",".join(inc.degraded) or None,
        }
        if summary is not None:
            row["summary"] = summary
        if inc.alert_id:
            row["alert_id"] = inc.alert_id
        self.db["incidents"].upsert(row, pk="id")

    def _insert_evidence(self, incident_id: str, items: Iterable[Evidence]) -> None:
        rows = [{"incident_id": incident_id, "sensor": e.sensor, "type": e.type, "ts": e.ts,
                 "lat": e.location[0] if e.location else None, "lon": e.location[1] if e.location else None,
                 "data": _canon(dict(e.fields))} for e in items]
        if rows:
            self.db["evidence"].insert_all(rows, ignore=True)

    def close_incident(self, incident_id: str, ts: float) -> None:
        with self._tx():
            self.db.execute("UPDATE incidents SET state = 'closed', closed = ? WHERE id = ? AND closed IS NULL",
                            [ts, incident_id])
            self._chain_incident(incident_id)

    def close_open(self, ts: float) -> int:
        """At start-up: incidents a previous run left open cannot gain evidence any more (fusion state lives
        in memory), so they are closed at their last update, and their alerts go out again as ``closed`` (the
        command post would otherwise show them open for ever). An unacknowledged critical one still escalates."""
        with self._tx():
            rows = self.db.execute("SELECT id, MIN(updated, ?) FROM incidents WHERE state = 'open'", [ts]).fetchall()
            for inc_id, closed in rows:
                self.db.execute("UPDATE incidents SET state = 'closed', closed = ? WHERE id = ?", [closed, inc_id])
                self._chain_incident(inc_id)
                alert = self.db.execute("SELECT payload FROM alerts WHERE incident_id = ? AND state != 'closed'",
                                        [inc_id]).fetchone()
                if alert is not None:
                    self._queue(alert_from_payload(json.loads(alert[0])).with_state("closed", ts), None)
        return len(rows)

    # -- alerts and the outbox -------------------------------------------------------------------------

    def queue_alert(self, alert: Alert, snapshot: bytes | None = None) -> int:
        """Commit an alert (and its snapshot) to the outbox before anything is published. Returns its seq."""
        with self._tx():
            return self._queue(alert, snapshot)

    def _queue(self, alert: Alert, snapshot: bytes | None) -> int:
        now = time.time()
        rank = SEV_RANK[alert.severity]
        snap_rel = self._write_snapshot(alert.alert_id, snapshot) if snapshot is not None else None
        known = self.db.execute("SELECT created, acked, escalated, payload FROM alerts WHERE alert_id = ?",
                                [alert.alert_id]).fetchone()
        if alert.snapshot is None and known is not None:  # later states point at the first state's snapshot
            earlier = json.loads(known[3]).get("snapshot")
            if earlier:
                alert = replace(alert, snapshot=earlier)
        payload = alert.to_json()
        self.db["alerts"].upsert({
            "alert_id": alert.alert_id, "incident_id": alert.incident_id, "kind": alert.kind,
            "severity": alert.severity, "sev_rank": rank, "state": alert.state,
            "created": known[0] if known else alert.ts, "updated": alert.ts,
            "acked": known[1] if known else 0, "escalated": known[2] if known else 0,
            "payload": payload.decode("utf-8"),
        }, pk="alert_id")
        self.db.execute("UPDATE outbox SET sev_rank = ? WHERE alert_id = ? AND delivered IS NULL AND sev_rank < ?",
                        [rank, alert.alert_id, rank])
        seq = self._enqueue(alert.alert_id, "alerts", alert.state, rank, payload, now)
        if snap_rel is not None:
            self._enqueue(alert.alert_id, f"snapshots/{alert.alert_id}", alert.state, rank, snapshot or b"", now)
        self._sync_incident_from_alert(alert, snap_rel)
        return seq

    def _enqueue(self, alert_id: str, topic: str, state: str, rank: int, payload: bytes, now: float) -> int:
        cur = self.db.execute(
            "INSERT INTO outbox (alert_id, topic, state, sev_rank, qos, created, payload, attempts) "
            "VALUES (?, ?, ?, ?, 1, ?, ?, 0)", [alert_id, topic, state, rank, now, payload])
        return int(cur.lastrowid or 0)

    def _sync_incident_from_alert(self, alert: Alert, snap_rel: str | None) -> None:
        exists = self.db.execute("SELECT 1 FROM incidents WHERE id = ?", [alert.incident_id]).fetchone()
        if exists is None:  # alerts of their own (sensor faults) make their incident here
            loc = alert.location
            self.db["incidents"].insert({
                "id": alert.incident_id, "rule": alert.kind, "kind": alert.kind, "severity": alert.severity,
                "sev_rank": SEV_RANK[alert.severity], "state": "open", "opened": alert.ts, "updated": alert.ts,
                "zone_id": alert.zone[0] if alert.zone else None, "zone_name": alert.zone[1] if alert.zone else None,
                "lat": loc[0] if loc else None, "lon": loc[1] if loc else None,
                "sensors": ",".join(sorted({e.type for e in alert.evidence})), "summary": alert.summary,
                "alert_id": alert.alert_id,
            })
            self._insert_evidence(alert.incident_id, alert.evidence)
        sets = {"summary": alert.summary, "alert_id": alert.alert_id}
        if alert.state == "closed":
            sets.update(state="closed")
            self.db.execute("UPDATE incidents SET closed = COALESCE(closed, ?) WHERE id = ?",
                            [alert.ts, alert.incident_id])
        if snap_rel is not None:
            sets["snapshot"] = snap_rel
        assign = ", ".join(f"{k} = ?" for k in sets)
        self.db.execute(f"UPDATE incidents SET {assign} WHERE id = ?", [*sets.values(), alert.incident_id])
        self._chain_incident(alert.incident_id)

    def _write_snapshot(self, alert_id: str, jpeg: bytes) -> str:
        if not ULID_RE.match(alert_id):  # the file name is the alert id: nothing else may reach the path
            raise ValueError(f"snapshot of alert {alert_id!r}: the alert id must be a ULID")
        if len(jpeg) > self.snapshot_max_bytes:
            raise ValueError(f"snapshot of {alert_id} is {len(jpeg)} bytes, over the {self.snapshot_max_bytes} limit")
        day = time.strftime("%Y-%m-%d", time.gmtime())
        rel = f"snapshots/{day}/{alert_id}.jpg"
        target = self.path.parent / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(jpeg)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(target)
        return rel

    def snapshot_file(self, rel: object) -> Path:
        """The file of a stored snapshot path, only when it has the form the store writes
        (``snapshots/YYYY-MM-DD/<ULID>.jpg``) and resolves inside the snapshot folder (no link out of it);
        else ``SnapshotPathError`` saying why. Nothing else is ever read or deleted."""
        if not isinstance(rel, str) or not SNAPSHOT_RE.match(rel):
            shown = repr(rel)
            raise SnapshotPathError(f"snapshot path {shown[:80]}{'…' if len(shown) > 80 else ''} is not of the "
                                    "form snapshots/YYYY-MM-DD/<ULID>.jpg")
        base = self.snapshot_dir.resolve()
        target = (self.path.parent / rel).resolve()
        if not target.is_relative_to(base):
            raise SnapshotPathError(f"snapshot path {rel!r} resolves to {target}, outside {base}")
        return target

    def pending(self, limit: int = 100, exclude: Iterable[int] = (), now: float | None = None) -> list[OutboxItem]:
        """Outbox rows to publish, most severe alert first, then oldest: undelivered ones, and those the broker
        took whose required receipt is overdue (``receipt_due``)."""
        now = time.time() if now is None else now
        skip = list(exclude)
        where = f"AND seq NOT IN ({','.join('?' * len(skip))})" if skip else ""
        cols = "seq, alert_id, topic, state, payload, qos, created, attempts, sev_rank"
        with self._lock:
            # two queries, not one with OR: each walks its own partial index and stops at the limit
            rows = self.db.execute(f"SELECT {cols} FROM outbox WHERE delivered IS NULL {where} "
                                   "ORDER BY sev_rank DESC, seq LIMIT ?", [*skip, limit]).fetchall()
            rows += self.db.execute(f"SELECT {cols} FROM outbox WHERE receipt_due <= ? {where} "
                                    "ORDER BY sev_rank DESC, seq LIMIT ?", [now, *skip, limit]).fetchall()
        unique = sorted({r[0]: r for r in rows}.values(), key=lambda r: (-r[8], r[0]))[:limit]
        return [OutboxItem(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], r[7]) for r in unique]

    def attempted(self, seqs: Iterable[int], ts: float) -> None:
        seqs = list(seqs)
        if seqs:
            with self._tx():
                self.db.execute(f"UPDATE outbox SET attempts = attempts + 1, last_attempt = ? "
                                f"WHERE seq IN ({','.join('?' * len(seqs))})", [ts, *seqs])

    def delivered(self, seqs: Iterable[int], ts: float, receipt_timeout_s: float | None = None) -> None:
        """The broker took these rows (PUBACK). With ``receipt_timeout_s`` (receipts required) an alert row whose
        receipt has not come yet is owed one: it is published again after that long, twice as long after each
        further try, at most ``RECEIPT_RETRY_MAX_S`` apart (a command post away for hours finds a few copies
        queued for it, not hundreds), or at once when a receipt shows the command post got a later row."""
        seqs = list(seqs)
        if not seqs:
            return
        marks = ",".join("?" * len(seqs))
        with self._tx():
            self.db.execute(f"UPDATE outbox SET delivered = COALESCE(delivered, ?) WHERE seq IN ({marks})",
                            [ts, *seqs])
            if receipt_timeout_s is not None:
                self.db.execute(
                    f"UPDATE outbox SET receipt_due = ? + MIN(? * (1 << MIN(MAX(attempts, 1) - 1, 20)), ?) "
                    f"WHERE seq IN ({marks}) AND topic = 'alerts' AND receipt IS NULL",
                    [ts, receipt_timeout_s, max(receipt_timeout_s, RECEIPT_RETRY_MAX_S), *seqs])

    def record_receipt(self, receipt: Receipt, received: float | None = None) -> ReceiptOutcome:
        """A command post stored this state of this alert: every published row of it is done (delivered too, in
        case the receipt outran the broker's PUBACK). ``unknown``: no such row was ever published.

        Rows the broker took before this one and still without a receipt are due again at once: a command post
        gets one box's messages in order and answers in order, so their copies were lost (a broker that died
        before it saved them) and waiting out their timeout would only delay them."""
        received = time.time() if received is None else received
        match = "alert_id = ? AND state = ? AND topic = 'alerts' AND attempts > 0"
        args = [receipt.alert_id, receipt.state]
        with self._tx():
            published = self.db.execute(f"SELECT MIN(last_attempt) FROM outbox WHERE {match}", args).fetchone()[0]
            if published is None:
                return "unknown"
            cur = self.db.execute(f"UPDATE outbox SET receipt = ?, receipt_by = ?, receipt_due = NULL, "
                                  f"delivered = COALESCE(delivered, ?) WHERE {match} AND receipt IS NULL",
                                  [received, receipt.by, received, *args])
            if not cur.rowcount:
                return "repeated"
            self.db.execute("UPDATE outbox SET receipt_due = ? WHERE receipt_due > ? AND last_attempt < ?",
                            [received, received, published])
            return "recorded"

    def waive_receipts(self) -> int:
        """Receipts are no longer required: rows the broker took count as delivered, as without receipts."""
        with self._tx():
            return int(self.db.execute("UPDATE outbox SET receipt_due = NULL WHERE receipt_due IS NOT NULL").rowcount)

    def backlog(self, now: float | None = None) -> tuple[int, float]:
        """(rows still owed: undelivered, or taken by the broker but without the receipt required; the age of
        the oldest in seconds)."""
        with self._lock:
            counts = [self.db.execute(f"SELECT COUNT(*), MIN(created) FROM outbox WHERE {owed}").fetchone()
                      for owed in ("delivered IS NULL", "receipt_due IS NOT NULL")]
        oldest = min((c[1] for c in counts if c[1] is not None), default=None)
        return sum(int(c[0]) for c in counts), (((now or time.time()) - oldest) if oldest is not None else 0.0)

    def alert_payload(self, alert_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute("SELECT payload FROM alerts WHERE alert_id = ?", [alert_id]).fetchone()
        return json.loads(row[0]) if row else None

    # -- acknowledgement and escalation ----------------------------------------------------------------

    def acknowledge(self, ack: Ack, received: float | None = None) -> Alert | None:
        """Record an ack from the command post. Returns the alert in state ``acknowledged`` to publish, or None
        when the alert is unknown (nothing stored) or was acknowledged before (the ack is stored); ``record_ack``
        says which."""
        return self.record_ack(ack, received).alert

    def record_ack(self, ack: Ack, received: float | None = None) -> AckResult:
        """Record an ack from the command post, with its fields bounded (``by`` at most 64 printable characters,
        ``note`` at most 1000, a finite ``ts`` or else the time it was received), and say what it did."""
        received = received or time.time()
        ack = _bounded_ack(ack, received)
        with self._tx():
            row = self.db.execute("SELECT incident_id, acked, payload FROM alerts WHERE alert_id = ?",
                                  [ack.alert_id]).fetchone()
            if row is None:
                return AckResult("unknown_alert")
            incident_id, acked, payload = row
            self.db["acks"].insert({"alert_id": ack.alert_id, "incident_id": incident_id, "by": ack.by, "ts": ack.ts,
                                    "note": ack.note, "received": received})
            self._chain("ack", str(self.db.execute("SELECT last_insert_rowid()").fetchone()[0]))
            if acked:
                return AckResult("already_acknowledged", None, ack)
            self.db.execute("UPDATE alerts SET acked = 1 WHERE alert_id = ?", [ack.alert_id])
            self.db.execute("UPDATE incidents SET acked_by = ?, acked_ts = ?, ack_note = ? WHERE id = ?",
                            [ack.by, ack.ts, ack.note, incident_id])
            self._chain_incident(incident_id)
            alert = alert_from_payload(json.loads(payload)).with_state("acknowledged", received)
            self._queue(alert, None)
        return AckResult("acknowledged", alert, ack)

    def due_escalations(self, now: float, after_s: float) -> list[Alert]:
        """Critical alerts nobody acknowledged within ``after_s``, each once, queued again as ``escalated``."""
        with self._lock:
            rows = self.db.execute(
                "SELECT alert_id, payload FROM alerts WHERE sev_rank = ? AND acked = 0 AND escalated = 0 "
                "AND state NOT IN ('closed', 'acknowledged') AND created <= ?",
                [SEV_RANK["critical"], now - after_s]).fetchall()
        out = []
        for alert_id, payload in rows:
            alert = alert_from_payload(json.loads(payload)).with_state("escalated", now)
            with self._tx():
                self.db.execute("UPDATE alerts SET escalated = 1 WHERE alert_id = ?", [alert_id])
                self._queue(alert, None)
            out.append(alert)
        return out

    # -- sensors and bad input -------------------------------------------------------------------------

    def sensor_state(self, sensor: str, state: str, detail: str = "", ts: float | None = None) -> None:
        with self._tx():
            self.db["sensor_health"].insert({"sensor": sensor, "ts": ts or time.time(), "state": state,
                                             "detail": detail[:500]})

    def add_rejects(self, rows: Iterable[Rejected]) -> int:
        batch = [{"sensor": r.sensor, "ts": r.ts, "reason": r.reason[:500], "data": r.data[:512]} for r in rows]
        if not batch:
            return 0
        with self._tx():
            self.db["rejected_input"].insert_all(batch)
            self.db.execute(
                "DELETE FROM rejected_input WHERE id <= (SELECT MAX(id) FROM rejected_input) - ?", [self.max_rejects])
        return len(batch)

    def rejects(self, sensor: str | None = None, limit: int = 100) -> list[Rejected]:
        where, args = ("WHERE sensor = ?", [sensor]) if sensor else ("", [])
        with self._lock:
            rows = self.db.execute(f"SELECT sensor, ts, reason, data FROM rejected_input {where} "
                                   "ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
        return [Rejected(s, t, r, bytes(d)) for s, t, r, d in rows]

    def reject_count(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT COUNT(*) FROM rejected_input").fetchone()[0])

    # -- tamper evidence -------------------------------------------------------------------------------

    def _incident_digest(self, incident_id: str, cached: bool = True) -> str | None:
        """The incident row and a running hash over its evidence in id order (``v2:``). Written per change, it
        is kept per incident in memory, so a new piece of evidence costs the same at 5,000 rows as at one."""
        cur = self.db.execute("SELECT * FROM incidents WHERE id = ?", [incident_id])
        row = cur.fetchone()
        if row is None:
            self._folds.pop(incident_id, None)
            return None
        fold = self._evidence_fold(incident_id) if cached else self._fold_all(incident_id)
        incident = dict(zip([d[0] for d in cur.description], row, strict=True))
        return DIGEST_V2 + _sha(_canon({"incident": incident, "evidence": [fold.count, fold.hash.hexdigest()]}))

    def _fold_all(self, incident_id: str) -> _EvidenceFold:
        fold = _EvidenceFold()
        for row in self.db.execute(f"SELECT {_EVIDENCE_COLS} FROM evidence WHERE incident_id = ? ORDER BY id",
                                   [incident_id]):
            fold.add(row)
        return fold

    def _evidence_fold(self, incident_id: str) -> _EvidenceFold:
        """The cached running hash brought up to date with the rows added since, or rebuilt from the database
        when it is not cached or its last row is gone or changed (a rolled-back write, retention)."""
        fold = self._folds.pop(incident_id, None)
        if fold is not None and fold.count:
            last = self.db.execute(f"SELECT {_EVIDENCE_COLS} FROM evidence WHERE id = ? AND incident_id = ?",
                                   [fold.last_id, incident_id]).fetchone()
            if last is None or hashlib.sha256(_evidence_line(last)).digest() != fold.last_line:
                fold = None
        if fold is None:
            fold = self._fold_all(incident_id)
        else:
            # rows are added with ids above every existing one, so the new ones lie above this incident's last
            newest = self.db.execute("SELECT MAX(id) FROM evidence").fetchone()[0] or 0
            if newest - fold.last_id <= RANGE_SCAN_MAX:  # "+incident_id": walk the newest rows, not the index
                query = f"SELECT {_EVIDENCE_COLS} FROM evidence WHERE id > ? AND +incident_id = ? ORDER BY id"
            else:
                query = f"SELECT {_EVIDENCE_COLS} FROM evidence WHERE id > ? AND incident_id = ? ORDER BY id"
            for row in self.db.execute(query, [fold.last_id, incident_id]):
                fold.add(row)
        self._folds[incident_id] = fold
        while len(self._folds) > DIGEST_CACHE_SIZE:
            self._folds.popitem(last=False)
        return fold

    def _incident_digest_v1(self, incident_id: str) -> str | None:
        """The digest ledger entries written before ``v2:`` hold (every evidence row hashed again each time)."""
        cur = self.db.execute("SELECT * FROM incidents WHERE id = ?", [incident_id])
        row = cur.fetchone()
        if row is None:
            return None
        cols = [d[0] for d in cur.description]
        ev = self.db.execute("SELECT sensor, type, ts, lat, lon, data FROM evidence WHERE incident_id = ? ORDER BY id",
                             [incident_id]).fetchall()
        return _sha(_canon({"incident": dict(zip(cols, row, strict=True)), "evidence": [list(e) for e in ev]}))

    def _ack_digest(self, ack_id: str) -> str | None:
        cur = self.db.execute("SELECT * FROM acks WHERE id = ?", [int(ack_id)])
        row = cur.fetchone()
        return None if row is None else _sha(_canon(dict(zip([d[0] for d in cur.description], row, strict=True))))

    def _chain_incident(self, incident_id: str) -> None:
        self._chain("incident", incident_id)

    def _chain(self, kind: str, ref: str, digest: str | None = None) -> None:
        if digest is None:
            digest = (self._incident_digest(ref) if kind == "incident" else self._ack_digest(ref)) or ""
        last = self.db.execute("SELECT hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        prev = last[0] if last else GENESIS
        ts = time.time()
        self.db.execute("INSERT INTO ledger (ts, kind, ref, digest, prev, hash) VALUES (?, ?, ?, ?, ?, ?)",
                        [ts, kind, ref, digest, prev, _sha(f"{prev}|{kind}|{ref}|{digest}|{ts!r}")])

    def ledger_head(self) -> str:
        with self._lock:
            last = self.db.execute("SELECT hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        return last[0] if last else GENESIS

    def _digest_now(self, kind: str, ref: str, written: object) -> str | None:
        """The row's digest now, computed the way its ledger entry was (old entries: before ``v2:``)."""
        if kind == "incident":
            if isinstance(written, str) and written.startswith(DIGEST_V2):
                return self._incident_digest(ref, cached=False)
            return self._incident_digest_v1(ref)
        try:
            return self._ack_digest(ref)
        except (ValueError, OverflowError):  # a ledger ref that is no ack id: it cannot match any row
            return None

    def verify(self) -> list[Problem]:
        """Walk the chain and compare every incident and ack with its last ledger entry; list snapshot paths
        that the store would refuse to read or delete."""
        problems: list[Problem] = []
        latest: dict[tuple[str, str], object] = {}
        prev = GENESIS
        expected_seq = None
        with self._lock:
            for seq, ts, kind, ref, digest, prev_hash, h in self.db.execute(
                    "SELECT seq, ts, kind, ref, digest, prev, hash FROM ledger ORDER BY seq"):
                if expected_seq is not None and seq != expected_seq:
                    problems.append(Problem("ledger", f"#{expected_seq}", f"{seq - expected_seq} entr"
                                            f"{'y' if seq - expected_seq == 1 else 'ies'} removed"))
                if prev_hash != prev:
                    problems.append(Problem("ledger", f"#{seq}", "does not follow the entry before it (chain broken)"))
                if _sha(f"{prev_hash}|{kind}|{ref}|{digest}|{ts!r}") != h:
                    problems.append(Problem("ledger", f"#{seq}", "entry changed after it was written"))
                prev, expected_seq = h, seq + 1
                latest[(str(kind), str(ref))] = digest
            for (kind, ref), digest in latest.items():
                if kind == "removed":
                    continue
                if kind not in ("incident", "ack"):
                    problems.append(Problem("ledger", f"{kind} {ref}", "names no kind of row the agent writes"))
                    continue
                removed = ("removed", f"{kind}:{ref}") in latest
                now = self._digest_now(kind, ref, digest)
                if now is None and not removed:
                    problems.append(Problem(kind + "s", ref, "row deleted (not by retention)"))
                elif now is not None and now != digest:
                    problems.append(Problem(kind + "s", ref, "row changed after it was written"))
            known_inc = {ref for kind, ref in latest if kind == "incident"}
            for inc_id, snapshot in self.db.execute("SELECT id, snapshot FROM incidents"):
                if str(inc_id) not in known_inc:
                    problems.append(Problem("incidents", str(inc_id),
                                            "row added outside the agent (not in the ledger)"))
                if snapshot is not None:
                    try:
                        self.snapshot_file(snapshot)
                    except SnapshotPathError as exc:
                        problems.append(Problem("incidents", str(inc_id), f"{exc}: never read or deleted"))
        return problems

    # -- retention -------------------------------------------------------------------------------------

    def retain(self, now: float, max_age_s: float, critical_age_s: float, min_free_bytes: int = 0,
               free: Callable[[Path], int] = disk_free) -> list[tuple[str, str, str]]:
        """Remove what is past its age, then, while the disk is short of ``min_free_bytes``, the oldest snapshots
        and then the oldest incidents. Unacknowledged critical incidents are kept to ``critical_age_s`` and go
        last; an incident with undelivered alerts is never removed. Returns (incident, what, reason) removed."""
        removed: list[tuple[str, str, str]] = []
        keep_pending = "id NOT IN (SELECT a.incident_id FROM alerts a JOIN outbox o USING (alert_id) " \
                       "WHERE o.delivered IS NULL)"
        crit_unacked = f"(sev_rank = {SEV_RANK['critical']} AND acked_by IS NULL)"
        with self._lock:
            old = self.db.execute(
                f"SELECT id FROM incidents WHERE {keep_pending} AND state = 'closed' AND ("
                f"(NOT {crit_unacked} AND opened < ?) OR ({crit_unacked} AND opened < ?)) ORDER BY opened",
                [now - max_age_s, now - critical_age_s]).fetchall()
        for (inc_id,) in old:
            self._remove_incident(inc_id, "age", now)
            removed.append((inc_id, "incident", "age"))
        if min_free_bytes <= 0 or free(self.path.parent) >= min_free_bytes:
            return removed
        with self._lock:
            snaps = self.db.execute("SELECT id, snapshot FROM incidents WHERE snapshot IS NOT NULL "
                                    f"ORDER BY {crit_unacked}, opened").fetchall()
        for inc_id, rel in snaps:
            if free(self.path.parent) >= min_free_bytes:
                return removed
            if not self._remove_snapshot_file(inc_id, rel):
                continue
            with self._tx():
                self.db.execute("UPDATE incidents SET snapshot = NULL WHERE id = ?", [inc_id])
                self.db["retention_log"].insert({"ts": now, "incident_id": inc_id, "what": f"snapshot {rel}",
                                                 "reason": "disk"})
                self._chain_incident(inc_id)
            removed.append((inc_id, "snapshot", "disk"))
        while free(self.path.parent) < min_free_bytes:
            with self._lock:
                row = self.db.execute(f"SELECT id FROM incidents WHERE {keep_pending} AND state = 'closed' "
                                      f"ORDER BY {crit_unacked}, opened LIMIT 1").fetchone()
            if row is None:
                break
            self._remove_incident(row[0], "disk", now)
            removed.append((row[0], "incident", "disk"))
        return removed

    def _remove_incident(self, inc_id: str, reason: str, now: float) -> None:
        with self._tx():
            snap = self.db.execute("SELECT snapshot FROM incidents WHERE id = ?", [inc_id]).fetchone()
            ack_ids = [r[0] for r in self.db.execute("SELECT id FROM acks WHERE incident_id = ?", [inc_id])]
            for table, col in (("evidence", "incident_id"), ("acks", "incident_id"), ("incidents", "id")):
                self.db.execute(f"DELETE FROM {table} WHERE {col} = ?", [inc_id])
            self.db.execute("DELETE FROM outbox WHERE alert_id IN (SELECT alert_id FROM alerts WHERE incident_id = ?)",
                            [inc_id])
            self.db.execute("DELETE FROM alerts WHERE incident_id = ?", [inc_id])
            self.db["retention_log"].insert({"ts": now, "incident_id": inc_id, "what": "incident", "reason": reason})
            self._chain("removed", f"incident:{inc_id}", reason)
            for ack_id in ack_ids:
                self._chain("removed", f"ack:{ack_id}", reason)
        self._folds.pop(inc_id, None)
        if snap and snap[0]:
            self._remove_snapshot_file(inc_id, snap[0])

    def _remove_snapshot_file(self, inc_id: str, rel: object) -> bool:
        """Delete a snapshot file only where its stored path is one the store writes; False (and a warning)
        for any other path, whose file is left alone."""
        try:
            target = self.snapshot_file(rel)
        except SnapshotPathError as exc:
            log.warning("retention: incident %s: %s; left alone ('edge-agent incidents verify' lists it)",
                        inc_id, exc)
            return False
        target.unlink(missing_ok=True)
        return True

    # -- housekeeping ----------------------------------------------------------------------------------

    def integrity(self) -> str:
        with self._lock:
            return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            with suppress(sqlite3.Error):
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.conn.close()


def alert_from_payload(p: dict[str, Any]) -> Alert:
    """An alert back from its stored payload (for state changes: acknowledged, escalated)."""
    evidence = tuple(
        Evidence(e["sensor"], e["type"], parse_time(e["ts"]),
                 tuple((k, v) for k, v in e.items() if k not in ("sensor", "type", "ts")))
        for e in p["evidence"])
    zone = (p["zone"]["id"], p["zone"]["name"]) if p.get("zone") else None
    loc = (p["location"]["lat"], p["location"]["lon"]) if p.get("location") else None
    return Alert(p["alert_id"], p["incident_id"], p["site"], p["box"], parse_time(p["ts"]), p["kind"], p["severity"],
                 p["state"], zone, loc, evidence, p["summary"], p.get("snapshot"))
