"""The detector interface, the class map to the product's labels, and the registry of backends."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from detectors.types import MODEL_LABELS, Detections
from detectors.verify import mosaic, split


class DetectorUnavailable(RuntimeError):
    """A model cannot be loaded or run: missing file, wrong format, missing runtime."""


# Model class names (lower-case) to product labels. Names mapped to nothing are dropped.
FALL_MODEL_CLASSES: dict[str, str] = {"normal": "person", "fall": "person"}
COCO_CLASSES: dict[str, str] = {
    "person": "person",
    "car": "vehicle", "truck": "vehicle", "bus": "vehicle", "motorcycle": "vehicle", "bicycle": "vehicle",
    "dog": "animal", "horse": "animal", "cow": "animal", "sheep": "animal", "cat": "animal",
    "bear": "animal", "elephant": "animal", "zebra": "animal", "giraffe": "animal", "bird": "animal",
}


def class_lookup(model_names: Mapping[int, str], class_map: Mapping[str, str] | None) -> np.ndarray:
    """An array from model class index to product label index (-1: drop this class).

    With no explicit map, the model's own names choose between the fall model's and COCO's.
    """
    names = {int(k): str(v).lower() for k, v in model_names.items()}
    if class_map is None:
        class_map = FALL_MODEL_CLASSES if set(names.values()) <= set(FALL_MODEL_CLASSES) else COCO_CLASSES
    cmap = {k.lower(): v for k, v in class_map.items()}
    for model_name, label in cmap.items():
        if label not in MODEL_LABELS:
            raise ValueError(f"class map: {model_name!r} -> {label!r}: label must be one of {', '.join(MODEL_LABELS)}")
    size = max(names, default=-1) + 1
    lookup = np.full(size, -1, dtype=np.int64)
    for idx, name in names.items():
        if name in cmap:
            lookup[idx] = MODEL_LABELS.index(cmap[name])
    if not (lookup >= 0).any():
        raise ValueError(
            f"class map maps none of the model's classes ({', '.join(sorted(set(names.values())))}) "
            f"to {', '.join(MODEL_LABELS)}; add a class_map entry"
        )
    return lookup


class Detector(abc.ABC):
    """Turns a white-hot 8-bit grey frame into detections with product labels."""

    name: ClassVar[str]

    @abc.abstractmethod
    def detect(self, gray8: np.ndarray) -> Detections: ...

    def detect_prioritized(self, gray8: np.ndarray, priority: int) -> Detections:
        """``detect``, with how urgent the frame is (``detectors.engine``: keepalive 0, motion 1, live track 2) for
        detectors shared by several cameras; others ignore it."""
        return self.detect(gray8)

    def detect_cells(self, cells: list[np.ndarray], grid: int, priority: int = 1) -> list[Detections]:
        """Detections in each of several equal square crops (``detectors.verify``), ``grid`` x ``grid`` of them
        packed into one image per inference; boxes in each cell's own pixels. A detector shared by several cameras
        packs the crops of all of them (``detectors.engine``)."""
        out: list[Detections] = []
        per = grid * grid
        for k in range(0, len(cells), per):
            part = cells[k:k + per]
            out += split(self.detect_prioritized(mosaic(part, grid), priority), len(part), part[0].shape[0], grid)
        return out

    def inference_modes(self) -> dict[str, int] | None:
        """Inferences run alone on all threads and beside others (``detectors.ovnative``), for health; None for
        a detector that runs one way only."""
        return None

    def load(self) -> None:  # noqa: B027 - optional: backends that load lazily do it here
        """Load the model now, so a missing or broken one is reported before any frame is read."""

    def warmup(self) -> None:
        """Run once on a blank frame so the first real frame does not pay for lazy initialisation."""
        self.detect(np.zeros((64, 64), dtype=np.uint8))


class TwoScales(Detector):
    """A model for whole frames and a smaller one for crops (``detect_cells``), as one ``Detector``: the crops of a
    2 x 2 mosaic of 160 px cells are exactly a 320 model's input, where a 640 model would enlarge them again."""

    name = "two-scales"

    def __init__(self, whole: Detector, crops: Detector) -> None:
        self.whole, self.crops = whole, crops

    def load(self) -> None:
        self.whole.load()
        if self.crops is not self.whole:
            self.crops.load()

    def detect(self, gray8: np.ndarray) -> Detections:
        return self.whole.detect(gray8)

    def detect_prioritized(self, gray8: np.ndarray, priority: int) -> Detections:
        return self.whole.detect_prioritized(gray8, priority)

    def detect_cells(self, cells: list[np.ndarray], grid: int, priority: int = 1) -> list[Detections]:
        return self.crops.detect_cells(cells, grid, priority)

    def inference_modes(self) -> dict[str, int] | None:
        return self.whole.inference_modes()


DETECTORS: dict[str, Callable[[Any], Detector]] = {}


def register(type_name: str) -> Callable[[Callable[[Any], Detector]], Callable[[Any], Detector]]:
    def deco(factory: Callable[[Any], Detector]) -> Callable[[Any], Detector]:
        DETECTORS[type_name] = factory
        return factory

    return deco


def create_detector(config: Any) -> Detector:
    """The detector for a config object whose ``type`` names a registered backend."""
    factory = DETECTORS.get(config.type)
    if factory is None:
        raise DetectorUnavailable(f"unknown detector type {config.type!r}; known: {', '.join(sorted(DETECTORS))}")
    return factory(config)
