"""The box's map as the contract's retained ``site`` topic carries it (schema ``edge-agent/site@1``).

A GeoJSON FeatureCollection (RFC 7946: [lon, lat], 7 decimals, exterior rings counter-clockwise) of the
geographic zones and lines with their rules, the pixel-only zones and lines by id and camera with no geometry,
the fixed sensors, and each camera's ground footprint: its image corners projected through its calibration once
its frame size is known (from its first frame). The agent builds it at start, on a reload and when a camera's
frame size becomes known, publishes it and keeps the newest in the incident database; the command post draws
it on its map and the HTML incident report draws the one in the database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from edge_agent.config.cameras import CameraConfig
from edge_agent.config.rules import LineConfig, ZoneConfig
from edge_agent.config.sensors import FixedSensorConfig
from edge_agent.contract.ids import iso_ms
from edge_agent.core.site import Site
from geofences.geo import GeoCalibration, footprint

__all__ = ["FOOTPRINT_MAX_RANGE_M", "SCHEMA", "encode_site_map", "site_map"]

SCHEMA = "edge-agent/site@1"
FOOTPRINT_MAX_RANGE_M = 1000.0  # a camera's footprint ends here (or at the horizon, if nearer)
DECIMALS = 7  # about 1 cm: finer than any survey of a zone

Json = dict[str, Any]


def site_map(site: Site, frame_sizes: Mapping[str, tuple[int, int]], now: float) -> Json:
    """The map of a running site; ``frame_sizes`` is each camera's (width, height) where it has given a frame."""
    cfg = site.config
    features = [_zone(z) for z in cfg.zones]
    features += [_line(ln) for ln in cfg.lines]
    features += [_sensor(s) for s in cfg.fixed_sensors]
    features += [_camera(c, site.calibrations.get(c.id), frame_sizes.get(c.id)) for c in cfg.cameras if c.enabled]
    center = _lonlat((site.plane.lat0, site.plane.lon0)) if site.plane is not None else None
    return {"type": "FeatureCollection", "schema": SCHEMA, "site": cfg.site, "box": cfg.box, "ts": iso_ms(now),
            "center": center, "features": features}


def encode_site_map(value: Json) -> bytes:
    """The payload as published: compact JSON in UTF-8 (never NaN, which JSON does not have)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _feature(geometry: Json | None, properties: Json) -> Json:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def _lonlat(latlon: Sequence[float]) -> list[float]:
    """A [lat, lon] point of the configuration in GeoJSON's order."""
    return [round(float(latlon[1]), DECIMALS), round(float(latlon[0]), DECIMALS)]


def _ring(points: Sequence[Sequence[float]]) -> list[list[float]]:
    """[lat, lon] points as a closed, counter-clockwise (RFC 7946) ring of [lon, lat]."""
    ring = [_lonlat(p) for p in points]
    if ring[0] != ring[-1]:
        ring.append(ring[0])
    twice_area = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(ring, ring[1:], strict=False))
    return ring if twice_area >= 0 else ring[::-1]


def _zone(z: ZoneConfig) -> Json:
    geometry = {"type": "Polygon", "coordinates": [_ring(z.polygon)]} if z.space == "geo" else None
    rules = {"entry": z.entry, "exit": z.exit, "loiter_s": z.loiter_s, "max_count": z.max_count,
             "classes": list(z.filters.labels), "schedule": z.schedule is not None, "cooldown_s": z.cooldown_s}
    return _feature(geometry, {"kind": "zone", "id": z.id, "name": z.name, "space": z.space,
                               "camera": z.camera if z.space == "pixel" else None, "rules": rules})


def _line(ln: LineConfig) -> Json:
    geometry = {"type": "LineString", "coordinates": [_lonlat(p) for p in ln.points]} if ln.space == "geo" else None
    return _feature(geometry, {"kind": "line", "id": ln.id, "name": ln.name, "space": ln.space,
                               "camera": ln.camera if ln.space == "pixel" else None,
                               "rules": {"direction": ln.direction, "classes": list(ln.filters.labels)}})


def _sensor(s: FixedSensorConfig) -> Json:
    return _feature({"type": "Point", "coordinates": _lonlat(s.latlon)}, {"kind": s.kind, "id": s.id, "name": s.name})


def _camera(cam: CameraConfig, cal: GeoCalibration | None, size: tuple[int, int] | None) -> Json:
    """A camera's footprint; no geometry while uncalibrated, before its first frame or where it cannot be
    projected (the whole image above the horizon or out of range)."""
    seen = footprint(cal, size[0], size[1], FOOTPRINT_MAX_RANGE_M) if cal is not None and size is not None else None
    geometry = {"type": "Polygon", "coordinates": [_ring(seen.corners)]} if seen is not None else None
    range_m = round(seen.range_m, 1) if seen is not None else None
    return _feature(geometry, {"kind": "camera", "id": cam.id, "name": cam.name, "range_m": range_m})
