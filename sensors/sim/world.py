"""The synthetic world a simulated thermal camera looks at: the camera's mount, the actors and their scripted
paths, rocks and bushes, the weather, and what is really in each frame (the truth the scoring reads). Plain values,
shared by the renderer, the drawing and the scenario files."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Label = Literal["person", "vehicle", "animal"]

KELVIN = 273.15
COUNTS_PER_K = 100.0  # TLinear 0.01 K/count
SIM_SCALE = 1.0 / COUNTS_PER_K
SIM_OFFSET = -KELVIN
EARTH_M_PER_DEG = 111_320.0
SIM_ORIGIN = (46.55, 15.65)  # lat/lon of the camera mast (ground x = 0, y = 0) in the named scenes


@dataclass(frozen=True, slots=True)
class CameraModel:
    """A pinhole camera at ``height_m`` above flat ground, tilted down by ``tilt_deg``, looking north."""

    width: int = 640
    height: int = 480
    hfov_deg: float = 40.0
    height_m: float = 5.0
    tilt_deg: float = 8.0

    @property
    def focal_px(self) -> float:
        return (self.width / 2.0) / math.tan(math.radians(self.hfov_deg) / 2.0)

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground coordinates in metres (x east, y north = away from the camera, z up) to pixels."""
        t = math.radians(self.tilt_deg)
        dz = np.asarray(z, dtype=np.float64) - self.height_m
        y = np.asarray(y, dtype=np.float64)
        depth = y * math.cos(t) - dz * math.sin(t)
        down = -y * math.sin(t) - dz * math.cos(t)
        f = self.focal_px
        u = self.width / 2.0 + f * np.asarray(x, dtype=np.float64) / depth
        v = self.height / 2.0 + f * down / depth
        return u, v

    def ground_at(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels to ground coordinates (x, y) in metres; rows at or above the horizon give +inf."""
        t = math.radians(self.tilt_deg)
        f = self.focal_px
        a = (np.asarray(v, dtype=np.float64) - self.height / 2.0) / f  # down / depth
        # down = -y sin t + H cos t, depth = y cos t + H sin t, with dz = -H on the ground
        denom = a * math.cos(t) + math.sin(t)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = self.height_m * (math.cos(t) - a * math.sin(t)) / denom
            y = np.where(denom > 1e-6, y, np.inf)
            depth = y * math.cos(t) + self.height_m * math.sin(t)
            x = (np.asarray(u, dtype=np.float64) - self.width / 2.0) * depth / f
        return x, y

    def px_per_m(self, y: float) -> float:
        t = math.radians(self.tilt_deg)
        depth = y * math.cos(t) + self.height_m * math.sin(t)
        return self.focal_px / depth


@dataclass(frozen=True, slots=True)
class Actor:
    """Something warm that moves on a scripted path: keyframes (t seconds, x metres, y metres)."""

    track_id: int
    label: Label
    keyframes: tuple[tuple[float, float, float], ...]
    temp_c: float = 30.0
    size: float = 1.0  # height multiplier for people, length multiplier for vehicles and animals
    kind: str = ""  # "dog", "sheep", "cow", "deer", "bird", "car", "truck"
    gait: str = ""  # people: "walking", "running", "crawling"
    altitude_m: float = 0.0  # birds fly
    keep_heading: bool = False  # scenario files: a pause keeps the way it faced (and end-on views are drawn)

    def __post_init__(self) -> None:
        if len(self.keyframes) < 2:
            raise ValueError(f"actor {self.track_id}: needs at least 2 keyframes, got {len(self.keyframes)}")
        times = [k[0] for k in self.keyframes]
        if times != sorted(times):
            raise ValueError(f"actor {self.track_id}: keyframe times must not decrease, got {times}")

    def state(self, t: float) -> tuple[float, float, float, float] | None:
        """(x, y, heading_x, distance walked) at time t, or None when the actor is not in the scene."""
        ks = self.keyframes
        if t < ks[0][0] or t > ks[-1][0]:
            return None
        walked, facing = 0.0, 0.0
        for (t0, x0, y0), (t1, x1, y1) in zip(ks, ks[1:], strict=False):
            seg = math.hypot(x1 - x0, y1 - y0)
            if seg and self.keep_heading:
                facing = (x1 - x0) / seg
            if t <= t1:
                a = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                dx = (x1 - x0) / seg if seg else (facing if self.keep_heading else 0.0)
                return x0 + a * (x1 - x0), y0 + a * (y1 - y0), dx, walked + a * seg
            walked += seg
        _t_last, x_last, y_last = ks[-1]
        return x_last, y_last, facing, walked


@dataclass(frozen=True, slots=True)
class Occluder:
    """A cool rock or bush standing on the ground at (x, y), ``width_m`` wide and ``height_m`` tall."""

    x: float
    y: float
    width_m: float
    height_m: float
    temp_c: float = 6.0


@dataclass(frozen=True, slots=True)
class TruthObject:
    """What is really in a frame: the visible box of one actor and where its feet are."""

    track_id: int
    label: Label
    bbox: tuple[float, float, float, float]  # visible part, x1 y1 x2 y2 pixels
    full_bbox: tuple[float, float, float, float]
    foot_px: tuple[float, float]
    ground_xy: tuple[float, float]
    visible: float  # fraction of the actor's pixels that are not hidden or cut by the frame edge
    temp_c: float
    kind: str = ""  # a person's gait, an animal's species, a vehicle's type (where the scene names it)


@dataclass(frozen=True, slots=True)
class Weather:
    """What the air and the mast do to the picture; everything off by default."""

    fog_visibility_m: float | None = None  # contrast falls as exp(-distance / visibility) towards the air
    rain: float = 0.0  # 0..1: attenuation like fog (visibility 300 m / rain) and streaks
    shimmer_px: float = 0.0  # heat shimmer: a smooth random displacement each frame, stronger far away
    shake_px: float = 0.0  # camera shake: a random translation each frame


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    duration_s: float
    actors: tuple[Actor, ...]
    occluders: tuple[Occluder, ...] = ()
    ambient_c: float = 8.0
    fence_y: float = 42.0
    track_y: float = 24.0
    ground_c: float | None = None  # the ground's mean temperature; None: the air's (the named scenes)
    camera: CameraModel | None = None  # the mount; None: the default one
    mast: tuple[float, float] = SIM_ORIGIN  # lat/lon of the mast (ground x = 0, y = 0)
    weather: Weather = field(default_factory=Weather)
    fence: bool = True
    fps: float | None = None  # the scene's own frame rate; None: 10 (a URL's fps= wins)

    def latlon_of(self, x: float, y: float) -> tuple[float, float]:
        """Ground metres (x east, y north of the mast) to lat/lon."""
        lat0, lon0 = self.mast
        return lat0 + y / EARTH_M_PER_DEG, lon0 + x / (EARTH_M_PER_DEG * math.cos(math.radians(lat0)))

    def xy_of(self, lat: float, lon: float) -> tuple[float, float]:
        """Lat/lon to ground metres from the mast."""
        lat0, lon0 = self.mast
        return (lon - lon0) * EARTH_M_PER_DEG * math.cos(math.radians(lat0)), (lat - lat0) * EARTH_M_PER_DEG
