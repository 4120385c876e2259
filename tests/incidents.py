"""An incident written the way the agent writes one (evidence, then its alert into the outbox; two commits),
for the incident-log tests, the burst writer they kill, and the insert benchmark."""

from __future__ import annotations

from edge_agent.contract.alert import Alert, Evidence, Severity
from edge_agent.contract.ids import new_ulid
from edge_agent.incidents.record import Incident
from edge_agent.incidents.store import IncidentStore


def log_incident(store: IncidentStore, t: float, zone: str = "strip", severity: Severity = "medium",
                 latlon: tuple[float, float] | None = (46.5502, 15.65), sensor: str = "cam",
                 summary: str | None = None) -> Incident:
    inc = Incident(new_ulid(t), zone, "intrusion", severity, t, (zone, zone.title()))
    ev = Evidence(sensor, "thermal", t, (("label", "person"), ("confidence", 0.8), ("track_id", 3)), latlon)
    inc.evidence.append(ev)
    inc.updated = t
    store.add_evidence(inc, ev)
    inc.alert_id = new_ulid(t)
    store.queue_alert(Alert(inc.alert_id, inc.incident_id, "s", "b", t, "intrusion", inc.severity, "new", inc.zone,
                            inc.location, (ev,), summary or f"Person entered {zone}"))
    return inc
