"""Fusion: zone, metal and radio events correlated into incidents, and the alerts they give.

Pure like the rules: events carry their own time, ``tick(now)`` closes quiet incidents; no I/O. Every input
returns a ``FusionResult`` (the evidence added, the alerts to raise, in the order they happened) and the caller
writes the incident log and queues the alerts; ids come from an injected ``new_id``. An event
joins an open incident of a rule when it is about the rule's place (the rule's zone or line, a metal
detector of that place or within ``radius_m``, a radio position within ``radius_m`` or a bearing that passes
through the zone) and comes within ``window_s`` of the incident's last evidence. Severity starts from the
rule and rises one step for each further independent sensor kind (thermal, metal, radio). Whether a sensor
is faulty is decided by ``sensorstate``; ``sensor_fault`` and ``sensor_ok`` build the alerts it asks for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import shapely
from shapely.geometry import LineString, Point
from shapely.geometry.base import BaseGeometry

from edge_agent.contract.alert import Alert, AlertKind, AlertState, Evidence, Severity
from edge_agent.contract.ids import new_ulid
from edge_agent.core.evidence import metal_evidence, radio_evidence, zone_evidence
from edge_agent.incidents.record import Incident
from geofences.geo import LocalPlane
from geofences.rules import ZoneEvent
from sensors.events import MetalEvent, RadioEvent

EMERGENCY_REPEAT_S = 60.0
NewId = Callable[[float], str]  # a ULID for a time; tests inject a deterministic one
ZONE_KINDS: dict[str, AlertKind] = {"entry": "intrusion", "loitering": "loitering", "line_crossing": "line_crossing",
                                    "presence": "intrusion"}


@dataclass(frozen=True, slots=True)
class EvidenceAdded:
    """An incident gained a piece of evidence (alerted or not); the incident log keeps every piece."""

    incident: Incident
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class FusionResult:
    """What one input did, in order: evidence added to incidents and alerts to raise."""

    steps: tuple[EvidenceAdded | Alert, ...] = ()

    @property
    def evidence(self) -> tuple[EvidenceAdded, ...]:
        return tuple(s for s in self.steps if isinstance(s, EvidenceAdded))

    @property
    def alerts(self) -> tuple[Alert, ...]:
        return tuple(s for s in self.steps if isinstance(s, Alert))

    def __add__(self, other: FusionResult) -> FusionResult:
        return FusionResult(self.steps + other.steps)

    def __bool__(self) -> bool:
        return bool(self.steps)


@dataclass(frozen=True, slots=True)
class FusionRule:
    id: str
    place: str  # a zone or line id
    place_name: str
    area: BaseGeometry | None  # the place on the site plane (metres), when it is geographic or calibrated
    metal: frozenset[str] = frozenset()  # detectors that belong to this place (besides those within radius)
    radio: frozenset[str] = frozenset()  # receivers whose bare detections count here
    radius_m: float = 50.0
    window_s: float = 30.0
    severity: Severity = "medium"
    quiet_s: float = 120.0
    cooldown_s: float = 300.0
    fixed: bool = True  # fixed sensors may join by distance, position or bearing (False: the camera's alone)
    lower_if_unknown: bool = True  # a track of unknown class alerts one severity lower (the place's filters)


class FusionEngine:
    def __init__(self, site: str, box: str, rules: Iterable[FusionRule], plane: LocalPlane | None,
                 sensor_positions: dict[str, tuple[float, float]], sensor_kinds: Mapping[str, str] | None = None,
                 new_id: NewId = new_ulid) -> None:
        self.site, self.box = site, box
        self.rules = list(rules)
        for r in self.rules:
            if r.area is not None:
                shapely.prepare(r.area)
        self.plane = plane
        self.positions = sensor_positions
        self.kinds = sensor_kinds or {}  # fixed sensor id -> metal | radio; anything else is a camera
        self.new_id = new_id
        self.open: dict[str, list[Incident]] = {r.id: [] for r in self.rules}
        self.alerts: dict[str, Alert] = {}  # incident id -> its alert, as last published
        self.faulty: dict[str, str] = {}  # sensor -> reason, as sensorstate reported it
        self._last_fault_alert: dict[str, Alert] = {}
        self._recent: dict[tuple[str, frozenset[str]], float] = {}  # (rule, sensor types) -> last alert time

    def replace_rules(self, rules: Iterable[FusionRule], plane: LocalPlane | None,
                      positions: dict[str, tuple[float, float]]) -> None:
        """New rules (a config reload): open incidents of rules that are still there carry on."""
        self.rules = list(rules)
        for r in self.rules:
            if r.area is not None:
                shapely.prepare(r.area)
        self.plane, self.positions = plane, positions
        self.open = {r.id: self.open.get(r.id, []) for r in self.rules}

    # -- inputs ----------------------------------------------------------------------------------------

    def on_zone_event(self, ev: ZoneEvent) -> FusionResult:
        kind = ZONE_KINDS.get(ev.kind)
        if kind is None:
            return FusionResult()  # exits end nothing by themselves: incidents close when quiet
        steps: list[EvidenceAdded | Alert] = []
        for rule in self.rules:
            if rule.place == ev.rule_id:
                steps += self._add(rule, zone_evidence(ev), ev.ts, kind)
        return FusionResult(tuple(steps))

    def on_metal(self, ev: MetalEvent) -> FusionResult:
        """An alarm joins the incidents of its place; CLEAR says nothing new. TAMPER, FAULT and heartbeats are
        the detector's health, which ``sensorstate`` decides (then ``sensor_fault``/``sensor_ok``)."""
        if ev.event != "ALARM":
            return FusionResult()
        where = self.positions.get(ev.sensor)
        point = self._point(where)
        steps: list[EvidenceAdded | Alert] = []
        for rule in self.rules:
            if ev.sensor in rule.metal or (rule.fixed and self._near(rule, point)):
                steps += self._add(rule, metal_evidence(ev, where), ev.received, "metal")
        return FusionResult(tuple(steps))

    def on_radio(self, ev: RadioEvent) -> FusionResult:
        receiver = self.positions.get(ev.sensor)
        at = (ev.lat, ev.lon) if ev.lat is not None and ev.lon is not None else None
        point = self._point(at) if ev.kind == "position" and at is not None else None
        ray = self._ray(receiver, ev.bearing_deg) if ev.kind == "bearing" else None
        steps: list[EvidenceAdded | Alert] = []
        for rule in self.rules:
            if not rule.fixed and ev.sensor not in rule.radio:
                continue
            if ev.kind == "position":
                hit = self._near(rule, point)
            elif ev.kind == "bearing":
                hit = ray is not None and rule.area is not None and bool(rule.area.intersects(ray))
            else:  # rf_detect and emergency: only a receiver of this place says it is here
                hit = ev.sensor in rule.radio
            if hit:
                steps += self._add(rule, radio_evidence(ev, receiver), ev.received, "radio")
        if ev.kind == "emergency" and not steps:
            steps += self._emergency(ev, receiver)
        return FusionResult(tuple(steps))

    def _emergency(self, ev: RadioEvent, receiver: tuple[float, float] | None) -> list[EvidenceAdded | Alert]:
        """A distress call is news wherever it comes from: an alert of its own (one per radio per window)."""
        key = f"emergency:{ev.radio_id or ev.sensor}"
        last = self._recent.get((key, frozenset()), -1e18)
        if ev.received - last < EMERGENCY_REPEAT_S:
            return []
        self._recent[(key, frozenset())] = ev.received
        evidence = radio_evidence(ev, receiver)
        inc = Incident(self.new_id(ev.received), key, "radio", "high", ev.received, None, [evidence], ev.received)
        inc.alert_id = self.new_id(ev.received)
        who = f" from radio {ev.radio_id}" if ev.radio_id else ""
        freq = f" on {ev.freq_hz / 1e6:.3f} MHz" if ev.freq_hz else ""
        return [EvidenceAdded(inc, evidence),
                Alert(inc.alert_id, inc.incident_id, self.site, self.box, ev.received, "radio", "high", "new", None,
                      evidence.location, (evidence,), f"Radio emergency{who}{freq}, heard by {ev.sensor}")]

    def sensor_fault(self, sensor: str, reason: str, ts: float, ev: MetalEvent | None = None) -> FusionResult:
        """The alert for a sensor that ``sensorstate`` found faulty (a camera stalled, a detector silent past
        its heartbeat or tampered with); incidents that rely on it are degraded from now on."""
        self.faulty[sensor] = reason
        kind = "metal" if ev is not None else self.kinds.get(sensor, "thermal")
        fields = (("event", ev.event), ("level", ev.level)) if ev is not None else (("kind", "fault"),)
        evidence = Evidence(sensor, kind, ts, fields, self.positions.get(sensor))  # type: ignore[arg-type]
        alert = Alert(self.new_id(ts), self.new_id(ts), self.site, self.box, ts, "sensor_fault",
                      "high" if ev is not None and ev.event == "TAMPER" else "medium", "new", None, evidence.location,
                      (evidence,), f"Sensor fault: {reason}")
        self._last_fault_alert[sensor] = alert
        for rule in self.rules:  # incidents that rely on this sensor say so from now on
            if sensor in rule.metal or sensor in rule.radio:
                for inc in self.open[rule.id]:
                    inc.degraded = tuple(sorted({*inc.degraded, sensor}))
        return FusionResult((alert,))

    def sensor_ok(self, sensor: str, ts: float) -> FusionResult:
        """A sensor back from its fault: the fault's alert goes out closed."""
        if self.faulty.pop(sensor, None) is not None and sensor in self._last_fault_alert:
            return FusionResult((self._last_fault_alert.pop(sensor).with_state("closed", ts),))
        return FusionResult()

    def tick(self, now: float) -> FusionResult:
        """Close incidents that have been quiet for their rule's ``quiet_s``."""
        closed: list[EvidenceAdded | Alert] = []
        for rule in self.rules:
            still = []
            for inc in self.open[rule.id]:
                if now - inc.updated >= rule.quiet_s:
                    inc.closed = now
                    alert = self.alerts.pop(inc.incident_id, None)
                    if alert is not None:
                        closed.append(alert.with_state("closed", now))
                else:
                    still.append(inc)
            self.open[rule.id] = still
        return FusionResult(tuple(closed))

    # -- core ------------------------------------------------------------------------------------------

    def _add(self, rule: FusionRule, evidence: Evidence, ts: float, kind: AlertKind) -> list[EvidenceAdded | Alert]:
        current = [i for i in self.open[rule.id] if ts - i.updated <= rule.window_s]
        if current:
            inc = current[-1]
        else:
            inc = Incident(self.new_id(ts), rule.id, kind, rule.severity, ts, (rule.place, rule.place_name),
                           lower_if_unknown=rule.lower_if_unknown)
            inc.degraded = tuple(sorted(s for s in self.faulty if s in rule.metal or s in rule.radio))
            self.open[rule.id].append(inc)
        inc.evidence.append(evidence)
        inc.updated = max(inc.updated, ts)
        if len(inc.sensor_types) > 1:
            inc.kind = "fused"
        alert = self._maybe_alert(rule, inc, ts)
        return [EvidenceAdded(inc, evidence)] + ([alert] if alert is not None else [])

    def _maybe_alert(self, rule: FusionRule, inc: Incident, ts: float) -> Alert | None:
        key = (inc.severity, frozenset(inc.sensor_types), inc.kind)
        if key == inc.last_alert_key:
            return None  # the same thing again: no second alert
        recent_key = (rule.id, frozenset(inc.sensor_types))
        first = inc.alert_id is None
        if first and ts - self._recent.get(recent_key, -1e18) < rule.cooldown_s:
            inc.last_alert_key = key  # a repeat of something alerted moments ago: logged, not alerted
            return None
        state: AlertState = "new" if first else "updated"
        if first:
            inc.alert_id = self.new_id(ts)
        assert inc.alert_id is not None
        alert = Alert(inc.alert_id, inc.incident_id, self.site, self.box, ts, inc.kind, inc.severity, state,
                      inc.zone, inc.location, tuple(inc.evidence[-20:]), summary_of(inc))
        inc.last_alert_key = key
        inc.last_alert_ts = ts
        self._recent[recent_key] = ts
        self.alerts[inc.incident_id] = alert
        return alert

    def _point(self, where: tuple[float, float] | None) -> Point | None:
        if where is None or self.plane is None:
            return None
        x, y = self.plane.to_xy(where[0], where[1])
        return Point(float(x), float(y))

    def _near(self, rule: FusionRule, point: Point | None) -> bool:
        return point is not None and rule.area is not None and bool(shapely.dwithin(rule.area, point, rule.radius_m))

    def _ray(self, receiver: tuple[float, float] | None, bearing: float | None) -> LineString | None:
        """A bearing as a straight 10 km ray on the site plane (the plane is flat to well under a metre over
        such distances near the site)."""
        if receiver is None or bearing is None or self.plane is None:
            return None
        x0, y0 = (float(v) for v in self.plane.to_xy(receiver[0], receiver[1]))
        b = math.radians(bearing)
        return LineString([(x0, y0), (x0 + 10_000.0 * math.sin(b), y0 + 10_000.0 * math.cos(b))])


def _thermal_summary(f: dict[str, object], place: str) -> str:
    """``Person (1.7 m tall, 1.3 m/s; 9 px, by physics) entered Patrol strip``: the class, what it rests on, and
    how many pixels it had to go on; ``3 people inside Verge (more than allowed)``."""
    label = str(f.get("label") or "object")
    if f.get("kind") == "presence":
        noun = {"person": "people", "unknown": "unidentified objects"}.get(label, f"{label}s")
        return f"{f.get('count', '?')} {noun} inside {place} (more than allowed)"
    what = {"entry": "entered", "loitering": "is loitering in", "line_crossing": "crossed"}.get(
        str(f.get("kind")), "seen in")
    noun = "Unidentified object (person or animal?)" if label == "unknown" else label.capitalize()
    why = []
    if isinstance(f.get("height_m"), (int, float)):
        why.append(f"{f['height_m']:.1f} m tall")
    if isinstance(f.get("speed_mps"), (int, float)):
        why.append(f"{f['speed_mps']:.1f} m/s")
    seen = f"{f['px_tall']:.0f} px, by {f.get('by', 'model')}" if isinstance(f.get("px_tall"), (int, float)) else ""
    because = f" ({'; '.join(part for part in (', '.join(why), seen) if part)})" if why or seen else ""
    return f"{noun}{because} {what} {place}"


def summary_of(inc: Incident) -> str:
    """The line a guard reads aloud: what each sensor kind saw, how many agree, what is faulty."""
    parts = []
    thermal = [e for e in inc.evidence if e.type == "thermal"]
    if thermal:
        parts.append(_thermal_summary(dict(thermal[-1].fields), inc.zone[1] if inc.zone else "?"))
    metal = [e for e in inc.evidence if e.type == "metal"]
    if metal:
        parts.append(f"metal alarm at {metal[-1].sensor} (level {dict(metal[-1].fields).get('level')})")
    radio = [e for e in inc.evidence if e.type == "radio"]
    if radio:
        f = dict(radio[-1].fields)
        freq = f" {float(f['freq_hz']) / 1e6:.3f} MHz" if "freq_hz" in f else ""
        parts.append(f"radio {f.get('kind')}{freq} from {radio[-1].sensor}")
    if not thermal and inc.zone:
        parts[0] = f"{parts[0]} near {inc.zone[1]}"
    text = "; ".join(parts)
    if len(inc.sensor_types) > 1:
        text += f" — {len(inc.sensor_types)} sensor kinds agree"
    if inc.degraded:
        text += f" (degraded: {', '.join(inc.degraded)} faulty)"
    return text
