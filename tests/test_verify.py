"""Verification at the right scale: crops planned around targets, packed into mosaics, and the model's boxes
mapped back to the full-resolution frame (with the real model and a 1280 x 1024 camera: test_far_sight)."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.types import Detections
from detectors.verify import CELL_PX, PAD_VALUE, Crop, cut, mosaic, plan, split, to_frame


def test_a_crop_shows_a_far_person_at_the_size_the_model_needs() -> None:
    (crop,) = plan(np.array([[300, 200, 304, 210]], np.float32), (480, 640))
    assert crop.side == pytest.approx(25.0)  # 2.5 times the 10 px person
    assert crop.scale * 10 == pytest.approx(64.0)  # ... shown 64 px tall in a 160 px cell
    assert (crop.x + crop.side / 2, crop.y + crop.side / 2) == pytest.approx((302.0, 205.0))


def test_a_crawler_seen_side_on_fills_the_cell_instead_of_being_shrunk_to_its_length() -> None:
    (crop,) = plan(np.array([[100, 334, 193, 356]], np.float32), (480, 640))
    assert crop.side == pytest.approx(1.4 * 93)
    assert 22 * crop.scale >= 25  # the body is as thick as a far person is tall, at least


def test_people_walking_together_share_a_crop_and_people_apart_get_their_own() -> None:
    together = plan(np.array([[100, 100, 110, 130], [112, 101, 121, 130]], np.float32), (480, 640))
    assert len(together) == 1
    x1, y1 = together[0].x, together[0].y
    assert x1 <= 100 and x1 + together[0].side >= 121 and y1 <= 100 and y1 + together[0].side >= 130
    apart = plan(np.array([[100, 100, 110, 130], [400, 300, 410, 330]], np.float32), (480, 640))
    assert len(apart) == 2


def test_a_crop_off_the_frames_edge_is_padded_not_shifted() -> None:
    frame = np.full((100, 100), 200, np.uint8)
    cell = cut(frame, Crop(-20.0, -20.0, 40.0))
    assert cell.shape == (CELL_PX, CELL_PX)
    assert cell[10, 10] == PAD_VALUE and cell[150, 150] == 200  # the frame starts half way into the cell


def test_boxes_found_on_a_mosaic_go_back_to_their_crop_and_the_frame() -> None:
    crops = [Crop(0.0, 0.0, 80.0), Crop(500.0, 300.0, 40.0), Crop(200.0, 100.0, 320.0)]
    cells = [np.zeros((CELL_PX, CELL_PX), np.uint8) for _ in crops]
    assert mosaic(cells).shape == (2 * CELL_PX, 2 * CELL_PX)
    found = Detections(np.array([[200, 40, 240, 120],  # cell 1 (top right), whole
                                 [20, 180, 60, 300],  # cell 2 (bottom left), whole
                                 [150, 20, 170, 60],  # straddles cells 0 and 1: cut by the edge, dropped
                                 [300, 300, 330, 330]], np.float32),  # cell 3: no crop there
                       np.array([0.9, 0.8, 0.7, 0.6], np.float32), np.zeros(4, np.int64))
    per_cell = split(found, len(crops), CELL_PX)
    assert [len(d) for d in per_cell] == [0, 1, 1]
    back = to_frame(per_cell[1], crops[1])  # cell px 40..80 of a 40 px crop at 4 cell px a frame px
    np.testing.assert_allclose(back.xyxy[0], [500 + 40 / 4, 300 + 40 / 4, 500 + 80 / 4, 300 + 120 / 4])
    back2 = to_frame(per_cell[2], crops[2])  # 320 px crop: 0.5 cell px a frame px
    np.testing.assert_allclose(back2.xyxy[0], [200 + 20 * 2, 100 + 20 * 2, 200 + 60 * 2, 100 + 140 * 2])

