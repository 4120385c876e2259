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
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # foot point, px/s
    hits: int = 1
    track_id: int = 0  # 0 until confirmed
    history: list[tuple[float, float, float]] = field(default_factory=list)  # (ts, foot x, foot y)

    def __post_init__(self) -> None:
        self.history.append((self.last_ts, float(self.box[0] + self.box[2]) / 2.0, float(self.box[3])))

    def predict(self, ts: float) -> np.ndarray:
        dt = max(0.0, ts - self.last_ts)
        shift = np.tile(self.velocity * dt, 2)
        return self.box + shift

    def update(self, box: np.ndarray, conf: float, label_id: int, ts: float) -> None:
        old_w = self.box[2] - self.box[0]
        new_w = box[2] - box[0]
        # A box that suddenly grows or shrinks is two people merging or parting, or a partial hide: its
        # centre jumps without the person moving, so it must not steer the velocity.
        steady = 0.7 < new_w / max(old_w, 1.0) < 1.4
        self.box = box.astype(np.float64)
        foot = (float(box[0] + box[2]) / 2.0, float(box[3]))
        if steady:
            self.history.append((ts, *foot))
            del self.history[:-VELOCITY_WINDOW]
            if len(self.history) >= 2:
                h = np.array(self.history)
                t = h[:, 0] - h[:, 0].mean()
                if (t * t).sum() > 0:  # least-squares slope over the window: robust to one jumpy box
                    self.velocity = (t[:, None] * (h[:, 1:] - h[:, 1:].mean(axis=0))).sum(axis=0) / (t * t).sum()
        else:
            self.history.clear()
            self.history.append((ts, *foot))
        self.confidence = conf
        self.label_id = label_id
        self.last_ts = ts
        self.hits += 1


VELOCITY_WINDOW = 8


class Tracker:
    """Assigns persistent track ids to detections over time."""

    def __init__(
        self,
        high_confidence: float = 0.25,
        match_iou: float = 0.2,
        min_hits: int = 3,
        max_age_s: float = 2.0,
        coast_s: float = 0.5,
    ) -> None:
        self.high_confidence = high_confidence
        self.coast_s = coast_s
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
        ids = [self._tracks[matched[d]].track_id for d in out_rows]
        # A confirmed track missed for a moment (a weak frame, a brief hide) is still there: report it at its
        # predicted place for up to coast_s rather than letting it flicker.
        coasting = [self._tracks[t] for t in unmatched_tracks
                    if self._tracks[t].track_id > 0 and 0 < ts - self._tracks[t].last_ts <= self.coast_s]
        events.extend(self._expire(ts))
        if coasting:
            xyxy = np.vstack([seen.xyxy, np.array([tr.predict(ts) for tr in coasting], dtype=np.float32)])
            conf = np.concatenate([seen.confidence, np.array([tr.confidence for tr in coasting], np.float32)])
            label = np.concatenate([seen.label_id, np.array([tr.label_id for tr in coasting], np.int64)])
            ids += [tr.track_id for tr in coasting]
            return Detections(xyxy, conf, label, np.array(ids, dtype=np.int64)), events
        return Detections(seen.xyxy, seen.confidence, seen.label_id, np.array(ids, dtype=np.int64)), events

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
