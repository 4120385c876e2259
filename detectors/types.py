"""Detections: one value of numpy columns that every detector, refiner and tracker passes along."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MODEL_LABELS: tuple[str, ...] = ("person", "vehicle", "animal")  # what a model's class map may name
LABELS: tuple[str, ...] = (*MODEL_LABELS, "unknown")  # unknown: found by its heat alone, no model has named it
UNKNOWN = LABELS.index("unknown")


def _empty_i() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


def _empty_f() -> np.ndarray:
    return np.zeros(0, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Detections:
    """N boxes: ``xyxy`` (N, 4) pixels, ``confidence`` (N,), ``label_id`` (N,) indexes into ``LABELS``,
    ``track_id`` (N,) with -1 where no tracker has assigned one, ``contrast`` (N,) against the surroundings (degrees
    Celsius or grey levels; NaN where unmeasured) and ``seen`` (N,): whether the model saw it - for a detection 1
    (found by the model) or 0 (shown to the model, not found), for a track the share of the times it was shown
    lately; NaN where the model was not asked."""

    xyxy: np.ndarray
    confidence: np.ndarray
    label_id: np.ndarray
    track_id: np.ndarray = field(default_factory=_empty_i)
    contrast: np.ndarray = field(default_factory=_empty_f)
    seen: np.ndarray = field(default_factory=_empty_f)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must have shape (N, 4), got {self.xyxy.shape}")
        if self.track_id.shape == (0,) and n:
            object.__setattr__(self, "track_id", np.full(n, -1, dtype=np.int64))
        for name in ("contrast", "seen"):
            if getattr(self, name).shape == (0,) and n:
                object.__setattr__(self, name, np.full(n, np.nan, dtype=np.float32))
        for name in ("confidence", "label_id", "track_id", "contrast", "seen"):
            col = getattr(self, name)
            if col.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) to match xyxy, got {col.shape}")
        if n and (self.label_id.min() < 0 or self.label_id.max() >= len(LABELS)):
            raise ValueError(f"label_id must be in 0..{len(LABELS) - 1}, got {self.label_id.tolist()}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.xyxy)

    def labels(self) -> list[str]:
        return [LABELS[i] for i in self.label_id.tolist()]

    def select(self, keep: np.ndarray) -> Detections:
        """The rows where the boolean mask or index array ``keep`` says so."""
        return Detections(self.xyxy[keep], self.confidence[keep], self.label_id[keep], self.track_id[keep],
                          self.contrast[keep], self.seen[keep])

    def with_boxes(self, xyxy: np.ndarray) -> Detections:
        return Detections(xyxy.astype(np.float32), self.confidence, self.label_id, self.track_id, self.contrast,
                          self.seen)

    @classmethod
    def concat(cls, parts: list[Detections]) -> Detections:
        """Several sets of boxes as one."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.xyxy for p in parts]).astype(np.float32),
                   np.concatenate([p.confidence for p in parts]).astype(np.float32),
                   np.concatenate([p.label_id for p in parts]).astype(np.int64),
                   np.concatenate([p.track_id for p in parts]).astype(np.int64),
                   np.concatenate([p.contrast for p in parts]).astype(np.float32),
                   np.concatenate([p.seen for p in parts]).astype(np.float32))


def box_overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise intersection areas of (N, 4) and (M, 4) xyxy boxes, (N, M), and the areas of ``a`` (N) and ``b``
    (M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter, area_a, area_b


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes, as an (N, M) array."""
    return iou_of(*box_overlaps(a, b))


def iou_of(inter: np.ndarray, area_a: np.ndarray, area_b: np.ndarray) -> np.ndarray:
    """IoU from what ``box_overlaps`` gives."""
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
