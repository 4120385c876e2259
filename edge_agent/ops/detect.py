"""``edge-agent detect``: the field engineer's first check of a camera, on the product's own pipeline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2

from detectors.annotate import annotate
from detectors.refine import refine_boxes
from edge_agent.config.agent import AgentConfig
from edge_agent.config.cameras import CameraConfig
from edge_agent.ops.errors import OpsError
from edge_agent.runtime.detection import DetectSummary, build_detector, run_detect
from edge_agent.runtime.perception import CameraPerception
from edge_agent.runtime.site import Site
from sensors.thermal import IMAGE_SUFFIXES, to_frame


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
    classes = CameraPerception(Site.from_config(config), camera.id).still(dets, size)
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
