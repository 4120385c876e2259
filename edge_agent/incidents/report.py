"""Exports of the incident log: CSV (one row per piece of evidence), GeoJSON (one feature per incident) and a
self-contained HTML report with snapshots and a chart of incidents per day and zone. Stored values are read
through ``review`` (JSON-safe, escaped), so no stored value breaks an export."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

from edge_agent.contract.ids import iso_ms, one_line
from edge_agent.incidents.errors import ReviewError, SnapshotPathError
from edge_agent.incidents.review import Filters, all_incidents, day_of, latlon, stats, stats_text
from edge_agent.incidents.store import IncidentStore

CSV_CELL_MAX = 32_000  # spreadsheets hold at most 32,767 characters in a cell
CSV_COLUMNS = ("incident_id", "opened", "closed", "kind", "severity", "state", "zone_id", "zone_name", "lat", "lon",
               "sensors", "acked_by", "acked_ts", "summary", "snapshot", "evidence_sensor", "evidence_type",
               "evidence_ts", "evidence_lat", "evidence_lon", "evidence_data")


def export_csv(store: IncidentStore, f: Filters) -> str:
    """One row per piece of evidence, the incident's columns repeated (one row for an incident without any)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in all_incidents(store, f):
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
    for r in all_incidents(store, f):
        at = latlon(r["lat"], r["lon"])  # RFC 7946: only a real position is a Point
        geom = {"type": "Point", "coordinates": [at[1], at[0]]} if at else None
        props = {k: r[k] for k in ("kind", "severity", "state", "zone_id", "zone_name", "sensors", "summary",
                                   "acked_by", "snapshot", "alert_id")}
        props |= {"incident_id": r["id"], "opened": iso_ms(r["opened"]),
                  "closed": iso_ms(r["closed"]) if r["closed"] is not None else None,
                  "acked_ts": iso_ms(r["acked_ts"]) if r["acked_ts"] is not None else None, "evidence": r["evidence"]}
        features.append({"type": "Feature", "id": r["id"], "geometry": geom, "properties": props})
    return {"type": "FeatureCollection", "features": features}


def _chart(rows: list[dict[str, Any]]) -> str:
    """An inline SVG: incidents per day, stacked by zone."""
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        per[day_of(r["opened"])][one_line(r["zone_id"] or "-", 64)] += 1
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
    rows = all_incidents(store, f)
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
    raise ReviewError(f"format {fmt!r}: csv, geojson or html")


