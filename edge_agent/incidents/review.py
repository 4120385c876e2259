"""Reviewing the incident log: list with filters, one incident's timeline, statistics, and exports (CSV,
GeoJSON, a self-contained HTML report with snapshots and a chart of incidents per day and zone).

Every stored row is untrusted (a tampered file, or one written before a check existed): a cell of the wrong
type, a time that is no date, evidence data that is not JSON, a snapshot path out of the snapshot folder. Rows
are read through ``_row`` into JSON-safe values, texts are printed through ``one_line`` and times through
``iso_ms``, so no stored value makes a review verb raise or write escape sequences to a terminal."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.contract.alert import SEVERITIES, iso_ms, one_line
from edge_agent.incidents.store import SEV_RANK, IncidentStore, SnapshotPathError

SENSOR_TYPES = ("thermal", "radio", "metal")
LIST_COLUMNS = ("id", "opened", "kind", "severity", "state", "zone_id", "sensors", "acked_by", "summary")
MAX_JSON_DEPTH = 32  # evidence data nested deeper than this is shown as text
CSV_CELL_MAX = 32_000  # spreadsheets hold at most 32,767 characters in a cell


@dataclass(frozen=True, slots=True)
class Filters:
    since: float | None = None
    until: float | None = None
    zone: str | None = None
    severity: str | None = None  # at least this severe
    kind: str | None = None
    state: str | None = None  # open, closed, acknowledged, unacknowledged
    sensor: str | None = None  # a sensor id, or a sensor type (thermal, radio, metal)


def _cell(value: Any) -> Any:
    """A stored cell as a JSON-safe value: text for bytes, the name of a number that is not finite."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _row(cols: list[str], values: tuple[Any, ...]) -> dict[str, Any]:
    return {c: _cell(v) for c, v in zip(cols, values, strict=True)}


def _number(value: Any) -> float | None:
    """A finite number, or None for anything else a stored cell may hold."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _latlon(lat: Any, lon: Any) -> tuple[float, float] | None:
    la, lo = _number(lat), _number(lon)
    return (la, lo) if la is not None and lo is not None and -90 <= la <= 90 and -180 <= lo <= 180 else None


def _depth(value: Any) -> int:
    deepest, todo = 0, [(value, 1)]
    while todo:
        v, d = todo.pop()
        deepest = max(deepest, d)
        if isinstance(v, dict | list) and d <= MAX_JSON_DEPTH:
            todo.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _evidence_data(text: Any) -> dict[str, Any]:
    """The evidence's fields: its stored JSON object, or ``{"invalid_data": TEXT}`` for anything else."""
    try:
        data = json.loads(text, parse_constant=_no_constant) if isinstance(text, str | bytes) else None
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and _depth(data) <= MAX_JSON_DEPTH:
        return data
    return {"invalid_data": one_line(_cell(text), 200)}


def _day(ts: Any) -> str:
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
        raise ValueError(f"{text!r} is not a time: use 2026-11-23, 2026-11-23T10:00Z, or 90m / 24h / 7d") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _where(f: Filters) -> tuple[str, list[Any]]:
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
            raise ValueError(f"severity {f.severity!r}: one of {', '.join(SEVERITIES)}")
        clauses.append("sev_rank >= ?")
        args.append(SEV_RANK[f.severity])
    if f.kind:
        clauses.append("kind = ?")
        args.append(f.kind)
    if f.state:
        states = {"open": "state = 'open'", "closed": "state = 'closed'", "acknowledged": "acked_by IS NOT NULL",
                  "unacknowledged": "acked_by IS NULL"}
        if f.state not in states:
            raise ValueError(f"state {f.state!r}: one of {', '.join(states)}")
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
    where, args = _where(f)
    cur = store.db.execute(f"SELECT * FROM incidents{where} ORDER BY opened DESC LIMIT ?", [*args, limit])
    cols = [d[0] for d in cur.description]
    return [_row(cols, row) for row in cur.fetchall()]


def count_incidents(store: IncidentStore, f: Filters) -> int:
    where, args = _where(f)
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
    inc = _row([d[0] for d in cur.description], row)
    inc["evidence"] = [
        # the stored fields first: sensor, type, ts and the position are the row's, whatever data holds
        {**_evidence_data(d), "sensor": _cell(s), "type": _cell(t), "ts": iso_ms(ts), "lat": _cell(la),
         "lon": _cell(lo)}
        for s, t, ts, la, lo, d in store.db.execute(
            "SELECT sensor, type, ts, lat, lon, data FROM evidence WHERE incident_id = ? ORDER BY ts, id",
            [incident_id])]
    inc["acks"] = [{"alert_id": _cell(a), "by": _cell(b), "ts": iso_ms(t), "note": _cell(n), "received": iso_ms(r)}
                   for a, b, t, n, r in store.db.execute(
                       "SELECT alert_id, by, ts, note, received FROM acks WHERE incident_id = ? ORDER BY id",
                       [incident_id])]
    inc["deliveries"] = [
        {"seq": q, "alert_id": _cell(a), "topic": _cell(tp), "state": _cell(st), "queued": iso_ms(c),
         "attempts": _cell(n), "delivered": iso_ms(d) if d is not None else None}
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
    at = _latlon(inc.get("lat"), inc.get("lon"))
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


def _all(store: IncidentStore, f: Filters) -> list[dict[str, Any]]:
    where, args = _where(f)
    cur = store.db.execute(f"SELECT * FROM incidents{where} ORDER BY opened", args)
    cols = [d[0] for d in cur.description]
    rows = [_row(cols, r) for r in cur.fetchall()]
    ev: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for inc_id, s, t, ts, la, lo, d in store.db.execute(
            f"SELECT incident_id, sensor, type, ts, lat, lon, data FROM evidence WHERE incident_id IN "
            f"(SELECT id FROM incidents{where}) ORDER BY ts, id", args):
        ev[_cell(inc_id)].append({"sensor": _cell(s), "type": _cell(t), "ts": iso_ms(ts), "lat": _cell(la),
                                  "lon": _cell(lo), "data": _evidence_data(d)})
    for r in rows:
        r["evidence"] = ev.get(r["id"], [])
    return rows


CSV_COLUMNS = ("incident_id", "opened", "closed", "kind", "severity", "state", "zone_id", "zone_name", "lat", "lon",
               "sensors", "acked_by", "acked_ts", "summary", "snapshot", "evidence_sensor", "evidence_type",
               "evidence_ts", "evidence_lat", "evidence_lon", "evidence_data")


def export_csv(store: IncidentStore, f: Filters) -> str:
    """One row per piece of evidence, the incident's columns repeated (one row for an incident without any)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in _all(store, f):
        base = [r["id"], iso_ms(r["opened"]), iso_ms(r["closed"]) if r["closed"] is not None else "", r["kind"],
                r["severity"], r["state"], r["zone_id"] or "", r["zone_name"] or "",
                r["lat"] if r["lat"] is not None else "", r["lon"] if r["lon"] is not None else "",
                r["sensors"] or "", r["acked_by"] or "", iso_ms(r["acked_ts"]) if r["acked_ts"] is not None else "",
                r["summary"] or "", r["snapshot"] or ""]
        for e in r["evidence"] or [None]:
            tail = ["", "", "", "", "", ""] if e is None else [
                e["sensor"], e["type"], e["ts"], e["lat"] if e["lat"] is not None else "",
                e["lon"] if e["lon"] is not None else "", json.dumps(e["data"], sort_keys=True)]
            w.writerow([_clip(v) for v in base + tail])
    return buf.getvalue()


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > CSV_CELL_MAX:
        return f"{value[:CSV_CELL_MAX]}…(+{len(value) - CSV_CELL_MAX} chars)"
    return value


def export_geojson(store: IncidentStore, f: Filters) -> dict[str, Any]:
    """A FeatureCollection: one Point feature per incident (null geometry when it has no position), its
    evidence in the properties."""
    features = []
    for r in _all(store, f):
        at = _latlon(r["lat"], r["lon"])  # RFC 7946: only a real position is a Point
        geom = {"type": "Point", "coordinates": [at[1], at[0]]} if at else None
        props = {k: r[k] for k in ("kind", "severity", "state", "zone_id", "zone_name", "sensors", "summary",
                                   "acked_by", "snapshot", "alert_id")}
        props |= {"incident_id": r["id"], "opened": iso_ms(r["opened"]),
                  "closed": iso_ms(r["closed"]) if r["closed"] is not None else None,
                  "acked_ts": iso_ms(r["acked_ts"]) if r["acked_ts"] is not None else None, "evidence": r["evidence"]}
        features.append({"type": "Feature", "id": r["id"], "geometry": geom, "properties": props})
    return {"type": "FeatureCollection", "features": features}


def stats(store: IncidentStore, f: Filters) -> dict[str, Any]:
    rows = _all(store, f)
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
        "by_day": dict(sorted(Counter(_day(r["opened"]) for r in rows).items())),
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


def _chart(rows: list[dict[str, Any]]) -> str:
    """An inline SVG: incidents per day, stacked by zone."""
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        per[_day(r["opened"])][one_line(r["zone_id"] or "-", 64)] += 1
    if not per:
        return "<p>No incidents.</p>"
    days = sorted(per)
    zones = sorted({z for c in per.values() for z in c})
    palette = ["#c0392b", "#2980b9", "#27ae60", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#f39c12"]
    top = max(sum(c.values()) for c in per.values())
    bw, h, left = max(12, min(60, 700 // len(days))), 200, 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + bw * len(days) + 160}" height="{h + 60}" '
             'font-family="sans-serif" font-size="11">']
    parts.append(f'<text x="0" y="12">{top}</text><text x="0" y="{h + 10}">0</text>')
    for i, day in enumerate(days):
        y = float(h + 10)
        for j, z in enumerate(zones):
            n = per[day][z]
            if not n:
                continue
            bh = n / top * h
            y -= bh
            parts.append(f'<rect x="{left + i * bw}" y="{y:.1f}" width="{bw - 2}" height="{bh:.1f}" '
                         f'fill="{palette[j % len(palette)]}"><title>{html.escape(day)} {html.escape(z)}: {n}'
                         f'</title></rect>')
        parts.append(f'<text x="{left + i * bw}" y="{h + 25}" transform="rotate(45 {left + i * bw} {h + 25})">'
                     f'{html.escape(day[5:] if day[0].isdigit() else day)}</text>')
    for j, z in enumerate(zones):
        x = left + bw * len(days) + 20
        parts.append(f'<rect x="{x}" y="{10 + j * 16}" width="10" height="10" fill="{palette[j % len(palette)]}"/>'
                     f'<text x="{x + 14}" y="{19 + j * 16}">{html.escape(z)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def export_html(store: IncidentStore, f: Filters, max_snapshots: int = 200) -> str:
    """One self-contained file (snapshots inlined), readable offline in any browser."""
    rows = _all(store, f)
    s = stats(store, f)
    body = [f"<h1>Incident report</h1><p>{len(rows)} incidents, generated {iso_ms(datetime.now(UTC).timestamp())}"
            f" from {html.escape(str(store.path))}</p>", "<h2>Incidents per day and zone</h2>", _chart(rows),
            f"<h2>Summary</h2><pre>{html.escape(stats_text(s))}</pre>", "<h2>Incidents</h2>",
            "<table><tr><th>Opened (UTC)</th><th>Kind</th><th>Severity</th><th>State</th><th>Zone</th><th>Sensors</th>"
            "<th>Summary</th><th>Evidence</th><th>Snapshot</th></tr>"]
    shown = 0
    for r in reversed(rows):
        img = ""
        if r["snapshot"] is not None and shown < max_snapshots:
            img, n = _snapshot_cell(store, r["snapshot"])
            shown += n
        ev = "<br>".join(_esc(f"{e['ts'][11:23] if e['ts'][0].isdigit() else e['ts']} {e['type']} {e['sensor']}: "
                              + ", ".join(f"{k}={v}" for k, v in e["data"].items()), 500) for e in r["evidence"])
        state = f"{r['state']}" + (f", ack by {r['acked_by']}" if r["acked_by"] else "")
        opened = iso_ms(r["opened"])
        body.append(f"<tr class='{_esc(r['severity'], 10)}'><td>{opened[:19] if opened[0].isdigit() else opened}</td>"
                    f"<td>{_esc(r['kind'], 20)}</td><td>{_esc(r['severity'], 10)}</td>"
                    f"<td>{_esc(state, 100)}</td><td>{_esc(r['zone_name'] or r['zone_id'] or '-', 100)}</td>"
                    f"<td>{_esc(r['sensors'] or '', 30)}</td><td>{_esc(r['summary'] or '', 500)}</td>"
                    f"<td class='ev'>{ev}</td><td>{img}</td></tr>")
    body.append("</table>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:4px;vertical-align:top;font-size:12px}.critical td:nth-child(3){color:#fff;background:#c0392b}"
             ".high td:nth-child(3){background:#f5b7b1}.ev{font-family:monospace;font-size:11px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Incident report</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>")


def _esc(value: Any, limit: int) -> str:
    return html.escape(one_line(value, limit))


def _snapshot_cell(store: IncidentStore, rel: Any) -> tuple[str, int]:
    """The snapshot inlined (and 1), or a note why not (and 0): only a path the store writes is read."""
    try:
        p = store.snapshot_file(rel)
    except SnapshotPathError as exc:
        return f"<em>snapshot not shown: {_esc(exc, 300)}</em>", 0
    try:
        jpeg = p.read_bytes()
    except FileNotFoundError:
        return "<em>snapshot file missing</em>", 0
    except OSError as exc:
        return f"<em>snapshot not readable: {_esc(exc, 300)}</em>", 0
    return f'<img alt="snapshot" width="320" src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}">', 1


def export(store: IncidentStore, fmt: str, f: Filters) -> str:
    if fmt == "csv":
        return export_csv(store, f)
    if fmt == "geojson":
        return json.dumps(export_geojson(store, f), ensure_ascii=False, indent=1)
    if fmt == "html":
        return export_html(store, f)
    raise ValueError(f"format {fmt!r}: csv, geojson or html")


def open_store(path: Path) -> IncidentStore:
    if not path.exists():
        raise FileNotFoundError(f"no incident database at {path}; give --db FILE or -c CONFIG (its state_dir)")
    return IncidentStore(path)
