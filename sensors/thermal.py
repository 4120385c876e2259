"""Thermal cameras: OpenCV captures (files, image folders, rtsp://, V4L2) and synthetic scenes (sim://).

A reader thread per camera keeps only the newest frame (a slow detector drops old frames, it never builds a
backlog), reports a source that gives no frame for ``stall_s`` as offline and reopens it with backoff
(1 s doubling to 30 s), and counts what it read, dropped and rejected.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np

from sensors.errors import SensorError
from sensors.frames import Polarity, ThermalFrame
from sensors.sim import ThermalScene

log = logging.getLogger(__name__)

PixelFormat = Literal["auto", "gray8", "y16"]
Pace = Literal["live", "every"]
IMAGE_SUFFIXES = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".pgm"}
MAX_REJECTS_KEPT = 100


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """What the camera reader needs to know; built from the agent's configuration."""

    camera_id: str
    source: str
    pixel_format: PixelFormat = "auto"
    scale: float | None = 0.01
    offset: float = -273.15
    polarity: Polarity = "white_hot"
    stall_s: float = 20.0
    backoff_min_s: float = 1.0
    backoff_max_s: float = 30.0
    pace: Pace = "live"  # live: newest frame wins; every: the reader waits for each frame to be taken
    loop: bool = False  # files and scenes start again at the end

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError(f"camera {self.camera_id}: source is empty")
        if self.stall_s <= 0 or self.backoff_min_s <= 0 or self.backoff_max_s < self.backoff_min_s:
            raise ValueError(
                f"camera {self.camera_id}: need stall_s > 0 and 0 < backoff_min_s <= backoff_max_s, got "
                f"{self.stall_s}, {self.backoff_min_s}, {self.backoff_max_s}"
            )


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


class Capture(Protocol):
    finite: bool
    media_ts: float | None  # seconds into a recording or scene of the last frame read; None for live sources

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


# -- captures ------------------------------------------------------------------------------------------------


class SimCapture:
    """A synthetic scene as a capture; paced at the scene's fps when ``realtime``."""

    def __init__(self, url: str, loop: bool) -> None:
        self.scene = ThermalScene.from_url(url)
        self.loop = loop or self.scene.params.loop
        self.finite = not self.loop
        self.index = 0
        self.media_ts: float | None = None
        self._t0 = time.monotonic()

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.index >= self.scene.frame_count:
            if not self.loop:
                return False, None
            self.index = 0
            self._t0 = time.monotonic()
        if self.scene.params.realtime:
            due = self._t0 + self.index / self.scene.params.fps
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        counts, _ = self.scene.render(self.index, truth=False)  # a camera streams frames, never their truth
        self.media_ts = self.index / self.scene.params.fps
        self.index += 1
        return True, counts

    def release(self) -> None:
        pass


class ImageFolderCapture:
    """A folder of images (e.g. 16-bit PNG/TIFF radiometric recordings) or a single image file."""

    def __init__(self, path: Path) -> None:
        if path.is_dir():
            self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise SensorError(f"{path}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        else:
            self.files = [path]
        self.finite = True
        self.index = 0
        self.media_ts: float | None = None  # stills carry no time: frames are stamped when read

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.index >= len(self.files):
            return False, None
        path = self.files[self.index]
        self.index += 1
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            # a corrupt file is a bad frame, not the end of the recording
            return True, np.zeros(0, dtype=np.uint8)
        return True, img

    def release(self) -> None:
        pass


class OpenCVCapture:
    """Video files, rtsp:// streams and V4L2 devices through cv2.VideoCapture."""

    def __init__(self, source: str, pixel_format: PixelFormat, stall_s: float) -> None:
        timeout_ms = int(stall_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        if pixel_format == "y16":
            # FFmpeg converts every frame to 8-bit BGR unless told not to; with conversion off a 16-bit grey
            # stream (gray16le, e.g. FFV1) comes through as uint16 counts. CAP_PROP_FORMAT -1 is no help here:
            # in the FFmpeg backend it means undecoded packets.
            params += [cv2.CAP_PROP_CONVERT_RGB, 0]
        if source.startswith("/dev/video"):
            self.cap = cv2.VideoCapture(source, cv2.CAP_V4L2)
            if pixel_format == "y16":
                self.cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"Y16 "))
                self.cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)
            self.finite = False
        elif "://" in source:
            self.cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
            self.finite = False
        else:
            self.cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
            self.finite = True
        if not self.cap.isOpened():
            self.cap.release()
            raise SensorError(f"{source}: cannot open (not a video, unreachable stream, or no such device)")
        self.media_ts: float | None = None

    def read(self) -> tuple[bool, np.ndarray | None]:
        ok, img = self.cap.read()
        if ok and self.finite:
            self.media_ts = self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        return bool(ok), img if ok else None

    def release(self) -> None:
        self.cap.release()


def open_capture(spec: CameraSpec) -> Capture:
    """The right capture for a source, or a SensorError that names the source and the fix."""
    src = spec.source
    if src.startswith("sim://"):
        try:
            return SimCapture(src, spec.loop)
        except ValueError as exc:
            raise SensorError(f"camera {spec.camera_id}: {exc}") from exc
    if "://" in src or src.startswith("/dev/video"):
        if src.startswith("/dev/video") and not Path(src).exists():
            raise SensorError(f"camera {spec.camera_id}: {src} does not exist; is the camera plugged in?")
        return OpenCVCapture(src, spec.pixel_format, spec.stall_s)
    path = Path(src)
    if not path.exists():
        raise SensorError(f"camera {spec.camera_id}: {src} does not exist; check the source path")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolderCapture(path)
    try:
        return OpenCVCapture(src, spec.pixel_format, spec.stall_s)
    except SensorError as exc:
        raise SensorError(f"camera {spec.camera_id}: {exc}; is it a video file OpenCV can decode?") from exc


# -- frames ----------------------------------------------------------------------------------------------------


def to_frame(spec: CameraSpec, seq: int, ts: float, raw: np.ndarray) -> ThermalFrame:
    """Check and normalise one raw image into a ThermalFrame; ValueError names what is wrong and the fix."""
    if raw is None or raw.size == 0:
        raise ValueError("empty or undecodable frame")
    img = raw
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3:
        if img.dtype != np.uint8:
            raise ValueError(f"{img.shape[2]}-channel {img.dtype} frame; expected 8-bit grey or 16-bit Y16")
        if spec.pixel_format == "y16":
            raise ValueError(
                f"source gives 8-bit {'BGRA' if img.shape[2] == 4 else 'BGR'} frames, not Y16: set pixel_format: "
                "gray8 or check the stream (the camera's output format, or a decoder that converts to colour)"
            )
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if img.ndim != 2:
        raise ValueError(f"frame of shape {img.shape}; expected height x width (x channels)")
    if img.dtype == np.uint16:
        if spec.pixel_format == "gray8":
            raise ValueError(
                "got 16-bit frames but pixel_format is gray8; set pixel_format: y16 (with scale and offset)"
            )
        if spec.scale is None:
            raise ValueError("16-bit frames need radiometric scale and offset in the camera config")
        scale: float | None = spec.scale
    elif img.dtype == np.uint8:
        if spec.pixel_format == "y16":
            raise ValueError("expected 16-bit (Y16) frames but got 8-bit grey: set pixel_format: gray8 or check the "
                             "stream (the camera's output format)")
        scale = None
    else:
        raise ValueError(f"unsupported pixel type {img.dtype}; expected uint8 or uint16")
    if int(img.max()) == int(img.min()):
        raise ValueError(f"flat frame (every pixel {int(img.max())}): lens covered or sensor fault")
    return ThermalFrame(spec.camera_id, seq, ts, np.ascontiguousarray(img), scale, spec.offset, spec.polarity)


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
