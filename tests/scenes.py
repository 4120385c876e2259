"""The intrusion scene: run through the real detector, tracker and rules (``run_intrusion``, for the tests of that
chain; seconds to minutes), or its scripted people put straight through the rules (``scripted_zone_events``: no
model, for tests of what comes after the rules, such as fusion and the incident log)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from detectors.yolo import YoloDetector
from edge_agent.config.agent import AgentConfig
from edge_agent.core.site import Site
from edge_agent.perception.build import build_pipeline
from edge_agent.perception.geometry import CameraGeometry
from edge_agent.perception.tracks import CameraPerception
from geofences.rules import TrackPoint, ZoneEvent
from sensors.frames import ThermalFrame
from sensors.sim import SIM_OFFSET, SIM_SCALE, ThermalScene

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC).timestamp()  # 13:00 in Vienna
ZONE_M = [(-2.0, 16.0), (3.0, 16.0), (3.0, 22.0), (-2.0, 22.0)]  # ground metres (x east, y north)
LINE_Y = 24.0
# The default model knows only people, and a dog can look like one to it: the classifier (through the
# geo-calibration) tells them apart, so person rules need no more than their default filters.
PERSON = {"labels": ["person"]}


def intrusion_config(scene: ThermalScene, model: Path | str = "default") -> dict:
    cam = scene.camera
    gcps = []
    for x, y in [(-6, 12), (6, 12), (-9, 32), (9, 32), (0, 20)]:
        u, v = cam.project(np.array([x]), np.array([y]), np.array([0.0]))
        gcps.append({"pixel": [round(float(u[0])), round(float(v[0]))], "latlon": list(scene.ground_to_latlon(x, y))})
    zone_geo = [list(scene.ground_to_latlon(x, y)) for x, y in ZONE_M]
    # a pixel zone whose left edge runs through the standing person's feet: only box jitter could cross it
    fu, fv = cam.project(np.array([0.5]), np.array([19.0]), np.array([0.0]))
    edge, mid = float(fu[0]), float(fv[0])
    jitter_zone = [[edge, mid - 40], [edge + 40, mid - 40], [edge + 40, mid + 40], [edge, mid + 40]]
    return {
        "site": "test", "box": "test",
        "detector": {"model": str(model), "imgsz": 640},
        "cameras": [{"id": "cam", "source": "sim://intrusion", "calibration": {"points": gcps}}],
        "zones": [
            {"id": "strip", "name": "Gate strip", "space": "geo", "polygon": zone_geo, "exit": True, "loiter_s": 10,
             "filters": PERSON},
            {"id": "strip-night", "space": "geo", "polygon": zone_geo, "loiter_s": 10, "filters": PERSON,
             "schedule": {"timezone": "Europe/Vienna", "windows": [{"start": "20:00", "end": "06:00"}]}},
            {"id": "jitter", "camera": "cam", "polygon": jitter_zone, "exit": True, "filters": PERSON},
        ],
        "lines": [{"id": "fence", "space": "geo", "filters": PERSON,
                   "points": [list(scene.ground_to_latlon(-9, LINE_Y)), list(scene.ground_to_latlon(9, LINE_Y))]}],
    }


def run_intrusion(model: Path) -> tuple[list[ZoneEvent], ThermalScene]:
    scene = ThermalScene.from_url("sim://intrusion")
    config = AgentConfig.model_validate(intrusion_config(scene, model))
    site = Site.from_config(config)
    engine = site.engine()
    pipeline = build_pipeline(config, YoloDetector(config.detector))
    perception = CameraPerception(CameraGeometry.of(config.cameras[0]))
    events: list[ZoneEvent] = []
    for i in range(scene.frame_count):
        ts = T0 + i / scene.params.fps
        counts = scene.render(i)[0]
        result = pipeline.process(ThermalFrame("cam", i, ts, counts, SIM_SCALE, SIM_OFFSET))
        seen = perception.frame(ts, result.tracks, (counts.shape[1], counts.shape[0]))
        events += engine.update("cam", ts, *site.rule_inputs(seen.points, calibrated=True))
        for ev in result.events:
            if ev.kind == "lost":
                perception.lost(ev.track_id)
                engine.forget("cam", ev.track_id)
    return events, scene


def scripted_zone_events(scene: ThermalScene, config: AgentConfig) -> list[ZoneEvent]:
    """What the rules make of the scene's people walking their scripted paths (each a settled ``person`` track at
    its true foot point, 10 frames a second): the zone events a perfect detector would give, without the model."""
    site = Site.from_config(config)
    engine = site.engine()
    cam = scene.camera
    people = [a for a in scene.scenario.actors if a.label == "person"]
    events: list[ZoneEvent] = []
    first: dict[int, float] = {}
    for i in range(int(scene.scenario.duration_s * 10)):
        t = i / 10.0
        points = []
        for actor in people:
            state = actor.state(t)
            if state is None:
                continue
            x, y = state[0], state[1]
            u, v = cam.project(np.array([x, x]), np.array([y, y]), np.array([0.0, 1.75]))
            box = (float(u[0]) - 0.15 * float(v[0] - v[1]), float(v[1]), float(u[0]) + 0.15 * float(v[0] - v[1]),
                   float(v[0]))
            first.setdefault(actor.track_id, t)
            points.append(TrackPoint("cam", actor.track_id, "person", 0.9, T0 + t, box, float(u[0]), float(v[0]),
                                     age_s=t - first[actor.track_id], latlon=scene.ground_to_latlon(x, y),
                                     height_m=1.75, settled=True))
        events += engine.update("cam", T0 + t, *site.rule_inputs(points, calibrated=True))
    return events
