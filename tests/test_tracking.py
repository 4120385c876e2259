"""Tracking: persistent ids, coasting, lost events, gating; and the acceptance run of the real model on
the synthetic walkers scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.base import Detector
from detectors.evaluate import TrackScore, match
from detectors.gating import MotionHeatGate
from detectors.pipeline import TrackingPipeline
from detectors.tracking import Tracker
from detectors.types import Detections, box_iou
from detectors.yolo import YoloConfig, YoloDetector
from edge_agent.config.agent import AgentConfig
from edge_agent.perception.build import build_pipeline
from sensors.frames import ThermalFrame
from sensors.sim import SIM_OFFSET, SIM_SCALE, ThermalScene


def dets(*boxes: tuple[float, float, float, float], conf: float = 0.8) -> Detections:
    xyxy = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    return Detections(xyxy, np.full(len(xyxy), conf, np.float32), np.zeros(len(xyxy), np.int64))


def test_ids_are_given_on_confirmation_and_persist() -> None:
    tr = Tracker(min_hits=3)
    out, ev = tr.update(dets((100, 100, 120, 160)), 0.0)
    assert len(out) == 0 and ev == []
    tr.update(dets((102, 100, 122, 160)), 0.1)
    out, ev = tr.update(dets((104, 100, 124, 160)), 0.2)
    assert out.track_id.tolist() == [1] and [e.kind for e in ev] == ["appeared"]
    for i in range(3, 20):
        out, _ = tr.update(dets((100 + 2 * i, 100, 120 + 2 * i, 160)), i / 10)
        assert out.track_id.tolist() == [1]


def test_weak_detections_continue_tracks_but_never_start_them() -> None:
    tr = Tracker(high_confidence=0.4, min_hits=1)
    out, _ = tr.update(dets((0, 0, 10, 30), conf=0.2), 0.0)
    assert len(out) == 0 and tr.active == 0
    tr.update(dets((0, 0, 10, 30), conf=0.9), 0.1)
    out, _ = tr.update(dets((1, 0, 11, 30), conf=0.2), 0.2)
    assert out.track_id.tolist() == [1]


def test_a_missed_frame_coasts_then_the_track_is_lost() -> None:
    tr = Tracker(min_hits=1, coast_s=0.3, max_age_s=1.0, dormant_s=0.0)
    for i in range(5):
        tr.update(dets((5 * i, 0, 5 * i + 20, 60)), i * 0.1)
    out, _ = tr.update(Detections.empty(), 0.5)  # missed: reported where it should be now
    assert out.track_id.tolist() == [1]
    assert out.xyxy[0, 0] == pytest.approx(25, abs=1)
    out, ev = tr.update(Detections.empty(), 1.0)
    assert len(out) == 0 and ev == []
    out, ev = tr.update(Detections.empty(), 1.5)
    assert [e.kind for e in ev] == ["lost"] and ev[0].track_id == 1


def test_a_track_unseen_for_a_while_takes_its_id_back_where_it_was_and_is_lost_only_later() -> None:
    """A person who stands still and fades from the detections for a few seconds is the same person when seen
    there again: one id (so one entry, one alert); after ``dormant_s`` more without a sighting the track is lost."""
    tr = Tracker(min_hits=2, coast_s=0.3, max_age_s=1.0, dormant_s=5.0)
    for i in range(10):  # walks in and stops
        tr.update(dets((100 + min(i, 5) * 4, 100, 120 + min(i, 5) * 4, 160)), i * 0.1)
    assert tr.active == 1
    ts, events = 0.9, []
    while ts < 4.0:  # unseen for 3 s: dormant, not lost, and not looked at as a live track
        ts += 0.1
        out, ev = tr.update(Detections.empty(), ts)
        events += ev
    assert events == [] and len(out) == 0 and tr.active == 0 and len(tr.live_boxes(ts)) == 0
    out, ev = tr.update(dets((121, 101, 141, 161)), ts + 0.1)  # seen again where it stood
    assert out.track_id.tolist() == [1] and ev == [] and tr.active == 1
    for k in range(1, 80):  # gone for good: lost once max_age_s + dormant_s have passed
        out, ev = tr.update(Detections.empty(), ts + 0.1 + k * 0.1)
        events += ev
    assert [(e.kind, e.track_id) for e in events] == [("lost", 1)]


def test_two_people_passing_keep_their_ids() -> None:
    tr = Tracker(min_hits=2)
    ids_a, ids_b = set(), set()
    for i in range(40):
        ax, bx = 100 + 5 * i, 300 - 5 * i  # meet at i=20
        boxes = [(ax, 100, ax + 20, 160), (bx, 104, bx + 20, 164)]
        if 18 <= i <= 22:  # merged into one detection while they overlap
            boxes = [(min(ax, bx), 100, max(ax, bx) + 20, 164)]
        out, _ = tr.update(dets(*boxes), i * 0.1)
        if 18 <= i <= 22:
            continue  # while merged, which is which is undefined
        truth = np.array([(ax, 100, ax + 20, 160), (bx, 104, bx + 20, 164)], float)
        for ti, di in match(truth, out.xyxy, 0.5):
            (ids_a if ti == 0 else ids_b).add(int(out.track_id[di]))
    assert len(ids_a) == 1 and len(ids_b) == 1 and ids_a != ids_b


def _frames(url: str) -> tuple[ThermalScene, list[ThermalFrame]]:
    scene = ThermalScene.from_url(url)
    return scene, [
        ThermalFrame("sim", i, i / scene.params.fps, scene.render(i)[0], SIM_SCALE, SIM_OFFSET)
        for i in range(scene.frame_count)
    ]


class CountingDetector(Detector):
    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, gray8: np.ndarray) -> Detections:
        self.calls += 1
        return Detections.empty()


def test_gating_skips_quiet_frames_and_opens_on_a_walker() -> None:
    det = CountingDetector()
    pipe = TrackingPipeline(det, Tracker(), MotionHeatGate(keepalive_s=10.0))  # no heat proposals: the gate
    _, quiet = _frames("sim://quiet?frames=200&width=320&height=240")
    for f in quiet:
        pipe.process(f)
    assert det.calls <= 4, pipe.counters.gate_reasons  # the first frame and a keepalive every 10 s
    _, busy = _frames("sim://crossing?frames=30&width=320&height=240")
    for f in busy:
        pipe.process(f)
    assert det.calls >= 4 + 15, pipe.counters.gate_reasons


@pytest.mark.slow
def test_walkers_scene_recall_precision_and_stable_ids_through_crossings(default_ov640: Path) -> None:
    """Acceptance: >= 300 frames, 3 walkers, the default model and the product's pipeline settings."""
    config = AgentConfig.model_validate({"site": "t", "box": "t"})
    detector = YoloDetector(config.detector.model_copy(update={"model": default_ov640}))
    assert isinstance(detector.config, YoloConfig)
    pipeline = build_pipeline(config, detector)
    scene = ThermalScene.from_url("sim://walkers")
    assert scene.frame_count >= 300
    score = TrackScore()
    ids_by_frame: list[dict[int, int]] = []
    boxes_by_frame: list[dict[int, np.ndarray]] = []
    for i in range(scene.frame_count):
        counts, truth = scene.render(i)
        result = pipeline.process(ThermalFrame("sim", i, i / scene.params.fps, counts, SIM_SCALE, SIM_OFFSET))
        people = [t for t in truth if t.label == "person" and t.visible >= 0.5]
        hidden = np.array([t.bbox for t in truth if t.label == "person" and t.visible < 0.5]).reshape(-1, 4)
        tb = np.array([t.bbox for t in people]).reshape(-1, 4)
        # every confirmed track: the class is perception's business, the boxes and ids the tracker's
        tracks = result.tracks
        score.add(tb, np.array([t.track_id for t in people]), tracks.xyxy, tracks.track_id, ignore=hidden)
        ids_by_frame.append({people[a].track_id: int(tracks.track_id[b]) for a, b in match(tb, tracks.xyxy)})
        boxes_by_frame.append({t.track_id: np.array(t.full_bbox) for t in truth})
    assert len({t for frame in boxes_by_frame for t in frame}) >= 3
    print(f"recall {score.score.recall:.3f} precision {score.score.precision:.3f} switches {score.id_switches}")
    assert score.score.recall >= 0.9 and score.score.precision >= 0.9

    # Walkers 1 and 2 pass each other (at 15 and 19.5 m: the near one hides part of the far one). Through
    # each such crossing, each keeps the id it had before.
    crossings = 0
    overlapping = [bool(box_iou(f[1][None], f[2][None])[0, 0] > 0) if 1 in f and 2 in f else False
                   for f in boxes_by_frame]
    i = 0
    while i < len(overlapping):
        if not overlapping[i]:
            i += 1
            continue
        j = i
        while j < len(overlapping) and overlapping[j]:
            j += 1
        before = next(ids_by_frame[k] for k in range(i - 1, -1, -1) if {1, 2} <= ids_by_frame[k].keys())
        after = next(ids_by_frame[k] for k in range(j, len(ids_by_frame)) if {1, 2} <= ids_by_frame[k].keys())
        if i > 0 and not _walker3_near(boxes_by_frame[max(0, i - 5):j + 5]):
            assert (after[1], after[2]) == (before[1], before[2]), f"ids changed in the crossing at frames {i}-{j}"
            crossings += 1
        i = j
    assert crossings >= 1
    # the three-way knot near the end costs a few (the whole frame through the model every frame, the old way, costs
    # 7 on this scene as the simulator now draws it, sub-pixel); more is a regression
    assert score.id_switches <= 10


def _walker3_near(frames: list[dict[int, np.ndarray]]) -> bool:
    """The third walker is tangled with the pair: a three-way knot is scored by recall and id switches
    (reported by the benchmark), not by this two-person check."""
    return any(3 in f and (box_iou(f[3][None], np.stack([f[1], f[2]])) > 0).any() for f in frames if 1 in f and 2 in f)
