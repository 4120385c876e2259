"""Reviewing the incident log: list with filters, one incident's timeline, statistics, and exports (CSV,
GeoJSON, a self-contained HTML report with snapshots and a chart of incidents per day and zone)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.model import SEVERITIES, iso_ms
from edge_agent.store import SEV_RANK, IncidentStore

SENSOR_TYPES = ("thermal", "radio", "metal")
LIST_COLUMNS = ("id", "opened", "kind", "severity", "state", "zone_id", "sensors", "acked_by", "summary")


@dataclass(frozen=True, slots=True)
class Filters:
    since: float | None = None
    until: float | None = None
    zone: str | None = None
    severity: str | None = None  # at least this severe
    kind: str | None = None
    state: str | None = None  # open, closed, acknowledged, unacknowledged
    sensor: str | None = None  # a sensor id, or a sensor type (thermal, radio, metal)


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
    clauses, args = [], []  # type: ignore[var-annotated]
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
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def count_incidents(store: IncidentStore, f: Filters) -> int:
    where, args = _where(f)
    return int(store.db.execute(f"SELECT COUNT(*) FROM incidents{where}", args).fetchone()[0])


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no incidents match"
    out = []
    for r in rows:
        out.append([r["id"], iso_ms(r["opened"])[:19] + "Z", r["kind"], r["severity"],
                    r["state"] + (" ack" if r.get("acked_by") else ""), r.get("zone_id") or "-",
                    r.get("sensors") or "-", (r.get("summary") or "")[:70]])
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
    inc = dict(zip([d[0] for d in cur.description], row, strict=True))
    inc["evidence"] = [
        {"sensor": s, "type": t, "ts": iso_ms(ts), "lat": la, "lon": lo, **json.loads(d)}
        for s, t, ts, la, lo, d in store.db.execute(
            "SELECT sensor, type, ts, lat, lon, data FROM evidence WHERE incident_id = ? ORDER BY ts, id",
            [incident_id])]
    inc["acks"] = [{"alert_id": a, "by": b, "ts": iso_ms(t), "note": n, "received": iso_ms(r)}
                   for a, b, t, n, r in store.db.execute(
                       "SELECT alert_id, by, ts, note, received FROM acks WHERE incident_id = ? ORDER BY id",
                       [incident_id])]
    inc["deliveries"] = [
        {"seq": q, "alert_id": a, "topic": tp, "state": st, "queued": iso_ms(c), "attempts": n,
         "delivered": iso_ms(d) if d else None}
        for q, a, tp, st, c, n, d in store.db.execute(
            "SELECT o.seq, o.alert_id, o.topic, o.state, o.created, o.attempts, o.delivered FROM outbox o "
            "JOIN alerts a USING (alert_id) WHERE a.incident_id = ? ORDER BY o.seq", [incident_id])]
    if inc.get("snapshot"):
        inc["snapshot_path"] = str(store.path.parent / inc["snapshot"])
    return inc


def timeline(inc: dict[str, Any]) -> str:
    lines = [f"incident {inc['id']}: {inc['kind']} {inc['severity']} ({inc['state']}) in "
             f"{inc.get('zone_name') or inc.get('zone_id') or 'no zone'}",
             f"  {inc.get('summary') or ''}",
             f"  opened {iso_ms(inc['opened'])}" + (f", closed {iso_ms(inc['closed'])}" if inc.get("closed") else "")
             + (f", at {inc['lat']:.6f},{inc['lon']:.6f}" if inc.get("lat") is not None else "")]
    events: list[tuple[str, str]] = []
    for e in inc["evidence"]:
        what = {k: v for k, v in e.items() if k not in ("sensor", "type", "ts", "lat", "lon")}
        events.append((e["ts"], f"evidence {e['type']:<7} {e['sensor']}: "
                                f"{', '.join(f'{k}={v}' for k, v in what.items())}"))
    for d in inc["deliveries"]:
        state = f"delivered {d['delivered']}" if d["delivered"] else f"NOT delivered yet ({d['attempts']} attempts)"
        events.append((d["queued"], f"alert     {d['state']:<12} {d['topic'].split('/')[0]:<9} queued, {state}"))
    for a in inc["acks"]:
        events.append((a["ts"], f"ack       by {a['by']}" + (f": {a['note']}" if a["note"] else "")))
    lines += [f"  {ts}  {text}" for ts, text in sorted(events)]
    if inc.get("snapshot_path"):
        lines.append(f"  snapshot: {inc['snapshot_path']}")
    if inc.get("degraded"):
        lines.append(f"  degraded: {inc['degraded']} faulty while this incident was open")
    return "\n".join(lines)


def _all(store: IncidentStore, f: Filters) -> list[dict[str, Any]]:
    where, args = _where(f)
    cur = store.db.execute(f"SELECT * FROM incidents{where} ORDER BY opened", args)
    cols = [d[0] for d in cur.description]
    rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    ev: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for inc_id, s, t, ts, la, lo, d in store.db.execute(
            f"SELECT incident_id, sensor, type, ts, lat, lon, data FROM evidence WHERE incident_id IN "
            f"(SELECT id FROM incidents{where}) ORDER BY ts, id", args):
        ev[inc_id].append({"sensor": s, "type": t, "ts": iso_ms(ts), "lat": la, "lon": lo, "data": json.loads(d)})
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
        base = [r["id"], iso_ms(r["opened"]), iso_ms(r["closed"]) if r["closed"] else "", r["kind"], r["severity"],
                r["state"], r["zone_id"] or "", r["zone_name"] or "", r["lat"] if r["lat"] is not None else "",
                r["lon"] if r["lon"] is not None else "", r["sensors"] or "", r["acked_by"] or "",
                iso_ms(r["acked_ts"]) if r["acked_ts"] else "", r["summary"] or "", r["snapshot"] or ""]
        for e in r["evidence"] or [None]:
            tail = ["", "", "", "", "", ""] if e is None else [
                e["sensor"], e["type"], e["ts"], e["lat"] if e["lat"] is not None else "",
                e["lon"] if e["lon"] is not None else "", json.dumps(e["data"], sort_keys=True)]
            w.writerow(base + tail)
    return buf.getvalue()


def export_geojson(store: IncidentStore, f: Filters) -> dict[str, Any]:
    """A FeatureCollection: one Point feature per incident (null geometry when it has no position), its
    evidence in the properties."""
    features = []
    for r in _all(store, f):
        geom = {"type": "Point", "coordinates": [r["lon"], r["lat"]]} if r["lat"] is not None else None
        props = {k: r[k] for k in ("kind", "severity", "state", "zone_id", "zone_name", "sensors", "summary",
                                   "acked_by", "snapshot", "alert_id")}
        props |= {"incident_id": r["id"], "opened": iso_ms(r["opened"]),
                  "closed": iso_ms(r["closed"]) if r["closed"] else None,
                  "acked_ts": iso_ms(r["acked_ts"]) if r["acked_ts"] else None, "evidence": r["evidence"]}
        features.append({"type": "Feature", "id": r["id"], "geometry": geom, "properties": props})
    return {"type": "FeatureCollection", "features": features}


def stats(store: IncidentStore, f: Filters) -> dict[str, Any]:
    rows = _all(store, f)
    ack_s = [r["acked_ts"] - r["opened"] for r in rows if r["acked_ts"]]
    backlog, oldest = store.backlog()
    return {
        "incidents": len(rows),
        "by_kind": dict(Counter(r["kind"] for r in rows).most_common()),
        "by_severity": {s: n for s in SEVERITIES if (n := sum(r["severity"] == s for r in rows))},
        "by_zone": dict(Counter(r["zone_id"] or "-" for r in rows).most_common()),
        "by_day": dict(sorted(Counter(iso_ms(r["opened"])[:10] for r in rows).items())),
        "open": sum(r["state"] == "open" for r in rows),
        "unacknowledged_critical": sum(r["severity"] == "critical" and not r["acked_by"] for r in rows),
        "acknowledged": len(ack_s),
        "time_to_ack_s": {"median": round(statistics.median(ack_s), 1), "max": round(max(ack_s), 1)} if ack_s else None,
        "outbox_backlog": backlog, "outbox_oldest_s": round(oldest, 1),
        "rejected_inputs": store.reject_count(),
    }


def stats_text(s: dict[str, Any]) -> str:
    lines = [f"incidents: {s['incidents']} ({s['open']} open, {s['acknowledged']} acknowledged, "
             f"{s['unacknowledged_critical']} critical not acknowledged)"]
    for key in ("by_kind", "by_severity", "by_zone", "by_day"):
        if s[key]:
            lines.append(f"{key.replace('_', ' ')}: " + ", ".join(f"{k} {v}" for k, v in s[key].items()))
    if s["time_to_ack_s"]:
        lines.append(f"time to acknowledge: median {s['time_to_ack_s']['median']} s, max {s['time_to_ack_s']['max']} s")
    lines.append(f"outbox: {s['outbox_backlog']} undelivered (oldest {s['outbox_oldest_s']} s); "
                 f"rejected inputs kept: {s['rejected_inputs']}")
    return "\n".join(lines)


def _chart(rows: list[dict[str, Any]]) -> str:
    """An inline SVG: incidents per day, stacked by zone."""
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        per[iso_ms(r["opened"])[:10]][r["zone_id"] or "-"] += 1
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
        y = h + 10
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
                     f'{day[5:]}</text>')
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
        if r["snapshot"] and shown < max_snapshots:
            p = store.path.parent / r["snapshot"]
            if p.exists():
                img = (f'<img alt="snapshot" width="320" src="data:image/jpeg;base64,'
                       f'{base64.b64encode(p.read_bytes()).decode()}">')
                shown += 1
        ev = "<br>".join(html.escape(f"{e['ts'][11:23]} {e['type']} {e['sensor']}: "
                                     + ", ".join(f"{k}={v}" for k, v in e["data"].items())) for e in r["evidence"])
        state = r["state"] + (f", ack by {r['acked_by']}" if r["acked_by"] else "")
        body.append(f"<tr class='{html.escape(r['severity'])}'><td>{iso_ms(r['opened'])[:19]}</td>"
                    f"<td>{html.escape(r['kind'])}</td><td>{html.escape(r['severity'])}</td>"
                    f"<td>{html.escape(state)}</td><td>{html.escape(r['zone_name'] or r['zone_id'] or '-')}</td>"
                    f"<td>{html.escape(r['sensors'] or '')}</td><td>{html.escape(r['summary'] or '')}</td>"
                    f"<td class='ev'>{ev}</td><td>{img}</td></tr>")
    body.append("</table>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:4px;vertical-align:top;font-size:12px}.critical td:nth-child(3){color:#fff;background:#c0392b}"
             ".high td:nth-child(3){background:#f5b7b1}.ev{font-family:monospace;font-size:11px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Incident report</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>")


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
