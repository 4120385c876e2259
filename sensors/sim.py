"""A synthetic thermal camera over a border strip, with ground truth.

A fixed pinhole camera stands on a mast and looks down onto flat ground: a dirt track across the view, a
fence line further out, rocks and bushes. People, vehicles and animals move on scripted paths (keyframes in
metres on the ground) with plausible surface temperatures; the sensor adds temporal and fixed-pattern noise.
Frames are 16-bit radiometric counts (TLinear, 0.01 K per count) and come with the true boxes and track ids,
so detection and tracking can be measured. Everything is deterministic for a seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

import cv2
import numpy as np

from sensors.simdraw import draw_actor, draw_occluder

Label = Literal["person", "vehicle", "animal"]

KELVIN = 273.15
COUNTS_PER_K = 100.0  # TLinear 0.01 K/count
SIM_SCALE = 1.0 / COUNTS_PER_K
SIM_OFFSET = -KELVIN
EARTH_M_PER_DEG = 111_320.0
SIM_ORIGIN = (46.55, 15.65)  # lat/lon of the camera mast (ground x = 0, y = 0) in the named scenes
SIM_ORIGIN_DEFAULT = SIM_ORIGIN


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
    mast: tuple[float, float] = SIM_ORIGIN_DEFAULT  # lat/lon of the mast (ground x = 0, y = 0)
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


@dataclass(slots=True)
class SimParams:
    """Options of a ``sim://NAME?key=value`` source."""

    name: str  # a named scene, or the path of a scenario file
    seed: int = 0
    fps: float = 10.0  # the scene's own when not given (``given`` says which options were)
    width: int = 640
    height: int = 480
    frames: int | None = None  # default: the scenario's duration
    loop: bool = False
    realtime: bool = False
    noise_k: float = 0.08
    extra: dict[str, str] = field(default_factory=dict)
    given: frozenset[str] = frozenset()

    @property
    def is_file(self) -> bool:
        return self.name.endswith(SCENARIO_SUFFIXES)

    @classmethod
    def parse(cls, url: str) -> SimParams:
        parts = urlsplit(url)
        name = parts.netloc + parts.path  # sim://dir/file.yaml and sim:///abs/file.yaml name files
        if parts.scheme != "sim" or not name:
            raise ValueError(f"not a synthetic scene URL: {url!r} (expected sim://NAME, e.g. sim://border, or "
                             "sim://path/to/scene.yaml)")
        if name not in SCENARIOS and not name.endswith(SCENARIO_SUFFIXES):
            raise ValueError(f"unknown synthetic scene {name!r} in {url!r}; known: {', '.join(sorted(SCENARIOS))}, "
                             "or a scenario file (.yaml)")
        p = cls(name=name)
        converters: dict[str, Callable[[str], object]] = {
            "seed": int, "fps": float, "width": int, "height": int, "frames": int,
            "loop": _flag, "realtime": _flag, "noise_k": float,
        }
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            conv = converters.get(key)
            if conv is None:
                raise ValueError(f"unknown option {key!r} in {url!r}; known: {', '.join(converters)}")
            try:
                setattr(p, key, conv(value))
            except ValueError as exc:
                raise ValueError(f"bad value {value!r} for {key!r} in {url!r}: {exc}") from exc
            p.given |= {key}
        if p.fps <= 0 or p.width < 64 or p.height < 64:
            raise ValueError(f"{url!r}: fps must be > 0 and the frame at least 64x64")
        return p


SCENARIO_SUFFIXES = (".yaml", ".yml")


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on", ""):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


class ThermalScene:
    """Renders a scenario frame by frame: ``render(i)`` gives (Y16 counts, truth)."""

    def __init__(self, scenario: Scenario, params: SimParams) -> None:
        self.scenario = scenario
        self.params = params
        cam = scenario.camera or CameraModel(width=params.width, height=params.height)
        if {"width", "height"} & params.given:  # the URL's size wins over a scenario file's
            cam = replace(cam, width=params.width, height=params.height)
        if "fps" not in params.given and scenario.fps:
            params.fps = scenario.fps
        params.width, params.height = cam.width, cam.height
        self.camera = cam
        self.frame_count = params.frames or int(round(scenario.duration_s * params.fps))
        rng = np.random.default_rng(params.seed)
        self._fixed_pattern = rng.normal(0.0, params.noise_k * 0.6, (params.height, params.width)).astype(
            np.float32
        )
        self._background = self._render_background(rng)

    @classmethod
    def from_url(cls, url: str) -> ThermalScene:
        params = SimParams.parse(url)
        if params.is_file:
            from sensors.scenario import load_scenario

            return cls(load_scenario(params.name), params)
        return cls(SCENARIOS[params.name](), params)

    @classmethod
    def from_file(cls, path: str, **options: str) -> ThermalScene:
        """A scenario file, with the URL's options (``seed="1"``, ``fps="5"``, ...)."""
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return cls.from_url(f"sim://{path}" + (f"?{query}" if query else ""))

    def ground_to_latlon(self, x: float, y: float, origin: tuple[float, float] | None = None) -> tuple[float, float]:
        lat0, lon0 = origin or self.scenario.mast
        lat = lat0 + y / EARTH_M_PER_DEG
        lon = lon0 + x / (EARTH_M_PER_DEG * math.cos(math.radians(lat0)))
        return lat, lon

    # -- background ------------------------------------------------------------------------------------

    def _render_background(self, rng: np.random.Generator) -> np.ndarray:
        cam, sc = self.camera, self.scenario
        h, w = cam.height, cam.width
        vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
        gx, gy = cam.ground_at(uu, vv)
        sky = ~np.isfinite(gy) | (gy > 400.0)
        gy_f = np.where(sky, 400.0, gy)
        gx_f = np.where(sky, 0.0, gx)
        # ground texture in world coordinates, so it shrinks with distance like real soil does
        tex = np.zeros((h, w))
        for k, amp in ((0.35, 0.9), (1.3, 0.45), (4.0, 0.25)):
            phase = rng.uniform(0, 2 * np.pi, 4)
            tex += amp * np.sin(k * gx_f + phase[0]) * np.cos(k * 0.8 * gy_f + phase[1])
            tex += amp * 0.6 * np.sin(k * 0.7 * (gx_f + gy_f) + phase[2])
        ground = sc.ambient_c if sc.ground_c is None else sc.ground_c
        temp = ground + 0.6 * tex - 0.02 * np.clip(gy_f, 0, 200)
        on_track = np.abs(gy_f - sc.track_y) < 2.0
        temp = np.where(on_track, temp + 2.5, temp)  # packed earth holds the day's heat
        temp = np.where(sky, sc.ambient_c - 22.0 + 6.0 * (vv / h), temp)
        temp = temp.astype(np.float32)
        self._distance = np.where(sky, 1e4, np.hypot(gx_f, gy_f)).astype(np.float32)  # what fog lies over
        # fence: posts every 3 m and three wires, a little colder than the ground (radiating to the sky)
        for px in (np.arange(-60.0, 60.1, 3.0) if sc.fence else ()):
            u0, v0 = cam.project(np.array([px]), np.array([sc.fence_y]), np.array([0.0]))
            u1, v1 = cam.project(np.array([px]), np.array([sc.fence_y]), np.array([2.4]))
            thick = max(1, int(round(0.12 * cam.px_per_m(sc.fence_y))))
            cv2.line(temp, (int(u0[0]), int(v0[0])), (int(u1[0]), int(v1[0])), sc.ambient_c - 3.0, thick)
        for wire_z in (0.6, 1.4, 2.2) if sc.fence else ():
            xs = np.array([-60.0, 60.0])
            u, v = cam.project(xs, np.full(2, sc.fence_y), np.full(2, wire_z))
            cv2.line(temp, (int(u[0]), int(v[0])), (int(u[1]), int(v[1])), sc.ambient_c - 4.0, 1)
        for occ in sc.occluders:
            draw_occluder(temp, None, cam, occ)
        return temp

    # -- frames ----------------------------------------------------------------------------------------

    def render(self, index: int, truth: bool = True) -> tuple[np.ndarray, list[TruthObject]]:
        """Frame ``index`` as Y16 counts (uint16) and the truth for it (an empty list with ``truth=False``: a
        camera that only streams the frames skips the work). The same frame either way."""
        t = index / self.params.fps
        cam = self.camera
        temp = self._background.copy()
        truths: list[TruthObject] = []
        # painter's algorithm, far to near: whatever is drawn later hides what is behind it
        drawables: list[tuple[float, Actor | Occluder, tuple[float, float, float, float] | None]] = []
        for actor in self.scenario.actors:
            state = actor.state(t)
            if state is not None and state[1] > 1.0:
                drawables.append((state[1], actor, state))
        drawables.extend((occ.y, occ, None) for occ in self.scenario.occluders)
        drawables.sort(key=lambda item: -item[0])
        id_mask = np.zeros((cam.height, cam.width), dtype=np.int32) if truth else None
        drawn: list[tuple[Actor, tuple[float, float, float, float], np.ndarray]] = []
        extents: list[tuple[slice, slice] | None] = []
        for _depth, thing, state in drawables:
            mask = np.zeros((cam.height, cam.width), dtype=np.uint8)
            if isinstance(thing, Occluder):
                draw_occluder(temp, mask, cam, thing)
                if id_mask is not None and (box := _extent(mask)) is not None:
                    id_mask[box][mask[box] > 0] = 0
                continue
            assert state is not None
            x, y, heading, walked = state
            draw_actor(temp, mask, cam, thing, x, y, heading, walked, t)
            drawn.append((thing, state, mask))
            if id_mask is not None:
                box = _extent(mask)
                extents.append(box)
                if box is not None:
                    id_mask[box][mask[box] > 0] = thing.track_id
        if id_mask is not None:
            # each actor's pixels lie inside its own drawing's extent: the counting works on that window only
            for (actor, (x, y, _heading, _walked), mask), box in zip(drawn, extents, strict=True):
                if box is None:
                    continue
                vis = id_mask[box] == actor.track_id
                seen = _extent(vis)
                if seen is None:
                    continue
                r0, c0 = box[0].start, box[1].start
                fu, fv = cam.project(np.array([x]), np.array([y]), np.array([0.0]))
                truths.append(
                    TruthObject(
                        track_id=actor.track_id,
                        label=actor.label,
                        bbox=(float(c0 + seen[1].start), float(r0 + seen[0].start), float(c0 + seen[1].stop),
                              float(r0 + seen[0].stop)),
                        full_bbox=(float(box[1].start), float(box[0].start), float(box[1].stop),
                                   float(box[0].stop)),
                        foot_px=(float(fu[0]), float(fv[0])),
                        ground_xy=(x, y),
                        visible=int(np.count_nonzero(vis)) / int(np.count_nonzero(mask[box])),
                        temp_c=actor.temp_c,
                        kind=actor.gait or actor.kind,
                    )
                )
        rng = np.random.default_rng((self.params.seed, index))
        if self.scenario.weather != Weather():
            temp, truths = self._weather(temp, truths, drawn, index)
        optics = cv2.GaussianBlur(temp, (0, 0), 0.8)
        shot = rng.standard_normal(optics.shape, dtype=np.float32) * np.float32(self.params.noise_k)
        noisy = optics + self._fixed_pattern + shot
        counts = np.clip((noisy + KELVIN) * COUNTS_PER_K, 0, 65535).astype(np.uint16)
        return counts, truths

    def _weather(self, temp: np.ndarray, truths: list[TruthObject],
                 drawn: list[tuple[Actor, tuple[float, float, float, float], np.ndarray]], index: int
                 ) -> tuple[np.ndarray, list[TruthObject]]:
        """Fog and rain fade contrast with distance, rain streaks, heat shimmer wobbles, a shaking mast moves."""
        w, sc = self.scenario.weather, self.scenario
        rng = np.random.default_rng((self.params.seed, index, 7))
        h_px, w_px = temp.shape
        distance = self._distance.copy()
        for _actor, (x, y, _heading, _walked), mask in drawn:
            distance[mask > 0] = math.hypot(x, y)
        visibility = min(w.fog_visibility_m or math.inf, 300.0 / w.rain if w.rain > 0 else math.inf)
        if math.isfinite(visibility):
            keep = np.exp(-distance / np.float32(visibility))
            temp = (sc.ambient_c + (temp - sc.ambient_c) * keep).astype(np.float32)
        if w.rain > 0:  # drops falling close to the lens: short, slightly slanted streaks at air temperature
            for _ in range(int(150 * w.rain)):
                x0, y0 = rng.uniform(0, w_px), rng.uniform(0, h_px)
                length = rng.uniform(6, 18)
                cv2.line(temp, (int(x0), int(y0)), (int(x0 + 0.2 * length), int(y0 + length)),
                         float(sc.ambient_c + rng.normal(0.0, 1.0)), 1)
        if w.shimmer_px > 0:  # hot air bends rays: a smooth field that changes every frame
            coarse = rng.normal(0.0, 1.0, (2, 12, 16)).astype(np.float32)
            far = np.clip(distance / 80.0, 0.2, 1.0) * np.float32(w.shimmer_px)
            dx = cv2.resize(coarse[0], (w_px, h_px), interpolation=cv2.INTER_CUBIC) * far
            dy = cv2.resize(coarse[1], (w_px, h_px), interpolation=cv2.INTER_CUBIC) * far
            grid_x, grid_y = np.meshgrid(np.arange(w_px, dtype=np.float32), np.arange(h_px, dtype=np.float32))
            temp = cv2.remap(temp, grid_x + dx, grid_y + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if w.shake_px > 0:  # the whole picture moves; so does every true box
            sx, sy = (float(v) for v in rng.normal(0.0, w.shake_px, 2))
            temp = cv2.warpAffine(temp, np.array([[1, 0, sx], [0, 1, sy]], np.float32), (w_px, h_px),
                                  borderMode=cv2.BORDER_REFLECT)
            truths = [replace(t, bbox=_shift(t.bbox, sx, sy), full_bbox=_shift(t.full_bbox, sx, sy),
                              foot_px=(t.foot_px[0] + sx, t.foot_px[1] + sy)) for t in truths]
        return temp, truths


def _extent(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The rows and columns a mask covers (its bounding box as slices), or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _shift(box: tuple[float, float, float, float], dx: float, dy: float) -> tuple[float, float, float, float]:
    return box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy


# -- scenarios ---------------------------------------------------------------------------------------------


def _border() -> Scenario:
    """The demo strip: walkers (two of them crossing, one behind a rock), a vehicle and a dog by the fence."""
    return Scenario(
        name="border",
        duration_s=60.0,
        actors=(
            Actor(1, "person", ((0.0, -9.0, 30.0), (20.0, 3.0, 14.0), (32.0, 3.0, 14.0), (50.0, 8.0, 11.0)), 29.0),
            Actor(2, "person", ((2.0, 10.0, 20.0), (24.0, -8.0, 20.5)), 30.5, size=1.05),
            Actor(3, "person", ((3.0, -10.0, 20.6), (25.0, 9.0, 19.5)), 29.5, size=0.95),
            Actor(4, "person", ((8.0, 6.0, 34.0), (38.0, -3.0, 34.5)), 30.0),
            Actor(5, "vehicle", ((30.0, -28.0, 24.0), (52.0, 26.0, 24.0)), 14.0, kind="car"),
            Actor(6, "animal", ((0.0, 8.0, 40.0), (30.0, -2.0, 40.0), (60.0, 7.0, 40.5)), 26.0, kind="dog"),
        ),
        occluders=(Occluder(-1.0, 33.0, 2.4, 0.9),),
    )


def _walkers() -> Scenario:
    """Three people in the open at walking pace: two pass each other twice at different depths (the near
    one hides part of the far one), a third walks slowly towards the camera through their paths."""
    return Scenario(
        name="walkers",
        duration_s=30.0,
        actors=(
            Actor(1, "person", ((0.0, -4.5, 15.0), (8.0, 4.5, 15.0), (9.0, 4.5, 15.2), (17.0, -4.5, 15.4),
                                (18.0, -4.5, 15.4), (26.0, 4.5, 15.5), (30.0, 4.5, 15.5)), 30.0),
            Actor(2, "person", ((0.0, 5.5, 19.5), (10.0, -5.5, 19.2), (11.0, -5.5, 19.2), (21.0, 5.5, 19.5),
                                (30.0, -2.0, 19.8)), 29.0, size=1.05),
            Actor(3, "person", ((0.0, -4.0, 30.0), (30.0, 3.0, 13.0)), 31.0, size=0.95),
        ),
    )


def _crossing() -> Scenario:
    """Two people walk towards each other on the same line and pass."""
    return Scenario(
        name="crossing",
        duration_s=24.0,
        actors=(
            Actor(1, "person", ((0.0, -9.0, 20.0), (24.0, 9.0, 20.0)), 30.0),
            Actor(2, "person", ((0.0, 9.0, 21.0), (24.0, -9.0, 21.0)), 31.0, size=1.05),
        ),
    )


def _quiet() -> Scenario:
    """Nothing moves: only the ground, the fence and the sensor's noise."""
    return Scenario(name="quiet", duration_s=60.0, actors=())


def _animals() -> Scenario:
    """A dog and a deer by the fence and a car on the track: nothing here is a person."""
    return Scenario(
        name="animals",
        duration_s=30.0,
        actors=(
            Actor(1, "animal", ((0.0, -6.0, 38.0), (30.0, 6.0, 39.0)), 26.0, kind="dog"),
            Actor(2, "animal", ((0.0, 9.0, 30.0), (30.0, -4.0, 31.0)), 27.0, kind="deer"),
            Actor(3, "vehicle", ((0.0, -26.0, 24.0), (30.0, 22.0, 24.0)), 14.0, kind="car"),
        ),
    )


def _intrusion() -> Scenario:
    """Zone rules on the ground (metres; the tests put a zone at x -2..3, y 16..22 and a line at y 24):
    1 walks in from the west, stands 16 s, then walks north over the line; 2 walks along the outside of the
    zone's west edge; 3 walks south over the line east of the zone; a dog trots into the zone at the end."""
    return Scenario(
        name="intrusion",
        duration_s=30.0,
        actors=(
            Actor(1, "person", ((0.0, -6.0, 19.0), (6.0, 0.5, 19.0), (20.0, 0.5, 19.0), (26.0, 0.5, 26.5),
                                (30.0, 0.5, 26.5)), 30.0),
            Actor(2, "person", ((0.0, -3.3, 14.0), (14.0, -3.3, 23.0), (30.0, -3.3, 23.0)), 29.5, size=0.95),
            Actor(3, "person", ((0.0, 5.0, 28.0), (9.0, 5.0, 17.0), (30.0, 5.0, 17.0)), 30.5, size=1.05),
            Actor(4, "animal", ((20.0, 7.0, 17.5), (30.0, -1.0, 17.0)), 26.0, kind="dog"),
        ),
    )


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "intrusion": _intrusion,
    "border": _border,
    "walkers": _walkers,
    "crossing": _crossing,
    "quiet": _quiet,
    "animals": _animals,
}
