"""Multi-object tracking with persistent ids: constant-velocity prediction, two-stage association
(confident detections first, then weak ones only to continue existing tracks), ids given on confirmation.

Time comes from the frames, so tracks coast correctly over frames the motion gate skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import lap
import numpy as np

from detectors.types import LABELS, Detections, box_iou


@dataclass(frozen=True, slots=True)
class TrackEvent:
    """A track became confirmed (``appeared``) or was not seen for ``max_age_s`` (``lost``)."""

    kind: Literal["appeared", "lost"]
    track_id: int
    label: str
    ts: float
    bbox: tuple[float, float, float, float]
    confidence: float
    age_s: float

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {self.label!r}")
        if self.track_id < 1:
            raise ValueError(f"track_id must be >= 1, got {self.track_id}")


@dataclass(slots=True)
class _Track:
    box: np.ndarray  # xyxy at last_ts
    label_id: int
    confidence: float
    first_ts: float
    last_ts: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # centre, px/s
    hits: int = 1
    track_id: int = 0  # 0 until confirmed

    def predict(self, ts: float) -> np.ndarray:
        dt = max(0.0, ts - self.last_ts)
        shift = np.tile(self.velocity * dt, 2)
        return self.box + shift

    def update(self, box: np.ndarray, conf: float, label_id: int, ts: float) -> None:
        dt = ts - self.last_ts
        if dt > 0:
            old_c = (self.box[:2] + self.box[2:]) / 2.0
            new_c = (box[:2] + box[2:]) / 2.0
            measured = (new_c - old_c) / dt
            self.velocity = 0.6 * self.velocity + 0.4 * measured if self.hits > 1 else measured
        self.box = box.astype(np.float64)
        self.confidence = conf
        self.label_id = label_id
        self.last_ts = ts
        self.hits += 1


class Tracker:
    """Assigns persistent track ids to detections over time."""

    def __init__(
        self,
        high_confidence: float = 0.4,
        match_iou: float = 0.2,
        min_hits: int = 3,
        max_age_s: float = 2.0,
    ) -> None:
        self.high_confidence = high_confidence
        self.match_iou = match_iou
        self.min_hits = min_hits
        self.max_age_s = max_age_s
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def active(self) -> int:
        """How many tracks are alive (confirmed or not)."""
        return len(self._tracks)

    def update(self, dets: Detections, ts: float) -> tuple[Detections, list[TrackEvent]]:
        """Detections of this frame in; the confirmed tracks seen in it, with ids, and track events out."""
        events: list[TrackEvent] = []
        strong = dets.confidence >= self.high_confidence
        unmatched_tracks = list(range(len(self._tracks)))
        matched: dict[int, int] = {}  # det index -> track index
        for stage_mask in (strong, ~strong):
            det_idx = np.nonzero(stage_mask)[0]
            if not len(det_idx) or not unmatched_tracks:
                continue
            pred = np.array([self._tracks[t].predict(ts) for t in unmatched_tracks])
            cost = 1.0 - _association_score(pred, dets.xyxy[det_idx])
            _, x, _ = lap.lapjv(cost, extend_cost=True, cost_limit=1.0 - self.match_iou)
            still: list[int] = []
            for row, t in enumerate(unmatched_tracks):
                col = x[row]
                if col >= 0:
                    matched[int(det_idx[col])] = t
                else:
                    still.append(t)
            unmatched_tracks = still
        for d, t in matched.items():
            tr = self._tracks[t]
            tr.update(dets.xyxy[d], float(dets.confidence[d]), int(dets.label_id[d]), ts)
            if tr.track_id == 0 and tr.hits >= self.min_hits:
                tr.track_id = self._next_id
                self._next_id += 1
                events.append(self._event("appeared", tr, ts))
        for d in np.nonzero(strong)[0].tolist():
            if d not in matched:
                self._tracks.append(
                    _Track(dets.xyxy[d].astype(np.float64), int(dets.label_id[d]), float(dets.confidence[d]), ts, ts)
                )
        out_rows = sorted(d for d, t in matched.items() if self._tracks[t].track_id > 0)
        seen = dets.select(np.array(out_rows, dtype=np.int64))
        ids = np.array([self._tracks[matched[d]].track_id for d in out_rows], dtype=np.int64)
        events.extend(self._expire(ts))
        return Detections(seen.xyxy, seen.confidence, seen.label_id, ids), events

    def expire(self, ts: float) -> list[TrackEvent]:
        """Age tracks on a frame that was not run through the detector."""
        return self._expire(ts)

    def flush(self, ts: float) -> list[TrackEvent]:
        """End every track (the source ended): ``lost`` for each confirmed one."""
        events = [self._event("lost", t, ts) for t in self._tracks if t.track_id]
        self._tracks.clear()
        return events

    def _expire(self, ts: float) -> list[TrackEvent]:
        events: list[TrackEvent] = []
        alive: list[_Track] = []
        for tr in self._tracks:
            if ts - tr.last_ts > self.max_age_s or (tr.track_id == 0 and ts - tr.last_ts > 0.5 * self.max_age_s):
                if tr.track_id:
                    events.append(self._event("lost", tr, ts))
            else:
                alive.append(tr)
        self._tracks = alive
        return events

    @staticmethod
    def _event(kind: Literal["appeared", "lost"], tr: _Track, ts: float) -> TrackEvent:
        x1, y1, x2, y2 = (float(v) for v in tr.box)
        return TrackEvent(kind, tr.track_id, LABELS[tr.label_id], ts, (x1, y1, x2, y2), tr.confidence,
                          tr.last_ts - tr.first_ts)


def _association_score(pred: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU, with a fall-back on centre distance relative to box size so small fast boxes still match."""
    iou = box_iou(pred, boxes)
    pc = (pred[:, None, :2] + pred[:, None, 2:]) / 2.0
    bc = (boxes[None, :, :2] + boxes[None, :, 2:]) / 2.0
    size = np.maximum(pred[:, None, 2:] - pred[:, None, :2], 1.0)
    dist = np.linalg.norm((pc - bc) / size, axis=2)
    near = np.clip(1.0 - dist, 0.0, 1.0) * 0.5
    return np.maximum(iou, near)
