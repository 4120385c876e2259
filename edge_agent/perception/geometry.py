"""A camera's geometry: where the boxes it sees stand on the ground and how big they are, through its
geo-calibration (the camera's pose - focal length, height, tilt - recovered from the calibration's homography).
Uncalibrated cameras give NaN for everything but the anchor pixel."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_agent.config.cameras import CameraConfig
from geofences.geo import CameraPose, GeoCalibration, recover_pose


@dataclass(frozen=True, slots=True)
class Placement:
    """Boxes of one camera placed through its calibration, one value per box (NaN where it cannot be)."""

    u: np.ndarray  # the anchor pixel
    v: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    cal_x: np.ndarray  # the foot on the calibration's own plane, metres (for speeds)
    cal_y: np.ndarray
    height_m: np.ndarray
    width_m: np.ndarray
    airborne: np.ndarray  # the foot is above the horizon
    cut: np.ndarray  # the box touches the frame's edge: its size is not the object's
    range_step_m: np.ndarray  # metres of ground range per pixel down the image at the foot (how coarse range is)
    camera_xy: tuple[float, float] | None = None  # the camera over the calibration's plane, where its pose is known


@dataclass(slots=True)
class CameraGeometry:
    """One camera's calibration (None: uncalibrated) and the box point that stands on the map (``anchor``)."""

    camera: str
    calibration: GeoCalibration | None = None
    anchor: str = "bottom_center"
    _poses: dict[tuple[int, int], CameraPose | None] = field(default_factory=dict)

    @classmethod
    def of(cls, camera: CameraConfig) -> CameraGeometry:
        cal = camera.calibration
        return cls(camera.id, cal.calibration() if cal is not None else None,
                   cal.anchor if cal is not None else "bottom_center")

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def anchor_px(self, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = (xyxy[:, 0] + xyxy[:, 2]) / 2.0
        y = xyxy[:, 3] if self.anchor == "bottom_center" else (xyxy[:, 1] + xyxy[:, 3]) / 2.0
        return x, y

    def pose(self, size: tuple[int, int] | None) -> CameraPose | None:
        """The camera behind the calibration, for frames of ``size`` (width, height); cached per size."""
        if self.calibration is None or size is None:
            return None
        if size not in self._poses:
            self._poses[size] = recover_pose(self.calibration, *size)
        return self._poses[size]

    def person_px(self, size: tuple[int, int], height_m: float = 1.75) -> np.ndarray | None:
        """How many pixels tall a person of ``height_m`` stands with their feet on each image row (at the image's
        centre column), NaN where the row is above the horizon; None for an uncalibrated camera. What the heat
        proposals take as the size of something real at each row."""
        pose, cal = self.pose(size), self.calibration
        if pose is None or cal is None:
            return None
        w, h = size
        rows = np.arange(h, dtype=np.float64)
        gx, gy = cal.pixel_to_ground(np.full(h, w / 2.0), rows)
        _, top = pose.project(gx, gy, np.full(h, height_m))
        out = rows - np.asarray(top, np.float64)
        return np.where(np.isfinite(gx) & np.isfinite(out) & (out > 0), out, np.nan)

    def measure(self, xyxy: np.ndarray, size: tuple[int, int] | None = None) -> Placement:
        """Where boxes stand and how big they are (NaN where uncalibrated)."""
        xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
        u, v = self.anchor_px(xyxy)
        n = len(xyxy)
        nan = np.full(n, np.nan)
        cal = self.calibration
        if cal is None:
            return Placement(u, v, nan, nan, nan, nan, nan, nan, np.zeros(n, bool), _cut(xyxy, size), nan)
        foot_u = (xyxy[:, 0] + xyxy[:, 2]) / 2.0
        cx, cy = cal.pixel_to_ground(foot_u, xyxy[:, 3])  # metres on the calibration's plane
        lat, lon = cal.pixel_to_latlon(u, v)
        left = cal.pixel_to_ground(xyxy[:, 0], xyxy[:, 3])
        right = cal.pixel_to_ground(xyxy[:, 2], xyxy[:, 3])
        width = np.hypot(right[0] - left[0], right[1] - left[1])
        pose = self.pose(size)
        if pose is not None:  # the line of sight through the top of the box, above the foot point
            height = pose.height_above(cx, cy, foot_u, xyxy[:, 1])
        else:  # the scale across the ground at the foot, for the height too (fine for a moderate tilt)
            with np.errstate(divide="ignore", invalid="ignore"):
                height = (xyxy[:, 3] - xyxy[:, 1]) * width / (xyxy[:, 2] - xyxy[:, 0])
        airborne = ~np.isfinite(cx)
        nx, ny = cal.pixel_to_ground(foot_u, xyxy[:, 3] + 1.0)  # one pixel further down: nearer
        step = np.hypot(nx - cx, ny - cy)
        where = (float(pose.centre[0]), float(pose.centre[1])) if pose is not None else None
        return Placement(u, v, np.asarray(lat), np.asarray(lon), cx, cy, height, width, airborne, _cut(xyxy, size),
                         step, where)


def _cut(xyxy: np.ndarray, size: tuple[int, int] | None, edge_px: float = 2.0) -> np.ndarray:
    if size is None:
        return np.zeros(len(xyxy), bool)
    w, h = size
    return (xyxy[:, 0] <= edge_px) | (xyxy[:, 1] <= edge_px) | (xyxy[:, 2] >= w - edge_px) | (xyxy[:, 3] >= h - edge_px)
