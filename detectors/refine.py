"""Tighten detector boxes to the warm silhouette inside them.

Person models trained on colour photographs draw loose boxes, and the bottom edge of a box is where a
geofence places the feet. On a thermal frame the body is warmer than its surroundings, so within each
box (a little enlarged) an Otsu threshold separates body from ground; the box becomes the extent of the
warm blobs that reach its centre. A box with no clear warm blob is left as the detector drew it.
"""

from __future__ import annotations

import cv2
import numpy as np

from detectors.types import Detections, box_iou

MIN_CONTRAST = 12  # grey levels between the Otsu threshold and the crop's border: below it, no clear blob
MIN_KEEP_AREA = 0.2  # a refined box smaller than this share of the original is a fragment, not the body


def refine_boxes(gray8: np.ndarray, dets: Detections, pad: float = 0.12) -> Detections:
    if not len(dets):
        return dets
    h, w = gray8.shape
    out = dets.xyxy.astype(np.float32).copy()
    for i, (x1, y1, x2, y2) in enumerate(dets.xyxy.tolist()):
        bw, bh = x2 - x1, y2 - y1
        cx1, cy1 = int(max(0, x1 - pad * bw)), int(max(0, y1 - pad * bh))
        cx2, cy2 = int(min(w, x2 + pad * bw)), int(min(h, y2 + pad * bh))
        crop = gray8[cy1:cy2, cx1:cx2]
        if crop.shape[0] < 4 or crop.shape[1] < 4:
            continue
        thr, binary = cv2.threshold(crop, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
        if thr - float(np.median(border)) < MIN_CONTRAST:
            continue
        _n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        # the central half of the detector's box, in crop coordinates
        ix1, iy1 = x1 - cx1 + bw * 0.25, y1 - cy1 + bh * 0.25
        ix2, iy2 = x2 - cx1 - bw * 0.25, y2 - cy1 - bh * 0.25
        left, top, width, height, area = (stats[1:, k] for k in range(5))
        keep = (area >= 4) & (left < ix2) & (left + width > ix1) & (top < iy2) & (top + height > iy1)
        if not keep.any():
            continue
        rx1, ry1 = left[keep].min(), top[keep].min()
        rx2, ry2 = (left + width)[keep].max(), (top + height)[keep].max()
        if (rx2 - rx1) * (ry2 - ry1) >= MIN_KEEP_AREA * bw * bh:
            out[i] = (cx1 + rx1, cy1 + ry1, cx1 + rx2, cy1 + ry2)
    return _drop_duplicates(dets.with_boxes(out))


def _drop_duplicates(dets: Detections, iou: float = 0.8) -> Detections:
    """Two loose boxes of one body refine to the same tight box: keep the more confident one."""
    order = np.argsort(-dets.confidence)
    ious = box_iou(dets.xyxy[order], dets.xyxy[order])
    keep: list[int] = []
    for rank, idx in enumerate(order.tolist()):
        if all(ious[rank, order.tolist().index(k)] < iou for k in keep):
            keep.append(idx)
    return dets.select(np.array(sorted(keep), dtype=np.int64))
