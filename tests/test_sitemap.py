"""The box's map: ``site_map`` for a configured site (zones, lines, sensors in [lon, lat], pixel zones without
geometry), camera footprints through the calibration (clipped at the horizon and the maximum range), the
retained ``.../site`` message of a running agent (at start, on reload, after a camera's first frames, after a
broker restart), the newest maps in the incident database, and the map in the HTML report."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from shapely.geometry import LineString, Point, Polygon, shape

from benchmarks.testbed import log_incident
from edge_agent.config.agent import load_config, parse_config
from edge_agent.core.site import Site
from edge_agent.core.sitemap import FOOTPRINT_MAX_RANGE_M, SCHEMA, encode_site_map, site_map
from edge_agent.incidents import report, review
from edge_agent.incidents.schema import SCHEMA_VERSION
from edge_agent.incidents.store import SITE_MAPS_KEPT, IncidentStore
from edge_agent.runtime.agent import Agent
from geofences.geo import GeoCalibration, GroundControlPoint, LocalPlane, distance_m, footprint, recover_pose
from sensors.sim import CameraModel, ThermalScene
from tests.brokers import Collector, Mosquitto, free_port, wait_for
from tests.conftest import ROOT, run_cli

DEMO = ROOT / "configs" / "demo.yaml"
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture(scope="module")
def demo() -> Site:
    return Site.from_config(load_config(DEMO))


def _features(value: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {f["properties"]["id"]: f for f in value["features"] if f["properties"]["kind"] == kind}


def _camera_calibration(cam: CameraModel, plane: LocalPlane) -> GeoCalibration:
    """Ground control points of a simulated camera, clicked to the nearest pixel."""
    pts = []
    for x, y in [(-6, 12), (6, 12), (-9, 30), (9, 30), (0, 20), (-3, 40)]:
        u, v = cam.project(np.array([x]), np.array([y]), np.array([0.0]))
        lat, lon = plane.to_latlon(x, y)
        pts.append(GroundControlPoint(round(float(u[0])), round(float(v[0])), float(lat), float(lon)))
    return GeoCalibration(pts)


# -- the map of a configured site ------------------------------------------------------------------------


def test_the_demo_map_has_its_zones_lines_and_sensors_in_lon_lat_order(demo: Site) -> None:
    value = site_map(demo, {}, NOW)
    assert json.loads(encode_site_map(value)) == value  # plain JSON, no NaN
    assert (value["type"], value["schema"], value["site"], value["box"]) == (
        "FeatureCollection", SCHEMA, "demo-site", "demo-box")
    assert value["ts"] == "2026-01-01T00:00:00.000Z"
    assert demo.plane is not None
    assert value["center"] == [round(demo.plane.lon0, 7), round(demo.plane.lat0, 7)]

    zones, lines = _features(value, "zone"), _features(value, "line")
    strip = zones["strip"]
    ring = strip["geometry"]["coordinates"][0]
    assert strip["geometry"]["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) == 5
    assert [15.6499478, 46.5501617] in ring  # the config's [lat, lon] as GeoJSON's [lon, lat]
    assert Polygon(ring).is_valid and Polygon(ring).exterior.is_ccw  # RFC 7946: exterior rings counter-clockwise
    assert strip["properties"] == {
        "kind": "zone", "id": "strip", "name": "Patrol strip", "space": "geo", "camera": None,
        "rules": {"entry": True, "exit": True, "loiter_s": 10.0, "max_count": None, "classes": ["person"],
                  "schedule": False, "cooldown_s": 60.0}}
    verge = zones["track-verge"]
    assert verge["geometry"] is None
    assert verge["properties"]["space"] == "pixel" and verge["properties"]["camera"] == "sim-border"
    assert verge["properties"]["rules"]["max_count"] == 2 and verge["properties"]["rules"]["schedule"] is True

    fence = lines["fence"]
    assert fence["geometry"] == {"type": "LineString",
                                 "coordinates": [[15.6498041, 46.5503593], [15.6501959, 46.5503593]]}
    assert fence["properties"]["rules"] == {"direction": "right_to_left", "classes": ["person"]}

    sensors = {f["properties"]["id"]: f for f in value["features"] if f["geometry"]
               and f["geometry"]["type"] == "Point"}
    assert {i: f["properties"]["kind"] for i, f in sensors.items()} == {
        "md-gate": "metal", "md-fence": "metal", "rx-east": "radio"}
    assert sensors["md-gate"]["geometry"]["coordinates"] == [15.6500392, 46.5501797]
    assert sensors["rx-east"]["properties"]["name"] == "East radio receiver (120 m east of the strip)"

    cameras = _features(value, "camera")
    assert cameras["sim-border"]["geometry"] is None  # no frame yet: its size is unknown
    assert cameras["sim-border"]["properties"] == {"kind": "camera", "id": "sim-border", "name": "Demo border strip",
                                                   "range_m": None}


def test_a_camera_footprint_is_a_valid_polygon_whose_near_edge_is_on_the_calibrated_ground(demo: Site) -> None:
    value = site_map(demo, {"sim-border": (640, 480)}, NOW)
    cam = _features(value, "camera")["sim-border"]
    poly = shape(cam["geometry"])
    assert isinstance(poly, Polygon) and poly.is_valid and poly.area > 0 and poly.exterior.is_ccw
    assert 0 < cam["properties"]["range_m"] <= FOOTPRINT_MAX_RANGE_M
    # the near edge: the image's bottom corners, close to the calibration points clicked 11 px above them
    calibration = load_config(DEMO).cameras[0].calibration
    assert calibration is not None
    cal_points = [p.latlon for p in calibration.points if p.pixel[1] == 469]
    near = poly.exterior.coords[:2]
    assert len(cal_points) == 2
    for lon, lat in near:
        assert min(distance_m(lat, lon, *p) for p in cal_points) < 1.5
    # and where the simulated camera truly sees the ground at those corners
    scene = ThermalScene.from_url("sim://border")
    gx, gy = scene.camera.ground_at(np.array([0.0, 640.0]), np.array([480.0, 480.0]))
    truth = [scene.ground_to_latlon(float(x), float(y)) for x, y in zip(gx, gy, strict=True)]
    assert max(min(distance_m(lat, lon, *t) for t in truth) for lon, lat in near) < 0.5
    # every zone the camera watches lies in its footprint
    assert poly.contains(shape(_features(value, "zone")["strip"]["geometry"]))


@pytest.mark.parametrize("max_range_m", [1000.0, 100.0, 30.0])
def test_a_camera_looking_over_the_horizon_gets_its_far_edge_clipped_within_the_max_range(max_range_m: float) -> None:
    calibration = load_config(DEMO).cameras[0].calibration
    assert calibration is not None
    cal = calibration.calibration()
    assert np.isnan(cal.pixel_to_ground(320.0, 0.0)[0])  # the top of the image is sky
    seen = footprint(cal, 640, 480, max_range_m)
    assert seen is not None and seen.clipped
    pose = recover_pose(cal, 640, 480)
    assert pose is not None
    x, y = cal.plane.to_xy(np.array([c[0] for c in seen.corners]), np.array([c[1] for c in seen.corners]))
    reach = np.hypot(x - pose.centre[0], y - pose.centre[1])
    assert reach.max() <= max_range_m + 1e-6 and seen.range_m == pytest.approx(reach.max())
    assert seen.range_m > 0.9 * max_range_m  # clipped close to the limit, not far short of it
    assert Polygon([(lon, lat) for lat, lon in seen.corners]).is_valid


def test_a_steep_camera_sees_its_whole_image_and_degenerate_sizes_give_no_footprint() -> None:
    plane = LocalPlane(46.55, 15.65)
    cam = CameraModel(height_m=12.0, tilt_deg=45.0)
    cal = _camera_calibration(cam, plane)
    seen = footprint(cal, cam.width, cam.height, FOOTPRINT_MAX_RANGE_M)
    assert seen is not None and not seen.clipped
    gx, gy = cam.ground_at(np.array([0.0, 640.0, 640.0, 0.0]), np.array([480.0, 480.0, 0.0, 0.0]))
    truth = [(float(a), float(b)) for a, b in zip(*plane.to_latlon(gx, gy), strict=True)]
    assert max(distance_m(*c, *t) for c, t in zip(seen.corners, truth, strict=True)) < 0.5
    far = max(math.hypot(float(x), float(y)) for x, y in zip(gx, gy, strict=True))  # from the mast at (0, 0)
    assert seen.range_m == pytest.approx(far, abs=0.5)
    assert footprint(cal, 0, 480, 1000.0) is None
    assert footprint(cal, 640, 480, 1.0) is None  # even the bottom of the image is further than that


# -- the running agent -------------------------------------------------------------------------------------


@pytest.fixture()
def broker() -> Iterator[Mosquitto]:
    b = Mosquitto().start()
    yield b
    b.remove()


def _box(tmp_path: Path, port: int, model: Path | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "site": "t", "box": "box1", "state_dir": str(tmp_path / "state"),
        "zones": [{"id": "gate", "name": "Gate", "space": "geo",
                   "polygon": [[46.5500, 15.6500], [46.5500, 15.6502], [46.5502, 15.6502], [46.5502, 15.6500]]}],
        "fixed_sensors": [{"id": "md-1", "kind": "metal", "name": "Gate detector", "latlon": [46.5501, 15.6501],
                           "url": f"udp://127.0.0.1:{free_port()}", "hb_timeout_s": 60}],
        "mqtt": {"host": "127.0.0.1", "port": port, "health_interval_s": 1, "keepalive_s": 5,
                 "reconnect_min_s": 1, "reconnect_max_s": 1},
    }
    if model is not None:
        demo = yaml.safe_load(DEMO.read_text())["cameras"][0]
        cfg["detector"] = {"model": str(model), "imgsz": 320}
        cfg["cameras"] = [{"id": "cam", "name": "Gate camera", "source": "sim://walkers?realtime=1&loop=1",
                           "pixel_format": "y16", "calibration": demo["calibration"]}]
    return cfg


class Running:
    """An agent started in this process on a config file, its main loop on a thread."""

    def __init__(self, cfg: dict[str, Any], path: Path) -> None:
        path.write_text(yaml.safe_dump(cfg))
        self.agent = Agent(parse_config(path.read_text()), config_path=path)
        self.agent.start()
        self.thread = threading.Thread(target=self.agent.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.agent.stop_event.set()
        self.thread.join(5)
        self.agent.stop()


def _sites(c: Collector) -> list[dict[str, Any]]:
    return c.json("/site")


def _zone_name(value: dict[str, Any]) -> str | None:
    return _features(value, "zone")["gate"]["properties"]["name"]


def _retained(port: int, client_id: str, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
    """What a subscriber that connects now gets on the site topic: one retained QoS 1 message."""
    fresh = Collector(port, "border/t/box1/site", client_id=client_id)
    try:
        assert fresh.wait(lambda: any(predicate(v) for v in _sites(fresh)), timeout), _sites(fresh)
        msg = fresh.on("/site")[-1]
        assert msg.retain and msg.qos == 1
        value = json.loads(msg.payload)
        assert msg.payload == encode_site_map(value)  # compact JSON
        return value
    finally:
        fresh.close()


def _camera_polygon(value: dict[str, Any]) -> bool:
    return _features(value, "camera")["cam"]["geometry"] is not None


@pytest.mark.integration
def test_the_agent_publishes_its_map_retained_at_start_on_reload_and_with_a_footprint_after_frames(
        broker: Mosquitto, tmp_path: Path, default_ov320: Path) -> None:
    cfg = _box(tmp_path, broker.port, default_ov320)
    path = tmp_path / "box.yaml"
    seen = Collector(broker.port, "border/t/box1/site")
    assert seen.subscribed.wait(10)
    box = Running(cfg, path)
    try:
        assert seen.wait(lambda: any(_camera_polygon(v) for v in _sites(seen)), 60), _sites(seen)
        first = _retained(broker.port, "fresh-1", _camera_polygon)
        assert _zone_name(first) == "Gate" and _features(first, "metal")["md-1"]["geometry"]["coordinates"] == [
            15.6501, 46.5501]
        cam = _features(first, "camera")["cam"]
        assert shape(cam["geometry"]).is_valid and 0 < cam["properties"]["range_m"] <= FOOTPRINT_MAX_RANGE_M

        cfg["zones"][0]["name"] = "Gate (moved)"
        cfg["zones"][0]["polygon"] = [[46.5503, 15.6500], [46.5503, 15.6502], [46.5505, 15.6502], [46.5505, 15.6500]]
        path.write_text(yaml.safe_dump(cfg))
        box.agent.request_reload()
        assert seen.wait(lambda: _zone_name(_sites(seen)[-1]) == "Gate (moved)", 20), _sites(seen)[-1]
        moved = _retained(broker.port, "fresh-2", lambda v: _zone_name(v) == "Gate (moved)")
        assert [15.65, 46.5505] in _features(moved, "zone")["gate"]["geometry"]["coordinates"][0]
        assert _camera_polygon(moved)  # the reload keeps what the camera's frames told
    finally:
        box.stop()
        seen.close()
    store = IncidentStore(tmp_path / "state" / "incidents.db")
    try:
        kept = store.latest_site_map()
        assert kept is not None and _zone_name(kept) == "Gate (moved)" and _camera_polygon(kept)
        oldest = store.db.execute("SELECT geojson FROM site_maps ORDER BY id LIMIT 1").fetchone()[0]
        assert not _camera_polygon(json.loads(oldest))  # the map of the start, before any frame
    finally:
        store.close()


@pytest.mark.integration
def test_a_broker_restarted_without_persistence_gets_the_map_back(tmp_path: Path) -> None:
    broker = Mosquitto(persistence=["persistence false"]).start()
    box = Running(_box(tmp_path, broker.port, None), tmp_path / "box.yaml")
    try:
        assert _features(_retained(broker.port, "fresh-1", lambda v: _zone_name(v) == "Gate"), "camera") == {}
        publisher = box.agent.publisher
        assert publisher is not None
        connects = publisher.counters.connects
        broker.stop()
        broker.start()  # same port, nothing remembered
        assert wait_for(lambda: publisher.counters.connects > connects and publisher.connected.is_set(), 20)
        _retained(broker.port, "fresh-2", lambda v: _zone_name(v) == "Gate")
    finally:
        box.stop()
        broker.remove()


# -- the incident database ---------------------------------------------------------------------------------


def test_the_store_keeps_the_newest_maps_and_reads_a_damaged_one_as_none(tmp_path: Path, demo: Site) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    try:
        assert store.latest_site_map() is None
        for i in range(SITE_MAPS_KEPT + 5):
            store.save_site_map(site_map(demo, {}, NOW + i), ts=NOW + i)
        latest = store.latest_site_map()
        assert latest is not None and latest["ts"] == site_map(demo, {}, NOW + SITE_MAPS_KEPT + 4)["ts"]
        assert store.db["site_maps"].count == SITE_MAPS_KEPT
        for junk in ("not json", "[1, 2]", '{"a": NaN}', "[" * 5000 + "]" * 5000):
            with store.conn.tx():
                store.db.table("site_maps").insert({"ts": NOW, "geojson": junk})
            assert store.latest_site_map() is None, junk
    finally:
        store.close()


def test_a_version_3_database_gains_the_site_maps_table(tmp_path: Path) -> None:
    path = tmp_path / "incidents.db"
    IncidentStore(path).close()
    with sqlite3.connect(path) as conn:  # as the agent before site maps left it
        conn.execute("DROP TABLE site_maps")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'v4'")
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    store = IncidentStore(path)
    try:
        assert store.version == SCHEMA_VERSION and "site_maps" in store.db.table_names()
        assert store.latest_site_map() is None
    finally:
        store.close()


# -- the HTML report -----------------------------------------------------------------------------------------


def _hostile_site() -> Site:
    raw = yaml.safe_load(DEMO.read_text())
    raw["zones"][0]["name"] = "<script>alert(1)</script>"
    return Site.from_config(parse_config(yaml.safe_dump(raw)))


def test_the_html_report_draws_the_site_map_with_its_incidents_and_escapes_every_name(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    try:
        store.save_site_map(site_map(_hostile_site(), {"sim-border": (640, 480)}, time.time()))
        t = time.time() - 600
        log_incident(store, t, severity="high", latlon=(46.5502, 15.65),
                     summary="<img src=x onerror=alert(2)> crossed")
        log_incident(store, t + 1, severity="critical", latlon=None)
    finally:
        store.close()
    out = run_cli("incidents", "export", "--format", "html", "--db", str(tmp_path / "incidents.db"), timeout=60)
    assert out.returncode == 0, out.stderr
    page = out.stdout
    svg = page[page.index('<svg xmlns="http://www.w3.org/2000/svg" width="800"'):]
    svg = svg[: svg.index("</svg>")]
    assert "Border fence" in svg and "&lt;script&gt;alert(1)&lt;/script&gt;" in svg  # the zones, by name
    assert "<script" not in page and "<img src=x" not in page
    assert svg.count('<circle class="incident high"') == 1 and 'fill="#f05a28"' in svg  # the incident's dot
    assert svg.count('class="camera"') == 1 and svg.count('class="sensor"') == 3 and 'class="scale"' in svg
    assert "1 incident(s) without a position are not on the map." in page


def test_a_report_without_a_site_map_or_with_a_damaged_one_still_draws_the_incidents(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    try:
        log_incident(store, time.time() - 60, severity="low", latlon=(46.5502, 15.65))
        page = report.export_html(store, review.Filters())
        assert "No site map recorded" in page and '<circle class="incident low"' in page
        bad_features: list[Any] = [
            None, 7, {"geometry": "x"}, {"geometry": {"type": "Polygon", "coordinates": [[["a", 1]]]}},
            {"geometry": {"type": "Point", "coordinates": [500, 95]}, "properties": {"kind": "metal"}},
            {"geometry": {"type": "LineString", "coordinates": [[1e308, 1e308]]}, "properties": None},
            {"geometry": {"type": "Polygon", "coordinates": []}, "properties": {"kind": "zone"}},
            {"geometry": {"type": "GeometryCollection", "geometries": []}},
            {"geometry": {"type": "Point", "coordinates": [15.6501, 46.5501]},
             "properties": {"kind": "radio", "name": "<b>rx</b>"}},
        ]
        store.save_site_map({"type": "FeatureCollection", "center": ["x", None], "features": bad_features})
        page = report.export_html(store, review.Filters())
        assert page.count('class="sensor"') == 1 and "&lt;b&gt;rx&lt;/b&gt;" in page
        assert '<circle class="incident low"' in page and "No site map recorded" not in page
        store.save_site_map({"features": "none"})
        assert '<circle class="incident low"' in report.export_html(store, review.Filters())
    finally:
        store.close()
    empty = IncidentStore(tmp_path / "empty.db")
    try:
        assert "No site map recorded" in report.export_html(empty, review.Filters())
    finally:
        empty.close()


def test_lines_points_and_polygons_of_the_map_are_what_shapely_reads(demo: Site) -> None:
    """A consumer's GIS library reads every geometry of the map as the type it names."""
    value = site_map(demo, {"sim-border": (640, 480)}, NOW)
    kinds = {f["properties"]["id"]: type(shape(f["geometry"])) for f in value["features"] if f["geometry"]}
    assert kinds == {"strip": Polygon, "fence": LineString, "md-gate": Point, "md-fence": Point, "rx-east": Point,
                     "sim-border": Polygon}
