"""Motion and heat gating: quiet frames do not pay for a full detection.

The gate looks at a small copy of the frame (temperature for radiometric frames, grey otherwise) against a
slowly adapting background. It opens on motion, on new heat, while tracks are alive, and at least every
``keepalive_s`` so a still, warm loiterer is never missed for long.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sensors.frames import ThermalFrame


@dataclass(frozen=True, slots=True)
class GateDecision:
    detect: bool
    reason: str  # motion | heat | tracks | keepalive | first | quiet


class MotionHeatGate:
    def __init__(
        self,
        width: int = 160,
        motion_delta_c: float = 1.5,
        motion_delta_gray: float = 14.0,
        min_changed: float = 0.0004,
        heat_delta_c: float = 6.0,
        heat_every_s: float = 1.0,
        keepalive_s: float = 10.0,
        adapt: float = 0.05,
    ) -> None:
        self.width = width
        self.motion_delta_c = motion_delta_c
        self.motion_delta_gray = motion_delta_gray
        self.min_changed = min_changed
        self.heat_delta_c = heat_delta_c
        self.heat_every_s = heat_every_s
        self.keepalive_s = keepalive_s
        self.adapt = adapt
        self._background: np.ndarray | None = None
        self._last_detect_ts: float | None = None

    def decide(self, frame: ThermalFrame, active_tracks: int) -> GateDecision:
        small, delta, temps = self._small(frame)
        bg = self._background
        if bg is None or bg.shape != small.shape:
            self._background = small
            return self._open(frame.ts, "first")
        changed = float(np.mean(np.abs(small - bg) > delta))
        cv2.accumulateWeighted(small, bg, self.adapt)
        since = frame.ts - (self._last_detect_ts if self._last_detect_ts is not None else frame.ts)
        if active_tracks:
            return self._open(frame.ts, "tracks")
        if changed >= self.min_changed:
            return self._open(frame.ts, "motion")
        if temps and since >= self.heat_every_s:
            hot = small > float(np.median(small)) + self.heat_delta_c
            if np.count_nonzero(hot) >= 2:
                return self._open(frame.ts, "heat")
        if since >= self.keepalive_s:
            return self._open(frame.ts, "keepalive")
        return GateDecision(False, "quiet")

    def _open(self, ts: float, reason: str) -> GateDecision:
        self._last_detect_ts = ts
        return GateDecision(True, reason)

    def _small(self, frame: ThermalFrame) -> tuple[np.ndarray, float, bool]:
        h, w = frame.shape
        size = (self.width, max(1, round(h * self.width / w)))
        if frame.radiometric and frame.scale is not None:
            small = cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA).astype(np.float32)
            small = small * np.float32(frame.scale) + np.float32(frame.offset)
            return small, self.motion_delta_c, True
        small = cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        return small, self.motion_delta_gray, False
