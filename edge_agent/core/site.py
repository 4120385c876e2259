"""Composing geofences with the configuration: the site plane, every zone and line as geometry, the rule
engine, the fusion rules, and each camera's track points put onto the plane."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import time
from typing import cast

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon

from edge_agent.config.agent import AgentConfig
from edge_agent.config.rules import FilterConfig, FusionConfig, ScheduleConfig
from edge_agent.contract.ids import new_ulid
from edge_agent.core.errors import UnknownSensor
from edge_agent.core.fusion import FusionEngine, FusionRule, NewId
from geofences.geo import GeoCalibration, LocalPlane, bearing_ray
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
    zone_geoms: dict[str, Polygon]
    line_geoms: dict[str, LineString]

    @classmethod
    def from_config(cls, config: AgentConfig) -> Site:
        calibrations = {c.id: c.calibration.calibration() for c in config.cameras if c.calibration is not None}
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
        return cls(config, plane, calibrations, zone_geoms, line_geoms)

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

    def rule_inputs(self, points: Sequence[TrackPoint], calibrated: bool) -> tuple[list[TrackPoint], list[TrackPoint]]:
        """A camera's track points as the rule engine takes them: (pixel points, site-plane points); a camera
        without calibration has no place on the plane."""
        return list(points), self.on_plane(points) if calibrated else []

    def on_plane(self, points: Sequence[TrackPoint]) -> list[TrackPoint]:
        """A calibrated camera's track points for the geographic rules: the anchor moved from its pixel to metres
        on the site plane (NaN where it has no place on the ground). Empty where the site has no plane."""
        if self.plane is None or not points:
            return []
        lat = np.array([p.latlon[0] if p.latlon else np.nan for p in points])
        lon = np.array([p.latlon[1] if p.latlon else np.nan for p in points])
        x, y = self.plane.to_xy(lat, lon)
        return [replace(p, x=float(px), y=float(py)) for p, px, py in zip(points, np.atleast_1d(x), np.atleast_1d(y),
                                                                       strict=True)]

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
