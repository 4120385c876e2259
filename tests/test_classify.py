"""The track classifier on measured sizes and speeds, and the camera pose it measures through."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.classify import Measurement, TrackClassifier
from geofences.geo import GeoCalibration, GroundControlPoint, recover_pose
from sensors.sim import CameraModel, ThermalScene

FPS = 10.0


def _walk(h: float, w: float, speed: float, seconds: float = 3.0, label: str = "person", heading: float = 0.0,
          jitter: float = 0.03, seed: int = 0) -> list[Measurement]:
    """A track measured every frame: size with a little noise, moving at ``speed`` along ``heading``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(int(seconds * FPS)):
        t = i / FPS
        x = speed * t * math.cos(heading) + rng.normal(0, jitter)
        y = 30 + speed * t * math.sin(heading) + rng.normal(0, jitter)
        out.append(Measurement(t, label, 0.6, 40.0, h * (1 + rng.normal(0, 0.03)), w * (1 + rng.normal(0, 0.03)),
                               (x, y)))
    return out


def _classes(ms: list[Measurement]) -> list[tuple[str, bool]]:
    c = TrackClassifier()
    return [(r.label, r.settled) for r in (c.observe(1, m) for m in ms)]


@pytest.mark.parametrize(("what", "h", "w", "speed", "expected"), [
    ("walking person", 1.75, 0.6, 1.4, "person"),
    ("running person", 1.7, 1.0, 4.0, "person"),
    ("person standing still", 1.8, 0.5, 0.0, "person"),
    ("crawler seen from the side", 0.45, 1.7, 0.4, "person"),
    ("trotting dog", 0.7, 0.95, 1.8, "animal"),
    ("sheep from the side", 0.95, 1.2, 0.6, "animal"),
    ("cow from the side", 1.5, 2.5, 1.0, "animal"),
    ("deer from the side", 1.6, 1.9, 1.5, "animal"),
    ("car from the side", 1.5, 4.5, 8.0, "vehicle"),
    ("car coming head-on", 1.5, 1.8, 10.0, "vehicle"),
    ("truck", 3.3, 8.0, 6.0, "vehicle"),
    ("crawler coming head-on", 0.45, 0.5, 0.4, "unknown"),
    ("dog sniffing slowly", 0.65, 0.9, 0.5, "unknown"),
])
def test_sizes_and_speeds_tell_classes_apart(what: str, h: float, w: float, speed: float, expected: str) -> None:
    classes = _classes(_walk(h, w, speed))
    settled = [label for label, ok in classes if ok]
    assert settled, what
    assert settled[-1] == expected, (what, classes)
    if expected != "person":  # nothing that is not a person is ever called one on the way
        assert "person" not in settled, (what, classes)


def test_a_low_object_waits_for_its_speed_and_a_tall_one_does_not() -> None:
    dog = _classes(_walk(0.7, 0.95, 1.8))
    person = _classes(_walk(1.75, 0.6, 1.4))
    first_dog = next(i for i, (_, ok) in enumerate(dog) if ok)
    first_person = next(i for i, (_, ok) in enumerate(person) if ok)
    assert first_person == 2  # three votes, one per frame
    assert first_dog >= 0.6 * FPS  # a speed needs 0.6 s of positions
    assert all(label == "unknown" for label, ok in dog[:first_dog])


def test_a_person_whose_legs_a_rock_hides_stays_a_person() -> None:
    ms = _walk(1.75, 0.6, 1.2, seconds=6.0)
    # for two seconds the box is the upper body above a rock: the foot point jumps back, size grows wide
    hidden = [Measurement(m.ts, m.model_label, m.confidence, 20.0, 1.3, 1.5, m.ground_xy) if 2.0 <= m.ts < 4.0 else m
              for m in ms]
    labels = [label for label, ok in _classes(hidden) if ok]
    assert set(labels) == {"person"}, labels


def test_a_box_cut_by_the_frame_edge_does_not_vote_on_its_size() -> None:
    ms = [Measurement(m.ts, m.model_label, m.confidence, m.height_px, 0.6, 2.0, m.ground_xy, cut=True)
          for m in _walk(0.6, 2.0, 0.3)]  # would be a crawler if its size were believed
    c = TrackClassifier()
    seen = [c.observe(1, m) for m in ms]
    assert all(not r.settled for r in seen)  # a person model's "person" of half a cow is no evidence
    assert seen[-1].height_m is None
    whole = [c.observe(1, m) for m in _walk(1.75, 0.6, 1.4, seconds=1.0)]  # it comes fully into view
    assert whole[-1].label == "person" and whole[-1].settled


def test_an_uncalibrated_camera_takes_the_models_word() -> None:
    c = TrackClassifier(calibrated=False)
    result = c.observe(1, Measurement(0.0, "person", 0.5, 30.0))
    assert (result.label, result.settled) == ("person", True)
    assert "not calibrated" in result.reason


def test_a_model_that_knows_animals_decides_where_physics_cannot() -> None:
    slow_dog = [Measurement(m.ts, "animal", 0.8, m.height_px, m.height_m, m.width_m, m.ground_xy)
                for m in _walk(0.65, 0.9, 0.5)]
    assert _classes(slow_dog)[-1] == ("animal", True)


def test_the_description_names_the_class_and_what_it_rests_on() -> None:
    c = TrackClassifier()
    last = [c.observe(1, m) for m in _walk(0.6, 0.9, 2.2, jitter=0.0)][-1]
    assert last.describe() == "animal, 0.6 m tall, 0.9 m wide, 2.2 m/s"


def test_a_forgotten_track_starts_afresh() -> None:
    c = TrackClassifier()
    for m in _walk(1.75, 0.6, 1.4):
        c.observe(1, m)
    c.forget(1)
    assert c.last(1) is None
    assert not c.observe(1, _walk(1.75, 0.6, 1.4)[0]).settled


@pytest.mark.parametrize(("height", "tilt"), [(5.0, 8.0), (12.0, 25.0), (3.0, 2.0)])
def test_the_camera_pose_comes_back_from_its_ground_homography(height: float, tilt: float) -> None:
    cam = CameraModel(height_m=height, tilt_deg=tilt)
    scene = ThermalScene.from_url("sim://quiet")
    points = []
    for x, y in ((-5, 12), (5, 12), (-10, 40), (10, 40), (0, 25)):
        u, v = cam.project(np.array([x]), np.array([y]), np.array([0.0]))
        points.append(GroundControlPoint(float(u[0]), float(v[0]), *scene.ground_to_latlon(x, y)))
    pose = recover_pose(GeoCalibration(points), cam.width, cam.height)
    assert pose is not None
    assert pose.focal_px == pytest.approx(cam.focal_px, rel=0.002)
    assert pose.height_m == pytest.approx(height, rel=0.005)
    assert pose.tilt_deg == pytest.approx(tilt, abs=0.05)
    cal = GeoCalibration(points)
    for x, y, h in ((3, 30, 1.75), (-8, 60, 0.6), (0, 10, 1.5)):  # upright things measure true
        u, v = cam.project(np.array([x, x]), np.array([y, y]), np.array([0.0, h]))
        gx, gy = cal.pixel_to_ground(u[0], v[0])
        assert pose.height_above(np.array([gx]), np.array([gy]), u[1:], v[1:])[0] == pytest.approx(h, rel=0.01)


def test_points_on_a_slope_give_no_pose() -> None:
    cam = CameraModel()
    scene = ThermalScene.from_url("sim://quiet")
    points = []
    for x, y in ((-5, 12), (5, 12), (-10, 40), (10, 40), (0, 25)):
        u, v = cam.project(np.array([x]), np.array([y]), np.array([0.0]))
        points.append(GroundControlPoint(float(u[0]) * 1.6, float(v[0]), *scene.ground_to_latlon(x, y)))  # skewed
    assert recover_pose(GeoCalibration(points), cam.width, cam.height) is None
