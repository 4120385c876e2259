"""Reviewing the incident log: list with filters, one incident's timeline, and statistics (the exports are in
``report``).

Every stored row is untrusted (a tampered file, or one written before a check existed): a cell of the wrong
type, a time that is no date, evidence data that is not JSON, a snapshot path out of the snapshot folder. Rows
are read through ``row_values`` into JSON-safe values, texts are printed through ``one_line`` and times through
``iso_ms``, so no stored value makes a review verb raise or write escape sequences to a terminal."""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.contract.alert import SEVERITIES, json_depth, refuse_constant
from edge_agent.contract.ids import iso_ms, one_line
from edge_agent.incidents.errors import NoDatabase, ReviewError, SnapshotPathError
from edge_agent.incidents.schema import SEV_RANK
from edge_agent.incidents.store import IncidentStore

SENSOR_TYPES = ("thermal", "radio", "metal")
LIST_COLUMNS = ("id", "opened", "kind", "severity", "state", "zone_id", "sensors", "acked_by", "summary")
MAX_JSON_DEPTH = 32  # evidence data nested deeper than this is shown as text


@dataclass(frozen=True, slots=True)
class Filters:
    since: float | None = None
    until: float | None = None
    zone: str | None = None
    severity: str | None = None  # at least this severe
    kind: str | None = None
    state: str | None = None  # open, closed, acknowledged, unacknowledged
    sensor: str | None = None  # a sensor id, or a sensor type (thermal, radio, metal)


def cell(value: Any) -> Any:
    """A stored cell as a JSON-safe value: text for bytes, the name of a number that is not finite."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def row_values(cols: list[str], values: tuple[Any, ...]) -> dict[str, Any]:
    return {c: cell(v) for c, v in zip(cols, values, strict=True)}


def _number(value: Any) -> float | None:
    """A finite number, or None for anything else a stored cell may hold."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def latlon(lat: Any, lon: Any) -> tuple[float, float] | None:
    la, lo = _number(lat), _number(lon)
    return (la, lo) if la is not None and lo is not None and -90 <= la <= 90 and -180 <= lo <= 180 else None


def _evidence_data(text: Any) -> dict[str, Any]:
    """The evidence's fields: its stored JSON object, or ``{"invalid_data": TEXT}`` for anything else."""
    try:
        data = json.loads(text, parse_constant=refuse_constant) if isinstance(text, str | bytes) else None
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and json_depth(data, MAX_JSON_DEPTH) <= MAX_JSON_DEPTH:
        return data
    return {"invalid_data": one_line(cell(text), 200)}


def day_of(ts: Any) -> str:
    text = iso_ms(ts)
    return text[:10] if text[0].isdigit() else "invalid-time"


def parse_time(text: str) -> float:
    """RFC 3339 / ISO dates ('2026-11-23', '2026-11-23T10:00Z'), or relative: '90m', '24h', '7d' ago."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return datetime.now(UTC).timestamp() - float(text[:-1]) * units[text[-1]]
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReviewError(f"{text!r} is not a time: use 2026-11-23, 2026-11-23T10:00Z, or 90m / 24h / 7d") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def where_clause(f: Filters) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if f.since is not None:
        clauses.append("opened >= ?")
        args.append(f.since)
    if f.until is not None:
        clauses.append("opened < ?")
        args.append(f.until)
    if f.zone:
        clauses.append("zone_id = ?")
        args.append(f.zone)
    if f.severity:
        if f.severity not in SEV_RANK:
            raise ReviewError(f"severity {f.severity!r}: one of {', '.join(SEVERITIES)}")
        clauses.append("sev_rank >= ?")
        args.append(SEV_RANK[f.severity])
    if f.kind:
        clauses.append("kind = ?")
        args.append(f.kind)
    if f.state:
        states = {"open": "state = 'open'", "closed": "state = 'closed'", "acknowledged": "acked_by IS NOT NULL",
                  "unacknowledged": "acked_by IS NULL"}
        if f.state not in states:
            raise ReviewError(f"state {f.state!r}: one of {', '.join(states)}")
        clauses.append(states[f.state])
    if f.sensor:
        if f.sensor in SENSOR_TYPES:
            clauses.append("(',' || sensors || ',') LIKE ?")
            args.append(f"%,{f.sensor},%")
        else:
            # EXISTS probes the (incident_id, sensor, ...) index row by row along the opened index
            clauses.append("EXISTS (SELECT 1 FROM evidence e WHERE e.incident_id = incidents.id AND e.sensor = ?)")
            args.append(f.sensor)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def list_incidents(store: IncidentStore, f: Filters, limit: int = 50) -> list[dict[str, Any]]:
    where, args = where_clause(f)
    cur = store.db.execute(f"SELECT * FROM incidents{where} ORDER BY opened DESC LIMIT ?", [*args, limit])
    cols = [d[0] for d in cur.description]
    return [row_values(cols, row) for row in cur.fetchall()]


def count_incidents(store: IncidentStore, f: Filters) -> int:
    where, args = where_clause(f)
    return int(store.db.execute(f"SELECT COUNT(*) FROM incidents{where}", args).fetchone()[0])


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no incidents match"
    out = []
    for r in rows:
        opened = iso_ms(r["opened"])
        out.append([one_line(r["id"], 40), opened[:19] + "Z" if opened[0].isdigit() else opened,
                    one_line(r["kind"], 20), one_line(r["severity"], 10),
                    one_line(r["state"], 10) + (" ack" if r.get("acked_by") else ""),
                    one_line(r.get("zone_id") or "-", 64), one_line(r.get("sensors") or "-", 30),
                    one_line(r.get("summary") or "", 70)])
    head = ["ID", "OPENED (UTC)", "KIND", "SEVERITY", "STATE", "ZONE", "SENSORS", "SUMMARY"]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *out, strict=True)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [head, *out]]
    return "\n".join(lines)


def incident(store: IncidentStore, incident_id: str) -> dict[str, Any] | None:
    """One incident with its evidence, acks, alert deliveries and snapshot path."""
    cur = store.db.execute("SELECT * FROM incidents WHERE id = ?", [incident_id])
    row = cur.fetchone()
    if row is None:
        return None
    inc = row_values([d[0] for d in cur.description], row)
    inc["evidence"] = [
        # the stored fields first: sensor, type, ts and the position are the row's, whatever data holds
        {**_evidence_data(d), "sensor": cell(s), "type": cell(t), "ts": iso_ms(ts), "lat": cell(la),
         "lon": cell(lo)}
        for s, t, ts, la, lo, d in store.db.execute(
            "SELECT sensor, type, ts, lat, lon, data FROM evidence WHERE incident_id = ? ORDER BY ts, id",
            [incident_id])]
    inc["acks"] = [{"alert_id": cell(a), "by": cell(b), "ts": iso_ms(t), "note": cell(n), "received": iso_ms(r)}
                   for a, b, t, n, r in store.db.execute(
                       "SELECT alert_id, by, ts, note, received FROM acks WHERE incident_id = ? ORDER BY id",
                       [incident_id])]
    inc["deliveries"] = [
        {"seq": q, "alert_id": cell(a), "topic": cell(tp), "state": cell(st), "queued": iso_ms(c),
         "attempts": cell(n), "delivered": iso_ms(d) if d is not None else None}
        for q, a, tp, st, c, n, d in store.db.execute(
            "SELECT o.seq, o.alert_id, o.topic, o.state, o.created, o.attempts, o.delivered FROM outbox o "
            "JOIN alerts a USING (alert_id) WHERE a.incident_id = ? ORDER BY o.seq", [incident_id])]
    if inc.get("snapshot") is not None:
        try:
            inc["snapshot_path"] = str(store.snapshot_file(inc["snapshot"]))
        except SnapshotPathError as exc:
            inc["snapshot_refused"] = str(exc)
    return inc


def timeline(inc: dict[str, Any]) -> str:
    where = one_line(inc.get("zone_name") or inc.get("zone_id") or "no zone", 100)
    at = latlon(inc.get("lat"), inc.get("lon"))
    lines = [f"incident {one_line(inc['id'], 40)}: {one_line(inc['kind'], 20)} {one_line(inc['severity'], 10)} "
             f"({one_line(inc['state'], 10)}) in {where}",
             f"  {one_line(inc.get('summary') or '', 500)}",
             f"  opened {iso_ms(inc['opened'])}"
             + (f", closed {iso_ms(inc['closed'])}" if inc.get("closed") is not None else "")
             + (f", at {at[0]:.6f},{at[1]:.6f}" if at else "")]
    events: list[tuple[str, str]] = []
    for e in inc["evidence"]:
        what = ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("sensor", "type", "ts", "lat", "lon"))
        events.append((e["ts"], f"evidence {one_line(e['type'], 10):<7} {one_line(e['sensor'], 64)}: "
                                f"{one_line(what, 500)}"))
    for d in inc["deliveries"]:
        state = f"delivered {d['delivered']}" if d["delivered"] else \
            f"NOT delivered yet ({one_line(d['attempts'], 20)} attempts)"
        leaf = one_line(str(d["topic"]).split("/")[0], 20)
        events.append((d["queued"], f"alert     {one_line(d['state'], 20):<12} {leaf:<9} queued, {state}"))
    for a in inc["acks"]:
        events.append((a["ts"], f"ack       by {one_line(a['by'], 64)}"
                                + (f": {one_line(a['note'], 1000)}" if a["note"] else "")))
    lines += [f"  {ts}  {text}" for ts, text in sorted(events)]
    if inc.get("snapshot_path"):
        lines.append(f"  snapshot: {one_line(inc['snapshot_path'], 300)}")
    if inc.get("snapshot_refused"):
        lines.append(f"  snapshot: not shown: {one_line(inc['snapshot_refused'], 300)}")
    if inc.get("degraded"):
        lines.append(f"  degraded: {one_line(inc['degraded'], 200)} faulty while this incident was open")
    return "\n".join(lines)


def all_incidents(store: IncidentStore, f: Filters) -> list[dict[str, Any]]:
    where, args = where_clause(f)
    cur = store.db.execute(f"SELECT * FROM incidents{where} ORDER BY opened", args)
    cols = [d[0] for d in cur.description]
    rows = [row_values(cols, r) for r in cur.fetchall()]
    ev: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for inc_id, s, t, ts, la, lo, d in store.db.execute(
            f"SELECT incident_id, sensor, type, ts, lat, lon, data FROM evidence WHERE incident_id IN "
            f"(SELECT id FROM incidents{where}) ORDER BY ts, id", args):
        ev[cell(inc_id)].append({"sensor": cell(s), "type": cell(t), "ts": iso_ms(ts), "lat": cell(la),
                                  "lon": cell(lo), "data": _evidence_data(d)})
    for r in rows:
        r["evidence"] = ev.get(r["id"], [])
    return rows


def stats(store: IncidentStore, f: Filters) -> dict[str, Any]:
    rows = all_incidents(store, f)
    ack_s = [d for r in rows if r["acked_ts"] is not None and (d := _ack_delay(r)) is not None]
    try:
        backlog, oldest = store.backlog()
    except TypeError:  # an outbox time that is no number: the count still holds
        backlog = int(store.db.execute("SELECT COUNT(*) FROM outbox WHERE delivered IS NULL").fetchone()[0])
        oldest = 0.0
    return {
        "incidents": len(rows),
        "by_kind": dict(Counter(str(r["kind"]) for r in rows).most_common()),
        "by_severity": {s: n for s in SEVERITIES if (n := sum(r["severity"] == s for r in rows))},
        "by_zone": dict(Counter(str(r["zone_id"] or "-") for r in rows).most_common()),
        "by_day": dict(sorted(Counter(day_of(r["opened"]) for r in rows).items())),
        "open": sum(r["state"] == "open" for r in rows),
        "unacknowledged_critical": sum(r["severity"] == "critical" and not r["acked_by"] for r in rows),
        "acknowledged": len(ack_s),
        "time_to_ack_s": {"median": round(statistics.median(ack_s), 1), "max": round(max(ack_s), 1)} if ack_s else None,
        "outbox_backlog": backlog, "outbox_oldest_s": round(oldest, 1) if math.isfinite(oldest) else None,
        "rejected_inputs": store.reject_count(),
    }


def _ack_delay(r: dict[str, Any]) -> float | None:
    acked, opened = _number(r["acked_ts"]), _number(r["opened"])
    if acked is None or opened is None or not math.isfinite(acked - opened):
        return None
    return acked - opened


def stats_text(s: dict[str, Any]) -> str:
    lines = [f"incidents: {s['incidents']} ({s['open']} open, {s['acknowledged']} acknowledged, "
             f"{s['unacknowledged_critical']} critical not acknowledged)"]
    for key in ("by_kind", "by_severity", "by_zone", "by_day"):
        if s[key]:
            lines.append(f"{key.replace('_', ' ')}: " + ", ".join(f"{one_line(k, 64)} {v}" for k, v in s[key].items()))
    if s["time_to_ack_s"]:
        lines.append(f"time to acknowledge: median {s['time_to_ack_s']['median']} s, max {s['time_to_ack_s']['max']} s")
    lines.append(f"outbox: {s['outbox_backlog']} undelivered (oldest {s['outbox_oldest_s']} s); "
                 f"rejected inputs kept: {s['rejected_inputs']}")
    return "\n".join(lines)


def open_store(path: Path) -> IncidentStore:
    if not path.exists():
        raise NoDatabase(f"no incident database at {path}; give --db FILE or -c CONFIG (its state_dir)")
    return IncidentStore(path)
