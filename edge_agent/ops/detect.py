"""``edge-agent detect``: the field engineer's first check of a camera, on the product's own pipeline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detectors.annotate import annotate
from detectors.classify import Classification
from detectors.pipeline import FrameResult, TrackingPipeline
from detectors.refine import refine_boxes
from detectors.tracking import TrackEvent
from edge_agent.config.agent import AgentConfig
from edge_agent.config.cameras import CameraConfig
from edge_agent.contract.ids import iso_ms
from edge_agent.core.site import Site
from edge_agent.ops.errors import OpsError
from edge_agent.perception.build import build_detector, build_pipeline
from edge_agent.perception.geometry import CameraGeometry
from edge_agent.perception.tracks import CameraPerception
from geofences.rules import ZoneEvent
from sensors.captures import IMAGE_SUFFIXES, is_live, to_frame
from sensors.thermal import ThermalCamera


def _camera_for(config: AgentConfig, source: str) -> CameraConfig:
    for cam in config.cameras:
        if source in (cam.id, cam.source):
            return cam
    cam_id = "cli"
    return CameraConfig(id=cam_id, source=source, stall_s=10.0)


def detect(config: AgentConfig, source_arg: str, show: Callable[[str], None], save: Path | None,
           frames: int | None, model: str | None = None, imgsz: int | None = None, confidence: float | None = None,
           gating: bool = True, stop: threading.Event | None = None) -> tuple[CameraConfig, DetectSummary]:
    """``edge-agent detect``: detection and tracking on one source, one line per track event to ``show``, until
    the source ends, ``frames`` are read or ``stop`` is set."""
    updates: dict[str, Any] = {k: v for k, v in (("imgsz", imgsz), ("confidence", confidence)) if v is not None}
    if model:
        updates["model"] = Path(model)
    if updates:
        config = config.model_copy(update={"detector": config.detector.model_copy(update=updates)})
    if not gating:
        config = config.model_copy(update={"gating": config.gating.model_copy(update={"enabled": False})})
    camera = _camera_for(config, source_arg)
    source = camera.source
    if "://" not in source and not source.startswith("/dev/") and not Path(source).exists():
        raise OpsError(f"source {source}: no such file or folder; give a video file, an image folder, "
                       "an rtsp:// URL, a /dev/videoN device or sim://NAME")
    if Path(source).is_file() and Path(source).suffix.lower() in IMAGE_SUFFIXES:
        return camera, detect_still(config, camera, Path(source), show, save)
    summary = run_detect(config, camera, show, save, frames, stop or threading.Event())
    return camera, summary


def detect_still(config: AgentConfig, camera: CameraConfig, path: Path, show: Callable[[str], None],
                 save: Path | None) -> DetectSummary:
    """One photograph: every detection with its class and what the class rests on (tracks need three frames,
    so a still gets no track); ``save`` draws them into ``save/<name>_detections.jpg``."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise OpsError(f"{path}: not an image OpenCV can decode (corrupt, or not an image at all)")
    try:
        frame = to_frame(camera.spec(), 0, time.time(), raw)
    except ValueError as exc:
        raise OpsError(f"{path}: {exc}") from exc
    detector = build_detector(config)
    detector.load()
    gray = frame.gray8()
    dets = detector.detect(gray)
    if config.detector.refine_boxes and frame.radiometric:
        dets = refine_boxes(gray, dets)
    size = (frame.shape[1], frame.shape[0])
    classes = CameraPerception(CameraGeometry.of(camera)).still(dets, size)
    for i, ((x1, y1, x2, y2), conf, cls) in enumerate(
            zip(dets.xyxy.tolist(), dets.confidence.tolist(), classes, strict=True), start=1):
        show(f"{path.name} detection {i}/{len(dets)} {cls.label} conf {conf:.2f} "
             f"box {round(x1)},{round(y1)},{round(x2)},{round(y2)} [{cls.describe()}]")
    if not len(dets):
        show(f"{path.name}: no detection")
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        img = annotate(gray, dets, f"{path.name}: {len(dets)} detections", [c.label for c in classes])
        cv2.imwrite(str(save / f"{path.stem}_detections.jpg"), img)
    return DetectSummary(frames=1, detected=1, events=len(dets), camera_state="ended", still=True)


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
    geometry = CameraGeometry.of(camera)
    pipeline = build_pipeline(config, detector, geometry)
    cam = ThermalCamera(camera.spec(pace="live" if is_live(camera.source) else "every"))
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    summary = DetectSummary()
    site = Site.from_config(config)
    engine = site.engine() if config.zones or config.lines else None
    perception = CameraPerception(geometry)
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
                for zev in engine.update(camera.id, ts, *site.rule_inputs(seen.points, perception.geometry.calibrated)):
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
