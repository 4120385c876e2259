"""Where the model looks (heat-first proposals, crops at the right scale, a whole-frame sweep), how detections
become tracks, and, without heat proposals, when the detector may skip a quiet frame. Defaults come from the
detectors library (``HeatProposer``, ``Look``, ``Tracker`` and ``MotionHeatGate``); the model itself is the
library's ``YoloConfig``."""

from __future__ import annotations

from pydantic import Field

from detectors.gating import MotionHeatGate
from detectors.heat import HeatProposer
from detectors.pipeline import Look
from detectors.tracking import Tracker
from edge_agent.config.fields import Flag, Real, Strict, Whole, library_default


class TrackerConfig(Strict):
    """The tracker's settings (``detectors.tracking.Tracker``)."""

    high_confidence: Real = Field(library_default(Tracker, "high_confidence"), ge=0.0, le=1.0,
                                  description="Detections above this start tracks.")
    match_iou: Real = Field(library_default(Tracker, "match_iou"), gt=0.0, lt=1.0,
                            description="Least overlap of a detection with a track.")
    min_hits: Whole = Field(library_default(Tracker, "min_hits"), ge=1, le=30,
                            description="Detections before a track is confirmed and gets an id.")
    max_age_s: Real = Field(library_default(Tracker, "max_age_s"), gt=0,
                            description="A track unseen this long is lost.")
    coast_s: Real = Field(library_default(Tracker, "coast_s"), ge=0,
                          description="A confirmed track missed this long is still reported, at its predicted place.")
    dormant_s: Real = Field(library_default(Tracker, "dormant_s"), ge=0,
                            description="A track unseen for max_age_s waits this much longer where it was last seen "
                            "before it is lost: seen there again, it keeps its id (one entry, one alert).")


class HeatConfig(Strict):
    """Heat-first proposals (``detectors.heat.HeatProposer``): regions that differ from the learnt scene by more
    than its noise, of a size that fits something real at their row."""

    enabled: Flag = Field(True, description="Look where the heat is (crops around proposals and tracks, a whole-frame "
                          "sweep every verify.sweep_s); false: the whole frame behind the motion/heat gate.")
    tau_s: Real = Field(library_default(HeatProposer, "tau_s"), gt=0,
                        description="How fast the scene's background follows slow change (seconds).")
    k_sigma: Real = Field(library_default(HeatProposer, "k_sigma"), gt=0,
                          description="A pixel differs when it is this many of its own noise's sigmas off.")
    min_contrast_c: Real = Field(library_default(HeatProposer, "min_contrast_c"), gt=0,
                                 description="... and at least this many degrees (radiometric cameras).")
    min_contrast_gray: Real = Field(library_default(HeatProposer, "min_contrast_gray"), gt=0,
                                    description="... and at least this many grey levels (8-bit cameras).")
    min_area_px: Whole = Field(library_default(HeatProposer, "min_area_px"), ge=1,
                               description="Smaller regions are noise.")
    shake: Flag = Field(library_default(HeatProposer, "shake"),
                        description="Follow a shaking mast (the frame matched to the background's edges).")


class VerifyConfig(Strict):
    """What the model is shown when heat proposals are on (``detectors.pipeline.Look``)."""

    sweep_s: Real = Field(library_default(Look, "sweep_s"), gt=0,
                          description="The whole frame through the model at least this often (what stands still).")
    min_px: Real = Field(library_default(Look, "verify_min_px"), ge=1,
                         description="Targets at least this tall are shown to the model in crops of the "
                         "full-resolution frame; smaller ones are classified by physics alone.")
    max_crops: Whole = Field(library_default(Look, "max_crops"), ge=0, le=64,
                             description="Crops per frame at most (live tracks first, then the largest proposals).")
    context: Real = Field(library_default(Look, "context"), ge=1.2, le=6,
                          description="A crop's side over its target's height (and at least 1.4 times its width).")


class GatingConfig(Strict):
    """When the detector may skip a frame (``detectors.gating.MotionHeatGate``)."""

    enabled: Flag = Field(True, description="Skip the detector on frames without motion, new heat or tracks.")
    motion_delta_c: Real = Field(library_default(MotionHeatGate, "motion_delta_c"), gt=0,
                                 description="Temperature change (°C) that counts as motion.")
    motion_delta_gray: Real = Field(library_default(MotionHeatGate, "motion_delta_gray"), gt=0,
                                    description="Grey-level change that counts as motion (8-bit).")
    min_changed: Real = Field(library_default(MotionHeatGate, "min_changed"), gt=0, lt=1,
                              description="Fraction of pixels that must change.")
    heat_delta_c: Real = Field(library_default(MotionHeatGate, "heat_delta_c"), gt=0,
                               description="Spot this much above the scene median: detect.")
    keepalive_s: Real = Field(library_default(MotionHeatGate, "keepalive_s"), gt=0,
                              description="Detect at least this often, even when quiet.")
