"""The incident as fusion keeps it while it is open, and the rows it is written as.

Fusion works on an ``Incident`` (events of one or more sensors about the same thing); the store writes it as an
``incidents`` row with its ``evidence`` rows. The mapping from records to rows lives here, once."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from edge_agent.contract.alert import Alert, AlertKind, Evidence, Severity, raise_severity
from edge_agent.incidents.schema import SEV_RANK


@dataclass(slots=True)
class Incident:
    """Events of one or more sensors about the same thing, in one place and time window."""

    incident_id: str
    rule: str
    kind: AlertKind
    base_severity: Severity
    opened: float
    zone: tuple[str, str] | None  # (id, name)
    evidence: list[Evidence] = field(default_factory=list)
    updated: float = 0.0
    closed: float | None = None
    alert_id: str | None = None
    last_alert_ts: float = 0.0
    last_alert_key: tuple[object, ...] = ()
    degraded: tuple[str, ...] = ()  # faulty sensors this incident's rule depends on
    lower_if_unknown: bool = False  # the rule alerts one step lower while no camera can tell what it saw

    @property
    def sensor_types(self) -> set[str]:
        return {e.type for e in self.evidence}

    @property
    def unsure(self) -> bool:
        """Every camera track of this incident is of a class nobody could tell (a person or an animal?)."""
        labels = [dict(e.fields).get("label") for e in self.evidence if e.type == "thermal"]
        return bool(labels) and all(label == "unknown" for label in labels)

    @property
    def severity(self) -> Severity:
        steps = max(0, len(self.sensor_types) - 1)
        return raise_severity(self.base_severity, steps - int(self.lower_if_unknown and self.unsure))

    @property
    def location(self) -> tuple[float, float] | None:
        for e in self.evidence:  # the thermal track is the most precise position, then metal, then radio
            if e.type == "thermal" and e.location:
                return e.location
        return next((e.location for e in self.evidence if e.location), None)


def canonical(value: object) -> str:
    """JSON with sorted keys and no spaces: the one text form that rows are stored and hashed in."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _place(zone: tuple[str, str] | None, location: tuple[float, float] | None) -> dict[str, Any]:
    return {"zone_id": zone[0] if zone else None, "zone_name": zone[1] if zone else None,
            "lat": location[0] if location else None, "lon": location[1] if location else None}


def incident_row(inc: Incident, summary: str | None = None) -> dict[str, Any]:
    """The ``incidents`` row of a fusion incident (summary and alert id only where known)."""
    row: dict[str, Any] = {
        "id": inc.incident_id, "rule": inc.rule, "kind": inc.kind, "severity": inc.severity,
        "sev_rank": SEV_RANK[inc.severity], "state": "closed" if inc.closed else "open",
        **_place(inc.zone, inc.location), "opened": inc.opened, "updated": inc.updated, "closed": inc.closed,
        "sensors": ",".join(sorted(inc.sensor_types)), "degraded": ",".join(inc.degraded) or None,
    }
    if summary is not None:
        row["summary"] = summary
    if inc.alert_id:
        row["alert_id"] = inc.alert_id
    return row


def alert_incident_row(alert: Alert) -> dict[str, Any]:
    """The ``incidents`` row of an alert that makes its own incident (a sensor fault)."""
    return {
        "id": alert.incident_id, "rule": alert.kind, "kind": alert.kind, "severity": alert.severity,
        "sev_rank": SEV_RANK[alert.severity], "state": "open", "opened": alert.ts, "updated": alert.ts,
        **_place(alert.zone, alert.location), "sensors": ",".join(sorted({e.type for e in alert.evidence})),
        "summary": alert.summary, "alert_id": alert.alert_id,
    }


def insert_evidence(db: sqlite_utils.Database, incident_id: str, items: Iterable[Evidence]) -> None:
    """Evidence rows of an incident; a row already stored (same sensor, time and data) is not stored twice."""
    rows = [{"incident_id": incident_id, "sensor": e.sensor, "type": e.type, "ts": e.ts,
             "lat": e.location[0] if e.location else None, "lon": e.location[1] if e.location else None,
             "data": canonical(dict(e.fields))} for e in items]
    if rows:
        db.table("evidence").insert_all(rows, ignore=True)
