"""What the page shows, read from the store: alerts for the board (open first, most severe, newest), one
alert's detail (states, evidence, acks), boxes with their health, site maps, and history with its filters and
exports (CSV, GeoJSON). Everything returned is plain JSON data made from the typed alerts the store keeps; the
page puts every text in as text."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge_agent.commandpost.store import OPEN_STATES, SEV_RANK, CommandPostStore
from edge_agent.contract.alert import ALERT_STATES, SEVERITIES, Alert, BadAlert, Evidence, parse_alert
from edge_agent.contract.ids import IDENT_RE, iso_ms

HISTORY_LIMIT = 5000
CSV_COLUMNS = ("alert_id", "ts", "site", "box", "kind", "severity", "state", "zone_id", "zone_name", "lat", "lon",
               "sensors", "summary", "acked_by", "acked_ts", "ack_note")


class FilterError(ValueError):
    """A history filter that cannot be used; the message names it."""


def stored_alert(text: str) -> Alert | None:
    """A stored alert state back as the typed alert (the contract's parser); None for one that parser refuses
    now (stored by an older command post that checked less): the row's own columns still show it."""
    try:
        return parse_alert(text)
    except BadAlert:
        return None


def sensors_of(evidence: tuple[Evidence, ...]) -> list[str]:
    """The sensors that agree: each evidence's sensor id, in order of first appearance."""
    return list(dict.fromkeys(e.sensor for e in evidence))


def alert_row(r: dict[str, Any], alert: Alert | None = None) -> dict[str, Any]:
    """A stored alert as the board shows it: the row's columns (written from the typed alert, with what this
    command post adds: first seen, who acknowledged) and the typed alert's evidence and snapshot."""
    alert = alert or stored_alert(r["payload"])
    evidence = alert.evidence if alert is not None else ()
    return {"alert_id": r["alert_id"], "site": r["site"], "box": r["box"], "kind": r["kind"],
            "severity": r["severity"], "sev_rank": r["sev_rank"], "state": r["state"], "ts": r["ts"],
            "first_seen": r["first_seen"], "zone": r["zone_name"] or r["zone_id"],
            "zone_id": r["zone_id"], "lat": r["lat"], "lon": r["lon"], "summary": r["summary"] or "",
            "sensors": sensors_of(evidence), "types": sorted({e.type for e in evidence}),
            "acked_by": r["acked_by"], "acked_ts": r["acked_ts"], "ack_note": r["ack_note"],
            "snapshot": bool(alert is not None and alert.snapshot)}


def board_alerts(store: CommandPostStore, limit: int) -> list[dict[str, Any]]:
    """Open alerts (any age) and the newest others, up to ``limit``: open first, most severe, newest."""
    marks = ",".join("?" * len(OPEN_STATES))
    rows = store.rows(f"SELECT * FROM alerts WHERE state IN ({marks}) ORDER BY sev_rank DESC, ts DESC LIMIT ?",
                      [*OPEN_STATES, limit])
    rest = limit - len(rows)
    if rest > 0:
        rows += store.rows(f"SELECT * FROM alerts WHERE state NOT IN ({marks}) ORDER BY ts DESC LIMIT ?",
                           [*OPEN_STATES, rest])
    return [alert_row(r) for r in rows]


def alert_detail(store: CommandPostStore, alert_id: str) -> dict[str, Any] | None:
    r = store.alert(alert_id)
    if r is None:
        return None
    alert = stored_alert(r["payload"])
    evidence = sorted(alert.evidence, key=lambda e: e.ts) if alert is not None else []
    return {**alert_row(r, alert), "incident_id": r["incident_id"], "evidence": [e.payload() for e in evidence],
            "states": [{"state": s["state"], "ts": s["ts"], "received": s["received"]}
                       for s in store.states_of(alert_id)],
            "acks": store.acks_of(alert_id), "has_snapshot": bool(store.has_snapshot([alert_id]))}


def boxes(store: CommandPostStore, now: float, silent_after_s: float) -> list[dict[str, Any]]:
    out = []
    for b in store.boxes():
        health = json.loads(b["health"]) if b["health"] else None
        silent = b["state"] == "online" and (b["health_ts"] or b["state_ts"] or 0) < now - silent_after_s
        out.append({"key": b["key"], "site": b["site"], "box": b["box"], "state": b["state"], "silent": silent,
                    "since": b["state_ts"], "version": b["version"], "health": health, "health_ts": b["health_ts"]})
    return out


def box(store: CommandPostStore, key: str, now: float, silent_after_s: float) -> dict[str, Any] | None:
    return next((b for b in boxes(store, now, silent_after_s) if b["key"] == key), None)


def site_maps(store: CommandPostStore) -> list[dict[str, Any]]:
    return [{"key": f"{m['site']}/{m['box']}", "site": m["site"], "box": m["box"], "received": m["received"],
             "map": json.loads(m["geojson"])} for m in store.site_maps()]


# -- history -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    since: float | None = None
    until: float | None = None
    box: str | None = None  # site/box
    zone: str | None = None
    severity: str | None = None  # at least this severe
    state: str | None = None

    @classmethod
    def from_query(cls, q: dict[str, str]) -> HistoryFilter:
        """The filter from the page's query; every problem in one ``FilterError``."""
        problems: list[str] = []

        def when(key: str) -> float | None:
            v = (q.get(key) or "").strip()
            if not v:
                return None
            try:
                dt = datetime.fromisoformat(v)
            except ValueError:
                problems.append(f"{key}: {v[:40]!r} is not a date and time (YYYY-MM-DDTHH:MM)")
                return None
            return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()

        since, until = when("since"), when("until")
        box = (q.get("box") or "").strip() or None
        if box is not None and not all(IDENT_RE.match(part) for part in box.split("/", 1)):
            problems.append(f"box: {box[:40]!r} is not site/box")
        zone = (q.get("zone") or "").strip()[:64] or None
        sev = (q.get("severity") or "").strip() or None
        if sev is not None and sev not in SEVERITIES:
            problems.append(f"severity: one of {', '.join(SEVERITIES)}")
        state = (q.get("state") or "").strip() or None
        if state is not None and state not in (*ALERT_STATES, "open"):
            problems.append(f"state: one of open, {', '.join(ALERT_STATES)}")
        if problems:
            raise FilterError("; ".join(problems))
        return cls(since, until, box, zone, sev, state)

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if self.since is not None:
            clauses.append("ts >= ?")
            args.append(self.since)
        if self.until is not None:
            clauses.append("ts < ?")
            args.append(self.until)
        if self.box is not None:
            site, _, box = self.box.partition("/")
            clauses.append("site = ? AND box = ?" if box else "site = ?")
            args += [site, box] if box else [site]
        if self.zone is not None:
            clauses.append("(zone_id = ? OR zone_name = ?)")
            args += [self.zone, self.zone]
        if self.severity is not None:
            clauses.append("sev_rank >= ?")
            args.append(SEV_RANK[self.severity])
        if self.state == "open":
            clauses.append(f"state IN ({','.join('?' * len(OPEN_STATES))})")
            args += list(OPEN_STATES)
        elif self.state is not None:
            clauses.append("state = ?")
            args.append(self.state)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def history(store: CommandPostStore, f: HistoryFilter, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    where, args = f.where()
    return [alert_row(r) for r in store.rows(f"SELECT * FROM alerts{where} ORDER BY ts DESC LIMIT ?",
                                             [*args, limit])]


def history_choices(store: CommandPostStore) -> dict[str, list[str]]:
    """The boxes and zones the filter form offers."""
    return {"boxes": [r["k"] for r in store.rows("SELECT DISTINCT site || '/' || box AS k FROM alerts ORDER BY k")],
            "zones": [r["z"] for r in store.rows("SELECT DISTINCT COALESCE(zone_id, '') AS z FROM alerts "
                                                 "WHERE zone_id IS NOT NULL ORDER BY z")]}


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a leading = + - @ would be read as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([_cell(v) for v in (
            r["alert_id"], iso_ms(r["ts"]), r["site"], r["box"], r["kind"], r["severity"], r["state"],
            r["zone_id"] or "", r["zone"] or "", r["lat"] if r["lat"] is not None else "",
            r["lon"] if r["lon"] is not None else "", "+".join(r["sensors"]), r["summary"], r["acked_by"] or "",
            iso_ms(r["acked_ts"]) if r["acked_ts"] else "", r["ack_note"] or "")])
    return buf.getvalue()


def export_geojson(rows: list[dict[str, Any]]) -> dict[str, Any]:
    features = []
    for r in rows:
        geom = {"type": "Point", "coordinates": [r["lon"], r["lat"]]} \
            if r["lat"] is not None and r["lon"] is not None else None
        props = {k: r[k] for k in ("alert_id", "site", "box", "kind", "severity", "state", "zone_id", "zone",
                                   "sensors", "summary", "acked_by")}
        props["ts"] = iso_ms(r["ts"])
        features.append({"type": "Feature", "geometry": geom, "properties": props})
    return {"type": "FeatureCollection", "features": features}
