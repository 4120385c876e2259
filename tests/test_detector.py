"""The real default model on real photographs, and the detector's errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.base import COCO_CLASSES, DetectorUnavailable, class_lookup
from detectors.evaluate import match
from detectors.yolo import YoloConfig, YoloDetector

# Every person in ultralytics' bundled photographs, labelled by hand (x1, y1, x2, y2 in pixels).
PEOPLE = {
    "bus.jpg": [(50, 400, 245, 905), (220, 405, 345, 870), (665, 370, 810, 880), (0, 550, 80, 880)],
    "zidane.jpg": [(120, 195, 1145, 720), (745, 40, 1140, 720)],
}
VARIANTS = {
    "white-hot": lambda g: g,  # a plain grey photograph reads like a white-hot frame
    "black-hot": lambda g: 255 - g,
}


@pytest.fixture(scope="module")
def detector(default_ov640: Path) -> YoloDetector:
    """The default: the pinned person weights exported to OpenVINO at 640."""
    det = YoloDetector(YoloConfig(model=default_ov640, imgsz=640, confidence=0.2, refine_boxes=False))
    det.load()
    return det


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("image", sorted(PEOPLE))
def test_default_model_finds_every_person(detector: YoloDetector, assets: Path, image: str, variant: str) -> None:
    grey = cv2.cvtColor(cv2.imread(str(assets / image)), cv2.COLOR_BGR2GRAY)
    dets = detector.detect(VARIANTS[variant](grey))
    truth = np.array(PEOPLE[image], dtype=float)
    found = dets.xyxy[dets.label_id == 0]
    pairs = match(truth, found, iou=0.5)
    missed = [PEOPLE[image][i] for i in range(len(truth)) if i not in {p[0] for p in pairs}]
    assert not missed, f"{image} {variant} ({detector.backend}): missed {missed}; found {found.round().tolist()}"
    assert set(dets.labels()) == {"person"}


def test_pt_weights_find_the_same_people_as_the_export(default_ov640: Path, default_pt: Path, assets: Path) -> None:
    grey = cv2.cvtColor(cv2.imread(str(assets / "zidane.jpg")), cv2.COLOR_BGR2GRAY)
    a = YoloDetector(YoloConfig(model=default_ov640, imgsz=640, confidence=0.3)).detect(grey)
    b = YoloDetector(YoloConfig(model=default_pt, imgsz=640, confidence=0.3)).detect(grey)
    # the export letterboxes to a fixed 640x640 and .pt to 640x384, so boxes differ by some pixels
    assert len(a) == len(b) == 2
    assert len(match(a.xyxy, b.xyxy, iou=0.7)) == 2


def test_missing_model_names_the_file_and_the_fix(tmp_path: Path) -> None:
    det = YoloDetector(YoloConfig(model=tmp_path / "nope.pt"))
    with pytest.raises(DetectorUnavailable, match=r"nope\.pt does not exist.*model fetch"):
        det.detect(np.zeros((64, 64), np.uint8))


def test_corrupt_model_file_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(DetectorUnavailable, match=r"broken\.pt cannot be loaded"):
        YoloDetector(YoloConfig(model=bad)).load()


def test_unsupported_model_format(tmp_path: Path) -> None:
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"x")
    with pytest.raises(DetectorUnavailable, match="unsupported format '.tflite'"):
        YoloDetector(YoloConfig(model=bad)).load()


def test_openvino_folder_without_xml(tmp_path: Path) -> None:
    folder = tmp_path / "best_openvino_model"
    folder.mkdir()
    with pytest.raises(DetectorUnavailable, match="no OpenVINO .xml"):
        YoloDetector(YoloConfig(model=folder)).load()


def test_class_map_to_product_labels() -> None:
    coco = {0: "person", 1: "bicycle", 2: "car", 16: "dog", 56: "chair"}
    lookup = class_lookup(coco, None)
    assert lookup[0] == 0 and lookup[2] == 1 and lookup[16] == 2 and lookup[56] == -1
    fall = class_lookup({0: "Normal", 1: "Fall"}, None)
    assert fall.tolist() == [0, 0]
    assert class_lookup(coco, {"car": "vehicle"}).tolist()[2] == 1
    with pytest.raises(ValueError, match="label must be one of"):
        class_lookup(coco, {"car": "truck"})
    with pytest.raises(ValueError, match="maps none of the model's classes"):
        class_lookup({0: "chair"}, None)
    assert COCO_CLASSES["truck"] == "vehicle"


def test_detector_rejects_colour_input(default_ov320: Path) -> None:
    det = YoloDetector(YoloConfig(model=default_ov320, imgsz=320))
    with pytest.raises(ValueError, match="2-D uint8"):
        det.detect(np.zeros((64, 64, 3), np.uint8))
