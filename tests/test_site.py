"""The composed site: tracks placed on the map with a real height by their camera's perception, and onto the
site plane for the geographic rules."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.types import Detections
from edge_agent.config.agent import load_config
from edge_agent.core.site import Site
from edge_agent.perception.geometry import CameraGeometry
from edge_agent.perception.tracks import CameraPerception
from geofences.geo import distance_m
from sensors.sim import ThermalScene
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def site() -> Site:
    return Site.from_config(load_config(ROOT / "configs" / "demo.yaml"))


def test_track_points_carry_position_and_real_height(site: Site) -> None:
    scene = ThermalScene.from_url("sim://border")
    _, truth = scene.render(150)
    people = [t for t in truth if t.label == "person" and t.visible > 0.95]
    dog = [t for t in truth if t.label == "animal"]
    objs = people + dog
    boxes = np.array([t.full_bbox for t in objs], np.float32)
    tracks = Detections(boxes, np.full(len(objs), 0.9, np.float32), np.zeros(len(objs), np.int64),
                        np.arange(1, len(objs) + 1))
    cam = next(c for c in site.config.cameras if c.id == "sim-border")
    perceived = CameraPerception(CameraGeometry.of(cam)).frame(15.0, tracks, (640, 480))
    pixel, geo = site.rule_inputs(perceived.points, calibrated=True)
    assert len(pixel) == len(geo) == len(objs)
    assert all(np.isfinite(p.x) and np.isfinite(p.y) for p in geo)  # metres on the site plane
    for t, p in zip(objs, pixel, strict=True):
        assert p.latlon is not None
        assert distance_m(*p.latlon, *scene.ground_to_latlon(*t.ground_xy)) < 1.0
    heights = [p.height_m for p in pixel]
    assert all(1.5 < h < 2.1 for h in heights[: len(people)]), heights  # people: 1.75 m x size
    assert all(h < 1.0 for h in heights[len(people):]), heights  # the dog


def test_min_height_keeps_small_warm_things_out(site: Site) -> None:
    from geofences.rules import Filters, TrackPoint

    tall = TrackPoint("c", 1, "person", 0.9, 0.0, (0, 0, 10, 80), 5, 80, height_m=1.7)
    short = TrackPoint("c", 2, "person", 0.9, 0.0, (0, 0, 20, 30), 5, 30, height_m=0.7)
    unknown = TrackPoint("c", 3, "person", 0.9, 0.0, (0, 0, 20, 30), 5, 30)
    f = Filters(min_height_m=1.0)
    assert [f.admits(p) for p in (tall, short, unknown)] == [True, False, False]
    assert Filters().admits(unknown)
