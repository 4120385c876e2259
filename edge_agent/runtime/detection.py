"""Composing the libraries into a camera's detection chain, the agent's detection stage, and the ``detect``
check a field engineer runs."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from detectors.annotate import annotate
from detectors.base import Detector, create_detector
from detectors.classify import Classification
from detectors.engine import EngineStopped
from detectors.gating import MotionHeatGate
from detectors.offline import prepare_ultralytics
from detectors.pipeline import FrameResult, TrackingPipeline
from detectors.tiles import TiledDetector
from detectors.tracking import Tracker, TrackEvent
from detectors.types import Detections
from detectors.yolo import YoloConfig
from edge_agent.config.agent import AgentConfig
from edge_agent.config.cameras import CameraConfig
from edge_agent.contract.ids import iso_ms
from edge_agent.incidents.sensorlog import Rejected
from edge_agent.runtime import modelpaths as models
from edge_agent.runtime.messages import CoreQueue, FrameBudget, FrameTracks, InputRejected
from edge_agent.runtime.perception import CameraPerception
from edge_agent.runtime.site import Site
from edge_agent.runtime.stages import Stage
from geofences.rules import ZoneEvent
from sensors.thermal import ThermalCamera

log = logging.getLogger(__name__)


def build_detector(config: AgentConfig) -> Detector:
    """The configured detector, with 'default' resolved to the provisioned model; not loaded yet."""
    prepare_ultralytics(config.state_dir / "ultralytics")
    det_cfg: YoloConfig = config.detector
    if str(det_cfg.model) == "default":
        det_cfg = det_cfg.model_copy(update={"model": models.resolve_default(config.models_dir, det_cfg.imgsz,
                                                                              det_cfg.precision)})
    detector = create_detector(det_cfg)
    return TiledDetector(detector, det_cfg.imgsz, det_cfg.iou) if det_cfg.tiles else detector


def build_pipeline(config: AgentConfig, detector: Detector) -> TrackingPipeline:
    t, g = config.tracker, config.gating
    gate = None
    if g.enabled:
        gate = MotionHeatGate(
            motion_delta_c=g.motion_delta_c, motion_delta_gray=g.motion_delta_gray, min_changed=g.min_changed,
            heat_delta_c=g.heat_delta_c, keepalive_s=g.keepalive_s,
        )
    tracker = Tracker(high_confidence=t.high_confidence, match_iou=t.match_iou, min_hits=t.min_hits,
                      max_age_s=t.max_age_s, coast_s=t.coast_s)
    return TrackingPipeline(detector, tracker, gate, refine=config.detector.refine_boxes)


def is_live(source: str) -> bool:
    """Cameras and streams drop old frames; files and scenes are read frame by frame."""
    return source.startswith(("rtsp://", "rtsps://", "http://", "https://", "/dev/")) or source.isdigit()


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
    """One camera's frames through detection and tracking onto the core queue. It reads only the newest
    frame; while the core queue is full it waits (and the camera drops frames), never events."""

    camera_id: str
    camera: ThermalCamera
    pipeline: TrackingPipeline
    queue: CoreQueue
    budget: FrameBudget
    detect_ms: dict[str, float]  # the last detector time per camera, for health
    load: CameraLoad = field(default_factory=CameraLoad)

    def run(self, stage: Stage, camera_stage: Stage) -> None:
        cam, cam_id = self.camera, self.camera_id
        last_ts = time.time()
        while not self.queue.stop.is_set():
            stage.beat = time.monotonic()
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
            lost = tuple(e for e in result.events if e.kind == "lost")
            self.queue.put(FrameTracks(cam_id, frame.ts, result.tracks, lost,
                                       frame if self.budget.take(cam_id) else None, frame.shape[::-1]))
        if cam.ended:
            self.queue.put(FrameTracks(cam_id, last_ts, Detections.empty(), tuple(self.pipeline.finish(last_ts))))
            stage.finished = True
            camera_stage.finished = True
            log.info("camera %s: the source ended", cam_id)


def event_line(camera_id: str, seq: int, ev: TrackEvent, temp_c: float | None,
               cls: Classification | None = None) -> str:
    """One track event; its label is the track's class (what the rules use), with what the class rests on."""
    x1, y1, x2, y2 = (round(v) for v in ev.bbox)
    temp = f" temp {temp_c:.1f}C" if temp_c is not None else ""
    label = ev.label if cls is None else cls.label
    why = f" [{cls.describe()}]" if cls is not None else ""
    return (f"{iso_ms(ev.ts)} {camera_id} frame {seq} {ev.kind} {label} #{ev.track_id} conf {ev.confidence:.2f} "
            f"box {x1},{y1},{x2},{y2} age {ev.age_s:.1f}s{temp}{why}")


def class_line(camera_id: str, seq: int, ts: float, track_id: int, cls: Classification) -> str:
    """A track's class was decided or changed."""
    return f"{iso_ms(ts)} {camera_id} frame {seq} classified #{track_id} {cls.describe()}"


def zone_line(seq: int, ev: ZoneEvent) -> str:
    what = f"{ev.label} #{ev.track_id} conf {ev.confidence:.2f}" if ev.track_id else f"{ev.count} inside"
    where = f" at {ev.latlon[0]:.6f},{ev.latlon[1]:.6f}" if ev.latlon else ""
    extra = f" {ev.direction}" if ev.direction else ""
    if ev.dwell_s is not None:
        extra += f" dwell {ev.dwell_s:.1f}s"
    return f"{iso_ms(ev.ts)} {ev.camera} frame {seq} zone {ev.kind} {ev.rule_id} {what}{where}{extra}"


def box_temperature(result: FrameResult, bbox: tuple[float, float, float, float]) -> float | None:
    """The warmest tenth of a box's pixels, in °C (radiometric frames only)."""
    temps = result.frame.celsius()
    if temps is None:
        return None
    h, w = temps.shape
    x1, y1, x2, y2 = (int(round(v)) for v in bbox)
    patch = temps[max(0, y1):min(h, y2), max(0, x1):min(w, x2)]
    if patch.size == 0:
        return None
    return float(np.percentile(patch, 90))


@dataclass(slots=True)
class DetectSummary:
    frames: int = 0
    detected: int = 0
    events: int = 0
    camera_state: str = ""
    frames_bad: int = 0
    last_error: str | None = None
    zone_events: int = 0
    still: bool = False  # a single photograph: ``events`` counts its detections


def run_detect(
    config: AgentConfig,
    camera: CameraConfig,
    emit: Callable[[str], None],
    save_dir: Path | None = None,
    max_frames: int | None = None,
    stop: threading.Event | None = None,
) -> DetectSummary:
    """Detect and track on one camera, emitting one line per track event, until the source ends,
    ``max_frames`` were processed or ``stop`` is set."""
    stop = stop or threading.Event()
    detector = build_detector(config)
    detector.load()
    pipeline = build_pipeline(config, detector)
    cam = ThermalCamera(camera.spec(pace="live" if is_live(camera.source) else "every"))
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    summary = DetectSummary()
    site = Site.from_config(config)
    engine = site.engine() if config.zones or config.lines else None
    perception = CameraPerception(site, camera.id)
    told: dict[int, tuple[str, bool]] = {}  # track id -> the class last printed
    cam.start(stop)
    last_ts, last_seq = time.time(), 0
    try:
        for result in _results(cam, pipeline, stop):
            summary.frames += 1
            summary.detected += int(result.detected)
            ts, seq = result.frame.ts, result.frame.seq
            last_ts, last_seq = ts, seq
            seen = perception.frame(ts, result.tracks, result.frame.shape[::-1])
            for ev in result.events:
                cls = seen.classes.get(ev.track_id) or perception.last(ev.track_id)
                emit(event_line(camera.id, seq, ev, box_temperature(result, ev.bbox), cls))
                summary.events += 1
                if cls is not None:
                    told[ev.track_id] = (cls.label, cls.settled)
                if ev.kind == "lost":
                    perception.lost(ev.track_id)
                    told.pop(ev.track_id, None)
                    if engine is not None:
                        engine.forget(camera.id, ev.track_id)
            for tid, cls in seen.classes.items():
                if tid in told and told[tid] != (cls.label, cls.settled) and cls.settled:
                    told[tid] = (cls.label, cls.settled)
                    emit(class_line(camera.id, seq, ts, tid, cls))
            if engine is not None:
                for zev in engine.update(camera.id, ts, seen.pixel, seen.geo):
                    emit(zone_line(seq, zev))
                    summary.zone_events += 1
            if save_dir is not None:
                caption = f"{camera.id} #{seq} {result.gate_reason}"
                names: list[str] = [seen.classes[int(t)].label for t in result.tracks.track_id]
                img = annotate(result.frame.gray8(), result.tracks, caption, names)
                cv2.imwrite(str(save_dir / f"{camera.id}_{seq:06d}.jpg"), img)
            if max_frames is not None and summary.frames >= max_frames:
                break
    finally:
        stop.set()
        cam.join(5.0)
    for ev in pipeline.finish(last_ts):  # the source ended: every track is lost with its last frame
        emit(event_line(camera.id, last_seq, ev, None, perception.last(ev.track_id)))
        summary.events += 1
    summary.camera_state = cam.state
    summary.frames_bad = cam.counters.frames_bad
    summary.last_error = cam.counters.last_error
    return summary


def _results(cam: ThermalCamera, pipeline: TrackingPipeline, stop: threading.Event) -> Iterator[FrameResult]:
    for frame in cam.frames(stop):
        yield pipeline.process(frame)
