"""Fusion: the intrusion scene's scripted people through the rules, plus scripted metal and radio events; every
alert is validated against the contract's JSON Schema. Fusion is pure: no model here (the chain from the model to
the rules is tests/test_zone_scene.py's)."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest

from edge_agent.config.agent import AgentConfig
from edge_agent.contract.alert import SEVERITIES, Alert, alert_schema, parse_alert
from edge_agent.contract.ids import new_ulid
from edge_agent.core.fusion import EvidenceAdded, FusionEngine, FusionResult
from edge_agent.core.sensorstate import HEALTH_EVENTS, SensorStates, StateChange
from edge_agent.core.site import Site
from edge_agent.demo.script import pmdet as sentence
from edge_agent.incidents.store import IncidentStore
from geofences.rules import ZoneEvent
from sensors.events import MetalEvent, RadioEvent
from sensors.feeds import SensorFeed
from sensors.sim import ThermalScene
from tests.conftest import ROOT
from tests.scenes import intrusion_config, scripted_zone_events

VALIDATOR = jsonschema.Draft202012Validator(alert_schema())


def on_the_wire(alert: Alert) -> None:
    """An alert the box built is what the contract says, and the contract's parser reads it back whole: once
    through the wire (times to the millisecond, places to 7 decimals), the typed alert and its JSON stay put."""
    VALIDATOR.validate(alert.payload())
    back = parse_alert(alert.to_json(), alert.site, alert.box)
    assert back.to_json() == alert.to_json()
    assert parse_alert(back.to_json(), alert.site, alert.box) == back
    assert (back.alert_id, back.state, back.kind, back.severity, back.zone, back.summary, back.snapshot) == (
        alert.alert_id, alert.state, alert.kind, alert.severity, alert.zone, alert.summary, alert.snapshot)
    assert [(e.sensor, e.type, e.fields) for e in back.evidence] == [(e.sensor, e.type, e.fields)
                                                                    for e in alert.evidence]


def pmdet(sensor: str, seq: int, event: str, level: int = 80, zone: int = 1) -> bytes:
    return sentence(sensor, seq, event, level, zone).encode()


def radio(sensor: str, ts: float, kind: str, **kw: object) -> bytes:
    return json.dumps({"sensor": sensor, "ts": int(ts * 1000), "kind": kind, **kw}).encode()


def bearing(frm: tuple[float, float], to: tuple[float, float]) -> float:
    p1, p2 = math.radians(frm[0]), math.radians(to[0])
    dl = math.radians(to[1] - frm[1])
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return (math.degrees(math.atan2(y, x)) + 360) % 360


class Harness:
    """The scene's zone events and scripted sensor lines, merged in time order into one fusion engine. Metal
    events about the detector itself go through the sensor states, as in the agent's core; the alerts fusion
    returns are collected (and, given a store, written with their evidence as the core does)."""

    def __init__(self, scene: ThermalScene, store: IncidentStore | None = None) -> None:
        raw = intrusion_config(scene)
        self.gate = scene.ground_to_latlon(0.5, 19.0)
        self.receiver = scene.ground_to_latlon(-40.0, 5.0)
        raw["fixed_sensors"] = [
            {"id": "md-gate", "kind": "metal", "latlon": list(self.gate)},
            {"id": "md-far", "kind": "metal", "latlon": list(scene.ground_to_latlon(2000.0, 900.0))},
            {"id": "rf-1", "kind": "radio", "latlon": list(self.receiver)},
        ]
        raw["fusion"] = [{"id": "gate", "place": "strip", "metal": ["md-gate"], "radius_m": 30, "window_s": 30,
                          "severity": "medium", "quiet_s": 60, "cooldown_s": 120}]
        self.config = AgentConfig.model_validate(raw)
        self.alerts: list[Alert] = []
        self.store = store
        self.engine: FusionEngine = Site.from_config(self.config).fusion_engine()
        self.states = SensorStates(self.config)
        self.metal = SensorFeed("md", "metal", "udp://127.0.0.1:0", self.event, accept=frozenset({"md-gate", "md-far"}))
        self.radio = SensorFeed("rf", "radio", "udp://127.0.0.1:0", self.event, accept=frozenset({"rf-1"}))

    def take(self, result: FusionResult) -> None:
        for step in result.steps:
            if isinstance(step, EvidenceAdded):
                if self.store is not None:
                    self.store.add_evidence(step.incident, step.evidence)
            else:
                self.alerts.append(step)
                if self.store is not None:
                    self.store.queue_alert(step)

    def event(self, ev: MetalEvent | RadioEvent) -> None:
        if isinstance(ev, RadioEvent):
            self.take(self.engine.on_radio(ev))
        elif ev.event in HEALTH_EVENTS:
            self.sensor_change(self.states.on_metal(ev))
        else:
            self.take(self.engine.on_metal(ev))

    def sensor(self, sensor: str, state: str, detail: str, ts: float) -> None:
        """A sensor's state as the agent's housekeeping sees it (a camera's reader, a feed's heartbeat watch)."""
        self.sensor_change(self.states.observe(sensor, state, detail, ts))

    def sensor_change(self, change: StateChange | None) -> None:
        if change is not None:
            self.take(change.fused(self.engine))

    def play(self, zone_events: list[ZoneEvent], lines: list[tuple[float, str, bytes]]) -> list[Alert]:
        items: list[tuple[float, int, object]] = [(e.ts, 0, e) for e in zone_events if e.rule_id == "strip"]
        items += [(ts, 1, (kind, line)) for ts, kind, line in lines]
        for ts, _, item in sorted(items, key=lambda x: (x[0], x[1])):
            self.take(self.engine.tick(ts))
            if isinstance(item, ZoneEvent):
                self.take(self.engine.on_zone_event(item))
            else:
                kind, line = item  # type: ignore[misc]
                (self.metal if kind == "metal" else self.radio).handle(line, ts)
        for a in self.alerts:
            on_the_wire(a)
        return self.alerts


@pytest.fixture(scope="module")
def scripted() -> tuple[ThermalScene, list[ZoneEvent]]:
    scene = ThermalScene.from_url("sim://intrusion")
    return scene, scripted_zone_events(scene, AgentConfig.model_validate(intrusion_config(scene)))


@pytest.fixture
def harness(scripted: tuple[ThermalScene, list[ZoneEvent]]) -> tuple[Harness, list[ZoneEvent]]:
    scene, events = scripted
    return Harness(scene), events


def _entry(events: list[ZoneEvent]) -> ZoneEvent:
    return next(e for e in events if e.kind == "entry" and e.rule_id == "strip")


def test_person_then_metal_alarm_is_one_incident_above_either_alone(harness) -> None:  # type: ignore[no-untyped-def]
    h, events = harness
    t = _entry(events).ts
    alerts = h.play(events, [(t + 3.0, "metal", pmdet("md-gate", 1, "ALARM"))])
    first = [a for a in alerts if a.state == "new"]
    assert len(first) == 1 and first[0].kind == "intrusion" and first[0].severity == "medium"
    fused = [a for a in alerts if a.kind == "fused"]
    assert fused and fused[0].alert_id == first[0].alert_id and fused[0].state == "updated"
    assert SEVERITIES.index(fused[0].severity) > SEVERITIES.index("medium")
    assert {e.type for e in fused[0].evidence} == {"thermal", "metal"}
    assert "metal alarm at md-gate" in fused[0].summary and "2 sensor kinds agree" in fused[0].summary
    assert fused[0].location is not None and fused[0].zone == ("strip", "Gate strip")
    # metal alone, far from any person: one incident, and only medium
    h2 = Harness(ThermalScene.from_url("sim://intrusion"))
    alone = h2.play([], [(t + 3.0, "metal", pmdet("md-gate", 1, "ALARM"))])
    assert [(a.kind, a.severity) for a in alone if a.state == "new"] == [("metal", "medium")]


def test_a_bearing_through_the_zone_joins_one_that_misses_does_not(harness) -> None:  # type: ignore[no-untyped-def]
    h, events = harness
    t = _entry(events).ts
    towards = bearing(h.receiver, h.gate)
    alerts = h.play(events, [
        (t + 3.0, "metal", pmdet("md-gate", 1, "ALARM")),
        (t + 6.0, "radio", radio("rf-1", t + 6.0, "bearing", bearing_deg=(towards + 90) % 360, freq_hz=446e6)),
        (t + 8.0, "radio", radio("rf-1", t + 8.0, "bearing", bearing_deg=towards, bearing_conf=0.7, freq_hz=446e6)),
    ])
    incidents = {a.incident_id for a in alerts if a.state in ("new", "updated")}
    assert len(incidents) == 1
    last = [a for a in alerts if a.state == "updated"][-1]
    assert {e.type for e in last.evidence} == {"thermal", "metal", "radio"}
    assert last.severity == "critical"  # medium + metal + radio
    assert sum(1 for e in last.evidence if e.type == "radio") == 1  # the bearing that missed is not evidence


def test_far_apart_in_time_or_place_stay_separate_and_repeats_do_not_alert(harness) -> None:  # type: ignore[no-untyped-def]
    h, events = harness
    t = _entry(events).ts
    alerts = h.play(events, [
        (t + 3.0, "metal", pmdet("md-gate", 1, "ALARM")),
        (t + 5.0, "metal", pmdet("md-gate", 2, "ALARM")),  # the same alarm again: nothing new to say
        (t + 4.0, "metal", pmdet("md-far", 1, "ALARM")),  # 2 km away, no rule there: no incident here
        (t + 400.0, "metal", pmdet("md-gate", 3, "ALARM")),  # long after: a new incident
    ])
    new = [a for a in alerts if a.state == "new"]
    assert len(new) == 2 and new[0].incident_id != new[1].incident_id
    assert new[1].kind == "metal" and new[1].ts == pytest.approx(t + 400.0)
    updates_in_first = [a for a in alerts if a.incident_id == new[0].incident_id and a.state == "updated"]
    assert len(updates_in_first) == 1  # thermal -> fused; the repeat at +5 s gave no alert
    assert all("md-far" not in [e.sensor for e in a.evidence] for a in alerts)
    assert any(a.state == "closed" and a.incident_id == new[0].incident_id for a in alerts)


def test_sensor_faults_are_alerts_and_degrade_dependent_incidents() -> None:
    scene = ThermalScene.from_url("sim://intrusion")
    h = Harness(scene)
    t0 = 1_795_435_200.0
    h.play([], [(t0, "metal", pmdet("md-gate", 1, "TAMPER", 100))])
    fault = h.alerts[-1]
    assert fault.kind == "sensor_fault" and fault.severity == "high" and "TAMPER" in fault.summary
    h.play([], [(t0 + 1, "metal", pmdet("md-gate", 2, "TAMPER", 100))])
    assert len([a for a in h.alerts if a.kind == "sensor_fault"]) == 1  # one alert per fault episode
    h.take(h.engine.on_zone_event(ZoneEvent("entry", "strip", "cam", 7, "person", t0 + 5, 0.8, (0, 0, 10, 40),
                                            h.gate, t0 + 4.5)))
    assert "degraded: md-gate faulty" in h.alerts[-1].summary
    # a silent detector: the feed's heartbeat watch names it, the engine alerts once
    feed = SensorFeed("md", "metal", "udp://127.0.0.1:0", lambda ev: None, hb_timeout_s=30,
                      accept=frozenset({"md-gate"}))
    feed.handle(pmdet("md-gate", 9, "HB", 0), t0)
    for sensor in feed.faulty(t0 + 31):
        h.sensor(sensor, "faulty", "no heartbeat for 30 s", t0 + 31)
    assert len([a for a in h.alerts if a.kind == "sensor_fault"]) == 1  # already faulty (tamper)
    for a in h.alerts:
        on_the_wire(a)


def test_ulids_are_unique_sortable_and_well_formed() -> None:
    ids = [new_ulid(1_795_435_200.0) for _ in range(1000)]
    assert len(set(ids)) == 1000 and ids == sorted(ids)
    assert all(len(i) == 26 and set(i) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for i in ids)


def test_schema_copy_matches_the_contract() -> None:
    shared = ROOT.parent / "shared" / "alert.schema.json"
    if shared.exists():  # CI clones the repository alone; the copy ships inside the package
        assert json.loads(shared.read_text()) == alert_schema()
    assert alert_schema()["$id"] == "edge-agent/alert@1"


def test_a_stalled_camera_and_a_silent_receiver_are_sensor_faults_of_their_kind() -> None:
    h = Harness(ThermalScene.from_url("sim://intrusion"))
    h.sensor("cam", "offline", "no frame for 20 s", 1_795_435_200.0)
    h.sensor("rf-1", "faulty", "receiver rf-1 silent", 1_795_435_201.0)
    kinds = [(a.kind, a.evidence[0].type, a.severity) for a in h.alerts]
    assert kinds == [("sensor_fault", "thermal", "medium"), ("sensor_fault", "radio", "medium")]
    h.sensor("cam", "online", "", 1_795_435_260.0)
    assert h.alerts[-1].state == "closed" and h.alerts[-1].alert_id == h.alerts[0].alert_id
    for a in h.alerts:
        on_the_wire(a)


def test_a_radio_emergency_is_an_alert_of_its_own_once_a_minute() -> None:
    h = Harness(ThermalScene.from_url("sim://intrusion"))
    t = 1_795_435_200.0
    for i in range(3):  # the same handheld calling again and again: one alert
        h.radio.handle(radio("rf-1", t + i, "emergency", radio_id="PMR-9", freq_hz=446_006_250), t + i)
    h.radio.handle(radio("rf-1", t + 70, "emergency", radio_id="PMR-9"), t + 70)
    emergencies = [a for a in h.alerts if a.kind == "radio"]
    assert [(a.severity, a.state, a.zone) for a in emergencies] == [("high", "new", None)] * 2
    assert emergencies[0].summary == "Radio emergency from radio PMR-9 on 446.006 MHz, heard by rf-1"
    assert emergencies[0].location == h.receiver  # where it was heard
    for a in h.alerts:
        on_the_wire(a)
