"""A camera's confirmed tracks as the rules see them: placed and measured through the calibration, classified
(person, vehicle, animal, unknown) and aged. The one composition that the agent's core, ``detect`` and
``rehearse`` share, so all three label a track the same way."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from detectors.classify import Classification, Measurement, TrackClassifier
from detectors.types import Detections
from edge_agent.runtime.site import Placement, Site
from geofences.rules import TrackPoint

TRACK_CONFIDENCE_S = 3.0


@dataclass(frozen=True, slots=True)
class Perceived:
    """One frame of one camera: rule inputs in pixels and on the site plane, and each track's class."""

    pixel: list[TrackPoint]
    geo: list[TrackPoint]
    classes: dict[int, Classification]  # track id -> class


@dataclass(slots=True)
class CameraPerception:
    site: Site
    camera: str
    classifier: TrackClassifier = field(init=False)
    first_seen: dict[int, float] = field(default_factory=dict)
    confidences: dict[int, deque[tuple[float, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.classifier = TrackClassifier(calibrated=self.camera in self.site.calibrations)

    def frame(self, ts: float, tracks: Detections, size: tuple[int, int] | None) -> Perceived:
        """Classify and place the confirmed tracks of one frame of ``size`` (width, height) pixels."""
        if not len(tracks):
            return Perceived([], [], {})
        at = self.site.measure(self.camera, tracks.xyxy, size)
        classes = [self.classifier.observe(int(tid), m)
                   for tid, m in zip(tracks.track_id, self._measurements(ts, tracks, at), strict=True)]
        ages = [ts - self.first_seen.setdefault(int(t), ts) for t in tracks.track_id]
        # A far person gives weak detections (0.15-0.25) frame after frame; the track is as sure as its best
        # detection of the last seconds, which a rule's min_confidence then weighs.
        best = []
        for tid, conf in zip(tracks.track_id.tolist(), tracks.confidence.tolist(), strict=True):
            history = self.confidences.setdefault(int(tid), deque())
            history.append((ts, float(conf)))
            while history[0][0] < ts - TRACK_CONFIDENCE_S:
                history.popleft()
            best.append(max(c for _, c in history))
        sure = Detections(tracks.xyxy, np.array(best, np.float32), tracks.label_id, tracks.track_id)
        pixel, geo = self.site.track_points(self.camera, ts, sure, ages, size, classes, at)
        return Perceived(pixel, geo, dict(zip((int(t) for t in tracks.track_id), classes, strict=True)))

    def still(self, dets: Detections, size: tuple[int, int]) -> list[Classification]:
        """The class of each detection in a single image (no track, no speed)."""
        at = self.site.measure(self.camera, dets.xyxy, size)
        return [self.classifier.once(m) for m in self._measurements(0.0, dets, at)]

    def rebind(self, site: Site) -> None:
        """A reloaded configuration: tracks keep their ages, and their class history while the camera stays
        calibrated (or uncalibrated)."""
        calibrated = self.camera in site.calibrations
        self.site = site
        if calibrated != self.classifier.calibrated:
            self.classifier = TrackClassifier(calibrated=calibrated)

    @staticmethod
    def _measurements(ts: float, dets: Detections, at: Placement) -> list[Measurement]:
        out = []
        for i, label in enumerate(dets.labels()):
            finite = bool(np.isfinite(at.height_m[i]) and np.isfinite(at.width_m[i]))
            out.append(Measurement(
                ts, label, float(dets.confidence[i]), float(dets.xyxy[i, 3] - dets.xyxy[i, 1]),
                float(at.height_m[i]) if finite else None, float(at.width_m[i]) if finite else None,
                (float(at.cal_x[i]), float(at.cal_y[i])) if np.isfinite(at.cal_x[i]) else None,
                bool(at.cut[i]), bool(at.airborne[i])))
        return out

    def last(self, track_id: int) -> Classification | None:
        return self.classifier.last(track_id)

    def lost(self, track_id: int) -> None:
        self.first_seen.pop(track_id, None)
        self.confidences.pop(track_id, None)
        self.classifier.forget(track_id)
