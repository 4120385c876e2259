"""Small far targets: a frame larger than the network input, seen in tiles at full resolution.

Scaled down to the network's input (say a 1280 x 960 frame into 640, or 640 x 480 into 320) a person 300 m
away is a few pixels tall and the model misses them. ``TiledDetector`` runs the model on the whole frame (for
near, large objects a tile would cut) and on overlapping tiles of the network's size at the frame's own
resolution, then merges the boxes (class-aware NMS; a box cut by a tile edge loses to the whole one). It costs
one inference per tile more; ``bench_tiles.py`` measures what it buys in range and what it costs in ms."""

from __future__ import annotations

import math

import cv2
import numpy as np

from detectors.base import Detector
from detectors.types import Detections

OVERLAP = 0.2  # of a tile's side, so that someone on a seam is whole in one tile
EDGE_PX = 2.0


def tile_origins(length: int, tile: int, overlap: float = OVERLAP) -> list[int]:
    """Start positions of tiles of ``tile`` pixels covering ``length`` with at least ``overlap`` between them."""
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / (tile * (1.0 - overlap))) + 1
    step = (length - tile) / (n - 1)
    return [round(i * step) for i in range(n)]


class TiledDetector(Detector):
    """The whole frame plus full-resolution tiles of ``tile`` pixels (the network's input size)."""

    name = "tiled"

    def __init__(self, inner: Detector, tile: int, iou: float = 0.5, whole: bool = True) -> None:
        self.inner, self.tile, self.iou, self.whole = inner, tile, iou, whole

    def load(self) -> None:
        self.inner.load()

    def inference_modes(self) -> dict[str, int] | None:
        return self.inner.inference_modes()

    def tiles(self, shape: tuple[int, int]) -> list[tuple[int, int]]:
        h, w = shape
        if w <= self.tile and h <= self.tile:
            return []  # the frame fits the network: tiles would only repeat it
        return [(x, y) for y in tile_origins(h, self.tile) for x in tile_origins(w, self.tile)]

    def detect(self, gray8: np.ndarray) -> Detections:
        parts: list[Detections] = []
        if self.whole or not self.tiles(gray8.shape[:2]):
            parts.append(self.inner.detect(gray8))
        h, w = gray8.shape[:2]
        for x, y in self.tiles((h, w)):
            crop = np.ascontiguousarray(gray8[y:y + self.tile, x:x + self.tile])
            d = self.inner.detect(crop)
            if not len(d):
                continue
            ch, cw = crop.shape[:2]
            # a box touching a seam inside the frame is cut: the overlapping tile (or the whole frame) has it whole
            cut = ((d.xyxy[:, 0] <= EDGE_PX) & (x > 0)) | ((d.xyxy[:, 1] <= EDGE_PX) & (y > 0)) | \
                  ((d.xyxy[:, 2] >= cw - EDGE_PX) & (x + cw < w)) | ((d.xyxy[:, 3] >= ch - EDGE_PX) & (y + ch < h))
            keep = ~cut
            parts.append(Detections(d.xyxy[keep] + np.array([x, y, x, y], np.float32), d.confidence[keep],
                                    d.label_id[keep]))
        return merge(parts, self.iou)


def merge(parts: list[Detections], iou: float) -> Detections:
    """Boxes of several passes as one set: class-aware NMS, the more confident box kept."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Detections.empty()
    xyxy = np.concatenate([p.xyxy for p in parts]).astype(np.float32)
    conf = np.concatenate([p.confidence for p in parts]).astype(np.float32)
    label = np.concatenate([p.label_id for p in parts]).astype(np.int64)
    shifted = xyxy + label[:, None].astype(np.float32) * 10_000.0
    rects = np.concatenate([shifted[:, :2], shifted[:, 2:] - shifted[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxes(rects.tolist(), conf.tolist(), 0.0, float(iou))
    idx = np.asarray(kept, dtype=np.int64).reshape(-1)
    return Detections(xyxy[idx], conf[idx], label[idx])
