"""Exports of the incident log: CSV (one row per piece of evidence), GeoJSON (one feature per incident) and a
self-contained HTML report with a map of the site (the box's newest stored map, its incidents as dots), snapshots
and a chart of incidents per day and zone. Stored values are read through ``review`` (JSON-safe, escaped) and the
stored map is checked feature by feature, so no stored value breaks an export."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge_agent.contract.alert import SEVERITIES
from edge_agent.contract.ids import iso_ms, one_line
from edge_agent.incidents.errors import ReviewError, SnapshotPathError
from edge_agent.incidents.review import Filters, all_incidents, day_of, latlon, stats, stats_text
from edge_agent.incidents.store import IncidentStore
from geofences.geo import LocalPlane

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
            f" from {html.escape(str(store.path))}</p>", "<h2>Site map</h2>", _site_svg(store.latest_site_map(), rows),
            "<h2>Incidents per day and zone</h2>", _chart(rows),
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


# -- the site map -----------------------------------------------------------------------------------------

SEVERITY_COLOURS = {"info": "#8c8c8c", "low": "#2f6fd6", "medium": "#e0a000", "high": "#f05a28",
                    "critical": "#d01010"}
SENSOR_COLOURS = {"metal": "#333333", "radio": "#7b3fa0"}
MAP_W, MAP_H, MAP_PAD = 800, 560, 36  # pixels
MAP_MIN_SPAN_M = 40.0  # a map never zooms closer than this across
MAP_MAX_REACH_M = 20_000.0  # incidents further from the centre are counted, not drawn (they would shrink the site)
MAX_POINTS = 2_000  # of one stored feature; a longer one is not the agent's


@dataclass(frozen=True, slots=True)
class MapShape:
    """One feature of a stored site map, read back and checked: its geometry type, kind and (lat, lon) points."""

    geometry: str  # Point, LineString or Polygon
    kind: str
    label: str
    points: tuple[tuple[float, float], ...]


def _position(value: Any) -> tuple[float, float] | None:
    """A GeoJSON [lon, lat] as (lat, lon), or None for anything else."""
    if not isinstance(value, list) or len(value) < 2:
        return None
    return latlon(value[1], value[0])


def _shape(feature: Any) -> MapShape | None:
    """A stored feature as a shape, or None where it has no geometry (pixel zones, cameras without a frame yet)
    or one that is not well formed."""
    if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
        return None
    geom, props = feature["geometry"], feature.get("properties")
    props = props if isinstance(props, dict) else {}
    kind, coords = geom.get("type"), geom.get("coordinates")
    if kind == "Point":
        coords = [coords]
    elif kind == "Polygon":
        coords = coords[0] if isinstance(coords, list) and coords else None
    elif kind != "LineString":
        return None
    if not isinstance(coords, list) or not 0 < len(coords) <= MAX_POINTS:
        return None
    points = [_position(c) for c in coords]
    if any(p is None for p in points):
        return None
    label = props.get("name") or props.get("id") or ""
    return MapShape(kind, one_line(props.get("kind", ""), 20), one_line(label, 80),
                    tuple(p for p in points if p is not None))


def _centre(site_map: dict[str, Any] | None, points: Iterable[tuple[float, float]]) -> tuple[float, float] | None:
    """The map's own centre ([lon, lat]) where it has one, else the middle of what is to be drawn."""
    given = _position(site_map.get("center")) if site_map is not None else None
    if given is not None:
        return given
    pts = list(points)
    if not pts:
        return None
    return sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)


def _nice_length(metres: float) -> float:
    """The longest 1, 2 or 5 times a power of ten not over ``metres``."""
    power = 10.0 ** math.floor(math.log10(metres))
    return max(m * power for m in (1.0, 2.0, 5.0) if m * power <= metres)


class MapFrame:
    """North-up equirectangular metres around the centre, scaled to fit the ``extent`` points into the drawing
    with equal scale east and north; points are (lat, lon)."""

    def __init__(self, centre: tuple[float, float], extent: list[tuple[float, float]]) -> None:
        self.plane = LocalPlane(*centre)
        xs, ys = zip(*(self.metres(p) for p in extent), strict=True)
        span_x = max(max(xs) - min(xs), MAP_MIN_SPAN_M) * 1.15
        span_y = max(max(ys) - min(ys), MAP_MIN_SPAN_M) * 1.15
        self.scale = min((MAP_W - 2 * MAP_PAD) / span_x, (MAP_H - 2 * MAP_PAD) / span_y)  # pixels per metre
        self.mid = ((max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2)

    def metres(self, p: tuple[float, float]) -> tuple[float, float]:
        x, y = self.plane.to_xy(p[0], p[1])
        return float(x), float(y)

    def px(self, p: tuple[float, float]) -> tuple[float, float]:
        x, y = self.metres(p)
        return MAP_W / 2 + (x - self.mid[0]) * self.scale, MAP_H / 2 - (y - self.mid[1]) * self.scale

    def path(self, points: Iterable[tuple[float, float]]) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in map(self.px, points))


def _site_svg(site_map: dict[str, Any] | None, rows: list[dict[str, Any]]) -> str:
    """An inline SVG of the site: camera footprints as light wedges, zones outlined with their names, lines,
    sensors as small squares and the incidents as dots coloured by severity, north up, with a scale bar."""
    features = site_map.get("features") if site_map is not None else None
    shapes = [s for f in (features if isinstance(features, list) else []) if (s := _shape(f)) is not None]
    located = [(at, r) for r in rows if (at := latlon(r["lat"], r["lon"])) is not None]
    note = "" if site_map is not None else "<p>No site map recorded: the incidents are drawn alone.</p>"
    centre = _centre(site_map, [p for s in shapes for p in s.points] + [at for at, _ in located])
    if centre is None:
        return note or "<p>The site map has nothing to draw and no incident has a position.</p>"
    plane = LocalPlane(*centre)
    near = [(at, r) for at, r in located if math.hypot(*(float(v) for v in plane.to_xy(*at))) <= MAP_MAX_REACH_M]
    # the site and its incidents fill the drawing; camera footprints (up to a km deep) only where nothing else is
    extent = [p for s in shapes if s.kind != "camera" for p in s.points] + [at for at, _ in near]
    frame = MapFrame(centre, extent or [p for s in shapes for p in s.points] or [centre])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{MAP_W}" height="{MAP_H}" viewBox="0 0 {MAP_W} {MAP_H}"'
             ' overflow="hidden" font-family="sans-serif" font-size="11" style="background:#fbfbf8;'
             'border:1px solid #ccc">']
    parts += _shape_elements(frame, shapes)
    for at, r in near:
        x, y = frame.px(at)
        sev = r["severity"] if r["severity"] in SEVERITY_COLOURS else "unknown"
        title = f"{iso_ms(r['opened'])} {r['kind']} {r['severity']}: {r['summary'] or ''}"
        parts.append(f'<circle class="incident {sev}" cx="{x:.1f}" cy="{y:.1f}" r="5" '
                     f'fill="{SEVERITY_COLOURS.get(sev, "#000000")}" stroke="#fff"><title>{_esc(title, 300)}'
                     "</title></circle>")
    parts += _furniture(frame)
    parts.append("</svg>")
    if len(rows) > len(located):
        parts.append(f"<p>{len(rows) - len(located)} incident(s) without a position are not on the map.</p>")
    if len(located) > len(near):
        parts.append(f"<p>{len(located) - len(near)} incident(s) more than {MAP_MAX_REACH_M / 1000:g} km from the "
                     "site are not shown.</p>")
    return note + "".join(parts)


def _shape_elements(frame: MapFrame, shapes: list[MapShape]) -> list[str]:
    """Footprints under zones under lines under sensors, each with its name on hover (and zones and lines with
    their name written beside them)."""
    order = {"camera": 0, "zone": 1, "line": 2}
    out = []
    for s in sorted(shapes, key=lambda s: order.get(s.kind, 3) if s.geometry != "Point" else 4):
        title = f"<title>{_esc(f'{s.kind} {s.label}', 120)}</title>"
        if s.geometry == "Polygon" and s.kind == "camera":
            out.append(f'<polygon class="camera" points="{frame.path(s.points)}" fill="#ffe680" fill-opacity="0.35" '
                       f'stroke="#d9b400" stroke-width="0.8">{title}</polygon>')
        elif s.geometry == "Polygon":
            out.append(f'<polygon class="zone" points="{frame.path(s.points)}" fill="#2a8a3a" fill-opacity="0.08" '
                       f'stroke="#2a8a3a" stroke-width="2">{title}</polygon>')
        elif s.geometry == "LineString":
            out.append(f'<polyline class="line" points="{frame.path(s.points)}" fill="none" stroke="#1f5fa8" '
                       f'stroke-width="2.5" stroke-dasharray="8 3">{title}</polyline>')
        else:
            x, y = frame.px(s.points[0])
            out.append(f'<rect class="sensor" x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" '
                       f'fill="{SENSOR_COLOURS.get(s.kind, "#666666")}">{title}</rect>')
        if s.kind in ("zone", "line") and s.geometry != "Point" and s.label:  # the name just above the shape
            xs, ys = zip(*map(frame.px, s.points), strict=True)
            out.append(f'<text x="{(min(xs) + max(xs)) / 2:.1f}" y="{min(ys) - 5:.1f}" text-anchor="middle" '
                       f'fill="#1d4d25">{_esc(s.label, 80)}</text>')
    return out


def _furniture(frame: MapFrame) -> list[str]:
    """The scale bar (bottom left), north arrow (top right) and the severity legend (top left)."""
    metres = _nice_length((MAP_W - 2 * MAP_PAD) / 4 / frame.scale)
    bar = metres * frame.scale
    x0, y0 = MAP_PAD, MAP_H - 14
    label = f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
    out = [f'<g class="scale"><rect x="{x0}" y="{y0 - 4}" width="{bar:.1f}" height="4" fill="#222"/>'
           f'<text x="{x0 + bar + 6:.1f}" y="{y0}">{label}</text></g>',
           f'<g class="north"><path d="M{MAP_W - 24},{14} l-7,18 l7,-5 l7,5 z" fill="#222"/>'
           f'<text x="{MAP_W - 24}" y="44" text-anchor="middle">N</text></g>']
    out.append(f'<rect x="2" y="3" width="70" height="{15 * len(SEVERITIES) + 6}" fill="#fff" fill-opacity="0.85"/>')
    for i, sev in enumerate(SEVERITIES):
        out.append(f'<circle cx="{12}" cy="{14 + 15 * i}" r="5" fill="{SEVERITY_COLOURS[sev]}"/>'
                   f'<text x="22" y="{18 + 15 * i}">{sev}</text>')
    return out


def export(store: IncidentStore, fmt: str, f: Filters) -> str:
    if fmt == "csv":
        return export_csv(store, f)
    if fmt == "geojson":
        return json.dumps(export_geojson(store, f), ensure_ascii=False, indent=1)
    if fmt == "html":
        return export_html(store, f)
    raise ReviewError(f"format {fmt!r}: csv, geojson or html")


