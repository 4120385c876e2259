"""Composing geofences with the configuration: the site plane, calibrated cameras, the rule engine, track
points from tracker output, and the field engineer's zone preview."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from typing import cast

import cv2
import numpy as np
import shapely
from shapely.geometry import LineString, Polygon

from detectors.classify import Classification
from detectors.types import Detections
from edge_agent.config.agent import AgentConfig
from edge_agent.config.rules import FilterConfig, FusionConfig, ScheduleConfig
from edge_agent.contract.ids import new_ulid
from edge_agent.runtime.errors import UnknownSensor
from edge_agent.runtime.fusion import FusionEngine, FusionRule, NewId
from geofences.geo import CameraPose, GeoCalibration, LocalPlane, bearing_ray, recover_pose
from geofences.rules import Filters, LineRule, RuleEngine, Schedule, TrackPoint, Window, ZoneRule
from geofences.zones import ZoneIndex, make_line, make_polygon

DEFAULT_MARGIN = {"pixel": 6.0, "geo": 0.3}


@dataclass(slots=True)
class Site:
    """Everything geographic about a box: the site plane (metres), each camera's calibration and anchor,
    and every zone and line as geometry in its own space (pixels, or metres on the site plane)."""

    config: AgentConfig
    plane: LocalPlane | None
    calibrations: dict[str, GeoCalibration]
    anchors: Mapping[str, str]
    zone_geoms: dict[str, Polygon]
    line_geoms: dict[str, LineString]
    _poses: dict[tuple[str, int, int], CameraPose | None] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: AgentConfig) -> Site:
        calibrations = {c.id: c.calibration.calibration() for c in config.cameras if c.calibration is not None}
        anchors = {c.id: (c.calibration.anchor if c.calibration else "bottom_center") for c in config.cameras}
        geo_pts = [p for z in config.zones if z.space == "geo" for p in z.polygon]
        geo_pts += [p for ln in config.lines if ln.space == "geo" for p in ln.points]
        if not geo_pts:  # no geographic rules: centre the plane on whatever else is on the map
            geo_pts = [s.latlon for s in config.fixed_sensors]
            geo_pts += [p.latlon for c in config.cameras if c.calibration for p in c.calibration.points]
        plane = None
        if geo_pts:
            plane = LocalPlane(float(np.mean([p[0] for p in geo_pts])), float(np.mean([p[1] for p in geo_pts])))
        zone_geoms: dict[str, Polygon] = {}
        for z in config.zones:
            poly = make_polygon(z.polygon, z.space)
            zone_geoms[z.id] = poly if z.space == "pixel" else _to_plane(poly, plane)  # type: ignore[arg-type]
        line_geoms: dict[str, LineString] = {}
        for ln in config.lines:
            line = make_line(ln.points, ln.space)
            line_geoms[ln.id] = line if ln.space == "pixel" else _to_plane(line, plane)  # type: ignore[arg-type]
        return cls(config, plane, calibrations, anchors, zone_geoms, line_geoms)

    def engine(self) -> RuleEngine:
        zones = [
            ZoneRule(z.id, z.camera if z.space == "pixel" else None, self.zone_geoms[z.id], entry=z.entry, exit=z.exit,
                     loiter_s=z.loiter_s, max_count=z.max_count, filters=_filters(z.filters, z.space),
                     schedule=_schedule(z.schedule), cooldown_s=z.cooldown_s)
            for z in self.config.zones
        ]
        lines = [
            LineRule(ln.id, ln.camera if ln.space == "pixel" else None, self.line_geoms[ln.id], ln.direction,
                     pixel_space=ln.space == "pixel", filters=_filters(ln.filters, ln.space),
                     schedule=_schedule(ln.schedule), cooldown_s=ln.cooldown_s)
            for ln in self.config.lines
        ]
        return RuleEngine(zones, lines)

    def anchor_px(self, camera: str, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = (xyxy[:, 0] + xyxy[:, 2]) / 2.0
        foot = self.anchors.get(camera, "bottom_center") == "bottom_center"
        y = xyxy[:, 3] if foot else (xyxy[:, 1] + xyxy[:, 3]) / 2.0
        return x, y

    def pose(self, camera: str, size: tuple[int, int] | None) -> CameraPose | None:
        """The camera behind a calibration, for frames of ``size`` (width, height); cached per size."""
        cal = self.calibrations.get(camera)
        if cal is None or size is None:
            return None
        key = (camera, *size)
        if key not in self._poses:
            self._poses[key] = recover_pose(cal, *size)
        return self._poses[key]

    def measure(self, camera: str, xyxy: np.ndarray, size: tuple[int, int] | None = None) -> Placement:
        """Where boxes stand and how big they are, through the camera's calibration (NaN where uncalibrated)."""
        xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
        u, v = self.anchor_px(camera, xyxy)
        n = len(xyxy)
        nan = np.full(n, np.nan)
        cal = self.calibrations.get(camera)
        if cal is None:
            return Placement(u, v, nan, nan, nan, nan, nan, nan, nan, nan, np.zeros(n, bool), _cut(xyxy, size))
        foot_u = (xyxy[:, 0] + xyxy[:, 2]) / 2.0
        cx, cy = cal.pixel_to_ground(foot_u, xyxy[:, 3])  # metres on the calibration's plane
        lat, lon = cal.pixel_to_latlon(u, v)
        gx, gy = self.plane.to_xy(lat, lon) if self.plane is not None else (nan, nan)
        left = cal.pixel_to_ground(xyxy[:, 0], xyxy[:, 3])
        right = cal.pixel_to_ground(xyxy[:, 2], xyxy[:, 3])
        width = np.hypot(right[0] - left[0], right[1] - left[1])
        pose = self.pose(camera, size)
        if pose is not None:  # the line of sight through the top of the box, above the foot point
            height = pose.height_above(cx, cy, foot_u, xyxy[:, 1])
        else:  # the scale across the ground at the foot, for the height too (fine for a moderate tilt)
            with np.errstate(divide="ignore", invalid="ignore"):
                height = (xyxy[:, 3] - xyxy[:, 1]) * width / (xyxy[:, 2] - xyxy[:, 0])
        airborne = ~np.isfinite(cx)
        return Placement(u, v, np.asarray(lat), np.asarray(lon), np.asarray(gx), np.asarray(gy), cx, cy, height,
                         width, airborne, _cut(xyxy, size))

    def track_points(self, camera: str, ts: float, tracks: Detections, ages: Sequence[float] | None = None,
                     size: tuple[int, int] | None = None, classes: Sequence[Classification] | None = None,
                     at: Placement | None = None) -> tuple[list[TrackPoint], list[TrackPoint]]:
        """Confirmed tracks of one frame as rule inputs: (pixel points, site-plane points). Without
        ``classes`` a track's label is the model's; ``at`` is their placement when already measured."""
        if not len(tracks):
            return [], []
        at = at or self.measure(camera, tracks.xyxy, size)
        labels = tracks.labels()
        pixel, geo = [], []
        for i in range(len(tracks)):
            c = classes[i] if classes is not None else None
            ll = (float(at.lat[i]), float(at.lon[i])) if np.isfinite(at.lat[i]) else None
            common = dict(camera=camera, track_id=int(tracks.track_id[i]), label=c.label if c else labels[i],
                          confidence=float(tracks.confidence[i]), ts=ts,
                          bbox=tuple(float(v) for v in tracks.xyxy[i]), age_s=ages[i] if ages else float("inf"),
                          latlon=ll, height_m=_finite(at.height_m[i]), settled=c.settled if c else True,
                          width_m=c.width_m if c else None, speed_mps=c.speed_mps if c else None,
                          reason=c.reason if c else "")
            pixel.append(TrackPoint(x=float(at.u[i]), y=float(at.v[i]), **common))  # type: ignore[arg-type]
            if self.plane is not None and camera in self.calibrations:
                geo.append(TrackPoint(x=float(at.x[i]), y=float(at.y[i]), **common))  # type: ignore[arg-type]
        return pixel, geo

    def where_pixel(self, camera: str, u: float, v: float) -> dict[str, object]:
        """Which zones contain a pixel of a camera (pixel zones of that camera, and geo zones if calibrated)."""
        pixel_index = ZoneIndex()
        for z in self.config.zones:
            if z.space == "pixel" and z.camera == camera:
                pixel_index.add(z.id, self.zone_geoms[z.id])
        hits = pixel_index.which(u, v)
        out: dict[str, object] = {"camera": camera, "pixel": [u, v], "latlon": None}
        cal = self.calibrations.get(camera)
        if cal is not None:
            lat, lon = cal.pixel_to_latlon(u, v)
            if np.isfinite(lat):
                out["latlon"] = [round(float(lat), 7), round(float(lon), 7)]
                hits += cast(list[str], self.where_latlon(float(lat), float(lon))["zones"])
        out["zones"] = hits
        return out

    def place_area(self, place: str) -> Polygon | LineString | None:
        """A zone or line on the site plane (metres): geo ones directly, pixel ones through their camera's
        calibration; None where neither is possible."""
        for z in self.config.zones:
            if z.id == place:
                if z.space == "geo":
                    return self.zone_geoms[z.id]
                cal = self.calibrations.get(z.camera or "")
                if cal is None or self.plane is None:
                    return None
                lat, lon = cal.pixel_to_latlon(np.array([p[0] for p in z.polygon]), np.array([p[1] for p in z.polygon]))
                x, y = self.plane.to_xy(lat, lon)
                return Polygon(np.c_[x, y]) if np.isfinite(x).all() else None
        for ln in self.config.lines:
            if ln.id == place:
                return self.line_geoms[ln.id] if ln.space == "geo" else None
        return None

    def fusion_rules(self) -> list[FusionRule]:
        """The configured fusion rules, and for every zone or line without one a rule of its own (camera only,
        default severity), so that every zone and line alerts."""
        names = {z.id: z.name or z.id for z in self.config.zones}
        names |= {ln.id: ln.name or ln.id for ln in self.config.lines}
        unknown = {z.id: z.filters.unknown for z in self.config.zones}
        unknown |= {ln.id: ln.filters.unknown for ln in self.config.lines}
        covered = {f.place for f in self.config.fusion}
        rules = [(f, True) for f in self.config.fusion]
        rules += [(FusionConfig.model_validate({"id": place, "place": place}), False)
                  for place in names if place not in covered]
        return [
            FusionRule(f.id, f.place, names.get(f.place, f.place), self.place_area(f.place), frozenset(f.metal),
                       frozenset(f.radio), f.radius_m, f.window_s, f.severity, f.quiet_s, f.cooldown_s, fixed,
                       lower_if_unknown=unknown.get(f.place, "lower") == "lower")
            for f, fixed in rules
        ]

    def fusion_engine(self, new_id: NewId = new_ulid) -> FusionEngine:
        positions = {s.id: s.latlon for s in self.config.fixed_sensors}
        kinds = {s.id: s.kind for s in self.config.fixed_sensors}
        return FusionEngine(self.config.site, self.config.box, self.fusion_rules(), self.plane, positions, kinds,
                            new_id)

    def sensor_latlon(self, sensor_id: str) -> tuple[float, float] | None:
        """Where a fixed sensor (metal detector, radio receiver) stands."""
        for s in self.config.fixed_sensors:
            if s.id == sensor_id:
                return s.latlon
        return None

    def bearing(self, sensor_id: str, bearing_deg: float, length_m: float = 5000.0) -> list[tuple[float, float]]:
        """A radio bearing from a fixed receiver as [lat, lon] points on the map."""
        at = self.sensor_latlon(sensor_id)
        if at is None:
            raise UnknownSensor(f"unknown fixed sensor {sensor_id!r}")
        return bearing_ray(at[0], at[1], bearing_deg, length_m)

    def where_latlon(self, lat: float, lon: float) -> dict[str, object]:
        index = ZoneIndex()
        for z in self.config.zones:
            if z.space == "geo":
                index.add(z.id, self.zone_geoms[z.id])
        hits: list[str] = []
        if self.plane is not None and index.ids:
            x, y = self.plane.to_xy(lat, lon)
            hits = index.which(float(x), float(y))
        return {"latlon": [lat, lon], "zones": hits}


@dataclass(frozen=True, slots=True)
class Placement:
    """Boxes of one camera placed through its calibration, one value per box (NaN where it cannot be)."""

    u: np.ndarray  # the anchor pixel
    v: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    x: np.ndarray  # the anchor on the site plane, metres
    y: np.ndarray
    cal_x: np.ndarray  # the foot on the calibration's own plane, metres (for speeds)
    cal_y: np.ndarray
    height_m: np.ndarray
    width_m: np.ndarray
    airborne: np.ndarray  # the foot is above the horizon
    cut: np.ndarray  # the box touches the frame's edge: its size is not the object's


def _cut(xyxy: np.ndarray, size: tuple[int, int] | None, edge_px: float = 2.0) -> np.ndarray:
    if size is None:
        return np.zeros(len(xyxy), bool)
    w, h = size
    return (xyxy[:, 0] <= edge_px) | (xyxy[:, 1] <= edge_px) | (xyxy[:, 2] >= w - edge_px) | (xyxy[:, 3] >= h - edge_px)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _to_plane(geom: Polygon | LineString, plane: LocalPlane) -> Polygon | LineString:
    """A (lon, lat) geometry onto the site plane in metres."""

    def transform(coords: np.ndarray) -> np.ndarray:
        x, y = plane.to_xy(coords[:, 1], coords[:, 0])
        return np.c_[x, y]

    return shapely.transform(geom, transform)


def _filters(f: FilterConfig, space: str) -> Filters:
    return Filters(labels=frozenset(f.labels), unknown=f.unknown, min_confidence=f.min_confidence,
                   min_height_px=f.min_height_px, min_height_m=f.min_height_m, min_age_s=f.min_age_s,
                   min_frames=f.min_frames,
                   margin=f.margin if f.margin is not None else DEFAULT_MARGIN[space])


def _schedule(s: ScheduleConfig | None) -> Schedule:
    if s is None:
        return Schedule()
    return Schedule(tuple(
        Window(time.fromisoformat(w.start), time.fromisoformat(w.end), frozenset(w.days), s.timezone)
        for w in s.windows
    ))


ZONE_COLOURS = [(0, 200, 255), (255, 0, 200), (0, 255, 0), (255, 200, 0), (200, 0, 255)]


def preview(site: Site, camera: str, gray8: np.ndarray) -> np.ndarray:
    """The camera frame with its zones and lines drawn (geo ones through the calibration), labelled."""
    img = cv2.cvtColor(gray8, cv2.COLOR_GRAY2BGR)
    cal = site.calibrations.get(camera)
    items: list[tuple[str, list[tuple[float, float]], bool]] = []
    shapes = [(z.id, z.space, z.camera, z.polygon, True) for z in site.config.zones]
    shapes += [(ln.id, ln.space, ln.camera, ln.points, False) for ln in site.config.lines]
    for name, space, cam_id, pts, closed in shapes:
        if space == "pixel" and cam_id == camera:
            items.append((name, list(pts), closed))
        elif space == "geo" and cal is not None:
            u, v = cal.latlon_to_pixel(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
            items.append((name, list(zip(u.tolist(), v.tolist(), strict=True)), closed))
    for k, (name, pts, closed) in enumerate(items):
        colour = ZONE_COLOURS[k % len(ZONE_COLOURS)]
        arr = np.round(np.array(pts) * 16).astype(np.int32).reshape(-1, 1, 2)
        if closed:
            overlay = img.copy()
            cv2.fillPoly(overlay, [arr], colour, cv2.LINE_AA, shift=4)
            img = cv2.addWeighted(overlay, 0.25, img, 0.75, 0)
        cv2.polylines(img, [arr], closed, colour, 2, cv2.LINE_AA, shift=4)
        if not closed and len(pts) >= 2:  # an arrow shows the line's direction: first point to last
            a, b = np.array(pts[-2], float), np.array(pts[-1], float)
            a = b - 30.0 * (b - a) / max(float(np.linalg.norm(b - a)), 1e-9)
            cv2.arrowedLine(img, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), colour, 2,
                            cv2.LINE_AA, tipLength=0.4)
        cx, cy = np.array(pts).mean(axis=0)
        cv2.putText(img, name, (int(cx), int(cy)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return img
