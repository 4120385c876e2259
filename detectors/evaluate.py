"""Scoring detections against ground truth: matching at an IoU threshold, recall and precision."""

from __future__ import annotations

from dataclasses import dataclass, field

import lap
import numpy as np

from detectors.types import box_iou


@dataclass(slots=True)
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    def add(self, truth: np.ndarray, found: np.ndarray, iou: float = 0.5, ignore: np.ndarray | None = None) -> None:
        """One frame: ``truth`` and ``found`` are (N, 4) xyxy. A found box on an ``ignore`` region (a
        mostly hidden object) counts neither way."""
        truth = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
        found = np.asarray(found, dtype=np.float64).reshape(-1, 4)
        pairs = match(truth, found, iou)
        self.tp += len(pairs)
        self.fn += len(truth) - len(pairs)
        unmatched = np.setdiff1d(np.arange(len(found)), [j for _, j in pairs])
        if ignore is not None and len(ignore) and len(unmatched):
            on_ignored = box_iou(found[unmatched], np.asarray(ignore).reshape(-1, 4)).max(axis=1) >= iou
            unmatched = unmatched[~on_ignored]
        self.fp += len(unmatched)


def match(truth: np.ndarray, found: np.ndarray, iou: float = 0.5) -> list[tuple[int, int]]:
    """One-to-one pairs (truth index, found index) with IoU >= ``iou``, maximising total IoU."""
    if not len(truth) or not len(found):
        return []
    ious = box_iou(truth, found)
    _, x, _ = lap.lapjv(1.0 - ious, extend_cost=True, cost_limit=1.0 - iou + 1e-9)
    return [(i, int(j)) for i, j in enumerate(x) if j >= 0 and ious[i, j] >= iou]


@dataclass(slots=True)
class TrackScore:
    """Detection score of a tracker's output plus how well ids hold: an id switch is a ground-truth
    object matched to a different track id than the one it last had."""

    score: Score = field(default_factory=Score)
    id_switches: int = 0
    frames: int = 0
    ids_per_object: dict[int, set[int]] = field(default_factory=dict)
    _last: dict[int, int] = field(default_factory=dict)

    def add(
        self, truth: np.ndarray, truth_ids: np.ndarray, found: np.ndarray, found_ids: np.ndarray,
        iou: float = 0.5, ignore: np.ndarray | None = None,
    ) -> None:
        self.frames += 1
        truth = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
        found = np.asarray(found, dtype=np.float64).reshape(-1, 4)
        self.score.add(truth, found, iou, ignore)
        for i, j in match(truth, found, iou):
            obj, tid = int(truth_ids[i]), int(found_ids[j])
            self.ids_per_object.setdefault(obj, set()).add(tid)
            if obj in self._last and self._last[obj] != tid:
                self.id_switches += 1
            self._last[obj] = tid
