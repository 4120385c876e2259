"""Heat-first proposals: where in a thermal frame something warmer or colder than the scene has appeared.

A person 400 m away is a handful of pixels, far below what the detection model sees, but on a thermal camera
they are a few degrees off the ground they stand on, and they were not there before. ``HeatProposer`` keeps a
model of the scene's temperature per pixel (its mean and how much it varies by itself) and proposes the
regions that differ from it by a contrast above the noise, kept when their size fits something real at that
image row (``size_prior``: how many pixels tall a person stands at each row, from the camera's calibration).

What the field does to a scene, and what each part of this answers:

- slow drift, the sun on rocks and ground: the background follows each pixel with a time constant
  (``tau_s``); a hot rock is background from the first frame and never proposed;
- AGC steps of 8-bit cameras and global offset drift of radiometric ones: each frame is first matched to the
  background as a whole (robust offset, and gain for 8-bit);
- mast shake: the frame's shift against the background is measured on the background's strongest static edges
  and the frame moved back onto it;
- shimmer, rain: each pixel's own variation is learnt, and the threshold there rises;
- swaying vegetation: a pixel that keeps flipping in and out of the changed regions (a branch going to and
  fro) is left out while it flickers (more than ``flicker_max_hz`` changes a second, on average over
  ``tau_flicker_s``, whatever the frame rate); a person walking past flips each pixel twice, in and out;
- cloud shadows and other large changes: a region far larger than any target at its rows is not a proposal;
- a ghost (something in the first frame that then left): it has no contrast against its surroundings in the
  current frame, so it is not proposed, and the background takes the current frame there at once.

Pixels under a proposal or a live track follow the background only very slowly, so a person who stops stays a
proposal for minutes. Frames in degrees Celsius (radiometric) or grey levels (8-bit); the thresholds exist in
both units. Pure numpy/OpenCV, no model, a few milliseconds a frame at 640x480 on one core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from detectors.shake import MastShake
from sensors.frames import ThermalFrame

GHOST_CLEAR = 0.3  # a ghost region takes this much of the current frame each frame: gone in a few frames
GHOST, SPREAD, NOISE = "ghost", "spread", "noise"  # why a changed region is no target
SPREAD_SHARE = 0.35  # the ground around a region changed this much of what the region did: part of a larger change
DIP = 0.75  # a dip in a wide region's heat to under this share of the peaks beside it splits it (people in a file)
MIN_UNSIZED_PX = 3  # without a calibration to size them, smaller regions are noise or pieces of something


@dataclass(frozen=True, slots=True)
class HeatBlobs:
    """The proposals of one frame: boxes (N, 4) xyxy in pixels, the contrast of each against its surroundings
    (signed: positive warmer), its signal to noise, and its area in pixels. Units: degrees Celsius for radiometric
    frames, grey levels for 8-bit ones (``celsius``)."""

    xyxy: np.ndarray
    contrast: np.ndarray
    snr: np.ndarray
    area: np.ndarray
    celsius: bool
    noise: float  # the scene's temporal noise (one sigma) as estimated now, in the same unit

    @classmethod
    def empty(cls, celsius: bool, noise: float = math.nan) -> HeatBlobs:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32),
                   np.zeros(0, np.int64), celsius, noise)

    def __len__(self) -> int:
        return len(self.xyxy)


class HeatProposer:
    """One camera's background model and proposals; ``update`` with every frame (not thread-safe)."""

    def __init__(
        self,
        tau_s: float = 20.0,
        tau_var_s: float = 60.0,
        foreground_slowdown: float = 0.02,
        k_sigma: float = 4.5,
        min_contrast_c: float = 0.8,
        min_contrast_gray: float = 5.0,
        noise_floor_c: float = 0.04,
        noise_floor_gray: float = 0.8,
        min_area_px: int = 3,
        warmup_s: float = 1.0,
        size_prior: np.ndarray | None = None,
        max_height_factor: float = 2.6,
        max_width_factor: float = 6.0,
        min_height_factor: float = 0.18,
        shake: bool = True,
        tau_flicker_s: float = 4.0,
        flicker_max_hz: float = 0.7,
    ) -> None:
        self.tau_s = tau_s
        self.tau_var_s = tau_var_s
        self.foreground_slowdown = foreground_slowdown
        self.k_sigma = k_sigma
        self.min_contrast_c = min_contrast_c
        self.min_contrast_gray = min_contrast_gray
        self.noise_floor_c = noise_floor_c
        self.noise_floor_gray = noise_floor_gray
        self.min_area_px = min_area_px
        self.warmup_s = warmup_s
        self.size_prior = size_prior  # expected height in pixels of a 1.75 m person with feet on each row
        self.max_height_factor = max_height_factor
        self.max_width_factor = max_width_factor
        self.min_height_factor = min_height_factor
        self.shake = shake
        self.tau_flicker_s = tau_flicker_s
        self.flicker_max_hz = flicker_max_hz
        self._flicker: np.ndarray | None = None
        self._last_mask: np.ndarray | None = None
        self._bg: np.ndarray | None = None
        self._var: np.ndarray | None = None
        self._prev: np.ndarray | None = None
        self._noise: float = math.nan
        self._t0: float | None = None
        self._last_ts: float | None = None
        self._shake = MastShake()

    def reset(self) -> None:
        self._bg = self._var = self._prev = None
        self._t0 = self._last_ts = None

    def set_size_prior(self, size_prior: np.ndarray | None) -> None:
        self.size_prior = size_prior

    # -- the frame ---------------------------------------------------------------------------------------

    def update(self, frame: ThermalFrame, keep: np.ndarray | None = None) -> HeatBlobs:
        """The proposals of this frame; ``keep`` (N, 4) are boxes of live tracks, whose pixels the background
        follows only slowly (a person who stops is not learnt as ground)."""
        img, celsius = _levels(frame)
        floor = self.noise_floor_c if celsius else self.noise_floor_gray
        if self._bg is None or self._bg.shape != img.shape:
            self._start(img, frame.ts, floor)
            return HeatBlobs.empty(celsius, self._noise)
        assert self._var is not None and self._prev is not None
        dt = max(1e-3, frame.ts - (self._last_ts if self._last_ts is not None else frame.ts - 0.1))
        self._last_ts = frame.ts
        img = self._match(img, celsius)
        dx, dy = 0.0, 0.0
        if self.shake:
            img, dx, dy = self._shake.align(img, self._bg, self._noise)
        temporal = img[::4, ::4] - self._prev[::4, ::4]
        self._prev = img
        step_noise = 1.4826 * float(np.median(np.abs(temporal - np.median(temporal)))) / math.sqrt(2.0)
        self._noise = max(floor, step_noise if math.isnan(self._noise) else 0.9 * self._noise + 0.1 * step_noise)
        diff = img - self._bg
        sigma = np.sqrt(self._var)
        floor_contrast = np.float32(self.min_contrast_c if celsius else self.min_contrast_gray)
        threshold = np.maximum(self.k_sigma * sigma, floor_contrast)
        mask = (np.abs(diff) > threshold).astype(np.uint8)
        mask = self._steady(mask, diff, dt)
        warming_up = self._t0 is not None and frame.ts - self._t0 < self.warmup_s
        blobs, fg, ghosts = (HeatBlobs.empty(celsius, self._noise), mask, None) if warming_up \
            else self._blobs(img, diff, mask, celsius)
        if keep is not None and (dx or dy):
            keep = np.asarray(keep, np.float64).reshape(-1, 4) - np.array([dx, dy, dx, dy])
        self._learn(img, diff, fg, ghosts, keep, dt, floor)
        if dx or dy:  # back to the frame's own pixels
            blobs = replace(blobs, xyxy=(blobs.xyxy + np.array([dx, dy, dx, dy], np.float32)).astype(np.float32))
        return blobs

    # -- parts -------------------------------------------------------------------------------------------

    def _start(self, img: np.ndarray, ts: float, floor: float) -> None:
        self._bg = img.copy()
        self._prev = img.copy()
        self._var = np.full(img.shape, (2.0 * floor) ** 2, np.float32)
        self._noise = math.nan
        self._t0 = self._last_ts = ts
        self._shake = MastShake()
        self._flicker = self._last_mask = None

    def _match(self, img: np.ndarray, celsius: bool) -> np.ndarray:
        """The frame brought to the background's levels as a whole: an offset (drift, a radiometric camera's
        flat-field step), and for 8-bit frames a gain too (the camera's AGC)."""
        assert self._bg is not None
        sub, ref = img[::8, ::8].ravel(), self._bg[::8, ::8].ravel()
        if celsius:
            return img - np.float32(np.median(sub - ref))
        lo, hi = np.percentile(sub, (10, 90))
        rlo, rhi = np.percentile(ref, (10, 90))
        gain = (hi - lo) / (rhi - rlo) if rhi - rlo > 1.0 and hi - lo > 1.0 else 1.0
        gain = float(np.clip(gain, 0.5, 2.0))
        return ((img - np.float32(lo)) / np.float32(gain) + np.float32(rlo)).astype(np.float32)

    def _steady(self, mask: np.ndarray, diff: np.ndarray, dt: float) -> np.ndarray:
        """The mask without the pixels that keep flipping in and out of it, or between warmer and colder than the
        background (vegetation in the wind: a leaf, then the gap behind it)."""
        state = mask.astype(np.int8) * np.where(diff > 0, np.int8(1), np.int8(-1))
        if self._flicker is None or self._flicker.shape != mask.shape or self._last_mask is None:
            self._flicker = np.zeros(mask.shape, np.float32)
            self._last_mask = state
            return mask
        rate = np.float32(1.0 - math.exp(-dt / self.tau_flicker_s))
        flips = (state != self._last_mask).astype(np.float32) * np.float32(1.0 / dt)  # per second, at any rate
        self._flicker += rate * (flips - self._flicker)
        self._last_mask = state
        return np.where(self._flicker > self.flicker_max_hz, np.uint8(0), mask).astype(np.uint8)

    def _blobs(self, img: np.ndarray, diff: np.ndarray, mask: np.ndarray, celsius: bool
               ) -> tuple[HeatBlobs, np.ndarray, np.ndarray | None]:
        """Components of the mask that are a plausible target: the proposals, the foreground to keep out of the
        background, and the ghosts to clear from it. Warmer and colder changes are components of their own: a
        target that walks out of the first frame leaves a ghost of the other sign beside it, and the two must
        never be one region (clearing the ghost would teach the background the target)."""
        h_img = img.shape[0]
        found: list[tuple[tuple[float, float, float, float], float, float, int]] = []
        ghosts = np.zeros_like(mask)
        for sign in (1.0, -1.0):
            part = (mask > 0) & ((diff > 0) if sign > 0 else (diff < 0))
            if not part.any():
                continue
            part8 = part.astype(np.uint8)
            joined = cv2.dilate(part8, np.ones((3, 3), np.uint8))  # a body whose contrast dips stays one region
            n, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
            for group in _stacked(stats[1:n]):
                members = [i + 1 for i in group]
                x = int(min(stats[i, 0] for i in members))
                y = int(min(stats[i, 1] for i in members))
                w = int(max(stats[i, 0] + stats[i, 2] for i in members)) - x
                h = int(max(stats[i, 1] + stats[i, 3] for i in members)) - y
                core = np.isin(labels[y:y + h, x:x + w], members) & part[y:y + h, x:x + w]
                area = int(np.count_nonzero(core))
                if area < self.min_area_px or not self._plausible(x, y, w, h, h_img):
                    continue
                blob = self._target(img, diff, core, x, y, w, h, sign, celsius)
                if blob == GHOST:
                    ghosts[y:y + h, x:x + w] |= core.astype(np.uint8)
                elif isinstance(blob, tuple):
                    where, contrast, snr = blob
                    found += [(part, contrast, snr, area) for part in _side_by_side(img, where, contrast)]
        clear = ghosts if ghosts.any() else None
        if not found:
            return HeatBlobs.empty(celsius, self._noise), mask, clear
        blobs = HeatBlobs(np.array([f[0] for f in found], np.float32), np.array([f[1] for f in found], np.float32),
                          np.array([f[2] for f in found], np.float32), np.array([f[3] for f in found], np.int64),
                          celsius, self._noise)
        return blobs, mask, clear

    def _target(self, img: np.ndarray, diff: np.ndarray, core: np.ndarray, x: int, y: int, w: int, h: int,
                sign: float, celsius: bool) -> tuple[tuple[float, float, float, float], float, float] | str:
        """A changed region that stands out from its surroundings in the current frame: its tight box, contrast
        and signal to noise. ``GHOST`` where it has no contrast now (what changed was the background's memory),
        ``SPREAD`` where the change goes on past its edge (a piece of something larger: a cloud's shadow sweeping
        over the ground), ``NOISE`` for too little contrast."""
        h_img, w_img = img.shape
        pad = max(2, int(round(0.6 * max(w, h))))
        rx1, ry1, rx2, ry2 = max(0, x - pad), max(0, y - pad), min(w_img, x + w + pad), min(h_img, y + h + pad)
        window = img[ry1:ry2, rx1:rx2]
        ring = np.ones(window.shape, bool)
        ring[y - ry1:y + h - ry1, x - rx1:x + w - rx1] = False
        if not ring.any():
            return NOISE
        inside = img[y:y + h, x:x + w][core]
        surround = float(np.median(window[ring]))
        contrast = float(inside.max() if sign > 0 else inside.min()) - surround
        noise = max(self._noise, 1e-6)
        floor = self.min_contrast_c if celsius else self.min_contrast_gray
        if contrast * sign < max(floor, 3.0 * noise):
            return GHOST
        changed = float(np.median(diff[y:y + h, x:x + w][core]))
        around = float(np.median(diff[ry1:ry2, rx1:rx2][ring]))
        if around * sign > SPREAD_SHARE * abs(changed):
            return SPREAD  # a target's change stops at its edge; the ground around it is as it was
        assert self._bg is not None  # what the background remembered there, against its own surroundings
        remembered = (float(np.median(self._bg[y:y + h, x:x + w][core]))
                      - float(np.median(self._bg[ry1:ry2, rx1:rx2][ring])))
        if remembered * sign < 0 and abs(remembered) > 0.5 * abs(contrast):
            return GHOST  # the change is the memory going away
        bx1, by1, bx2, by2 = _tight_box(img[y:y + h, x:x + w], surround, contrast)
        return (x + bx1, y + by1, x + bx2, y + by2), contrast, abs(contrast) / noise

    def _plausible(self, x: int, y: int, w: int, h: int, h_img: int) -> bool:
        """Whether a region of this size could be a target with its lowest point on its bottom row."""
        if self.size_prior is None or len(self.size_prior) != h_img:
            return MIN_UNSIZED_PX <= h <= 0.6 * h_img and w <= 0.6 * h_img
        person = float(self.size_prior[min(h_img - 1, y + h - 1)])
        if not math.isfinite(person) or person <= 0:
            return False  # above the horizon: nothing there stands on the ground (a bird is, or a cloud)
        return (max(2.0, self.min_height_factor * person) <= h <= self.max_height_factor * person + 2
                and w <= self.max_width_factor * person + 2)

    def _learn(self, img: np.ndarray, diff: np.ndarray, fg: np.ndarray, ghosts: np.ndarray | None,
               keep: np.ndarray | None, dt: float, floor: float) -> None:
        """The background and its variation follow the frame: quickly where nothing is, very slowly under a
        proposal or a track, at once where a ghost was."""
        assert self._bg is not None and self._var is not None
        alpha = np.float32(1.0 - math.exp(-dt / self.tau_s))
        alpha_var = np.float32(1.0 - math.exp(-dt / self.tau_var_s))
        held = cv2.dilate(fg, np.ones((5, 5), np.uint8)) > 0
        tracked = np.zeros(img.shape, bool)
        if keep is not None and len(keep):
            h, w = img.shape
            for x1, y1, x2, y2 in np.asarray(keep, np.float64).reshape(-1, 4):
                mx, my = 0.3 * (x2 - x1) + 2, 0.2 * (y2 - y1) + 2
                rows = slice(max(0, int(y1 - my)), min(h, int(y2 + my) + 1))
                tracked[rows, max(0, int(x1 - mx)):min(w, int(x2 + mx) + 1)] = True
            held |= tracked
        rate = np.where(held, alpha * np.float32(self.foreground_slowdown), alpha).astype(np.float32)
        if ghosts is not None:  # never on a live track: what looks like a ghost there is a piece of the target
            clear = ghosts > 0
            if keep is not None and len(keep):
                clear &= ~tracked
            rate[clear] = GHOST_CLEAR
        self._bg += rate * diff
        sq = np.minimum(diff * diff, np.float32(400.0 * floor * floor))
        var_rate = np.where(held, 0.0, alpha_var).astype(np.float32)
        self._var += var_rate * (sq - self._var)
        np.maximum(self._var, np.float32(floor * floor), out=self._var)


def _levels(frame: ThermalFrame) -> tuple[np.ndarray, bool]:
    """The frame in degrees Celsius (radiometric) or white-hot grey levels (8-bit), as float32."""
    temps = frame.celsius()
    if temps is not None:
        return temps, True
    img = frame.image.astype(np.float32)
    if frame.polarity == "black_hot":
        img = np.float32(255.0) - img
    return img, False


def _side_by_side(img: np.ndarray, box: tuple[float, float, float, float], contrast: float
                  ) -> list[tuple[float, float, float, float]]:
    """A region much wider than tall split where its heat dips between columns: people walking in a file far out
    are one streak of warm pixels with a head at each person, a vehicle more of a block. The columns' heat is split
    at each dip to under ``DIP`` of the lower of the two peaks beside it; each part keeps only the rows that are
    warm in its own columns. One part (the box as it was) where there is no such dip."""
    x1, y1, x2, y2 = (int(v) for v in box)
    w, h = x2 - x1, y2 - y1
    if w < 5 or w < 1.5 * h:
        return [box]
    patch = img[y1:y2, x1:x2]
    base = float(np.median(np.concatenate([patch[:, 0], patch[:, -1]])))
    signed = (patch - base) * (1.0 if contrast > 0 else -1.0)
    profile = signed.max(axis=0)
    cuts = []
    peak_left, low, low_at = profile[0], np.inf, -1
    for k in range(1, w):
        v = float(profile[k])
        if v < low:
            low, low_at = v, k
        if low_at >= 0 and v > low and k < w - 1 and v >= profile[k + 1]:  # a peak after a dip
            if low <= DIP * min(peak_left, v) and low_at > 0:
                cuts.append(low_at)
                peak_left = v
            else:
                peak_left = max(peak_left, v)
            low, low_at = np.inf, -1
        elif low_at < 0:
            peak_left = max(peak_left, v)
    if not cuts:
        return [box]
    parts = []
    for a, b in zip([0, *cuts], [*cuts, w], strict=True):
        rows = np.flatnonzero((signed[:, a:b] >= 0.5 * abs(contrast)).any(axis=1))
        if rows.size and b > a:
            parts.append((float(x1 + a), float(y1 + rows[0]), float(x1 + b), float(y1 + rows[-1] + 1)))
    return parts or [box]


def _stacked(stats: np.ndarray) -> list[list[int]]:
    """Components (rows of x, y, w, h, area) grouped where one sits on another with a small gap: the legs, the
    body and the head of a near person whose clothes are cooler than their skin are one target."""
    n = len(stats)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n > 1:
        x1, y1 = stats[:, 0].astype(np.float64), stats[:, 1].astype(np.float64)
        x2, y2 = x1 + stats[:, 2], y1 + stats[:, 3]
        overlap = np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :])
        narrower = np.minimum(stats[:, 2][:, None], stats[:, 2][None, :])
        gap = np.maximum(y1[:, None], y1[None, :]) - np.minimum(y2[:, None], y2[None, :])
        tall = np.maximum(y2[:, None], y2[None, :]) - np.minimum(y1[:, None], y1[None, :])
        shorter = np.minimum(stats[:, 3][:, None], stats[:, 3][None, :])
        # a body's parts are a few pixels apart (a cool belt, a dark collar); two people standing one behind the
        # other are far more
        joins = (overlap >= 0.3 * narrower) & (gap <= np.maximum(2.0, np.minimum(0.08 * tall, 0.5 * shorter)))
        for a, b in zip(*np.nonzero(np.triu(joins, 1)), strict=True):
            parent[root(int(a))] = root(int(b))
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _tight_box(patch: np.ndarray, surround: float, contrast: float) -> tuple[int, int, int, int]:
    """The extent, inside a component's box, of the pixels at least half as far from the surroundings as its
    peak (the target's silhouette, not the noise around it)."""
    half = surround + 0.5 * contrast
    inside = patch >= half if contrast > 0 else patch <= half
    rows = np.flatnonzero(inside.any(axis=1))
    cols = np.flatnonzero(inside.any(axis=0))
    if rows.size == 0:
        return 0, 0, patch.shape[1], patch.shape[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
