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
from urllib.parse import parse_qsl, urlsplit

import cv2
import numpy as np

from sensors.sim.draw import draw_actor, draw_occluder
from sensors.sim.files import load_scenario
from sensors.sim.scenes import SCENARIOS
from sensors.sim.world import (
    COUNTS_PER_K,
    EARTH_M_PER_DEG,
    KELVIN,
    Actor,
    CameraModel,
    Occluder,
    Scenario,
    TruthObject,
    Weather,
)


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
