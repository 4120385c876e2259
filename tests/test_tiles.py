"""Tiles for small far targets (detectors/tiles.py): where the tiles lie, that a frame which fits the network is
left to the inner detector, that tile boxes land in frame coordinates with seam-cut ones dropped, and, with the
real 320 model on sim://border, that tiles find a far person the whole-frame pass misses without reporting
anyone twice."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.base import Detector
from detectors.evaluate import match
from detectors.tiles import OVERLAP, TiledDetector, tile_origins
from detectors.types import LABELS, Detections, box_iou
from detectors.yolo import YoloConfig, YoloDetector
from sensors.frames import ThermalFrame
from sensors.sim import SIM_OFFSET, SIM_SCALE, ThermalScene, TruthObject

PERSON = LABELS.index("person")


class BlobDetector(Detector):
    """A stand-in model that sees every white (255) blob as a person and records the frames it was given:
    what a tile sees of a blob is exactly what lies in the crop, so cut blobs give cut boxes."""

    name = "blobs"

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def detect(self, gray8: np.ndarray) -> Detections:
        self.seen.append(gray8)
        n, _, stats, _ = cv2.connectedComponentsWithStats((gray8 == 255).astype(np.uint8))
        boxes = [(x, y, x + w, y + h) for x, y, w, h, _ in stats[1:n].tolist()]
        if not boxes:
            return Detections.empty()
        return Detections(np.array(boxes, np.float32), np.full(len(boxes), 0.9, np.float32),
                          np.full(len(boxes), PERSON, np.int64))


@pytest.mark.parametrize(("length", "tile"), [(640, 320), (480, 320), (1280, 640), (960, 640), (1000, 320),
                                              (321, 320), (1920, 640), (4096, 640)])
def test_tile_origins_cover_the_length_with_the_overlap_and_never_past_the_end(length: int, tile: int) -> None:
    origins = tile_origins(length, tile)
    assert origins[0] == 0, origins
    assert origins[-1] + tile == length, f"the last tile must end at the frame's edge: {origins} x {tile}"
    assert all(0 <= o <= length - tile for o in origins), origins
    overlaps = [a + tile - b for a, b in zip(origins, origins[1:], strict=False)]
    # rounding origins to whole pixels may take one pixel off the overlap
    assert all(OVERLAP * tile - 1 <= o < tile for o in overlaps), f"overlaps {overlaps} of {tile}-pixel tiles"


@pytest.mark.parametrize(("length", "tile"), [(320, 320), (100, 320), (640, 640)])
def test_a_length_that_fits_one_tile_is_one_tile(length: int, tile: int) -> None:
    assert tile_origins(length, tile) == [0]


@pytest.mark.parametrize("shape", [(240, 320), (320, 320), (200, 100)])
def test_a_frame_that_fits_the_network_is_the_inner_detector_alone(shape: tuple[int, int]) -> None:
    frame = np.zeros(shape, np.uint8)
    frame[20:60, 10:30] = 255
    frame[100:130, 50:70] = 255
    inner = BlobDetector()
    tiled = TiledDetector(inner, tile=320)
    assert tiled.tiles(shape) == []
    found = tiled.detect(frame)
    assert len(inner.seen) == 1 and inner.seen[0] is frame, "one call, on the frame itself"
    alone = BlobDetector().detect(frame)
    assert sorted(found.xyxy.tolist()) == sorted(alone.xyxy.tolist())


@pytest.mark.parametrize("whole", [True, False])
def test_tile_boxes_land_in_frame_coordinates_and_seam_cut_ones_are_dropped(whole: bool) -> None:
    """640x480 in 320-pixel tiles: origins x 0, 160, 320 and y 0, 160. One blob lies across the seam at x 320
    (cut in the first column of tiles, whole in the second), one across the seam at y 320 (cut in the top row,
    whole in the bottom one), one inside a single tile: each is reported once, where it is."""
    frame = np.zeros((480, 640), np.uint8)
    blobs = [(300, 40, 340, 120), (500, 300, 530, 350), (30, 20, 60, 90)]
    for x1, y1, x2, y2 in blobs:
        frame[y1:y2, x1:x2] = 255
    inner = BlobDetector()
    found = TiledDetector(inner, tile=320, whole=whole).detect(frame)
    assert [s.shape for s in inner.seen] == [(480, 640)] * whole + [(320, 320)] * 6
    assert sorted(found.xyxy.tolist()) == sorted([list(map(float, b)) for b in blobs]), found.xyxy.tolist()


def _gray(scene: ThermalScene, index: int) -> tuple[np.ndarray, list[TruthObject]]:
    counts, truths = scene.render(index)
    return ThermalFrame("border", index, index / scene.params.fps, counts, SIM_SCALE, SIM_OFFSET).gray8(), truths


@pytest.mark.slow
def test_tiles_find_a_far_person_the_whole_frame_misses_and_report_nobody_twice(default_ov320: Path) -> None:
    inner = YoloDetector(YoloConfig(model=default_ov320, imgsz=320, threads=2))
    tiled = TiledDetector(inner, tile=320, iou=inner.config.iou)
    scene = ThermalScene.from_url("sim://border")  # 640x480, twice the 320 network's input
    gained: tuple[int, float] | None = None  # (frame, metres out) of a person only the tiles found
    scanned = 0
    for index in range(0, min(scene.frame_count, 200), 4):
        gray, truths = _gray(scene, index)
        people = [t for t in truths if t.label == "person" and t.visible >= 0.5]
        truth = np.array([t.bbox for t in people], np.float64).reshape(-1, 4)
        whole, merged = inner.detect(gray), tiled.detect(gray)
        boxes = merged.xyxy[merged.label_id == PERSON]
        pair_iou = box_iou(boxes, boxes) - np.eye(len(boxes))
        assert not (pair_iou > 0.5).any(), f"frame {index}: one person reported twice: {boxes.round().tolist()}"
        if len(truth):
            per_person = (box_iou(truth, boxes) >= 0.5).sum(axis=1)
            assert per_person.max(initial=0) <= 1, f"frame {index}: two boxes on one person: {boxes.tolist()}"
        found_whole = {i for i, _ in match(truth, whole.xyxy[whole.label_id == PERSON], 0.5)}
        found_tiled = {i for i, _ in match(truth, boxes, 0.5)}
        for i in sorted(found_tiled - found_whole):
            distance = math.hypot(*people[i].ground_xy)
            if distance >= 25.0 and gained is None:
                gained = (index, distance)
        scanned += 1
        if gained is not None and scanned >= 10:  # enough frames for the duplicate checks too
            break
    assert gained is not None, f"no frame in the first {scanned * 4} of sim://border where the tiles find a " \
                               "person 25 m or more out that the whole-frame pass misses"
