"""Geo-calibration: a homography from a camera's pixels to the ground, fitted to ground control points.

Ground coordinates are metres east/north on a local tangent plane around the points' centroid, so the fit
and its error are in metres; lat/lon (WGS84) go in and come out. Valid for flat ground within a few km.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True, slots=True)
class GroundControlPoint:
    u: float
    v: float
    lat: float
    lon: float


class LocalPlane:
    """Equirectangular metres around an origin: x east, y north."""

    def __init__(self, lat0: float, lon0: float) -> None:
        self.lat0, self.lon0 = lat0, lon0
        self._kx = math.radians(1.0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
        self._ky = math.radians(1.0) * EARTH_RADIUS_M

    def to_xy(self, lat: np.ndarray | float, lon: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        x = (np.asarray(lon, np.float64) - self.lon0) * self._kx
        return x, (np.asarray(lat, np.float64) - self.lat0) * self._ky

    def to_latlon(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        return self.lat0 + np.asarray(y, np.float64) / self._ky, self.lon0 + np.asarray(x, np.float64) / self._kx


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Direct linear transform with Hartley normalisation; least squares for more than 4 points."""

    def normaliser(p: np.ndarray) -> np.ndarray:
        c = p.mean(axis=0)
        d = np.sqrt(((p - c) ** 2).sum(axis=1)).mean() or 1.0
        s = math.sqrt(2) / d
        return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1]])

    ts, td = normaliser(src), normaliser(dst)
    sh = np.c_[src, np.ones(len(src))] @ ts.T
    dh = np.c_[dst, np.ones(len(dst))] @ td.T
    rows = []
    for (x, y, _), (u, v, _) in zip(sh, dh, strict=True):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    _, _, vt = np.linalg.svd(np.asarray(rows))
    h = vt[-1].reshape(3, 3)
    h = np.linalg.inv(td) @ h @ ts
    return h / h[2, 2]


def _apply(h: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / w, (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / w


class GeoCalibration:
    """Pixel <-> lat/lon for one camera, fitted to four or more ground control points."""

    def __init__(self, points: Sequence[GroundControlPoint]) -> None:
        if len(points) < 4:
            raise ValueError(f"geo-calibration needs at least 4 ground control points, got {len(points)}")
        px = np.array([(p.u, p.v) for p in points], np.float64)
        lat = np.array([p.lat for p in points])
        lon = np.array([p.lon for p in points])
        if not (np.all(np.abs(lat) <= 90) and np.all(np.abs(lon) <= 180)):
            raise ValueError("ground control points: latitude must be within ±90 and longitude within ±180")
        self.plane = LocalPlane(float(lat.mean()), float(lon.mean()))
        gx, gy = self.plane.to_xy(lat, lon)
        ground = np.c_[gx, gy]
        for name, pts in (("pixel", px), ("ground", ground)):
            centred = pts - pts.mean(axis=0)
            sv = np.linalg.svd(centred, compute_uv=False)
            if sv[-1] < 1e-6 * max(sv[0], 1e-12) or sv[0] < 1e-9:
                raise ValueError(f"ground control points are collinear in {name} space: spread them over the view")
        self.points = tuple(points)
        self.h = _homography(px, ground)
        self.h_inv = np.linalg.inv(self.h)
        ex, ey = _apply(self.h, px[:, 0], px[:, 1])
        err = np.hypot(ex - gx, ey - gy)
        self.errors_m = err
        self.rms_error_m = float(np.sqrt((err**2).mean()))
        self.max_error_m = float(err.max())
        # the horizon: pixels whose ground point would be at infinity or behind the camera
        self._horizon_sign = float(np.sign(self.h[2, 0] * px[0, 0] + self.h[2, 1] * px[0, 1] + self.h[2, 2]))

    def pixel_to_ground(self, u: np.ndarray | float, v: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Metres east/north of the calibration centre; NaN above the horizon."""
        u = np.asarray(u, np.float64)
        v = np.asarray(v, np.float64)
        w = self.h[2, 0] * u + self.h[2, 1] * v + self.h[2, 2]
        x, y = _apply(self.h, u, v)
        bad = np.sign(w) != self._horizon_sign
        return np.where(bad, np.nan, x), np.where(bad, np.nan, y)

    def pixel_to_latlon(self, u: np.ndarray | float, v: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.pixel_to_ground(u, v)
        return self.plane.to_latlon(x, y)

    def latlon_to_pixel(self, lat: np.ndarray | float, lon: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.plane.to_xy(lat, lon)
        return _apply(self.h_inv, x, y)


def destination(lat: float, lon: float, bearing_deg: float, distance: float) -> tuple[float, float]:
    """The point ``distance`` metres from (lat, lon) along a true-north bearing (great circle)."""
    p1, l1, b = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    d = distance / EARTH_RADIUS_M
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0


def bearing_ray(lat: float, lon: float, bearing_deg: float, length_m: float = 5000.0, steps: int = 16
                ) -> list[tuple[float, float]]:
    """A radio bearing from a fixed receiver as a polyline of [lat, lon] points on the map."""
    return [destination(lat, lon, bearing_deg, length_m * i / steps) for i in range(steps + 1)]


@dataclass(frozen=True, slots=True)
class CameraPose:
    """A pinhole camera recovered from a ground homography: focal length, rotation and centre in the
    calibration's plane (metres, z up), assuming square pixels and the principal point at the image centre."""

    focal_px: float
    cx: float
    cy: float
    rot: np.ndarray  # world -> camera; columns are the world axes seen from the camera
    centre: np.ndarray  # (x, y, z) metres; z is the mounting height above the ground plane

    @property
    def height_m(self) -> float:
        return float(self.centre[2])

    @property
    def tilt_deg(self) -> float:
        """Depression of the optical axis below the horizon."""
        axis = self.rot.T @ np.array([0.0, 0.0, 1.0])
        return float(math.degrees(math.asin(-axis[2] / np.linalg.norm(axis))))

    def rays(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """World directions (N, 3) of the lines of sight through pixels."""
        cam = np.c_[(np.asarray(u, np.float64) - self.cx) / self.focal_px,
                    (np.asarray(v, np.float64) - self.cy) / self.focal_px, np.ones(np.size(u))]
        return cam @ self.rot  # rot.T @ each row

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points on the calibration's plane (metres, z up) to pixels; NaN behind the camera."""
        pts = np.c_[np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel(),
                    np.asarray(z, np.float64).ravel()] - self.centre
        cam = pts @ self.rot.T
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.where(cam[:, 2] > 1e-9, cam[:, 2], np.nan)
            return self.cx + self.focal_px * cam[:, 0] / depth, self.cy + self.focal_px * cam[:, 1] / depth

    def height_above(self, foot_x: np.ndarray, foot_y: np.ndarray, u_top: np.ndarray, v_top: np.ndarray
                     ) -> np.ndarray:
        """How high above a ground point the line of sight through a top pixel passes (metres): the height of
        an upright object standing there whose top is seen at that pixel."""
        d = self.rays(u_top, v_top)
        dx = np.asarray(foot_x, np.float64) - self.centre[0]
        dy = np.asarray(foot_y, np.float64) - self.centre[1]
        horiz = d[:, 0] ** 2 + d[:, 1] ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            mu = (dx * d[:, 0] + dy * d[:, 1]) / horiz
        return self.centre[2] + mu * d[:, 2]


def recover_pose(cal: GeoCalibration, width: int, height: int) -> CameraPose | None:
    """The camera behind a calibration, for an image of ``width`` x ``height`` pixels; None when the homography
    is not one of a level pinhole camera with square pixels (e.g. points measured on a slope)."""
    cx, cy = width / 2.0, height / 2.0
    g = np.linalg.inv(cal.h)  # ground (x, y, 1) -> pixel
    g = np.array([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]]) @ g
    g = g / np.linalg.norm(g)
    (a11, a12, _), (a21, a22, _), (a31, a32, _) = g
    # r1 = (a11/f, a21/f, a31), r2 = (a12/f, a22/f, a32) must be orthogonal and of equal length: two linear
    # equations in w = 1/f^2, solved together by least squares
    coef = np.array([a11 * a12 + a21 * a22, a11**2 + a21**2 - a12**2 - a22**2])
    rhs = np.array([-a31 * a32, a32**2 - a31**2])
    denom = float(coef @ coef)
    if denom <= 0:
        return None
    w = float(coef @ rhs) / denom
    if w <= 0:
        return None
    f = 1.0 / math.sqrt(w)
    m = np.diag([1.0 / f, 1.0 / f, 1.0]) @ g
    s = 2.0 / (np.linalg.norm(m[:, 0]) + np.linalg.norm(m[:, 1]))
    # the sign that puts the calibration points in front of the camera
    px = np.array([(p.u - cx, p.v - cy) for p in cal.points])
    ground = np.c_[cal.pixel_to_ground(px[:, 0] + cx, px[:, 1] + cy)]
    depth = m[2, 0] * ground[:, 0] + m[2, 1] * ground[:, 1] + m[2, 2]
    if np.nanmedian(depth) < 0:
        s = -s
    r1, r2, t = s * m[:, 0], s * m[:, 1], s * m[:, 2]
    u_, _, vt = np.linalg.svd(np.c_[r1, r2, np.cross(r1, r2)])
    rot = u_ @ vt
    centre = -rot.T @ t
    if centre[2] <= 0:
        return None
    pose = CameraPose(f, cx, cy, rot, centre)
    # the pose must reproduce the calibration: its ground point for each control point's pixel
    d = pose.rays(px[:, 0] + cx, px[:, 1] + cy)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = -centre[2] / d[:, 2]
    hit = centre[:2] + mu[:, None] * d[:, :2]
    ok = np.isfinite(ground).all(axis=1)
    if not ok.any() or (mu[ok] <= 0).any():
        return None
    err = np.hypot(*(hit[ok] - ground[ok]).T)
    return pose if float(err.max()) <= max(0.5, 3.0 * cal.max_error_m) else None


FOOTPRINT_TOLERANCE_PX = 0.25  # how closely the far edge is placed when it must move down the image


@dataclass(frozen=True, slots=True)
class Footprint:
    """The ground a camera sees: four (lat, lon) corners in image order (bottom left, bottom right, top right,
    top left), ``range_m`` the furthest corner's ground distance from the camera (or, where no pose can be
    recovered, from the bottom centre of the image), and ``clipped`` when the far edge was moved down the image
    because the top of the image looks above the horizon or beyond the maximum range."""

    corners: tuple[tuple[float, float], ...]
    range_m: float
    clipped: bool

    def __post_init__(self) -> None:
        if len(self.corners) != 4:
            raise ValueError(f"a footprint has 4 corners, got {len(self.corners)}: {self.corners!r}")
        if not all(math.isfinite(c) for corner in self.corners for c in corner):
            raise ValueError(f"footprint corners must be finite, got {self.corners!r}")
        if not (math.isfinite(self.range_m) and self.range_m >= 0):
            raise ValueError(f"footprint range_m must be a finite distance >= 0, got {self.range_m!r}")


def footprint(cal: GeoCalibration, width: int, height: int, max_range_m: float) -> Footprint | None:
    """The image of ``width`` x ``height`` pixels projected onto the ground through the calibration; the top
    edge is moved down (by bisection) until both top corners land in front of the camera within
    ``max_range_m``. None where the frame size is no size, or the bottom of the image itself is above the
    horizon or out of range, or too little of the image is left to make an area."""
    if width <= 0 or height <= 0 or not max_range_m > 0:
        return None
    us = np.array([0.0, float(width)])

    def row(v: float) -> tuple[np.ndarray, np.ndarray]:
        return cal.pixel_to_ground(us, np.array([v, v]))

    pose = recover_pose(cal, width, height)
    if pose is not None:
        ref_x, ref_y = float(pose.centre[0]), float(pose.centre[1])
    else:
        bx, by = cal.pixel_to_ground(width / 2.0, float(height))
        ref_x, ref_y = float(bx), float(by)

    def reach(v: float) -> float:
        """The further of a row's two end points from the camera; inf where one is not on the ground ahead."""
        x, y = row(v)
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            return math.inf
        return float(np.hypot(x - ref_x, y - ref_y).max())

    near = reach(float(height))
    if not near <= max_range_m:  # also NaN: the bottom centre itself is above the horizon
        return None
    top = 0.0
    if reach(top) > max_range_m:  # the rows in range lie below: bisect between a bad row (lo) and a good one (hi)
        lo, hi = 0.0, float(height)
        while hi - lo > FOOTPRINT_TOLERANCE_PX:
            mid = (lo + hi) / 2.0
            lo, hi = (lo, mid) if reach(mid) <= max_range_m else (mid, hi)
        top = hi
    if height - top < 1.0:  # a sliver of one pixel row is no footprint
        return None
    x, y = cal.pixel_to_ground(np.array([0.0, float(width), float(width), 0.0]),
                               np.array([float(height), float(height), top, top]))
    lat, lon = cal.plane.to_latlon(x, y)
    corners = tuple((float(a), float(b)) for a, b in zip(lat, lon, strict=True))
    return Footprint(corners, max(near, reach(top)), clipped=top > 0.0)
