"""A synthetic thermal camera over a border strip, with ground truth.

A fixed pinhole camera stands on a mast and looks down onto flat ground: a dirt track across the view, a
fence line further out, rocks and bushes. People, vehicles and animals move on scripted paths (keyframes in
metres on the ground) with plausible surface temperatures, each drawn as the camera integrates it over its pixels,
a far one a few partly warm pixels (``figure``); clutter that is no target may lie and move among them
(``clutter``); the sensor blurs the picture and adds temporal and fixed-pattern noise (``sensor``). Frames are
16-bit radiometric counts (TLinear, 0.01 K per count), or 8-bit grey after the camera's own gain control and
perhaps H.264 (``stream``), and come with the true boxes and track ids, so detection and tracking can be measured.
Everything is deterministic for a seed; every frame can be rendered on its own (with H.264, from its GOP's start).
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np

from sensors.sim.clutter import ClutterField, draw_bush
from sensors.sim.draw import draw_occluder
from sensors.sim.figure import Figure, draw_figure, extent
from sensors.sim.files import load_scenario
from sensors.sim.params import SimParams
from sensors.sim.presets import sensor_and_clutter
from sensors.sim.scenes import SCENARIOS
from sensors.sim.sensor import SensorCore, camera_agc
from sensors.sim.stream import H264Stream
from sensors.sim.world import (
    EARTH_M_PER_DEG,
    Actor,
    CameraModel,
    Clutter,
    ClutterKind,
    ClutterThing,
    Occluder,
    Scenario,
    Sensor,
    TruthObject,
    Weather,
)

ACTOR_HALF_M = 5.0  # an actor reaches this far to either side of its ground point (a truck is 8 m long)
Drawn = tuple[Actor, tuple[float, float, float, float], Figure]  # an actor, its state and the pixels it owns
BushNow = tuple[np.ndarray, np.ndarray]  # a bush's clumps this instant (``ClutterField.bush_pixels``)


class ThermalScene:
    """Renders a scenario frame by frame: ``render(i)`` gives (Y16 counts or 8-bit grey, truth)."""

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
        sensor, clutter = sensor_and_clutter(scenario, params.realistic if "realistic" in params.given else None)
        netd_k = params.noise_k if "noise_k" in params.given else sensor.netd_mk / 1000.0
        self.sensor: Sensor = replace(sensor, netd_mk=netd_k * 1000.0) if "noise_k" in params.given else sensor
        fpn_k = netd_k * 0.6 if sensor.fpn_mk is None else sensor.fpn_mk / 1000.0
        rng = np.random.default_rng(params.seed)
        fixed_pattern = rng.normal(0.0, fpn_k, (params.height, params.width)).astype(np.float32)
        self._core = SensorCore(self.sensor, netd_k, fixed_pattern, params.seed)
        self._clutter: ClutterField | None = None
        self._background = self._render_background(rng, clutter if clutter != Clutter() else None)
        h264 = self.sensor.h264
        self._stream = H264Stream(cam.width, cam.height, params.fps, h264) if h264 is not None else None

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

    @property
    def clutter(self) -> tuple[ClutterThing, ...]:
        """The clutter placed in this scene (hot rocks, ground patches, vegetation): no target, never in the truth;
        listed so a scorer can tell what a nuisance alert was raised on. Cloud shadows move: see ``cloud_shade_k``."""
        return self._clutter.things if self._clutter is not None else ()

    def cloud_shade_k(self, index: int) -> np.ndarray | None:
        """How much cooler cloud shadows make each pixel's ground in frame ``index`` (None: no cloud shadows)."""
        return self._clutter.shade(index / self.params.fps) if self._clutter is not None else None

    def clutter_in(self, bbox: tuple[float, float, float, float], index: int, min_shade_k: float = 0.5
                   ) -> tuple[ClutterKind, ...]:
        """The kinds of clutter in a pixel box in frame ``index``: what a nuisance alert there may have seen."""
        x1, y1, x2, y2 = bbox
        kinds = {c.kind for c in self.clutter
                 if c.bbox[0] < x2 and x1 < c.bbox[2] and c.bbox[1] < y2 and y1 < c.bbox[3]}
        shade = self.cloud_shade_k(index)
        if shade is not None:
            h, w = shade.shape
            r0, r1 = max(0, int(y1)), min(h, int(math.ceil(y2)))
            c0, c1 = max(0, int(x1)), min(w, int(math.ceil(x2)))
            if r0 < r1 and c0 < c1 and float(shade[r0:r1, c0:c1].max()) >= min_shade_k:
                kinds.add("cloud shadow")
        order: tuple[ClutterKind, ...] = ("hot rock", "ground patch", "vegetation", "cloud shadow")
        return tuple(k for k in order if k in kinds)

    def ground_to_latlon(self, x: float, y: float, origin: tuple[float, float] | None = None) -> tuple[float, float]:
        lat0, lon0 = origin or self.scenario.mast
        lat = lat0 + y / EARTH_M_PER_DEG
        lon = lon0 + x / (EARTH_M_PER_DEG * math.cos(math.radians(lat0)))
        return lat, lon

    # -- background ------------------------------------------------------------------------------------

    def _render_background(self, rng: np.random.Generator, clutter: Clutter | None) -> np.ndarray:
        cam, sc = self.camera, self.scenario
        h, w = cam.height, cam.width
        vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
        gx, gy = cam.ground_at(uu, vv)
        sky = ~np.isfinite(gy) | (gy > sc.horizon_m)
        gy_f = np.where(sky, sc.horizon_m, gy)
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
        if clutter is not None:
            self._clutter = ClutterField(clutter, sc.conditions, cam, ground, sc.horizon_m, self.params.seed, ~sky)
            self._clutter.paint_ground(temp, gx_f, gy_f)
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
        for rock in self._clutter.rocks if self._clutter is not None else ():
            draw_occluder(temp, None, cam, rock)
        for occ in sc.occluders:
            draw_occluder(temp, None, cam, occ)
        return temp

    # -- frames ----------------------------------------------------------------------------------------

    def render(self, index: int, truth: bool = True) -> tuple[np.ndarray, list[TruthObject]]:
        """Frame ``index`` as the camera gives it (Y16 counts, uint16; or 8-bit grey with ``camera.output: gray8``)
        and the truth for it (an empty list with ``truth=False``: a camera that only streams the frames skips the
        work). The same frame either way. Through H.264 a frame depends on the ones before it in its GOP: read in
        order, each is encoded once; out of order, its GOP is encoded again from the key frame."""
        image, truths = self._frame(index, truth)
        if self._stream is not None:
            image = self._stream.frame(index, image, lambda j: self._frame(j, False)[0])
        return image, truths

    def _frame(self, index: int, truth: bool) -> tuple[np.ndarray, list[TruthObject]]:
        """The frame before any compression."""
        temp, truths, drawn = self._scene(index, truth)
        rng = np.random.default_rng((self.params.seed, index))
        if self.scenario.weather != Weather():
            temp, truths = self._weather(temp, truths, drawn, index)
        counts = self._core.counts(temp, index / self.params.fps, rng)
        return (camera_agc(counts) if self.sensor.output == "gray8" else counts), truths

    def _scene(self, index: int, truth: bool) -> tuple[np.ndarray, list[TruthObject], list[Drawn]]:
        """The scene's temperatures at frame ``index``, the truth, and each actor drawn with its pixels."""
        t = index / self.params.fps
        cam = self.camera
        temp = self._background.copy()
        truths: list[TruthObject] = []
        # painter's algorithm, far to near: whatever is drawn later hides what is behind it
        drawables: list[tuple[float, Actor | Occluder | BushNow, tuple[float, float, float, float] | None,
                              tuple[slice, slice] | None]] = []
        for actor in self.scenario.actors:
            state = actor.state(t)
            if state is not None and state[1] > 1.0:
                drawables.append((state[1], actor, state, None))
        drawables.extend((occ.y, occ, None, None) for occ in self.scenario.occluders)
        if self._clutter is not None:
            drawables += self._clutter_drawables(temp, t, [d[2] for d in drawables if d[2] is not None])
        drawables.sort(key=lambda item: -item[0])
        id_mask = np.zeros((cam.height, cam.width), dtype=np.int32) if truth else None
        drawn: list[Drawn] = []
        scratch: np.ndarray | None = None
        for _depth, thing, state, near in drawables:
            if near is not None:  # clutter: its pixels count only where they hide an actor drawn before it
                hides = id_mask is not None and any(_overlap(figure.box, near) for *_, figure in drawn)
                if hides and scratch is None:
                    scratch = np.zeros((cam.height, cam.width), dtype=np.uint8)
                _draw_clutter(temp, scratch if hides else None, cam, thing)
                if hides and id_mask is not None and scratch is not None:
                    id_mask[near][scratch[near] > 0] = 0
                    scratch[near] = 0
                continue
            if isinstance(thing, Occluder):
                mask = np.zeros((cam.height, cam.width), dtype=np.uint8)
                draw_occluder(temp, mask, cam, thing)
                if id_mask is not None and (box := extent(mask)) is not None:
                    id_mask[box][mask[box] > 0] = 0
                continue
            assert state is not None and isinstance(thing, Actor)
            x, y, heading, walked = state
            figure = draw_figure(temp, cam, thing, x, y, heading, walked, t)
            if figure is not None:
                drawn.append((thing, state, figure))
                if id_mask is not None:
                    id_mask[figure.box][figure.owned] = thing.track_id
        if id_mask is not None:
            truths = self._truth(drawn, id_mask)
        return temp, truths, drawn

    def _clutter_drawables(self, temp: np.ndarray, t: float, states: list[tuple[float, float, float, float]]
                           ) -> list[tuple[float, Actor | Occluder | BushNow, None, tuple[slice, slice] | None]]:
        """Cloud shadows cool the ground now; bushes sway; a hot rock is drawn again when an actor is behind it."""
        assert self._clutter is not None
        field = self._clutter
        shade = field.shade(t)
        if shade is not None:
            temp -= shade
        out: list[tuple[float, Actor | Occluder | BushNow, None, tuple[slice, slice] | None]] = []
        listed = [c for c in field.things if c.kind == "hot rock"]
        for rock, thing in zip(field.rocks_in_shade(shade), listed, strict=True):
            if any(y > rock.y and abs(x - rock.x) < rock.width_m / 2 + ACTOR_HALF_M for x, y, _h, _w in states):
                out.append((rock.y, rock, None, _box(thing.bbox, temp.shape)))
        for bush, clumps in zip(field.bushes, field.bush_pixels(t, shade), strict=True):
            shapes = clumps[0]
            reach = shapes[:, 2:4].max()
            box = ((shapes[:, 0].min() - reach) / 16, (shapes[:, 1].min() - reach) / 16,
                   (shapes[:, 0].max() + reach) / 16, (shapes[:, 1].max() + reach) / 16)
            out.append((bush.y, clumps, None, _box(box, temp.shape)))
        return out

    def _truth(self, drawn: list[Drawn], id_mask: np.ndarray) -> list[TruthObject]:
        # each actor's pixels lie inside its own figure's box: the counting works on that window only
        cam, truths = self.camera, []
        for actor, (x, y, _heading, _walked), figure in drawn:
            box = figure.box
            vis = id_mask[box] == actor.track_id
            seen = extent(vis)
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
                    visible=int(np.count_nonzero(vis)) / int(np.count_nonzero(figure.owned)),
                    temp_c=actor.temp_c,
                    kind=actor.gait or actor.kind,
                )
            )
        return truths

    def _weather(self, temp: np.ndarray, truths: list[TruthObject], drawn: list[Drawn], index: int
                 ) -> tuple[np.ndarray, list[TruthObject]]:
        """Fog and rain fade contrast with distance, rain streaks, heat shimmer wobbles, a shaking mast moves."""
        w, sc = self.scenario.weather, self.scenario
        rng = np.random.default_rng((self.params.seed, index, 7))
        h_px, w_px = temp.shape
        distance = self._distance.copy()
        for _actor, (x, y, _heading, _walked), figure in drawn:
            distance[figure.box][figure.owned] = math.hypot(x, y)
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


def _draw_clutter(temp: np.ndarray, mask: np.ndarray | None, cam: CameraModel, thing: object) -> None:
    if isinstance(thing, Occluder):
        draw_occluder(temp, mask, cam, thing)
    elif isinstance(thing, tuple):
        draw_bush(temp, mask, thing)


def _box(bbox: tuple[float, float, float, float], shape: tuple[int, ...]) -> tuple[slice, slice] | None:
    """A pixel box (x1 y1 x2 y2) as row and column slices inside the frame, a pixel wider each way; None: outside."""
    h, w = shape
    c0, c1 = max(0, int(bbox[0]) - 2), min(w, int(math.ceil(bbox[2])) + 2)
    r0, r1 = max(0, int(bbox[1]) - 2), min(h, int(math.ceil(bbox[3])) + 2)
    return (slice(r0, r1), slice(c0, c1)) if r0 < r1 and c0 < c1 else None


def _overlap(a: tuple[slice, slice], b: tuple[slice, slice]) -> bool:
    return a[0].start < b[0].stop and b[0].start < a[0].stop and a[1].start < b[1].stop and b[1].start < a[1].stop


def _shift(box: tuple[float, float, float, float], dx: float, dy: float) -> tuple[float, float, float, float]:
    return box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy
