"""From frames to tracked objects: gate, detect, refine boxes, track."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from detectors.base import Detector
from detectors.engine import KEEPALIVE, MOTION, TRACKING
from detectors.gating import MotionHeatGate
from detectors.refine import refine_boxes
from detectors.tracking import Tracker, TrackEvent
from detectors.types import Detections
from sensors.frames import ThermalFrame


@dataclass(frozen=True, slots=True)
class FrameResult:
    """What one frame gave: the confirmed tracks seen in it and the track events it caused."""

    frame: ThermalFrame
    tracks: Detections
    events: tuple[TrackEvent, ...]
    detected: bool
    gate_reason: str
    detect_ms: float


@dataclass(slots=True)
class PipelineCounters:
    frames: int = 0
    detected: int = 0
    skipped: int = 0
    detect_ms_total: float = 0.0
    gate_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def detect_ms_mean(self) -> float:
        return self.detect_ms_total / self.detected if self.detected else 0.0


class TrackingPipeline:
    """One camera's detection and tracking. Not thread-safe: one pipeline per camera thread."""

    def __init__(
        self,
        detector: Detector,
        tracker: Tracker | None = None,
        gate: MotionHeatGate | None = None,
        refine: bool = True,
    ) -> None:
        self.detector = detector
        self.tracker = tracker or Tracker()
        self.gate = gate
        self.refine = refine
        self.counters = PipelineCounters()

    def process(self, frame: ThermalFrame) -> FrameResult:
        c = self.counters
        c.frames += 1
        if self.gate is not None:
            decision = self.gate.decide(frame, self.tracker.active)
            detect, reason = decision.detect, decision.reason
        else:
            detect, reason = True, "always"
        c.gate_reasons[reason] = c.gate_reasons.get(reason, 0) + 1
        if not detect:
            c.skipped += 1
            events = self.tracker.expire(frame.ts)
            return FrameResult(frame, Detections.empty(), tuple(events), False, reason, 0.0)
        t0 = time.perf_counter()
        gray = frame.gray8()
        priority = TRACKING if self.tracker.active else KEEPALIVE if reason == "keepalive" else MOTION
        prioritized = getattr(self.detector, "detect_prioritized", None)  # a shared engine's client says how urgent
        dets = prioritized(gray, priority) if prioritized is not None else self.detector.detect(gray)
        if self.refine and frame.radiometric:
            dets = refine_boxes(gray, dets)
        ms = (time.perf_counter() - t0) * 1000.0
        c.detected += 1
        c.detect_ms_total += ms
        tracks, events = self.tracker.update(dets, frame.ts)
        return FrameResult(frame, tracks, tuple(events), True, reason, ms)

    def finish(self, ts: float) -> list[TrackEvent]:
        return self.tracker.flush(ts)
