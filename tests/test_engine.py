"""The shared detection engine: a camera with a live track is served within a second while busy cameras
compete, no camera starves, a camera whose source died does not stop the others, and the engine's answers
are the detector's. The OpenVINO runtime run directly finds the same boxes as ultralytics, and the INT8
export finds the same people as FP32 in the real photographs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from detectors.base import Detector
from detectors.engine import KEEPALIVE, MOTION, TRACKING, EngineStopped, SharedEngine
from detectors.evaluate import match
from detectors.types import Detections
from detectors.verify import CELL_PX, PAD_VALUE
from detectors.yolo import YoloConfig, YoloDetector
from edge_agent.ops.quantize import photographs
from edge_agent.perception.models import int8_path
from tests.brokers import wait_for
from tests.conftest import MODELS_DIR


class SlowDetector(Detector):
    """A stand-in model that takes ``ms`` per frame (a real one's time on a slow host) and says which frame
    it saw: the tests here are about scheduling, not about detecting."""

    name = "slow"

    def __init__(self, ms: float) -> None:
        self.ms = ms
        self.calls = 0
        self.lock = threading.Lock()

    def detect(self, gray8: np.ndarray) -> Detections:
        time.sleep(self.ms / 1000.0)
        with self.lock:
            self.calls += 1
        v = float(gray8[0, 0])
        return Detections(np.array([[v, v, v + 1, v + 1]], np.float32), np.array([0.9], np.float32),
                          np.array([0], np.int64))


def _camera(engine: SharedEngine, name: str, priority: int, stop: threading.Event, served: list[float],
            value: int = 1) -> threading.Thread:
    frame = np.full((8, 8), value, np.uint8)

    def run() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                dets = engine.detect(name, frame, priority)
            except EngineStopped:
                return
            assert dets.xyxy[0, 0] == value  # its own answer, not another camera's
            served.append(time.monotonic() - t0)

    t = threading.Thread(target=run, name=f"cam-{name}", daemon=True)
    t.start()
    return t


def test_a_camera_with_a_live_track_is_served_within_a_second_while_six_busy_cameras_compete() -> None:
    # 6 busy cameras keep 2 workers saturated (each asks again the moment it is answered)
    engine = SharedEngine(SlowDetector(ms=80), workers=2).start()
    stop = threading.Event()
    busy: dict[str, list[float]] = {f"busy{i}": [] for i in range(6)}
    tracking: list[float] = []
    quiet: list[float] = []
    threads = [_camera(engine, name, MOTION, stop, served, value=i + 10)
               for i, (name, served) in enumerate(busy.items())]
    try:
        assert wait_for(lambda: sum(map(len, busy.values())) >= 12)  # the queue is full and turning
        threads.append(_camera(engine, "tracked", TRACKING, stop, tracking, value=3))
        threads.append(_camera(engine, "quiet", KEEPALIVE, stop, quiet, value=4))
        assert wait_for(lambda: len(tracking) >= 20 and len(quiet) >= 3)
    finally:
        stop.set()
        engine.stop()
        for t in threads:
            t.join(5)
    # the tracked camera waits at most for the frames already being inferred: under 1 s, in fact ~2 frames
    assert max(tracking) < 1.0, max(tracking)
    assert float(np.median(tracking)) < 0.3
    # the busy cameras share the rest evenly; the keepalive camera is not starved (promoted after 1 s)
    counts = [len(v) for v in busy.values()]
    assert min(counts) >= 0.6 * max(counts), counts
    assert max(quiet) < 2.0, max(quiet)
    assert engine.counters.by_priority[TRACKING] >= 20


def test_the_engine_goes_on_when_a_camera_dies_and_stopping_wakes_who_waits() -> None:
    engine = SharedEngine(SlowDetector(ms=20), workers=2).start()
    stop_a, stop_b = threading.Event(), threading.Event()
    a: list[float] = []
    b: list[float] = []
    ta = _camera(engine, "a", MOTION, stop_a, a, value=1)
    tb = _camera(engine, "b", MOTION, stop_b, b, value=2)
    try:
        assert wait_for(lambda: len(a) >= 5 and len(b) >= 5)
        stop_a.set()  # camera a's source died: it stops asking
        ta.join(5)
        before = len(b)
        assert wait_for(lambda: len(b) >= before + 20)
    finally:
        stop_b.set()
        engine.stop()
        tb.join(5)
    with pytest.raises(EngineStopped):
        engine.detect("c", np.zeros((8, 8), np.uint8))


# -- the real model: the direct OpenVINO runtime and INT8 -------------------------------------------------


@pytest.mark.parametrize("imgsz", [320, 640])
def test_openvino_run_directly_finds_what_ultralytics_finds(imgsz: int, default_ov640: Path) -> None:
    folder = MODELS_DIR / "person-fall-0.1.2" / f"best_{imgsz}_openvino_model"
    base = YoloConfig(model=folder, imgsz=imgsz)
    native = YoloDetector(base.model_copy(update={"runtime": "openvino"}))
    ultra = YoloDetector(base.model_copy(update={"runtime": "ultralytics"}))
    assert native.runtime == "openvino" and ultra.runtime == "ultralytics"
    for name, img in photographs().items():
        a, b = native.detect(img), ultra.detect(img)
        assert len(a) == len(b), name
        pairs = match(b.xyxy, a.xyxy, 0.95)
        assert len(pairs) == len(b), name
        for i, j in pairs:
            assert abs(float(a.confidence[j]) - float(b.confidence[i])) < 0.01, name
            assert a.label_id[j] == b.label_id[i]


@pytest.mark.parametrize("imgsz", [320, 640])
def test_int8_and_fp32_find_the_same_people_in_the_real_photographs(imgsz: int, default_ov640: Path) -> None:
    q = int8_path(MODELS_DIR, imgsz)
    if not (q / "best.xml").exists():
        pytest.fail(f"{q} is missing: run './dev setup' (model export makes the INT8 model)", False)
    fp32 = YoloDetector(YoloConfig(model=MODELS_DIR / "person-fall-0.1.2" / f"best_{imgsz}_openvino_model",
                                   imgsz=imgsz))
    int8 = YoloDetector(YoloConfig(model=q, imgsz=imgsz))
    photos = photographs()
    assert set(photos) == {"bus", "zidane", "astronaut", "camera"}
    for name, img in photos.items():
        want = fp32.detect(img)
        got = int8.detect(img)
        people = want.xyxy[want.confidence >= 0.4]
        assert len(people) >= 1, f"{name}: FP32 finds nobody sure; the photograph is not a test of anything"
        assert len(match(people, got.xyxy, 0.5)) == len(people), (name, want, got)


def test_a_lone_frame_runs_on_all_threads_and_frames_side_by_side_share_the_streams(default_ov640: Path) -> None:
    folder = MODELS_DIR / "person-fall-0.1.2" / "best_640_openvino_model"
    det = YoloDetector(YoloConfig(model=folder, imgsz=640, threads=2, parallel=2))
    streams_only = YoloDetector(YoloConfig(model=folder, imgsz=640, threads=2, parallel=2, lone_latency=False))
    img = photographs()["bus"]
    alone = det.detect(img)
    assert det.inference_modes() == {"alone": 1, "beside_others": 0}
    want = streams_only.detect(img)
    assert streams_only.inference_modes() is None  # one compilation only
    assert len(want) >= 4  # the people in the bus photograph

    def same(a: Detections) -> bool:  # the two compilations find the same boxes
        pairs = match(want.xyxy, a.xyxy, 0.95)
        return len(a) == len(want) and len(pairs) == len(want) and all(
            abs(float(a.confidence[j]) - float(want.confidence[i])) < 0.01 for i, j in pairs)

    assert same(alone)
    # two cameras' frames at once: the second one in runs beside the first on a throughput stream
    stop, results, errors = threading.Event(), [], []

    def camera() -> None:
        try:
            while not stop.is_set():
                results.append(det.detect(img))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=camera) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: (det.inference_modes() or {}).get("beside_others", 0) >= 2 or errors, 120)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors
    assert all(same(r) for r in results)


class Quadrants(Detector):
    """A stand-in crops model: in each quarter of its input that is not the mosaic's grey, one box whose confidence
    is that quarter's value (so each crop's answer can be told apart); counts its inferences."""

    name = "quadrants"

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []

    def detect(self, gray8: np.ndarray) -> Detections:
        self.inputs.append(gray8)
        half = gray8.shape[0] // 2
        boxes, conf = [], []
        for r in range(2):
            for c in range(2):
                v = int(gray8[r * half + half // 2, c * half + half // 2])
                if v != PAD_VALUE:
                    x, y = c * half + half // 4, r * half + half // 4
                    boxes.append([x, y, x + half // 2, y + half // 2])
                    conf.append(v / 255.0)
        return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(conf, np.float32),
                          np.zeros(len(conf), np.int64))


class Held(Detector):
    """A whole-frame model that holds the engine's one worker until it is let go."""

    name = "held"

    def __init__(self) -> None:
        self.entered, self.go = threading.Event(), threading.Event()

    def detect(self, gray8: np.ndarray) -> Detections:
        self.entered.set()
        self.go.wait(10)
        return Detections.empty()


def test_crops_of_two_cameras_waiting_together_share_one_mosaic_and_each_gets_its_own_boxes() -> None:
    whole, crops = Held(), Quadrants()
    engine = SharedEngine(whole, workers=1, crops=crops)
    engine.start()
    results: dict[str, list[Detections]] = {}
    try:
        blocker = threading.Thread(target=engine.detect, args=("mast-a", np.zeros((64, 64), np.uint8)))
        blocker.start()
        assert whole.entered.wait(5)  # the one worker is busy with a whole frame

        def cells(name: str, values: list[int]) -> None:
            results[name] = engine.detect_cells(name, [np.full((CELL_PX, CELL_PX), v, np.uint8) for v in values],
                                                2)

        waiting = [threading.Thread(target=cells, args=("mast-b", [40])),
                   threading.Thread(target=cells, args=("mast-c", [80, 200]))]
        for t in waiting:
            t.start()
        assert wait_for(lambda: len(engine._pending) == 2, 5)  # both cameras' crops queued behind it
        whole.go.set()
        for t in [blocker, *waiting]:
            t.join(5)
    finally:
        engine.stop()
    assert len(crops.inputs) == 1 and crops.inputs[0].shape == (2 * CELL_PX, 2 * CELL_PX)  # one inference
    assert [round(float(d.confidence[0]) * 255) for d in results["mast-b"]] == [40]
    assert [round(float(d.confidence[0]) * 255) for d in results["mast-c"]] == [80, 200]
    c = engine.counters
    assert (c.crops, c.mosaics, c.shared_mosaics, c.whole, c.served) == (3, 1, 1, 1, 3)
