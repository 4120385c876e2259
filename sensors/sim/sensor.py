"""What the camera does to the scene's temperatures: the optics blur them, the core adds its fixed pattern (which
drifts as the core warms, until the shutter's flat-field correction resets it) and its temporal noise, and the
electronics give 16-bit counts (TLinear 0.01 K/count) or, with the camera's own gain control, 8-bit grey. Every
frame is a function of its time and the seed alone."""

from __future__ import annotations

import math

import cv2
import numpy as np

from sensors.sim.world import COUNTS_PER_K, KELVIN, Sensor

# The camera's gain control: its own, not the product's (``sensors.frames.agc``). The tails it clips, the span it
# never goes below (a flat scene's noise is stretched, as a real camera does), and the step its limits move by, so
# the gain holds still until something hot enters or leaves the view and then jumps.
AGC_TAILS = (1.0, 99.9)
AGC_MIN_SPAN_K = 5.0
AGC_STEP_K = 0.25


class SensorCore:
    """The core of one camera: its fixed pattern (given: drawn where the scene's random numbers begin) and the
    pattern its non-uniformity drifts in between flat-field corrections."""

    def __init__(self, sensor: Sensor, netd_k: float, fixed_pattern: np.ndarray, seed: int) -> None:
        self.sensor, self.seed = sensor, seed
        self._netd = np.float32(netd_k)
        self._fixed = fixed_pattern
        self._drift = _drift_pattern(fixed_pattern.shape, seed) if sensor.fpn_drift_mk_per_min > 0 else None

    def drift_k(self, t: float) -> float:
        """How far the non-uniformity has drifted at time ``t`` (kelvin, one sigma of the drift pattern): it grows
        from nothing after each flat-field correction, at a rate and in a direction of its own each time."""
        s = self.sensor
        period = math.floor(t / s.ffc_interval_s)
        since = t - period * s.ffc_interval_s
        rng = np.random.default_rng((self.seed, 0xFFC, period))
        rate = s.fpn_drift_mk_per_min / 1000.0 / 60.0 * float(rng.uniform(0.5, 1.0)) * float(rng.choice((-1, 1)))
        return rate * since

    def counts(self, temp: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
        """The scene's temperatures (float32 degrees C) as the core sees them, in Y16 counts."""
        blur = self.sensor.blur_px
        optics = cv2.GaussianBlur(temp, (0, 0), blur) if blur > 0 else temp
        shot = rng.standard_normal(optics.shape, dtype=np.float32)
        shot *= self._netd
        noisy = optics + self._fixed
        noisy += shot
        if self._drift is not None:
            noisy = cv2.scaleAdd(self._drift, self.drift_k(t), noisy)
        noisy += KELVIN
        noisy *= COUNTS_PER_K
        return np.clip(noisy, 0, 65535, out=noisy).astype(np.uint16)


def _drift_pattern(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """How each pixel's offset moves when the core's temperature does (unit sigma): a broad shading across the
    core, column stripes from the readout, and each pixel's own responsivity."""
    h, w = shape
    rng = np.random.default_rng((seed, 0xD1F7))
    broad = cv2.resize(rng.standard_normal((4, 5)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    columns = np.broadcast_to(rng.standard_normal((1, w)).astype(np.float32), (h, w))
    pixels = rng.standard_normal((h, w)).astype(np.float32)
    pattern = broad + 0.6 * columns + 0.5 * pixels
    return ((pattern - pattern.mean()) / pattern.std()).astype(np.float32)


def camera_agc(counts: np.ndarray) -> np.ndarray:
    """The camera's 8-bit output: a linear stretch between the histogram's tails, limits in steps of
    ``AGC_STEP_K``, at least ``AGC_MIN_SPAN_K`` wide."""
    step = AGC_STEP_K * COUNTS_PER_K
    lo, hi = np.percentile(counts[::4, ::4], AGC_TAILS)
    lo, hi = math.floor(float(lo) / step) * step, math.ceil(float(hi) / step) * step
    span = max(hi - lo, AGC_MIN_SPAN_K * COUNTS_PER_K)
    lo = (lo + hi) / 2.0 - span / 2.0
    scaled = (counts.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / span) + np.float32(0.5)
    return np.clip(scaled, 0, 255).astype(np.uint8)
