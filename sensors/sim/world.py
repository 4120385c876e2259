"""The synthetic world a simulated thermal camera looks at: the camera's mount and its sensor's faults, the actors
and their scripted paths, rocks and bushes, the clutter that is no target (sun-heated rocks and ground, swaying
vegetation, cloud shadows), the weather, and what is really in each frame (the truth the scoring reads). Plain
values, shared by the renderer, the drawing and the scenario files."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

Label = Literal["person", "vehicle", "animal"]
Conditions = Literal["day", "night", "cold", "hot"]
Output = Literal["y16", "gray8"]
ClutterKind = Literal["hot rock", "ground patch", "vegetation", "cloud shadow"]

KELVIN = 273.15
COUNTS_PER_K = 100.0  # TLinear 0.01 K/count
SIM_SCALE = 1.0 / COUNTS_PER_K
SIM_OFFSET = -KELVIN
EARTH_M_PER_DEG = 111_320.0
SIM_ORIGIN = (46.55, 15.65)  # lat/lon of the camera mast (ground x = 0, y = 0) in the named scenes


@dataclass(frozen=True, slots=True)
class CameraModel:
    """A pinhole camera at ``height_m`` above flat ground, tilted down by ``tilt_deg``, looking north.

    Pixel coordinates are OpenCV's: pixel (c, r) is centred on (c, r). ``window`` gives the same camera drawing into
    a part of its frame at ``scale`` times the resolution, so that code that draws through a camera can super-sample
    a small figure without knowing it: ``project``, ``ground_at`` and ``px_per_m`` then work in the window's
    sub-pixels, and ``width``, ``height`` and ``focal_px`` stay the whole frame's."""

    width: int = 640
    height: int = 480
    hfov_deg: float = 40.0
    height_m: float = 5.0
    tilt_deg: float = 8.0
    scale: int = 1  # sub-pixels per frame pixel, each way (a window; 1: the frame itself)
    origin: tuple[int, int] = (0, 0)  # the frame pixel (column, row) whose top-left sub-pixel is the window's (0, 0)

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"camera: scale must be >= 1, got {self.scale}")

    @property
    def is_window(self) -> bool:
        return self.scale != 1 or self.origin != (0, 0)

    def window(self, left: int, top: int, scale: int) -> CameraModel:
        """This camera drawing into its frame from pixel (left, top) on, ``scale`` x ``scale`` sub-pixels a pixel."""
        if self.is_window:
            raise ValueError(f"camera: a window is taken of the whole frame, this is one already ({self})")
        return replace(self, scale=scale, origin=(left, top))

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
        if not self.is_window:  # the frame itself: exactly the numbers it always gave
            return u, v
        # frame pixel c spans c - 0.5 .. c + 0.5; its sub-pixels (c - left) * scale + 0 .. scale - 1 tile it
        return (u - self.origin[0] + 0.5) * self.scale - 0.5, (v - self.origin[1] + 0.5) * self.scale - 0.5

    def ground_at(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels to ground coordinates (x, y) in metres; rows at or above the horizon give +inf."""
        if self.is_window:  # a window's sub-pixels to the frame's pixels
            u = (np.asarray(u, dtype=np.float64) + 0.5) / self.scale - 0.5 + self.origin[0]
            v = (np.asarray(v, dtype=np.float64) + 0.5) / self.scale - 0.5 + self.origin[1]
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
        return self.focal_px * self.scale / depth


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
class H264:
    """The camera's video encoder: a bit rate at the scene's frame rate and a key frame every ``gop`` frames."""

    bitrate_kbps: float = 1000.0
    gop: int = 20

    def __post_init__(self) -> None:
        if not self.bitrate_kbps > 0 or self.gop < 1:
            raise ValueError(f"h264: need bitrate_kbps > 0 and gop >= 1, got {self.bitrate_kbps}, {self.gop}")


@dataclass(frozen=True, slots=True)
class Sensor:
    """What the camera's core, optics and electronics do to the picture. The defaults are the simulator's
    sensor before these keys existed: 80 mK of temporal noise, a fixed pattern 0.6 of it, a 0.8 px blur, Y16."""

    netd_mk: float = 80.0  # temporal noise, one sigma, per frame
    fpn_mk: float | None = None  # fixed-pattern noise left by the factory calibration; None: 0.6 of netd_mk
    fpn_drift_mk_per_min: float = 0.0  # how fast non-uniformity grows between flat-field corrections
    ffc_interval_s: float = 180.0  # the shutter closes this often and the drift starts again from nothing
    blur_px: float = 0.8  # the optics' point spread: Gaussian sigma in pixels (0: none)
    output: Output = "y16"  # gray8: the camera's own 8-bit gain control, as most cameras stream
    h264: H264 | None = None  # gray8 frames through a real H.264 encode and decode

    def __post_init__(self) -> None:
        if min(self.netd_mk, self.fpn_mk or 0.0, self.fpn_drift_mk_per_min, self.blur_px) < 0:
            raise ValueError(f"sensor: noise, drift and blur must be >= 0, got {self}")
        if not self.ffc_interval_s > 0:
            raise ValueError(f"sensor: ffc_interval_s must be > 0, got {self.ffc_interval_s}")
        if self.h264 is not None and self.output != "gray8":
            raise ValueError(f"sensor: H.264 carries 8-bit video: output must be gray8, got {self.output}")


@dataclass(frozen=True, slots=True)
class Scatter:
    """Clutter strewn over the view: rocks, bare patches or bushes, how big, how much warmer than the ground."""

    count: int = 0
    size_m: tuple[float, float] = (0.5, 1.5)  # width, drawn uniformly between the two
    warmer_k: tuple[float, float] | None = None  # above the ground's mean; None: by the conditions (sun)
    range_m: tuple[float, float] | None = None  # how far out; None: the nearest ground in view to 600 m or the horizon
    at: tuple[tuple[float, float], ...] = ()  # ground x, y of each instead of ``count`` random places

    def __post_init__(self) -> None:
        for name, (lo, hi) in (("size_m", self.size_m), ("warmer_k", self.warmer_k or (0.0, 0.0)),
                               ("range_m", self.range_m or (1.0, 1.0))):
            if lo > hi:
                raise ValueError(f"{name}: [low, high] with low <= high, got {[lo, hi]}")
        if self.count < 0 or self.size_m[0] <= 0:
            raise ValueError(f"count >= 0 and sizes > 0, got {self.count}, {self.size_m}")


@dataclass(frozen=True, slots=True)
class CloudShadows:
    """Shadows of clouds drifting over the ground with the wind: soft patches of cooler ground."""

    coverage: float = 0.3  # fraction of the ground in shadow
    size_m: float = 150.0  # a cloud's typical size
    cooling_k: float | None = None  # how much cooler shaded ground gets; None: by the conditions (sun)


@dataclass(frozen=True, slots=True)
class Clutter:
    """What is warm or moves but is no target. Off by default."""

    wind_mps: float = 3.0  # sways vegetation; clouds drift at this speed
    wind_toward_deg: float = 90.0  # the way the wind blows, a compass bearing: 0 away from the camera, 90 east
    hot_rocks: Scatter | None = None
    ground_patches: Scatter | None = None
    vegetation: Scatter | None = None
    cloud_shadows: CloudShadows | None = None


@dataclass(frozen=True, slots=True)
class ClutterThing:
    """One placed piece of clutter, for a scorer to blame a nuisance alert on: where it is and how it looks
    (its pixel box without weather; vegetation sways a little around it)."""

    kind: ClutterKind
    x: float
    y: float
    width_m: float
    height_m: float  # 0 for flat things on the ground
    temp_c: float
    bbox: tuple[float, float, float, float]  # x1 y1 x2 y2 pixels


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
    conditions: Conditions = "day"  # how much sun there is: how warm clutter gets, whether clouds cast shadows
    horizon_m: float = 400.0  # the flat ground ends here; beyond it the picture shows sky
    sensor: Sensor = field(default_factory=Sensor)
    clutter: Clutter = field(default_factory=Clutter)
    preset: Literal["realistic"] | None = None  # the sensor and clutter a field camera sees (see ``presets``)
    explicit: frozenset[str] = frozenset()  # the keys the scene sets itself ("camera.netd_mk", "clutter.vegetation"):
    # they win over the preset

    def latlon_of(self, x: float, y: float) -> tuple[float, float]:
        """Ground metres (x east, y north of the mast) to lat/lon."""
        lat0, lon0 = self.mast
        return lat0 + y / EARTH_M_PER_DEG, lon0 + x / (EARTH_M_PER_DEG * math.cos(math.radians(lat0)))

    def xy_of(self, lat: float, lon: float) -> tuple[float, float]:
        """Lat/lon to ground metres from the mast."""
        lat0, lon0 = self.mast
        return (lon - lon0) * EARTH_M_PER_DEG * math.cos(math.radians(lat0)), (lat - lat0) * EARTH_M_PER_DEG
