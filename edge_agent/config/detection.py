"""How detections become tracks, and when the detector may skip a quiet frame. Defaults come from the
detectors library (``Tracker`` and ``MotionHeatGate``); the model itself is the library's ``YoloConfig``."""

from __future__ import annotations

from pydantic import Field

from detectors.gating import MotionHeatGate
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
