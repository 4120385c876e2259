"""Zones (polygons) and lines (polylines) in a camera's pixel space or in WGS84, and vectorised tests.

Every geometry is prepared once; ``ZoneIndex.contains`` tests many points against every zone with
``shapely.contains_xy`` (no Python loop over points). Geographic geometries use (lon, lat) as (x, y).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon
from shapely.validation import explain_validity

Space = Literal["pixel", "geo"]


class GeometryError(ValueError):
    """A zone or line that cannot be used; the message says why."""


def make_polygon(points: Sequence[Sequence[float]], space: Space) -> Polygon:
    """A valid polygon from [x, y] pixel points or [lat, lon] geographic points."""
    pts = [tuple(float(c) for c in p) for p in points]
    if any(len(p) != 2 for p in pts):
        raise GeometryError("every point needs exactly two numbers")
    if len(pts) >= 2 and pts[0] == pts[-1]:
        pts = pts[:-1]  # a closing point repeated is fine
    if len(set(pts)) < 3:
        raise GeometryError(f"a zone needs at least 3 distinct points, got {len(set(pts))}")
    if space == "geo":
        for lat, lon in pts:
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise GeometryError(f"point [{lat}, {lon}] is not a [lat, lon] pair")
        pts = [(lon, lat) for lat, lon in pts]
    poly = Polygon(pts)
    if not poly.is_valid:
        raise GeometryError(f"the polygon is not simple: {explain_validity(poly)}")
    if poly.area <= 0:
        raise GeometryError("the polygon has no area")
    return poly


def make_line(points: Sequence[Sequence[float]], space: Space) -> LineString:
    pts = [tuple(float(c) for c in p) for p in points]
    if any(len(p) != 2 for p in pts):
        raise GeometryError("every point needs exactly two numbers")
    if len(pts) < 2 or len(set(pts)) < 2:
        raise GeometryError("a line needs at least 2 distinct points")
    if space == "geo":
        pts = [(lon, lat) for lat, lon in pts]
    line = LineString(pts)
    if not line.is_simple:
        raise GeometryError("the line crosses itself")
    return line


@dataclass(slots=True)
class ZoneIndex:
    """Many polygons of one space, prepared, for fast point tests."""

    ids: list[str] = field(default_factory=list)
    polygons: list[Polygon] = field(default_factory=list)

    def add(self, zone_id: str, polygon: Polygon) -> None:
        shapely.prepare(polygon)
        self.ids.append(zone_id)
        self.polygons.append(polygon)

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """A (points, zones) boolean matrix; NaN points are inside nothing."""
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        out = np.zeros((x.size, len(self.polygons)), dtype=bool)
        for j, poly in enumerate(self.polygons):
            out[:, j] = shapely.contains_xy(poly, x, y)
        return out

    def which(self, x: float, y: float) -> list[str]:
        hits = self.contains(np.array([x]), np.array([y]))[0]
        return [zid for zid, hit in zip(self.ids, hits, strict=True) if hit]


def side_of(line: LineString, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """+1 left of the line's direction (first point to last), -1 right, judged against the nearest segment."""
    coords = np.asarray(line.coords)
    x = np.atleast_1d(np.asarray(x, np.float64))
    y = np.atleast_1d(np.asarray(y, np.float64))
    a, b = coords[:-1], coords[1:]
    d = b - a
    seg_len2 = np.maximum((d**2).sum(axis=1), 1e-12)
    px = np.stack([x, y], axis=1)[:, None, :]  # (n, 1, 2)
    t = np.clip((((px - a) * d).sum(axis=2)) / seg_len2, 0.0, 1.0)  # (n, segs)
    nearest = a + t[..., None] * d
    dist2 = ((px - nearest) ** 2).sum(axis=2)
    k = dist2.argmin(axis=1)
    rel = px[:, 0, :] - a[k]
    cross = d[k, 0] * rel[:, 1] - d[k, 1] * rel[:, 0]
    return np.sign(cross)


def segment_crosses(line: LineString, x0: float, y0: float, x1: float, y1: float) -> bool:
    """Whether the move from (x0, y0) to (x1, y1) crosses the line itself (not around its ends)."""
    if (x0, y0) == (x1, y1):
        return False
    return bool(line.intersects(LineString([(x0, y0), (x1, y1)])))
