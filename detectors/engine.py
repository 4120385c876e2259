"""One detector shared by many cameras: a small scheduler in front of it.

Each camera asks for one frame at a time (its detection stage waits for the answer, and its reader keeps only
the newest frame meanwhile). ``workers`` threads serve the waiting requests, so that many frames are inferred at
once (the OpenVINO model is compiled for as many streams; OpenVINO releases the GIL). Who goes next:

- the highest priority first: a frame of a camera with a live track (``TRACKING``) before one with motion or
  heat (``MOTION``) before a gated keepalive (``KEEPALIVE``);
- within a priority, the request that has waited longest (so a busy camera cannot starve a quiet one: it
  never has more than one request waiting);
- a request that has waited ``promote_after_s`` counts as the next priority up, so keepalives of quiet cameras
  still go through under load.

A camera asks either for a whole frame (the sweep, on ``detector``) or for crops around its heat proposals and
tracks (``detect_cells``, on ``crops``: the small network the crops are cut for). Crops of several cameras that
wait at the same time share an inference: a worker taking one camera's crops fills the rest of its mosaic with
the crops of the next cameras in line.

A camera whose source died simply stops asking; the engine serves the others. ``stop()`` wakes every waiting
caller with ``EngineStopped``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from detectors.base import Detector, TwoScales
from detectors.types import Detections

KEEPALIVE, MOTION, TRACKING = 0, 1, 2
PROMOTE_AFTER_S = 1.0


class EngineStopped(RuntimeError):
    """The shared engine stopped while a frame waited."""


@dataclass(slots=True)
class _Request:
    camera: str
    gray8: np.ndarray | None  # a whole frame, or
    cells: list[np.ndarray] | None  # crops of one size, ``grid`` x ``grid`` to an inference
    grid: int
    priority: int
    since: float
    done: threading.Event = field(default_factory=threading.Event)
    result: Detections | list[Detections] | None = None
    error: BaseException | None = None
    started: float = 0.0


@dataclass(slots=True)
class EngineCounters:
    served: int = 0  # requests: whole frames and sets of crops
    whole: int = 0  # whole frames through the model
    errors: int = 0
    wait_ms_total: float = 0.0
    max_wait_ms: float = 0.0
    by_priority: dict[int, int] = field(default_factory=dict)
    crops: int = 0  # crops verified
    mosaics: int = 0  # inferences they took
    shared_mosaics: int = 0  # of which held crops of more than one camera


class SharedEngine:
    """A thread-safe ``Detector`` served to many cameras by ``workers`` threads; see the module docstring."""

    def __init__(self, detector: Detector, workers: int = 2, promote_after_s: float = PROMOTE_AFTER_S,
                 clock: Callable[[], float] = time.monotonic, crops: Detector | None = None) -> None:
        if isinstance(detector, TwoScales):
            crops = crops or detector.crops
            detector = detector.whole
        self.detector = detector
        self.crops = crops or detector
        self.workers = max(1, workers)
        self.promote_after_s = promote_after_s
        self.clock = clock
        self.counters = EngineCounters()
        self._pending: dict[str, _Request] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self._threads: list[threading.Thread] = []

    def start(self) -> SharedEngine:
        self.detector.load()
        if self.crops is not self.detector:
            self.crops.load()
        for i in range(self.workers):
            t = threading.Thread(target=self._serve, name=f"detect-engine-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            for req in self._pending.values():
                req.error = EngineStopped("the detection engine stopped")
                req.done.set()
            self._pending.clear()
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    def client(self, camera: str) -> EngineClient:
        """The ``Detector`` one camera's pipeline uses."""
        return EngineClient(self, camera)

    def detect(self, camera: str, gray8: np.ndarray, priority: int = MOTION) -> Detections:
        """Wait for this camera's frame to be detected (one frame per camera at a time)."""
        result = self._wait(_Request(camera, gray8, None, 1, priority, self.clock()))
        assert isinstance(result, Detections)
        return result

    def detect_cells(self, camera: str, cells: list[np.ndarray], grid: int, priority: int = MOTION) -> list[Detections]:
        """Wait for this camera's crops to be detected (with other cameras' crops in the same mosaics)."""
        if not cells:
            return []
        result = self._wait(_Request(camera, None, cells, grid, priority, self.clock()))
        assert isinstance(result, list)
        return result

    def _wait(self, req: _Request) -> Detections | list[Detections]:
        camera = req.camera
        with self._cond:
            if self._stopped:
                raise EngineStopped("the detection engine stopped")
            if camera in self._pending:
                raise RuntimeError(f"camera {camera} already has a frame waiting; one at a time per camera")
            self._pending[camera] = req
            self._cond.notify()
        req.done.wait()
        if req.error is not None:
            raise req.error
        assert req.result is not None
        return req.result

    def _rank(self, req: _Request, now: float) -> tuple[int, float]:
        promoted = req.priority + (1 if now - req.since >= self.promote_after_s else 0)
        return (-promoted, req.since)

    def _next(self) -> list[_Request] | None:
        """The most urgent request, and when it is crops, the crops of other cameras that fill its mosaics."""
        with self._cond:
            while not self._stopped and not self._pending:
                self._cond.wait()
            if self._stopped:
                return None
            now = self.clock()
            ranked = sorted(self._pending.values(), key=lambda r: self._rank(r, now))
            taken = [ranked[0]]
            if ranked[0].cells is not None:
                room = _room(len(ranked[0].cells), ranked[0].grid)
                for other in ranked[1:]:
                    if room <= 0:
                        break
                    if other.cells is not None and other.grid == ranked[0].grid and \
                            other.cells[0].shape == ranked[0].cells[0].shape and len(other.cells) <= room:
                        taken.append(other)
                        room -= len(other.cells)
            for req in taken:
                del self._pending[req.camera]
                req.started = now
            return taken

    def _serve(self) -> None:
        while (taken := self._next()) is not None:
            try:
                if taken[0].cells is None:
                    assert taken[0].gray8 is not None
                    taken[0].result = self.detector.detect(taken[0].gray8)
                    self.counters.whole += 1
                else:
                    self._serve_cells(taken)
            except BaseException as exc:  # the callers' frames fail, the engine goes on
                for req in taken:
                    req.error = exc
                self.counters.errors += 1
            c = self.counters
            for req in taken:
                c.served += 1
                wait_ms = (req.started - req.since) * 1000.0
                c.wait_ms_total += wait_ms
                c.max_wait_ms = max(c.max_wait_ms, wait_ms)
                c.by_priority[req.priority] = c.by_priority.get(req.priority, 0) + 1
                req.done.set()

    def _serve_cells(self, taken: list[_Request]) -> None:
        """The crops of one or more cameras packed into as few mosaics as they fill, each camera given back its
        own crops' boxes."""
        cells = [cell for req in taken for cell in (req.cells or [])]
        grid = taken[0].grid
        boxes = self.crops.detect_cells(cells, grid)
        k = 0
        for req in taken:
            n = len(req.cells or [])
            req.result = boxes[k:k + n]
            k += n
        c = self.counters
        c.crops += len(cells)
        mosaics = -(-len(cells) // (grid * grid))
        c.mosaics += mosaics
        if len(taken) > 1:
            c.shared_mosaics += mosaics


def _room(cells: int, grid: int) -> int:
    """How many more crops fit in the mosaics ``cells`` crops already need."""
    per = grid * grid
    return -cells % per


class EngineClient(Detector):
    """One camera's view of the shared engine: a ``Detector`` whose frames queue fairly with the others'."""

    name = "shared"

    def __init__(self, engine: SharedEngine, camera: str) -> None:
        self.engine, self.camera = engine, camera

    def load(self) -> None:
        self.engine.detector.load()
        self.engine.crops.load()

    def detect(self, gray8: np.ndarray) -> Detections:
        return self.engine.detect(self.camera, gray8)

    def detect_prioritized(self, gray8: np.ndarray, priority: int) -> Detections:
        return self.engine.detect(self.camera, gray8, priority)

    def detect_cells(self, cells: list[np.ndarray], grid: int, priority: int = MOTION) -> list[Detections]:
        return self.engine.detect_cells(self.camera, cells, grid, priority)
