"""``edge-agent detect``: the field engineer's first check of a camera, on the product's own pipeline."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.config.agent import AgentConfig
from edge_agent.config.cameras import CameraConfig
from edge_agent.ops.errors import OpsError
from edge_agent.runtime.detection import DetectSummary, run_detect


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
    summary = run_detect(config, camera, show, save, frames, stop or threading.Event())
    return camera, summary
