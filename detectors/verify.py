"""Verification at the right scale: a crop of the full-resolution frame around each heat proposal and each live
track, resized so that the target is large enough for the model, several crops packed into one network input.

The detection model needs 20-30 pixels on a person; a frame shrunk whole into the network input gives a person
400 m away one or two. Cut from the full-resolution frame with room around the target (``context`` times its
height) and resized to a ``cell`` of the mosaic, every target reaches the model at about ``cell / context``
pixels tall, near or far: a 12 px person is enlarged, a 200 px one shrunk. ``grid`` x ``grid`` cells make one
input of ``grid * cell`` pixels (a 2 x 2 mosaic of 160 px cells is one 320 inference for four crops), so the
crops of several targets, and of several cameras (``detectors.engine``), share an inference.

A box the model finds in a cell is kept when its centre lies in that cell and it is not cut by the cell's edge
(the neighbouring crop shows none of it), then mapped back to the frame."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from detectors.types import Detections

CELL_PX = 160
GRID = 2
CONTEXT = 2.5  # crop side over the target's height: the rest is the ground and what stands beside it
WIDE_CONTEXT = 1.4  # ... and at least this over its width (a crawler seen side-on, 4 times wider than tall, is
# shown as large as the cell allows, not shrunk to fit 2.5 times its length)
MIN_SIDE_PX = 24  # a crop never smaller than this (a 5 px target is not worth a 13 px crop)
PAD_VALUE = 114  # what fills a cell where the crop runs off the frame (ultralytics' letterbox grey)
EDGE_PX = 2.0
MERGE_SIDE = 1.25  # two crops become one where together they are hardly bigger (a group walking together)


@dataclass(frozen=True, slots=True)
class Crop:
    """A square window of the frame, ``side`` pixels from (``x``, ``y``) (may run off the frame), shown to the
    model as one cell of ``cell`` pixels."""

    x: float
    y: float
    side: float
    cell: int = CELL_PX

    @property
    def scale(self) -> float:
        """Cell pixels per frame pixel."""
        return self.cell / self.side


def plan(boxes: np.ndarray, frame_shape: tuple[int, int], context: float = CONTEXT, cell: int = CELL_PX,
         min_side: float = MIN_SIDE_PX) -> list[Crop]:
    """One crop per box (N, 4) xyxy, a square of ``context`` times its height (and at least ``WIDE_CONTEXT`` times
    its width) around its centre; boxes whose crops mostly overlap share one that holds them both (a group walking
    together is one crop)."""
    h, w = frame_shape
    crops: list[tuple[float, float, float, float]] = []  # x1, y1, x2, y2 of each square
    order = np.argsort(-(boxes[:, 3] - boxes[:, 1])) if len(boxes) else np.zeros(0, np.int64)
    for i in order.tolist():
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        side = max(min_side, context * (y2 - y1), WIDE_CONTEXT * (x2 - x1))
        side = min(side, float(max(h, w)))
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        square = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        for k, other in enumerate(crops):
            merged = _union(other, square)
            merged_side = max(merged[2] - merged[0], merged[3] - merged[1])
            if merged_side <= MERGE_SIDE * max(other[2] - other[0], side):
                c = ((merged[0] + merged[2]) / 2, (merged[1] + merged[3]) / 2)
                crops[k] = (c[0] - merged_side / 2, c[1] - merged_side / 2, c[0] + merged_side / 2,
                            c[1] + merged_side / 2)
                break
        else:
            crops.append(square)
    return [Crop(x1, y1, x2 - x1, cell) for x1, y1, x2, _y2 in crops]


def _union(a: tuple[float, float, float, float], b: tuple[float, float, float, float]
           ) -> tuple[float, float, float, float]:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def cut(gray8: np.ndarray, crop: Crop) -> np.ndarray:
    """The crop's window of the frame as a ``cell`` x ``cell`` image (grey where it runs off the frame)."""
    h, w = gray8.shape[:2]
    x1, y1 = int(math.floor(crop.x)), int(math.floor(crop.y))
    x2, y2 = int(math.ceil(crop.x + crop.side)), int(math.ceil(crop.y + crop.side))
    window = gray8[max(0, y1):min(h, y2), max(0, x1):min(w, x2)]
    if (x1, y1, x2, y2) != (max(0, x1), max(0, y1), min(w, x2), min(h, y2)):
        window = cv2.copyMakeBorder(window, max(0, -y1), max(0, y2 - h), max(0, -x1), max(0, x2 - w),
                                    cv2.BORDER_CONSTANT, value=PAD_VALUE)
    interp = cv2.INTER_AREA if window.shape[0] > crop.cell else cv2.INTER_LINEAR
    return cv2.resize(window, (crop.cell, crop.cell), interpolation=interp)


def mosaic(cells: list[np.ndarray], grid: int = GRID) -> np.ndarray:
    """Up to ``grid * grid`` cells side by side in one image (empty cells grey)."""
    cell = cells[0].shape[0]
    out = np.full((grid * cell, grid * cell), PAD_VALUE, np.uint8)
    for k, img in enumerate(cells[: grid * grid]):
        r, c = divmod(k, grid)
        out[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = img
    return out


def split(dets: Detections, n: int, cell: int, grid: int = GRID) -> list[Detections]:
    """The boxes found on a mosaic of ``n`` cells, per cell in that cell's pixels: a box belongs to the cell its
    centre is in, and is dropped when it is cut by that cell's edge."""
    out = []
    cx = (dets.xyxy[:, 0] + dets.xyxy[:, 2]) / 2.0
    cy = (dets.xyxy[:, 1] + dets.xyxy[:, 3]) / 2.0
    for k in range(n):
        r, c = divmod(k, grid)
        ox, oy = c * cell, r * cell
        inside = (cx >= ox) & (cx < ox + cell) & (cy >= oy) & (cy < oy + cell)
        local = dets.xyxy - np.array([ox, oy, ox, oy], np.float32)
        whole = (local[:, 0] > EDGE_PX) & (local[:, 1] > EDGE_PX) & (local[:, 2] < cell - EDGE_PX) & \
                (local[:, 3] < cell - EDGE_PX)
        keep = inside & whole
        out.append(Detections(local[keep], dets.confidence[keep], dets.label_id[keep]))
    return out


def to_frame(dets: Detections, crop: Crop) -> Detections:
    """Boxes found in a crop's cell, in the frame's pixels."""
    if not len(dets):
        return dets
    xyxy = dets.xyxy / np.float32(crop.scale) + np.array([crop.x, crop.y, crop.x, crop.y], np.float32)
    return Detections(xyxy.astype(np.float32), dets.confidence, dets.label_id)
