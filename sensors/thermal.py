"""Thermal cameras: a reader thread per camera keeps only the newest frame (a slow detector drops old frames, it
never builds a backlog), reports a source that gives no frame for ``stall_s`` as offline and reopens it with backoff
(1 s doubling to 30 s), and counts what it read, dropped and rejected. Where the frames come from is ``captures``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from sensors.captures import CameraSpec, Capture, open_capture, to_frame
from sensors.errors import SensorError
from sensors.frames import ThermalFrame

log = logging.getLogger(__name__)

MAX_REJECTS_KEPT = 100


@dataclass(frozen=True, slots=True)
class RejectedFrame:
    camera_id: str
    ts: float
    reason: str


@dataclass(slots=True)
class CameraCounters:
    frames_read: int = 0
    frames_dropped: int = 0  # replaced by a newer frame before anyone took it
    frames_bad: int = 0
    reopens: int = 0
    fps: float = 0.0
    state: Literal["starting", "online", "offline", "ended"] = "starting"
    last_error: str = ""
    last_frame_mono: float = 0.0
    rejects: collections.deque[RejectedFrame] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_REJECTS_KEPT)
    )



class _NewestFrame:
    """A one-frame mailbox: put replaces what nobody took (and says so); get waits with a timeout."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: ThermalFrame | None = None
        self._closed = False

    def put(self, frame: ThermalFrame, wait_taken: bool, stop: threading.Event) -> bool:
        """Store the frame; returns True if an untaken frame was dropped."""
        with self._cond:
            if wait_taken:
                while self._frame is not None and not stop.is_set() and not self._closed:
                    self._cond.wait(0.2)
            dropped = self._frame is not None
            self._frame = frame
            self._cond.notify_all()
            return dropped

    def get(self, timeout: float) -> ThermalFrame | None:
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed and self._frame is None


class ThermalCamera:
    """One camera: a reader thread, the newest frame, a stall watchdog and counters."""

    def __init__(self, spec: CameraSpec) -> None:
        self.spec = spec
        self.counters = CameraCounters()
        self._slot = _NewestFrame()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._last_ts = 0.0
        self._last_log = 0.0

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(target=self._run, args=(stop,), name=f"camera-{self.spec.camera_id}",
                                        daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def thread(self) -> threading.Thread | None:
        """The reader thread (None before ``start``), for the agent's watchdog."""
        return self._thread

    @property
    def ended(self) -> bool:
        """The source is finite and every frame has been taken."""
        return self._slot.closed

    def read(self, timeout: float = 0.5) -> ThermalFrame | None:
        """The newest frame not yet taken, or None after ``timeout`` seconds."""
        return self._slot.get(timeout)

    def frames(self, stop: threading.Event) -> Iterator[ThermalFrame]:
        """Every frame until the source ends or ``stop`` is set."""
        while not stop.is_set() and not self.ended:
            frame = self.read(0.2)
            if frame is not None:
                yield frame

    @property
    def state(self) -> str:
        c = self.counters
        if c.state == "online" and time.monotonic() - c.last_frame_mono > self.spec.stall_s:
            return "offline"
        return c.state

    def _reject(self, reason: str) -> None:
        c = self.counters
        c.frames_bad += 1
        c.rejects.append(RejectedFrame(self.spec.camera_id, time.time(), reason))
        now = time.monotonic()
        if now - self._last_log > 10.0:  # one line per camera every 10 s at most
            self._last_log = now
            log.warning("camera %s: bad frame from %s: %s (%d so far)", self.spec.camera_id, self.spec.source,
                        reason, c.frames_bad)

    def _run(self, stop: threading.Event) -> None:
        spec, c = self.spec, self.counters
        backoff = spec.backoff_min_s
        try:
            while not stop.is_set():
                try:
                    cap = open_capture(spec)
                except SensorError as exc:
                    c.state, c.last_error = "offline", str(exc)
                    log.error("%s; retrying in %.0f s", exc, backoff)
                    if stop.wait(backoff):
                        return
                    backoff = min(backoff * 2, spec.backoff_max_s)
                    c.reopens += 1
                    continue
                read_before = c.frames_read
                try:
                    outcome = self._read_until_stall(cap, stop)
                finally:
                    cap.release()
                if outcome in ("ended", "stopped"):
                    return
                if outcome == "rewind":
                    continue
                if c.frames_read > read_before:  # it worked for a while: start the backoff again from the bottom
                    backoff = spec.backoff_min_s
                c.state = "offline"
                c.last_error = f"no frame for {spec.stall_s:.0f} s"
                log.error("camera %s: %s from %s; reopening in %.0f s", spec.camera_id, c.last_error, spec.source,
                          backoff)
                if stop.wait(backoff):
                    return
                backoff = min(backoff * 2, spec.backoff_max_s)
                c.reopens += 1
        finally:
            self._slot.close()

    def _read_until_stall(
        self, cap: Capture, stop: threading.Event
    ) -> Literal["stopped", "stalled", "ended", "rewind"]:
        """Read frames until stop, a stall, or the end of a finite source (which rewinds when looping)."""
        spec, c = self.spec, self.counters
        last_ok = time.monotonic()
        base: float | None = None  # wall time of media time 0 for recordings and scenes
        while not stop.is_set():
            ok, raw = cap.read()
            now = time.monotonic()
            if not ok:
                if cap.finite:
                    if spec.loop:
                        return "rewind"  # reopening is the portable way to rewind every kind of capture
                    c.state = "ended"
                    return "ended"
                if now - last_ok > spec.stall_s:
                    return "stalled"
                stop.wait(0.05)
                continue
            last_ok = now
            assert raw is not None
            ts = time.time()
            if cap.media_ts is not None:
                # recordings and scenes keep their own timing, however fast or slow they are read
                if base is None:
                    base = max(ts, self._last_ts + 0.001) - cap.media_ts
                ts = base + cap.media_ts
            ts = max(ts, self._last_ts + 1e-6)
            self._last_ts = ts
            try:
                frame = to_frame(spec, self._seq, ts, raw)
            except ValueError as exc:
                self._reject(str(exc))
                continue
            self._seq += 1
            c.frames_read += 1
            if c.last_frame_mono:
                dt = now - c.last_frame_mono
                if dt > 0:
                    c.fps = 1.0 / dt if c.fps == 0 else 0.9 * c.fps + 0.1 / dt
            c.last_frame_mono = now
            c.state = "online"
            if self._slot.put(frame, spec.pace == "every", stop):
                c.frames_dropped += 1
        return "stopped"
