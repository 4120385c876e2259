"""Geofences: geometry, geo-calibration and the rule state machines (pure: no I/O, no clock)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Polygon

from geofences.geo import GeoCalibration, GroundControlPoint, distance_m
from geofences.rules import Filters, LineRule, RuleEngine, Schedule, TrackPoint, Window, ZoneRule
from geofences.zones import GeometryError, ZoneIndex, make_line, make_polygon
from sensors.sim import ThermalScene

SQUARE = Polygon([(100, 100), (300, 100), (300, 300), (100, 300)])
NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC).timestamp()


def pt(x: float, y: float, ts: float, track: int = 1, label: str = "person", conf: float = 0.8,
       camera: str = "cam") -> TrackPoint:
    return TrackPoint(camera, track, label, conf, ts, (x - 10, y - 60, x + 10, y), x, y, age_s=10.0)


def run(engine: RuleEngine, path: list[tuple[float, float]], fps: float = 10.0, t0: float = NOON, **kw: object):
    events = []
    for i, (x, y) in enumerate(path):
        ts = t0 + i / fps
        events += engine.update("cam", ts, [pt(x, y, ts, **kw)])  # type: ignore[arg-type]
    return events


def walk(a: tuple[float, float], b: tuple[float, float], n: int) -> list[tuple[float, float]]:
    return [(a[0] + (b[0] - a[0]) * i / (n - 1), a[1] + (b[1] - a[1]) * i / (n - 1)) for i in range(n)]


# -- geometry ----------------------------------------------------------------------------------------


def test_polygon_validation() -> None:
    with pytest.raises(GeometryError, match="at least 3 distinct points"):
        make_polygon([(0, 0), (1, 1)], "pixel")
    with pytest.raises(GeometryError, match="not simple: Self-intersection"):
        make_polygon([(0, 0), (10, 10), (10, 0), (0, 10)], "pixel")
    with pytest.raises(GeometryError, match="not a \\[lat, lon\\] pair"):
        make_polygon([(100, 0), (0, 1), (1, 1)], "geo")
    geo = make_polygon([(46.0, 15.0), (46.0, 15.1), (46.1, 15.1)], "geo")
    assert geo.exterior.coords[0] == (15.0, 46.0)  # stored as (lon, lat)
    with pytest.raises(GeometryError, match="at least 2 distinct points"):
        make_line([(1, 1), (1, 1)], "pixel")


def test_zone_index_is_vectorised_and_correct() -> None:
    idx = ZoneIndex()
    idx.add("a", SQUARE)
    idx.add("b", Polygon([(250, 250), (400, 250), (400, 400)]))
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 500, 5000), rng.uniform(0, 500, 5000)
    got = idx.contains(x, y)
    assert got.shape == (5000, 2)
    expected_a = (x > 100) & (x < 300) & (y > 100) & (y < 300)
    assert np.array_equal(got[:, 0], expected_a)
    assert idx.which(280, 270) == ["a", "b"] and idx.which(np.nan, 5) == []


# -- geo-calibration -----------------------------------------------------------------------------------


def _scene_calibration(scene: ThermalScene, jitter_px: float = 0.0) -> GeoCalibration:
    cam = scene.camera
    pts = []
    for x, y in [(-6, 12), (6, 12), (-9, 30), (9, 30), (0, 20), (-3, 40)]:
        u, v = cam.project(np.array([x]), np.array([y]), np.array([0.0]))
        lat, lon = scene.ground_to_latlon(x, y)
        pts.append(GroundControlPoint(round(float(u[0]) + jitter_px), round(float(v[0])), lat, lon))
    return GeoCalibration(pts)


def test_calibrated_camera_puts_truth_feet_within_a_metre() -> None:
    scene = ThermalScene.from_url("sim://walkers")
    cal = _scene_calibration(scene)  # points clicked to the nearest pixel
    assert cal.rms_error_m < 0.3
    worst = 0.0
    for i in range(0, scene.frame_count, 10):
        for t in scene.render(i)[1]:
            lat, lon = cal.pixel_to_latlon(*t.foot_px)
            worst = max(worst, distance_m(float(lat), float(lon), *scene.ground_to_latlon(*t.ground_xy)))
    assert worst < 1.0, f"worst foot point {worst:.2f} m off"
    u, v = cal.latlon_to_pixel(*scene.ground_to_latlon(2.0, 25.0))
    u2, v2 = scene.camera.project(np.array([2.0]), np.array([25.0]), np.array([0.0]))
    assert abs(float(u) - float(u2[0])) < 2 and abs(float(v) - float(v2[0])) < 2


def test_calibration_reports_a_wrong_point_and_rejects_bad_sets() -> None:
    scene = ThermalScene.from_url("sim://walkers")
    good = _scene_calibration(scene)
    pts = list(good.points)
    pts[2] = GroundControlPoint(pts[2].u + 80, pts[2].v, pts[2].lat, pts[2].lon)  # a mis-clicked point
    bad = GeoCalibration(pts)
    assert good.max_error_m < 0.3 and bad.max_error_m > 1.0  # check-config shows it
    with pytest.raises(ValueError, match="at least 4"):
        GeoCalibration(pts[:3])
    line = [GroundControlPoint(10 * i, 10 * i, 46 + i * 1e-4, 15 + i * 1e-4) for i in range(5)]
    with pytest.raises(ValueError, match="collinear"):
        GeoCalibration(line)


def test_above_the_horizon_is_nowhere() -> None:
    cal = _scene_calibration(ThermalScene.from_url("sim://walkers"))
    lat, _ = cal.pixel_to_latlon(320.0, 5.0)  # the sky
    assert np.isnan(lat)


# -- zone rules ----------------------------------------------------------------------------------------


def zone(**kw: object) -> RuleEngine:
    filters = kw.pop("filters", Filters(min_frames=3, margin=6.0))
    return RuleEngine([ZoneRule("z", "cam", SQUARE, filters=filters, **kw)])  # type: ignore[arg-type]


def test_entry_exit_and_loiter_fire_once_each() -> None:
    path = walk((0, 200), (200, 200), 21) + [(200, 200)] * 120 + walk((200, 200), (400, 200), 21)
    events = run(zone(exit=True, loiter_s=10.0), path)
    assert [e.kind for e in events] == ["entry", "loitering", "exit"]
    entry, loiter, leave = events
    assert entry.ts - NOON == pytest.approx(1.2, abs=0.21)  # crossed x=100 at 1.0 s; 6 px margin + 3 frames
    assert loiter.ts - entry.since_ts == pytest.approx(10.0, abs=0.11)
    assert leave.dwell_s is not None and leave.dwell_s > 13


def test_walking_along_the_outside_of_an_edge_gives_nothing() -> None:
    assert run(zone(), walk((96, 0), (96, 400), 200)) == []  # 4 px outside the left edge, inside the margin


@given(st.lists(st.floats(-5.0, 5.0), min_size=1, max_size=300), st.floats(101.0, 299.0))
@settings(max_examples=200, deadline=None)
def test_box_jitter_across_an_edge_never_fires(jitter: list[float], y: float) -> None:
    """Whatever the jitter, an anchor that stays within the hysteresis band of an edge fires nothing."""
    path = [(100.0 + j, y) for j in jitter]
    assert run(zone(exit=True, loiter_s=1.0), path) == []


@given(st.lists(st.tuples(st.floats(0, 400), st.floats(0, 400)), min_size=1, max_size=200))
@example(path=[(107.0, 107.0), (107.0, 107.0), (95.0, 97.0), (107.0, 107.0)])  # a step into the band mid-run
@settings(max_examples=200, deadline=None)
def test_entries_and_exits_alternate_on_any_path(path: list[tuple[float, float]]) -> None:
    events = run(zone(exit=True, cooldown_s=0.0), path)
    kinds = [e.kind for e in events]
    assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False))
    assert not kinds or kinds[0] == "entry"
    # an entry needs three frames deep inside with none well outside between them; an exit three frames well
    # outside. A frame in the hysteresis band (between the zone shrunk and grown by the margin) neither counts
    # nor breaks a run.
    inner, outer = SQUARE.buffer(-6.0), SQUARE.buffer(6.0)

    def where(x: float, y: float) -> str:
        spot = Polygon([(x - .01, y - .01), (x + .01, y - .01), (x, y + .01)])
        return "deep" if inner.contains(spot) else "out" if not outer.intersects(spot) else "band"

    sides = [w for w in (where(x, y) for x, y in path) if w != "band"]
    runs = max((sum(1 for _ in g) for k, g in __import__("itertools").groupby(sides) if k == "deep"), default=0)
    assert (runs >= 3) == ("entry" in kinds)


def test_an_animal_in_a_person_only_zone_gives_nothing() -> None:
    path = walk((0, 200), (200, 200), 21) + [(200, 200)] * 50
    assert run(zone(loiter_s=2.0), path, label="animal") == []
    assert len(run(zone(loiter_s=2.0), path, label="person")) == 2


def test_weak_small_or_young_tracks_give_nothing() -> None:
    path = walk((0, 200), (200, 200), 21)
    assert run(zone(filters=Filters(min_confidence=0.5, margin=6)), path, conf=0.3) == []
    assert run(zone(filters=Filters(min_height_px=80, margin=6)), path) == []  # boxes are 60 px high
    young = RuleEngine([ZoneRule("z", "cam", SQUARE, filters=Filters(min_age_s=20.0, margin=6))])
    assert run(young, path) == []


def test_schedule_and_cooldown() -> None:
    night = Schedule((Window(time(20, 0), time(6, 0), tz="Europe/Vienna"),))
    path = walk((0, 200), (200, 200), 21)
    assert run(zone(schedule=night), path, t0=NOON) == []  # 13:00 in Vienna
    midnight = datetime(2026, 11, 23, 23, 30, tzinfo=UTC).timestamp()  # 00:30 in Vienna
    assert len(run(zone(schedule=night), path, t0=midnight)) == 1
    weekend = Window(time(0, 0), time(23, 59), frozenset({"sat", "sun"}))
    assert not weekend.active(NOON)  # a Monday
    # in, out, in again within the cooldown: one entry
    back_and_forth = path + walk((200, 200), (0, 200), 21) + path
    assert [e.kind for e in run(zone(cooldown_s=60.0), back_and_forth)] == ["entry"]
    assert [e.kind for e in run(zone(cooldown_s=1.0), back_and_forth)] == ["entry", "entry"]


def test_presence_count_above_n() -> None:
    engine = zone(entry=False, max_count=1)
    events = []
    for i in range(40):
        ts = NOON + i / 10
        points = [pt(150, 150, ts, track=1)] + ([pt(200, 200, ts, track=2)] if i >= 10 else [])
        events += engine.update("cam", ts, points)
    assert [(e.kind, e.count, e.track_ids) for e in events] == [("presence", 2, (1, 2))]


# -- line crossing ----------------------------------------------------------------------------------------

FENCE = LineString([(100, 200), (300, 200)])  # on screen: left to right


def line(direction: str = "both", **kw: object) -> RuleEngine:
    return RuleEngine([], [LineRule("l", "cam", FENCE, direction, filters=Filters(margin=5.0), **kw)])  # type: ignore[arg-type]


def test_crossing_directions_as_seen_on_screen() -> None:
    down = walk((200, 150), (200, 250), 21)  # top to bottom of the screen: right side of a left-to-right line
    up = list(reversed(down))
    (ev,) = run(line(), down)
    assert ev.kind == "line_crossing" and ev.direction == "left_to_right"
    assert run(line(), up)[0].direction == "right_to_left"
    assert run(line("right_to_left"), down) == []
    assert len(run(line("right_to_left"), up)) == 1


def test_going_around_the_end_of_a_line_is_not_a_crossing() -> None:
    around = walk((350, 150), (350, 250), 21)  # beyond the line's end
    assert run(line(), around) == []


@given(st.lists(st.floats(-4.9, 4.9), min_size=1, max_size=300))
@settings(max_examples=200, deadline=None)
def test_jitter_on_a_line_never_crosses(jitter: list[float]) -> None:
    assert run(line(), [(200.0, 200.0 + j) for j in jitter]) == []


def test_a_box_that_loses_its_legs_at_a_line_has_not_crossed_it() -> None:
    """A person standing just short of the fence (feet at y 210, head at 150) whose legs go behind a bank for two
    seconds: the box's bottom, the foot, jumps 20 px over the line and back. Their place never changed."""

    def person(foot: float, ts: float) -> TrackPoint:
        return TrackPoint("cam", 1, "person", 0.8, ts, (190.0, 150.0, 210.0, foot), 200.0, foot, age_s=10.0)

    feet = [210.0] * 30 + [190.0] * 20 + [210.0] * 30
    engine, events = line(), []
    for i, foot in enumerate(feet):
        events += engine.update("cam", NOON + i / 10, [person(foot, NOON + i / 10)])
    assert events == []
    # the same jump by someone who then stays on the far side, their own size again there, has crossed
    feet = [210.0] * 30 + [190.0] * 10 + [190.0 - i for i in range(30)]
    engine, events = line(), []
    for i, foot in enumerate(feet):
        ts = NOON + i / 10
        top = 150.0 if i < 40 else foot - 60.0  # their head moves with them once their legs are seen again
        events += engine.update("cam", ts, [TrackPoint("cam", 1, "person", 0.8, ts, (190.0, top, 210.0, foot), 200.0,
                                                       foot, age_s=10.0)])
    assert [e.direction for e in events] == ["right_to_left"]


def test_geo_rules_work_in_metres() -> None:
    square = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)])
    engine = RuleEngine([ZoneRule("g", None, square, filters=Filters(margin=0.5))])
    events = []
    for i in range(40):
        ts = NOON + i / 10
        events += engine.update("any-cam", ts, [], [pt(-2 + i * 0.25, 5, ts)])
    assert [e.kind for e in events] == ["entry"] and math.isclose(events[0].ts - NOON, 1.2, abs_tol=0.11)


def test_radio_bearings_and_positions_land_on_the_map() -> None:
    from geofences.geo import bearing_ray, destination

    lat, lon = destination(46.55, 15.65, 90.0, 1000.0)  # 1 km due east
    assert distance_m(46.55, 15.65, lat, lon) == pytest.approx(1000.0, rel=1e-6)
    assert lat == pytest.approx(46.55, abs=1e-4) and lon > 15.65
    ray = bearing_ray(46.55, 15.65, 0.0, 2000.0)
    assert ray[0] == pytest.approx((46.55, 15.65)) and distance_m(*ray[0], *ray[-1]) == pytest.approx(2000, rel=1e-6)
    assert ray[-1][0] > ray[0][0] and ray[-1][1] == pytest.approx(15.65)
