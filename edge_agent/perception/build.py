"""The detector and a camera's tracking pipeline, as the configuration says: the model ``default`` resolved to
the provisioned exports (the configured size for whole frames, the small one for crops), tiles where asked,
the heat proposals sized by the camera's calibration (or, with heat off, the motion/heat gate) and the tracker."""

from __future__ import annotations

from detectors.base import Detector, TwoScales, create_detector
from detectors.gating import MotionHeatGate
from detectors.heat import HeatProposer
from detectors.offline import prepare_ultralytics
from detectors.pipeline import Look, TrackingPipeline
from detectors.tiles import TiledDetector
from detectors.tracking import Tracker
from detectors.verify import CELL_PX, GRID
from detectors.yolo import YoloConfig
from edge_agent.config.agent import AgentConfig
from edge_agent.perception import models
from edge_agent.perception.geometry import CameraGeometry

CROPS_IMGSZ = CELL_PX * GRID  # a 2 x 2 mosaic of crops is exactly the small export's input


def build_detector(config: AgentConfig) -> Detector:
    """The configured detector, with 'default' resolved to the provisioned model; not loaded yet. With heat
    proposals on and the default model, crops go to its small export (a ``TwoScales`` detector)."""
    prepare_ultralytics(config.state_dir / "ultralytics")
    det_cfg: YoloConfig = config.detector
    default = str(det_cfg.model) == "default"
    if default:
        det_cfg = det_cfg.model_copy(update={"model": models.resolve_default(config.models_dir, det_cfg.imgsz,
                                                                              det_cfg.precision)})
    detector = create_detector(det_cfg)
    whole = TiledDetector(detector, det_cfg.imgsz, det_cfg.iou) if det_cfg.tiles else detector
    if not config.heat.enabled:
        return whole
    crops = detector
    if default and det_cfg.imgsz != CROPS_IMGSZ:
        small = config.detector.model_copy(update={
            "imgsz": CROPS_IMGSZ,
            "model": models.resolve_default(config.models_dir, CROPS_IMGSZ, config.detector.precision)})
        crops = create_detector(small)
    return TwoScales(whole, crops)


def build_pipeline(config: AgentConfig, detector: Detector, geometry: CameraGeometry | None = None
                   ) -> TrackingPipeline:
    """One camera's pipeline; ``geometry`` (its calibration) sizes the heat proposals at each row."""
    t, g, h, v = config.tracker, config.gating, config.heat, config.verify
    tracker = Tracker(high_confidence=t.high_confidence, match_iou=t.match_iou, min_hits=t.min_hits,
                      max_age_s=t.max_age_s, coast_s=t.coast_s, dormant_s=t.dormant_s)
    if h.enabled:
        heat = HeatProposer(tau_s=h.tau_s, k_sigma=h.k_sigma, min_contrast_c=h.min_contrast_c,
                            min_contrast_gray=h.min_contrast_gray, min_area_px=h.min_area_px, shake=h.shake)
        look = Look(sweep_s=v.sweep_s, verify_min_px=v.min_px, max_crops=v.max_crops, context=v.context)
        prior = geometry.person_px if geometry is not None else None
        return TrackingPipeline(detector, tracker, None, refine=config.detector.refine_boxes, heat=heat, look=look,
                                size_prior=prior)
    gate = None
    if g.enabled:
        gate = MotionHeatGate(
            motion_delta_c=g.motion_delta_c, motion_delta_gray=g.motion_delta_gray, min_changed=g.min_changed,
            heat_delta_c=g.heat_delta_c, keepalive_s=g.keepalive_s,
        )
    return TrackingPipeline(detector, tracker, gate, refine=config.detector.refine_boxes)
