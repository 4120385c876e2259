"""The detector and a camera's tracking pipeline, as the configuration says: the model ``default`` resolved to
the provisioned export, tiles where asked, the motion/heat gate and the tracker."""

from __future__ import annotations

from detectors.base import Detector, create_detector
from detectors.gating import MotionHeatGate
from detectors.offline import prepare_ultralytics
from detectors.pipeline import TrackingPipeline
from detectors.tiles import TiledDetector
from detectors.tracking import Tracker
from detectors.yolo import YoloConfig
from edge_agent.config.agent import AgentConfig
from edge_agent.perception import models


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
