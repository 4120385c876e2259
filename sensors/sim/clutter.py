"""Clutter: what is warm or moves in a thermal picture and is no target. Sun-heated rocks and bare ground patches
(warmer than a person on a hot afternoon, and never moving), bushes and grass swaying in the wind, and cloud
shadows drifting over the ground. Placed once for a seed; what moves is a function of time and the seed, never of
the frame before, so any frame can be rendered on its own. None of it is in the truth: ``things`` lists it for a
scorer to blame a nuisance alert on."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sensors.sim.presets import SUN, cooling_k, warmer_k
from sensors.sim.world import (
    CameraModel,
    CloudShadows,
    Clutter,
    ClutterKind,
    ClutterThing,
    Conditions,
    Occluder,
    Scatter,
)

SHADE_LAG_S = 20.0  # sunlit ground cools and warms again over tens of seconds: a shadow leaves a fading trail
SHADE_CELL_PX = 4  # cloud shadows are soft: worked out on a grid this many pixels coarse, then smoothed up
CLOUD_TEXTURE = 256  # cells of the (repeating) cloud pattern on each side
MAX_CLUMPS = 6


@dataclass(frozen=True, slots=True)
class Bush:
    """A bush or a tuft of grass: clumps of leaves (offset across, height up, radius, temperature offset, phase,
    each relative to the bush) that sway with the wind and flicker as the leaves turn."""

    x: float
    y: float
    width_m: float
    height_m: float
    temp_c: float
    sway_hz: float
    phase: float
    clumps: np.ndarray  # (n, 5): across (x width), up (x height), radius (x width), temperature offset, phase


@dataclass(frozen=True, slots=True)
class _Patch:
    x: float
    y: float
    a: float  # semi-axes in metres and the angle of the first
    b: float
    angle: float
    lobes: tuple[float, float, float, float]
    warmer: float


class ClutterField:
    """One scene's clutter, placed for a seed on the ground the camera sees (``gx``, ``gy``: each pixel's ground
    point, ``ground``: where there is ground and not sky)."""

    def __init__(self, clutter: Clutter, conditions: Conditions, cam: CameraModel, ground_c: float, horizon_m: float,
                 seed: int, ground: np.ndarray) -> None:
        self.clutter, self.cam, self.seed = clutter, cam, seed
        self.sun = SUN[conditions]
        self._ground_c, self._horizon = ground_c, horizon_m
        _u, near = cam.ground_at(np.array([cam.width / 2.0]), np.array([cam.height - 1.0]))
        self._near = float(near[0]) if math.isfinite(near[0]) else 1.0
        self.rocks: tuple[Occluder, ...] = ()
        self.bushes: tuple[Bush, ...] = ()
        self._patches: tuple[_Patch, ...] = ()
        things: list[ClutterThing] = []
        if clutter.ground_patches is not None:
            self._patches = tuple(self._place_patches(clutter.ground_patches))
            things += [self._thing("ground patch", p.x, p.y, 2 * max(p.a, p.b), 0.0, ground_c + p.warmer)
                       for p in self._patches]
        if clutter.hot_rocks is not None:
            self.rocks = tuple(sorted(self._place_rocks(clutter.hot_rocks), key=lambda r: -r.y))
            things += [self._thing("hot rock", r.x, r.y, r.width_m, r.height_m, r.temp_c) for r in self.rocks]
        if clutter.vegetation is not None:
            self.bushes = tuple(self._place_bushes(clutter.vegetation))
            things += [self._thing("vegetation", b.x, b.y, b.width_m + 2 * self._sway_m(b), b.height_m, b.temp_c)
                       for b in self.bushes]
        self.things = tuple(things)
        self._rock_feet = self._feet([(r.x, r.y) for r in self.rocks])
        self._prepare_sway()
        rows = np.flatnonzero(ground.any(axis=1))  # no roll: the sky ends at one row across the frame
        self._first_ground_row = int(rows[0]) if rows.size else cam.height
        self._shade = self._prepare_shade(clutter.cloud_shadows) if clutter.cloud_shadows is not None else None

    # -- placing ---------------------------------------------------------------------------------------------

    def _places(self, spec: Scatter, rng: np.random.Generator) -> list[tuple[float, float]]:
        if spec.at:
            return [(float(x), float(y)) for x, y in spec.at]
        lo, hi = spec.range_m or (self._near, 600.0)
        lo, hi = max(lo, self._near, 1.5), min(hi, 0.98 * self._horizon)
        if hi <= lo:
            return []
        ys = rng.uniform(lo, hi, spec.count)
        half = math.tan(math.radians(self.cam.hfov_deg) / 2.0) * 0.95
        return [(float(rng.uniform(-half, half) * y), float(y)) for y in ys]

    def _rng(self, kind: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, 0xC1, kind))

    def _warmth(self, spec: Scatter, kind: str, rng: np.random.Generator) -> float:
        lo, hi = spec.warmer_k or warmer_k(kind, self.sun)
        return float(rng.uniform(lo, hi))

    def _place_rocks(self, spec: Scatter) -> list[Occluder]:
        rng = self._rng(1)
        out = []
        for x, y in self._places(spec, rng):
            width = float(rng.uniform(*spec.size_m))
            height = width * float(rng.uniform(0.35, 0.75))
            out.append(Occluder(x, y, width, height, self._ground_c + self._warmth(spec, "hot rock", rng)))
        return out

    def _place_patches(self, spec: Scatter) -> list[_Patch]:
        rng = self._rng(2)
        out = []
        for x, y in self._places(spec, rng):
            a = float(rng.uniform(*spec.size_m)) / 2.0
            lobes = tuple(float(v) for v in rng.uniform(0, 2 * math.pi, 4))
            out.append(_Patch(x, y, a, a * float(rng.uniform(0.4, 1.0)), float(rng.uniform(0, math.pi)),
                              (lobes[0], lobes[1], lobes[2], lobes[3]),
                              self._warmth(spec, "ground patch", rng)))
        return out

    def _place_bushes(self, spec: Scatter) -> list[Bush]:
        rng = self._rng(3)
        out = []
        for x, y in self._places(spec, rng):
            width = float(rng.uniform(*spec.size_m))
            height = width * float(rng.uniform(0.5, 1.1))
            n = int(np.clip(round(width * self.cam.px_per_m(y) / 3.0), 1, MAX_CLUMPS))
            up = np.sort(rng.uniform(0.25, 0.8, n))
            clumps = np.column_stack([
                rng.uniform(-0.3, 0.3, n) * (1.0 - 0.5 * up),  # a dome: narrower at the top
                up,
                rng.uniform(0.18, 0.3, n) * (1.2 if n == 1 else 1.0) + (0.15 if n == 1 else 0.0),
                rng.normal(0.0, 0.6, n),
                rng.uniform(0, 2 * math.pi, n),
            ])
            out.append(Bush(x, y, width, height, self._ground_c + self._warmth(spec, "vegetation", rng),
                            float(rng.uniform(0.5, 1.3)), float(rng.uniform(0, 2 * math.pi)), clumps))
        return out

    def _thing(self, kind: ClutterKind, x: float, y: float, width: float, height: float, temp: float) -> ClutterThing:
        r = width / 2.0
        xs = np.array([x - r, x + r, x - r, x + r])
        if height == 0:  # flat on the ground: its near and far edges
            us, vs = self.cam.project(xs, np.array([y - r, y - r, y + r, y + r]), np.zeros(4))
        else:  # standing: its foot and its top
            us, vs = self.cam.project(xs, np.full(4, y), np.array([0.0, 0.0, height, height]))
        return ClutterThing(kind, x, y, width, height, temp,
                            (float(us.min()), float(vs.min()), float(us.max()), float(vs.max())))

    # -- what never moves: drawn into the background once --------------------------------------------------------

    def paint_ground(self, temp: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> None:
        """Bare sun-heated patches on the ground: flat, soft-edged, irregular blobs."""
        h, w = temp.shape
        for p in self._patches:
            r = 1.5 * max(p.a, p.b)
            us, vs = self.cam.project(np.array([p.x - r, p.x + r, p.x - r, p.x + r]),
                                      np.array([p.y - r, p.y - r, p.y + r, p.y + r]), np.zeros(4))
            if not np.all(np.isfinite(vs)) or min(p.y - r, p.y + r) <= 0:
                continue
            c0, c1 = max(0, int(us.min())), min(w, int(us.max()) + 2)
            r0, r1 = max(0, int(vs.min())), min(h, int(vs.max()) + 2)
            if c0 >= c1 or r0 >= r1:
                continue
            dx, dy = gx[r0:r1, c0:c1] - p.x, gy[r0:r1, c0:c1] - p.y
            ca, sa = math.cos(p.angle), math.sin(p.angle)
            along, across = dx * ca + dy * sa, -dx * sa + dy * ca
            phi = np.arctan2(across, along)
            edge = 1.0 + 0.22 * np.sin(3 * phi + p.lobes[0]) + 0.12 * np.sin(5 * phi + p.lobes[1])
            rho = np.hypot(along / p.a, across / p.b) / edge
            weight = np.clip((1.2 - rho) / 0.4, 0.0, 1.0)
            temp[r0:r1, c0:c1] += (p.warmer * weight * weight * (3 - 2 * weight)).astype(np.float32)

    # -- what moves: functions of time -----------------------------------------------------------------------

    def _sway_m(self, bush: Bush) -> float:
        return 0.02 * self.clutter.wind_mps * bush.height_m

    def _prepare_sway(self) -> None:
        """Every clump of every bush in one set of arrays, so a frame's swaying is worked out in one go."""
        bushes, cam = self.bushes, self.cam
        if not bushes:
            return
        sizes = [len(b.clumps) for b in bushes]
        self._splits = np.cumsum(sizes)[:-1]
        own = np.repeat(np.arange(len(bushes)), sizes)
        c = np.concatenate([b.clumps for b in bushes])

        def each(values: list[float]) -> np.ndarray:
            return np.array(values, dtype=np.float64)[own]

        width, height = each([b.width_m for b in bushes]), each([b.height_m for b in bushes])
        scale = each([cam.px_per_m(b.y) for b in bushes])
        self._own, self._c = own, c
        self._base_x = each([b.x for b in bushes]) + c[:, 0] * width
        self._y, self._z = each([b.y for b in bushes]), c[:, 1] * height
        self._bend = c[:, 1] ** 1.5 * (1.0 + 0.3 * np.sin(c[:, 4]))  # the top sways most
        r = c[:, 2] * width * scale
        self._axes = np.column_stack([np.maximum(8, np.round(r * 16)),
                                      np.maximum(8, np.round(r * np.sqrt(height / width) * 16))]).astype(np.int64)
        self._temp = each([b.temp_c for b in bushes]) + c[:, 3]
        self._flicker_phase = c[:, 4] + 3.0 * each([b.phase for b in bushes])
        self._hz = np.array([b.sway_hz for b in bushes])
        self._phase = np.array([b.phase for b in bushes])
        self._reach = np.array([self._sway_m(b) for b in bushes])
        self._bush_feet = self._feet([(b.x, b.y) for b in bushes])

    def _feet(self, places: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
        """The pixel (row, column) under each ground point, inside the frame."""
        if not places:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        xs, ys = np.array(places, dtype=np.float64).T
        u, v = self.cam.project(xs, ys, np.zeros(len(xs)))
        return (np.clip(v, 0, self.cam.height - 1).astype(np.int64),
                np.clip(u, 0, self.cam.width - 1).astype(np.int64))

    def rocks_in_shade(self, shade: np.ndarray | None) -> tuple[Occluder, ...]:
        """The hot rocks as they are under this instant's cloud shadows."""
        if shade is None:
            return self.rocks
        cool = shade[self._rock_feet]
        return tuple(Occluder(r.x, r.y, r.width_m, r.height_m, r.temp_c - float(k)) for r, k in zip(
            self.rocks, cool, strict=True))

    def bush_pixels(self, t: float, shade: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each bush's clumps this instant: sub-pixel (1/16) centre u, v and half-axes u, v, and temperatures."""
        if not self.bushes:
            return []
        wind, own = self.clutter.wind_mps, self._own
        lean = math.sin(math.radians(self.clutter.wind_toward_deg))
        gust = 0.65 + 0.35 * np.sin(2 * math.pi * 0.07 * t + self._phase)
        sway = self._reach * gust * (0.5 * lean + np.sin(2 * math.pi * self._hz * t + self._phase))
        us, vs = self.cam.project(self._base_x + sway[own] * self._bend, self._y, self._z)
        temps = self._temp + 0.6 * min(1.0, wind / 5.0) * np.sin(2 * math.pi * 2.3 * t + self._flicker_phase)
        if shade is not None:
            temps = temps - shade[self._bush_feet][own]
        fixed = np.column_stack([np.round(us * 16), np.round(vs * 16)]).astype(np.int64)
        return list(zip(np.split(np.hstack([fixed, self._axes]), self._splits), np.split(temps, self._splits),
                        strict=True))

    def _prepare_shade(self, clouds: CloudShadows) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                            float] | None:
        cooling = clouds.cooling_k if clouds.cooling_k is not None else cooling_k(self.sun)
        if cooling <= 0 or clouds.coverage <= 0:
            return None
        rng = self._rng(4)
        n = CLOUD_TEXTURE
        cell = clouds.size_m / 8.0  # a cloud is about 8 cells across (the pattern's blobs)
        noise = rng.standard_normal((n, n))
        k = np.fft.fftfreq(n)
        kk = np.hypot(*np.meshgrid(k, k))
        field = np.real(np.fft.ifft2(np.fft.fft2(noise) * np.exp(-2.0 * (math.pi * 2.0 * kk) ** 2)))
        field = (field - field.mean()) / field.std()
        threshold = float(np.quantile(field, 1.0 - clouds.coverage))
        edge = np.clip((field - threshold) / 0.8 + 0.5, 0.0, 1.0)
        cover = (edge * edge * (3 - 2 * edge) * cooling).astype(np.float32)
        step = SHADE_CELL_PX
        cam = self.cam
        vv, uu = np.mgrid[step / 2 - 0.5:cam.height:step, step / 2 - 0.5:cam.width:step]
        gx, gy = cam.ground_at(uu, vv)
        on_ground = np.isfinite(gy) & (gy < self._horizon)
        gx = (np.where(on_ground, gx, 0.0) / cell).astype(np.float32)
        gy = (np.where(on_ground, gy, 0.0) / cell).astype(np.float32)
        return cover, gx, gy, on_ground.astype(np.float32), cell

    def shade(self, t: float) -> np.ndarray | None:
        """How much cooler cloud shadows make the ground at time ``t``, per pixel in kelvin (None: no clouds)."""
        if self._shade is None:
            return None
        cover, gx, gy, on_ground, cell = self._shade
        bearing = math.radians(self.clutter.wind_toward_deg)
        vx, vy = self.clutter.wind_mps * math.sin(bearing), self.clutter.wind_mps * math.cos(bearing)
        n = float(CLOUD_TEXTURE)
        total = np.zeros(gx.shape, np.float32)
        weights = [math.exp(-k / 2.0) for k in range(4)]
        for k, wk in enumerate(weights):  # the ground remembers the shadow of the last tens of seconds
            tk = t - k * SHADE_LAG_S / 2.0
            mx = gx - np.float32((vx * tk / cell) % n)  # the pattern repeats: remap wraps what falls outside it
            my = gy - np.float32((vy * tk / cell) % n)
            total += np.float32(wk) * cv2.remap(cover, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        total *= on_ground
        total *= np.float32(1.0 / sum(weights))
        full: np.ndarray = cv2.resize(total, (self.cam.width, self.cam.height), interpolation=cv2.INTER_LINEAR)
        full[:self._first_ground_row] = 0.0
        return full


def draw_bush(temp: np.ndarray, mask: np.ndarray | None, clumps: tuple[np.ndarray, np.ndarray]) -> None:
    """A bush's clumps (from ``ClutterField.bush_pixels``) as filled sub-pixel ellipses."""
    shapes, temps = clumps
    for (cu, cv, au, av), value in zip(shapes.tolist(), temps.tolist(), strict=True):
        cv2.ellipse(temp, (cu, cv), (au, av), 0.0, 0, 360, value, -1, cv2.LINE_8, 4)
        if mask is not None:
            cv2.ellipse(mask, (cu, cv), (au, av), 0.0, 0, 360, 255, -1, cv2.LINE_8, 4)
