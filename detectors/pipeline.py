"""From frames to tracked objects: look where the heat is, at the scale it needs, then track.

With a ``HeatProposer`` (the default), each frame:

1. the heat proposals: regions warmer or colder than the learnt scene, of a size that fits something real there;
2. the model looks at crops around every proposal and every live track big enough for it (``Look.verify_min_px``),
   each resized so the target is large enough for it (``detectors.verify``), and at the whole frame only every
   ``Look.sweep_s`` (what stands still and was there from the start);
3. the model's boxes and the proposals become one set of detections: a proposal the model names takes its label
   (``seen`` 1), one it was shown and did not name keeps ``unknown`` (``seen`` 0), one too small to show keeps
   ``unknown`` with ``seen`` NaN; each carries its heat contrast;
4. the tracker.

A frame with no proposal and no track costs the heat model alone. Without a ``HeatProposer`` the older path
runs: a motion/heat gate, then the whole frame through the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from detectors.base import Detector
from detectors.engine import KEEPALIVE, MOTION, TRACKING
from detectors.gating import MotionHeatGate
from detectors.heat import HeatBlobs, HeatProposer
from detectors.refine import refine_boxes
from detectors.tiles import merge
from detectors.tracking import Tracker, TrackEvent
from detectors.types import UNKNOWN, Detections, box_iou
from detectors.verify import CELL_PX, CONTEXT, GRID, cut, plan, to_frame
from sensors.frames import ThermalFrame


@dataclass(frozen=True, slots=True)
class Look:
    """Where and how often the model looks, with heat proposals."""

    sweep_s: float = 4.0  # the whole frame through the model at least this often
    verify_min_px: float = 10.0  # smaller targets are not shown to the model (physics alone classifies them)
    max_crops: int = 16  # per frame; live tracks first, then the largest proposals
    context: float = CONTEXT
    cell: int = CELL_PX
    grid: int = GRID
    sweep_reach_px: float = 28.0  # targets this tall are shown to the model by the whole-frame sweep as well
    heat_confidence_snr: float = 20.0  # a proposal's confidence: its signal to noise over this, at most 0.5


@dataclass(frozen=True, slots=True)
class FrameResult:
    """What one frame gave: the confirmed tracks seen in it and the track events it caused."""

    frame: ThermalFrame
    tracks: Detections
    events: tuple[TrackEvent, ...]
    detected: bool
    gate_reason: str
    detect_ms: float
    proposals: int = 0  # heat proposals
    crops: int = 0  # crops shown to the model


@dataclass(slots=True)
class PipelineCounters:
    frames: int = 0
    detected: int = 0
    skipped: int = 0
    detect_ms_total: float = 0.0
    gate_reasons: dict[str, int] = field(default_factory=dict)
    proposals: int = 0
    crops: int = 0
    sweeps: int = 0

    @property
    def detect_ms_mean(self) -> float:
        return self.detect_ms_total / self.detected if self.detected else 0.0


class TrackingPipeline:
    """One camera's detection and tracking. Not thread-safe: one pipeline per camera thread."""

    def __init__(
        self,
        detector: Detector,
        tracker: Tracker | None = None,
        gate: MotionHeatGate | None = None,
        refine: bool = True,
        heat: HeatProposer | None = None,
        look: Look | None = None,
        size_prior: Callable[[tuple[int, int]], np.ndarray | None] | None = None,
    ) -> None:
        """``size_prior``: for frames of (width, height), how many pixels tall a person stands with their feet on
        each row (from the camera's calibration), which the heat proposals are sized by."""
        self.detector = detector
        self.tracker = tracker or Tracker()
        self.gate = gate
        self.refine = refine
        self.heat = heat
        self.look = look or Look()
        self.size_prior = size_prior
        self.counters = PipelineCounters()
        self._last_sweep: float | None = None
        self._prior_for: tuple[int, int] | None = None

    def process(self, frame: ThermalFrame) -> FrameResult:
        if self.heat is not None:
            return self._look_where_the_heat_is(frame, self.heat)
        return self._whole_frame(frame)

    def finish(self, ts: float) -> list[TrackEvent]:
        return self.tracker.flush(ts)

    # -- heat first -------------------------------------------------------------------------------------------

    def _look_where_the_heat_is(self, frame: ThermalFrame, heat: HeatProposer) -> FrameResult:
        c, look, ts = self.counters, self.look, frame.ts
        c.frames += 1
        t0 = time.perf_counter()
        size = (frame.shape[1], frame.shape[0])
        if self.size_prior is not None and self._prior_for != size:
            heat.set_size_prior(self.size_prior(size))
            self._prior_for = size
        live = self.tracker.live_boxes(ts)
        blobs = heat.update(frame, live)
        sweep = self._last_sweep is None or ts - self._last_sweep >= look.sweep_s
        rois = self._rois(blobs, live)
        if not sweep and not len(rois):  # nothing for the model: the proposals alone (small ones, if any)
            reason = "heat" if len(blobs) else "quiet"
            c.skipped += 1
            c.proposals += len(blobs)
            c.gate_reasons[reason] = c.gate_reasons.get(reason, 0) + 1
            dets = self._fuse(blobs, Detections.empty(), np.zeros(len(blobs), bool), frame.shape, live)
            tracks, events = self.tracker.update(dets, ts)
            return FrameResult(frame, _in_view(tracks, frame.shape), tuple(events), bool(len(blobs)), reason,
                               (time.perf_counter() - t0) * 1000.0, len(blobs))
        gray = frame.gray8()
        priority = TRACKING if self.tracker.active else MOTION if len(blobs) else KEEPALIVE
        crowd = _crowded(rois, look.sweep_reach_px)
        if crowd.any():  # big targets in each other's way: the whole frame tells them apart better than crops
            sweep = True
            rois = rois[~crowd]
        found: list[Detections] = []
        if sweep:
            self._last_sweep = ts
            c.sweeps += 1
            found.append(self.detector.detect_prioritized(gray, priority))
        crops = plan(rois, gray.shape[:2], look.context, look.cell)
        if crops:
            per_cell = self.detector.detect_cells([cut(gray, cr) for cr in crops], look.grid, priority)
            found += [to_frame(d, cr) for d, cr in zip(per_cell, crops, strict=True)]
        model = merge(found, 0.5)
        if self.refine and frame.radiometric and len(model):
            model = refine_boxes(gray, model)
        asked = np.zeros(len(blobs), bool)
        if len(blobs):
            heights = blobs.xyxy[:, 3] - blobs.xyxy[:, 1]
            asked = (heights >= look.verify_min_px) | (sweep & (heights >= look.sweep_reach_px))
        dets = self._fuse(blobs, model, asked, frame.shape, live)
        ms = (time.perf_counter() - t0) * 1000.0
        reason = "sweep" if sweep else "heat" if len(blobs) else "tracks"
        c.detected += 1
        c.detect_ms_total += ms
        c.proposals += len(blobs)
        c.crops += len(crops)
        c.gate_reasons[reason] = c.gate_reasons.get(reason, 0) + 1
        tracks, events = self.tracker.update(dets, ts)
        return FrameResult(frame, _in_view(tracks, frame.shape), tuple(events), True, reason, ms, len(blobs),
                           len(crops))

    def _rois(self, blobs: HeatBlobs, live: np.ndarray) -> np.ndarray:
        """What the model is shown in crops: live tracks first, then proposals, each big enough for it, at most
        ``max_crops``, a proposal on a track's box not twice."""
        look = self.look
        boxes = [b for b in live if b[3] - b[1] >= look.verify_min_px]
        by_size = sorted(blobs.xyxy.tolist(), key=lambda b: -(b[3] - b[1]))
        for b in by_size:
            if b[3] - b[1] < look.verify_min_px:
                continue
            if boxes and (float(box_iou(np.array([b]), np.array(boxes)).max()) > 0.3 or _beside(np.asarray(b),
                                                                                                np.array(boxes))):
                continue  # on a track the model is shown anyway, or a piece of one
            boxes.append(np.asarray(b, np.float32))
        return np.array(boxes[: look.max_crops], np.float32).reshape(-1, 4)

    def _fuse(self, blobs: HeatBlobs, model: Detections, asked: np.ndarray, shape: tuple[int, int],
              live: np.ndarray) -> Detections:
        """One set of detections from the proposals and the model's boxes (see the module docstring). A proposal
        the model does not name and that the frame's edge cuts is left out: its size says nothing yet (a target
        walking in), and a few frames on it is whole. Nor does a big proposal the model was shown, did not name, and
        that touches a live track: at that size the model sees a person, so it is a merge of tracked targets or a
        piece of one (a new target away from every track, a crawler coming head-on, still counts). Proposals the
        model does not name that lie on the same live track (the legs and the head of a near person whose clothes
        are as cool as the ground) are one detection."""
        out: list[Detections] = []
        used = np.zeros(len(model), bool)
        if len(blobs) and len(model):
            overlap = box_iou(blobs.xyxy, model.xyxy)
            cx = (blobs.xyxy[:, 0] + blobs.xyxy[:, 2]) / 2.0
            cy = (blobs.xyxy[:, 1] + blobs.xyxy[:, 3]) / 2.0
            # a proposal whose centre lies on the model's box, or just beside it (a foot the silhouette's box left
            # out, a hand), is part of that target
            matches = (overlap >= 0.1) | _centres_on(cx, cy, model.xyxy, side=0.25, above=0.1, below=0.15)
        else:
            matches = np.zeros((len(blobs), len(model)), bool)
        taken = np.zeros(len(model), bool)  # a model box already given to a proposal: more pieces of it add nothing
        alone: list[int] = []  # proposals the model does not name
        for i in range(len(blobs)):
            js = np.flatnonzero(matches[i])
            contrast = float(blobs.contrast[i])
            if len(js) and taken[js].all():
                continue
            taken[js] = True
            if len(js) == 1:  # the model names this proposal: its label, the silhouette's box when small
                j = int(js[0])
                used[j] = True
                # a small target's heat box is the tighter; a piece of a larger one (a car's hot engine) is not
                small = blobs.xyxy[i, 3] - blobs.xyxy[i, 1] < 32 and overlap[i, j] >= 0.3
                box = blobs.xyxy[i] if small else model.xyxy[j]
                out.append(_one(box, float(model.confidence[j]), int(model.label_id[j]), contrast, 1.0))
            elif len(js) > 1:  # the model splits it (people side by side): its boxes, with the proposal's heat
                used[js] = True
                for j in js.tolist():
                    out.append(_one(model.xyxy[j], float(model.confidence[j]), int(model.label_id[j]), contrast,
                                    1.0))
            elif not (_at_edge(blobs.xyxy[i], shape) or _beside(blobs.xyxy[i], model.xyxy)
                      or (asked[i] and blobs.xyxy[i, 3] - blobs.xyxy[i, 1] >= self.look.sweep_reach_px
                          and _touches(blobs.xyxy[i], live))):
                alone.append(i)
        for group in _on_tracks(blobs.xyxy, alone, live):
            box = np.array([blobs.xyxy[group, 0].min(), blobs.xyxy[group, 1].min(), blobs.xyxy[group, 2].max(),
                            blobs.xyxy[group, 3].max()], np.float32)
            strongest = group[int(np.argmax(blobs.snr[group]))]
            conf = min(0.5, float(blobs.snr[strongest]) / self.look.heat_confidence_snr)
            out.append(_one(box, conf, UNKNOWN, float(blobs.contrast[strongest]),
                            0.0 if asked[group].any() else math.nan))
        rest = model.select(~used)
        if len(rest):
            out.append(Detections(rest.xyxy, rest.confidence, rest.label_id, contrast=rest.contrast,
                                  seen=np.ones(len(rest), np.float32)))
        return _one_each(Detections.concat(out))

    # -- the whole frame behind a gate (no heat proposals) ------------------------------------------------------

    def _whole_frame(self, frame: ThermalFrame) -> FrameResult:
        c = self.counters
        c.frames += 1
        if self.gate is not None:
            decision = self.gate.decide(frame, self.tracker.active)
            detect, reason = decision.detect, decision.reason
        else:
            detect, reason = True, "always"
        c.gate_reasons[reason] = c.gate_reasons.get(reason, 0) + 1
        if not detect:
            c.skipped += 1
            events = self.tracker.expire(frame.ts)
            return FrameResult(frame, Detections.empty(), tuple(events), False, reason, 0.0)
        t0 = time.perf_counter()
        gray = frame.gray8()
        priority = TRACKING if self.tracker.active else KEEPALIVE if reason == "keepalive" else MOTION
        dets = self.detector.detect_prioritized(gray, priority)
        if self.refine and frame.radiometric:
            dets = refine_boxes(gray, dets)
        ms = (time.perf_counter() - t0) * 1000.0
        c.detected += 1
        c.detect_ms_total += ms
        tracks, events = self.tracker.update(dets, frame.ts)
        return FrameResult(frame, tracks, tuple(events), True, reason, ms)


def _touches(box: np.ndarray, live: np.ndarray) -> bool:
    if not len(live):
        return False
    h = live[:, 3] - live[:, 1]
    grown = live + np.stack([-0.1 * h, -0.1 * h, 0.1 * h, 0.1 * h], axis=1)
    return bool((box_iou(box[None], grown) > 0).any())


def _on_tracks(boxes: np.ndarray, which: list[int], live: np.ndarray) -> list[np.ndarray]:
    """The proposals ``which`` grouped by the live track whose box (grown a little) holds their centre; each one
    on no track a group of its own."""
    groups: dict[int, list[int]] = {}
    for i in which:
        cx, cy = (boxes[i, 0] + boxes[i, 2]) / 2.0, (boxes[i, 1] + boxes[i, 3]) / 2.0
        home = -1 - i
        on = _centres_on(np.array([cx]), np.array([cy]), live, side=0.15, above=0.1, below=0.1)[0]
        if on.any():
            home = int(np.argmax(on))
        groups.setdefault(home, []).append(i)
    return [np.array(g, np.int64) for g in groups.values()]


def _crowded(rois: np.ndarray, big_px: float) -> np.ndarray:
    """The targets at least ``big_px`` tall whose boxes (grown by a fifth) touch another's: people crossing or
    walking together, which the model separates better in the whole frame than in crops around each."""
    if len(rois) < 2:
        return np.zeros(len(rois), bool)
    h = rois[:, 3] - rois[:, 1]
    grown = rois + np.stack([-0.2 * h, -0.1 * h, 0.2 * h, 0.1 * h], axis=1)
    touch = box_iou(grown, grown) > 0
    np.fill_diagonal(touch, False)
    big = h >= big_px
    return big & (touch & big[None, :]).any(axis=1)


def _one_each(dets: Detections, iou: float = 0.5) -> Detections:
    """A proposal the model did not name dropped where it overlaps one it did: the same target twice. (Two boxes
    of the model may overlap: two people crossing.)"""
    heat = dets.label_id == UNKNOWN
    if not heat.any() or heat.all():
        return dets
    overlap = box_iou(dets.xyxy[heat], dets.xyxy[~heat]).max(axis=1)
    keep = ~heat
    keep[np.flatnonzero(heat)[overlap < iou]] = True
    return dets.select(keep)


def _in_view(tracks: Detections, shape: tuple[int, int]) -> Detections:
    """Tracks whose box is still in the frame (one coasting on a bad guess of its velocity may have left it)."""
    h, w = shape
    keep = (tracks.xyxy[:, 2] > 0) & (tracks.xyxy[:, 0] < w) & (tracks.xyxy[:, 3] > 0) & (tracks.xyxy[:, 1] < h)
    return tracks if keep.all() else tracks.select(keep)


def _beside(box: np.ndarray, model: np.ndarray) -> bool:
    """A small proposal right beside a much bigger target the model found: a limb or a piece of it, not another."""
    if not len(model):
        return False
    h = model[:, 3] - model[:, 1]
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    near = _centres_on(np.array([cx]), np.array([cy]), model, side=0.6, above=0.2, below=0.2)[0]
    return bool((near & (box[3] - box[1] < 0.6 * h)).any())


def _centres_on(cx: np.ndarray, cy: np.ndarray, boxes: np.ndarray, side: float, above: float,
                below: float) -> np.ndarray:
    """(points, boxes): whether each point lies on each box grown by ``side`` of its width left and right,
    ``above`` of its height above and ``below`` under it (edges included)."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = cx[:, None], cy[:, None]
    return ((boxes[:, 0] - side * w <= cx) & (cx <= boxes[:, 2] + side * w)
            & (boxes[:, 1] - above * h <= cy) & (cy <= boxes[:, 3] + below * h))


def _at_edge(box: np.ndarray, shape: tuple[int, int], margin: float = 1.0) -> bool:
    h, w = shape
    return bool(box[0] <= margin or box[1] <= margin or box[2] >= w - margin or box[3] >= h - margin)


def _one(box: np.ndarray, confidence: float, label: int, contrast: float, seen: float) -> Detections:
    return Detections(np.asarray(box, np.float32).reshape(1, 4), np.array([confidence], np.float32),
                      np.array([label], np.int64), contrast=np.array([contrast], np.float32),
                      seen=np.array([seen], np.float32))
