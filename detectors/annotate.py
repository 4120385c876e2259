"""Drawing evidence on a frame: boxes, labels, track ids. Kept apart from detection."""

from __future__ import annotations

import cv2
import numpy as np

from detectors.types import Detections

COLOURS = {"person": (0, 0, 255), "vehicle": (255, 160, 0), "animal": (0, 200, 0), "unknown": (0, 200, 255)}


def annotate(gray8: np.ndarray, dets: Detections, caption: str = "", names: list[str] | None = None) -> np.ndarray:
    """A BGR copy of the frame with each detection boxed and labelled ``label #id conf``; ``names`` replace
    the model's labels (e.g. each track's class)."""
    img = cv2.cvtColor(gray8, cv2.COLOR_GRAY2BGR)
    for (x1, y1, x2, y2), label, tid, conf in zip(
        dets.xyxy.tolist(), names if names is not None else dets.labels(), dets.track_id.tolist(),
        dets.confidence.tolist(), strict=True,
    ):
        colour = COLOURS.get(label, (255, 255, 255))
        p1, p2 = (round(x1), round(y1)), (round(x2), round(y2))
        cv2.rectangle(img, p1, p2, colour, 1)
        text = f"{label} #{tid} {conf:.2f}" if tid >= 0 else f"{label} {conf:.2f}"
        cv2.putText(img, text, (p1[0], max(10, p1[1] - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    if caption:
        cv2.putText(img, caption, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return img
