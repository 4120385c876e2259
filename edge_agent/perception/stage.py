"""A camera's detection stage: its newest frame through detection, tracking and perception (classified, placed
tracks) onto the core queue, and whether it keeps up with the camera (``CameraLoad``, for health)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from detectors.engine import EngineStopped
from detectors.pipeline import TrackingPipeline
from detectors.types import Detections
from edge_agent.core.messages import CoreQueue, FrameBudget, FrameTracks, InputRejected
from edge_agent.incidents.sensorlog import Rejected
from edge_agent.perception.tracks import CameraPerception
from sensors.thermal import ThermalCamera

log = logging.getLogger(__name__)


AGE_WINDOW = 500  # frames whose age and detector time the percentiles cover
RATE_WINDOW_S = 10.0


@dataclass(slots=True)
class CameraLoad:
    """Whether one camera's detection keeps up: frames it detected and gated, errors, the age of a frame when
    its detection finished (capture to tracks), the detector's time, and detections per second lately."""

    detected: int = 0
    gated: int = 0
    errors: int = 0
    ages_ms: deque[float] = field(default_factory=lambda: deque(maxlen=AGE_WINDOW))
    detect_ms: deque[float] = field(default_factory=lambda: deque(maxlen=AGE_WINDOW))
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=2000))  # monotonic times of detections

    def done(self, detected: bool, age_ms: float, detect_ms: float, now: float) -> None:
        if detected:
            self.detected += 1
            self.detect_ms.append(detect_ms)
            self.recent.append(now)
        else:
            self.gated += 1
        self.ages_ms.append(age_ms)

    def detect_fps(self, now: float) -> float:
        since = now - RATE_WINDOW_S
        while self.recent and self.recent[0] < since:
            self.recent.popleft()
        return len(self.recent) / RATE_WINDOW_S

    def report(self, captured: int, dropped: int, now: float) -> dict[str, float | int | None]:
        """For health and the end of a run: ``captured`` and ``dropped`` are the camera reader's counts."""

        def pct(values: deque[float], q: float) -> float | None:
            return round(float(np.percentile(np.fromiter(values, float), q)), 1) if values else None

        return {"captured": captured, "detected": self.detected, "gated": self.gated, "dropped": dropped,
                "errors": self.errors, "detect_fps": round(self.detect_fps(now), 2),
                "age_ms_p50": pct(self.ages_ms, 50), "age_ms_p99": pct(self.ages_ms, 99),
                "detect_ms_p50": pct(self.detect_ms, 50), "detect_ms_p99": pct(self.detect_ms, 99)}


def load_line(camera_id: str, r: dict[str, float | int | None]) -> str:
    """One camera's load in words, for the end of ``run`` and ``demo``."""
    def ms(v: float | int | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    return (f"camera {camera_id}: {r['captured']} frames captured, {r['detected']} detected, {r['gated']} gated, "
            f"{r['dropped']} dropped; frame age p50 {ms(r['age_ms_p50'])} ms, p99 {ms(r['age_ms_p99'])} ms; "
            f"detector {ms(r['detect_ms_p50'])} ms (p99 {ms(r['detect_ms_p99'])})")


@dataclass(slots=True)
class DetectionStage:
    """One camera's frames through detection, tracking and perception onto the core queue. It reads only the
    newest frame; while the core queue is full it waits (and the camera drops frames), never events."""

    camera_id: str
    camera: ThermalCamera
    pipeline: TrackingPipeline
    perception: CameraPerception
    queue: CoreQueue
    budget: FrameBudget
    detect_ms: dict[str, float]  # the last detector time per camera, for health
    load: CameraLoad = field(default_factory=CameraLoad)

    def run(self, beat: Callable[[], None]) -> bool:
        """Until the agent stops or the camera's source ends (then True: a stage that finished, not one that
        died); ``beat`` on every turn, for the watchdog."""
        cam, cam_id = self.camera, self.camera_id
        last_ts = time.time()
        while not self.queue.stop.is_set():
            beat()
            if cam.ended:
                break
            frame = cam.read(0.5)
            if frame is None:
                continue
            try:
                result = self.pipeline.process(frame)
            except EngineStopped:  # the agent is stopping
                break
            except Exception as exc:  # one frame the detector cannot take is a rejected frame, not a dead stage
                log.exception("camera %s: frame %s could not be processed", cam_id, frame.seq)
                self.load.errors += 1
                self.queue.put(InputRejected(Rejected(cam_id, time.time(), f"detection failed on frame {frame.seq}: "
                                                      f"{type(exc).__name__}: {exc}", b"")))
                continue
            last_ts = frame.ts
            self.load.done(result.detected, (time.time() - frame.ts) * 1000.0, result.detect_ms, time.monotonic())
            if result.detected:
                self.detect_ms[cam_id] = result.detect_ms
            size = (frame.shape[1], frame.shape[0])
            seen = self.perception.frame(frame.ts, result.tracks, size)
            lost = tuple(e.track_id for e in result.events if e.kind == "lost")
            for track_id in lost:
                self.perception.lost(track_id)
            self.queue.put(FrameTracks(cam_id, frame.ts, seen.points, result.tracks, lost,
                                       frame if self.budget.take(cam_id) else None, size,
                                       self.perception.geometry.calibrated))
        if cam.ended:
            lost = tuple(e.track_id for e in self.pipeline.finish(last_ts))
            self.queue.put(FrameTracks(cam_id, last_ts, (), Detections.empty(), lost))
            log.info("camera %s: the source ended", cam_id)
            return True
        return False
