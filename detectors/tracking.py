"""Multi-object tracking with persistent ids: constant-velocity prediction, two-stage association
(confident detections first, then weak ones only to continue existing tracks), ids given on confirmation.

Time comes from the frames, so tracks coast correctly over frames the motion gate skipped. A confirmed track
unseen for ``max_age_s`` goes dormant where it was last seen, and is lost only after ``dormant_s`` more: a
person who stands still and fades from the detections for a while, or steps behind a rock, takes their own id
back when seen there again (one track, so one entry and one alert, not a new one each time). Detections carry
their heat contrast and whether the model saw them; a track keeps the share of the times it was shown to the
model lately that the model found it (``seen``), which says whether its class rests on the model or on physics.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import lap
import numpy as np

from detectors.types import LABELS, UNKNOWN, Detections, box_overlaps, iou_of

SEEN_WINDOW_S = 3.0  # the model's verdicts a track's ``seen`` share rests on
LABEL_HOLD_S = 2.0  # a model's label outlives frames where only the heat was seen


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
    contrast: float = math.nan
    asks: deque[tuple[float, float]] = field(default_factory=deque)  # (ts, 1 the model saw it, 0 it did not)
    model_label: tuple[float, int] | None = None  # when the model last named it, and what
    dormant: bool = False

    def __post_init__(self) -> None:
        self.history.append((self.last_ts, float(self.box[0] + self.box[2]) / 2.0, float(self.box[3])))

    def predict(self, ts: float) -> np.ndarray:
        if self.dormant:
            return self.box  # waits where it was last seen
        dt = max(0.0, ts - self.last_ts)
        shift = np.tile(self.velocity * dt, 2)
        return self.box + shift

    def observe(self, label_id: int, contrast: float, seen: float, ts: float) -> None:
        """What a matched detection says beyond its box: its heat, and the model's verdict when it was asked."""
        if math.isfinite(contrast):
            self.contrast = contrast
        if math.isfinite(seen):
            self.asks.append((ts, seen))
        while self.asks and self.asks[0][0] < ts - SEEN_WINDOW_S:
            self.asks.popleft()
        if label_id != UNKNOWN:
            self.model_label = (ts, label_id)

    @property
    def seen_share(self) -> float:
        return sum(s for _, s in self.asks) / len(self.asks) if self.asks else math.nan

    def shown_label(self, ts: float) -> int:
        """The model's label while it named the track lately, else unknown (heat alone)."""
        if self.model_label is not None and ts - self.model_label[0] <= LABEL_HOLD_S:
            return self.model_label[1]
        return UNKNOWN

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
        self.dormant = False


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
        dormant_s: float = 8.0,
    ) -> None:
        self.high_confidence = high_confidence
        self.coast_s = coast_s
        self.match_iou = match_iou
        self.min_hits = min_hits
        self.max_age_s = max_age_s
        self.dormant_s = dormant_s
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def active(self) -> int:
        """How many tracks are alive and being seen (confirmed or not; dormant ones do not count)."""
        return sum(not t.dormant for t in self._tracks)

    def live_boxes(self, ts: float) -> np.ndarray:
        """Where every track not dormant should be now (N, 4): what a camera must keep looking at."""
        boxes = [t.predict(ts) for t in self._tracks if not t.dormant]
        return np.array(boxes, np.float32).reshape(-1, 4)

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
            tr.observe(int(dets.label_id[d]), float(dets.contrast[d]), float(dets.seen[d]), ts)
            if tr.track_id == 0 and tr.hits >= self.min_hits:
                tr.track_id = self._next_id
                self._next_id += 1
                events.append(self._event("appeared", tr, ts))
        for d in np.nonzero(strong)[0].tolist():
            if d not in matched:
                tr = _Track(dets.xyxy[d].astype(np.float64), int(dets.label_id[d]), float(dets.confidence[d]), ts, ts)
                tr.observe(int(dets.label_id[d]), float(dets.contrast[d]), float(dets.seen[d]), ts)
                self._tracks.append(tr)
        out_rows = sorted(d for d, t in matched.items() if self._tracks[t].track_id > 0)
        shown = [(dets.xyxy[d], self._tracks[matched[d]]) for d in out_rows]
        # A confirmed track missed for a moment (a weak frame, a brief hide) is still there: report it at its
        # predicted place for up to coast_s rather than letting it flicker.
        shown += [(self._tracks[t].predict(ts), self._tracks[t]) for t in unmatched_tracks
                  if self._tracks[t].track_id > 0 and not self._tracks[t].dormant
                  and 0 < ts - self._tracks[t].last_ts <= self.coast_s]
        events.extend(self._expire(ts))
        return self._report(shown, ts), events

    def _report(self, shown: list[tuple[np.ndarray, _Track]], ts: float) -> Detections:
        """Confirmed tracks as Detections: box, confidence, label (the model's while it names the track), id,
        contrast and the share of its recent showings the model saw it in."""
        if not shown:
            return Detections.empty()
        return Detections(np.array([b for b, _ in shown], np.float32).reshape(-1, 4),
                          np.array([t.confidence for _, t in shown], np.float32),
                          np.array([t.shown_label(ts) for _, t in shown], np.int64),
                          np.array([t.track_id for _, t in shown], np.int64),
                          np.array([t.contrast for _, t in shown], np.float32),
                          np.array([t.seen_share for _, t in shown], np.float32))

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
            unseen = ts - tr.last_ts
            if tr.track_id == 0 and unseen > 0.5 * self.max_age_s:
                continue  # never confirmed: gone without a word
            if tr.track_id and unseen > self.max_age_s + self.dormant_s:
                events.append(self._event("lost", tr, ts))
                continue
            if tr.track_id and unseen > self.max_age_s and not tr.dormant:
                tr.dormant = True  # waits where it was last seen, for its own id to come back
                tr.velocity = np.zeros(2)
                tr.history.clear()
            alive.append(tr)
        self._tracks = alive
        return events

    @staticmethod
    def _event(kind: Literal["appeared", "lost"], tr: _Track, ts: float) -> TrackEvent:
        x1, y1, x2, y2 = (float(v) for v in tr.box)
        return TrackEvent(kind, tr.track_id, LABELS[tr.label_id], ts, (x1, y1, x2, y2), tr.confidence,
                          tr.last_ts - tr.first_ts)


def _association_score(pred: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU, with a fall-back on centre distance relative to box size so small fast boxes still match, and on
    containment (a track seen by its heat alone as part of a body, then whole by the model, is the same)."""
    inter, area_p, area_b = box_overlaps(pred, boxes)
    iou = iou_of(inter, area_p, area_b)
    smaller = np.maximum(np.minimum(area_p[:, None], area_b[None, :]), 1e-6)
    contained = 0.6 * inter / smaller
    pc = (pred[:, None, :2] + pred[:, None, 2:]) / 2.0
    bc = (boxes[None, :, :2] + boxes[None, :, 2:]) / 2.0
    size = np.maximum(pred[:, None, 2:] - pred[:, None, :2], 1.0)
    dist = np.linalg.norm((pc - bc) / size, axis=2)
    near = np.clip(1.0 - dist, 0.0, 1.0) * 0.5
    return np.maximum(np.maximum(iou, near), contained)
