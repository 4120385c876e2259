"""A camera's confirmed tracks as the rules see them: placed and measured through the calibration, classified
(person, vehicle, animal, unknown) and aged. Runs in the camera's detection stage; the agent, ``detect`` and
``rehearse`` all use it, so all three label a track the same way. Its output goes down to the core, which
puts the points on the site plane and runs the rules: nothing here knows the zones."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from detectors.classify import Classification, Measurement, TrackClassifier
from detectors.types import Detections
from edge_agent.perception.geometry import CameraGeometry, Placement
from geofences.rules import TrackPoint

TRACK_CONFIDENCE_S = 3.0


@dataclass(frozen=True, slots=True)
class Perceived:
    """One frame of one camera: each confirmed track as a rule input (``x, y`` the anchor pixel, ``latlon`` where
    the camera is calibrated) and its class."""

    points: tuple[TrackPoint, ...]
    classes: dict[int, Classification]  # track id -> class


@dataclass(slots=True)
class CameraPerception:
    geometry: CameraGeometry
    classifier: TrackClassifier = field(init=False)
    first_seen: dict[int, float] = field(default_factory=dict)
    confidences: dict[int, deque[tuple[float, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.classifier = TrackClassifier(calibrated=self.geometry.calibrated)

    @property
    def camera(self) -> str:
        return self.geometry.camera

    def frame(self, ts: float, tracks: Detections, size: tuple[int, int] | None) -> Perceived:
        """Classify and place the confirmed tracks of one frame of ``size`` (width, height) pixels."""
        if not len(tracks):
            return Perceived((), {})
        at = self.geometry.measure(tracks.xyxy, size)
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
        points = tuple(self._point(ts, tracks, i, at, ages[i], best[i], classes[i]) for i in range(len(tracks)))
        return Perceived(points, dict(zip((int(t) for t in tracks.track_id), classes, strict=True)))

    def _point(self, ts: float, tracks: Detections, i: int, at: Placement, age_s: float, confidence: float,
               c: Classification) -> TrackPoint:
        ll = (float(at.lat[i]), float(at.lon[i])) if np.isfinite(at.lat[i]) else None
        return TrackPoint(camera=self.camera, track_id=int(tracks.track_id[i]), label=c.label, confidence=confidence,
                          ts=ts, bbox=tuple(float(v) for v in tracks.xyxy[i]),  # type: ignore[arg-type]
                          x=float(at.u[i]), y=float(at.v[i]), age_s=age_s, latlon=ll,
                          height_m=_finite(at.height_m[i]), settled=c.settled, width_m=c.width_m,
                          speed_mps=c.speed_mps, reason=c.reason, by=c.by, px_tall=c.px_tall)

    def still(self, dets: Detections, size: tuple[int, int]) -> list[Classification]:
        """The class of each detection in a single image (no track, no speed)."""
        at = self.geometry.measure(dets.xyxy, size)
        return [self.classifier.once(m) for m in self._measurements(0.0, dets, at)]

    @staticmethod
    def _measurements(ts: float, dets: Detections, at: Placement) -> list[Measurement]:
        out = []
        for i, label in enumerate(dets.labels()):
            finite = bool(np.isfinite(at.height_m[i]) and np.isfinite(at.width_m[i]))
            seen = float(dets.seen[i])
            step = float(at.range_step_m[i])
            out.append(Measurement(
                ts, label, float(dets.confidence[i]), float(dets.xyxy[i, 3] - dets.xyxy[i, 1]),
                float(at.height_m[i]) if finite else None, float(at.width_m[i]) if finite else None,
                (float(at.cal_x[i]), float(at.cal_y[i])) if np.isfinite(at.cal_x[i]) else None,
                bool(at.cut[i]), bool(at.airborne[i]), seen if np.isfinite(seen) else None,
                (float((dets.xyxy[i, 0] + dets.xyxy[i, 2]) / 2.0), float(dets.xyxy[i, 3])), at.camera_xy,
                step if np.isfinite(step) else None))
        return out

    def last(self, track_id: int) -> Classification | None:
        return self.classifier.last(track_id)

    def lost(self, track_id: int) -> None:
        self.first_seen.pop(track_id, None)
        self.confidences.pop(track_id, None)
        self.classifier.forget(track_id)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
