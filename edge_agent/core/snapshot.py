"""The snapshot of an alert: the frame of the event that caused it, with the tracks and the evidence drawn on
it, as a JPEG under the configured size."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detectors.annotate import annotate
from detectors.types import Detections
from edge_agent.contract.alert import Alert
from edge_agent.contract.ids import iso_ms
from sensors.frames import ThermalFrame

QUALITIES = (85, 70, 55, 40, 25)  # tried in turn until the JPEG fits; from 40 down the image shrinks too


@dataclass(frozen=True, slots=True)
class FrameView:
    """A camera frame as the core handled it, with the tracks the detector found on it."""

    frame: ThermalFrame
    tracks: Detections


class EventFrames:
    """The frame of each camera's event now in the core (core thread only). The core sets a camera's view
    when it takes that camera's ``FrameTracks`` message, so an alert that message causes is drawn on the
    frame that caused it; a message that came without its frame clears the view (no snapshot rather than a
    frame of another moment)."""

    def __init__(self) -> None:
        self._views: dict[str, FrameView] = {}

    def seen(self, camera: str, view: FrameView | None) -> None:
        if view is None:
            self._views.pop(camera, None)
        else:
            self._views[camera] = view

    def snapshot(self, alert: Alert, max_bytes: int) -> bytes | None:
        """The JPEG for an alert with thermal evidence, or None (no thermal evidence, no frame, too big)."""
        thermal = [e for e in alert.evidence if e.type == "thermal"]
        if not thermal:
            return None
        view = self._views.get(thermal[-1].sensor)
        if view is None:
            return None
        return draw(view, alert, max_bytes)


def draw(view: FrameView, alert: Alert, max_bytes: int) -> bytes | None:
    img = annotate(view.frame.gray8(), view.tracks, f"{alert.kind} {alert.severity} {iso_ms(alert.ts)}")
    for e in [e for e in alert.evidence if e.type == "thermal"][-5:]:
        bbox = dict(e.fields).get("bbox")
        if bbox:
            x1, y1, x2, y2 = (int(round(v)) for v in bbox)
            cv2.rectangle(img, (x1 - 2, y1 - 2), (x2 + 2, y2 + 2), (0, 255, 255), 2)
    for quality in QUALITIES:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and len(buf) <= max_bytes:
            return bytes(np.asarray(buf).tobytes())
        img = cv2.resize(img, None, fx=0.8, fy=0.8) if quality <= 40 else img
    return None
