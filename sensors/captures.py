"""Where a camera's frames come from: the capture for a source URL, chosen by its scheme from a registry (video
files, image folders, ``rtsp://`` and ``http://`` streams and V4L2 devices through OpenCV; ``sim://`` scenes from the
simulator, imported only when such a source is opened), and each raw image checked and turned into a
``ThermalFrame``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np

from sensors.errors import SensorError
from sensors.frames import Polarity, ThermalFrame

PixelFormat = Literal["auto", "gray8", "y16"]
Pace = Literal["live", "every"]
IMAGE_SUFFIXES = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".pgm"}
LIVE_SCHEMES = ("rtsp", "rtsps", "http", "https")


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


class Capture(Protocol):
    finite: bool
    media_ts: float | None  # seconds into a recording or scene of the last frame read; None for live sources

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...



# -- captures ------------------------------------------------------------------------------------------------


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


CaptureOpener = Callable[[CameraSpec], Capture]
# URL schemes whose captures live in another module, as "module:function": the module is imported only when a
# source of that scheme is opened (the simulator ships with the product but a real camera never loads it).
SCHEMES: dict[str, str | CaptureOpener] = {"sim": "sensors.sim.capture:open_sim"}


def register_scheme(scheme: str, opener: str | CaptureOpener) -> None:
    """Open sources ``scheme://...`` with ``opener`` (a function, or ``"module:function"`` imported on first use)."""
    SCHEMES[scheme] = opener


def _opener(scheme: str) -> CaptureOpener | None:
    found = SCHEMES.get(scheme)
    if isinstance(found, str):
        module, _, name = found.partition(":")
        found = SCHEMES[scheme] = getattr(importlib.import_module(module), name)
    return found


def unpaced(source: str) -> str:
    """The same source read as fast as it can be: a synthetic scene's real-time pacing (``realtime=1``) dropped,
    for tools that want frame N of it now, not N frames later."""
    if not source.startswith("sim://") or "?" not in source:
        return source
    base, query = source.split("?", 1)
    kept = [kv for kv in query.split("&") if kv.split("=", 1)[0] != "realtime"]
    return base + ("?" + "&".join(kept) if kept else "")


def is_live(source: str) -> bool:
    """Cameras and streams drop old frames; files and scenes are read frame by frame."""
    return source.split("://", 1)[0] in LIVE_SCHEMES or source.startswith("/dev/") or source.isdigit()


def open_capture(spec: CameraSpec) -> Capture:
    """The right capture for a source, or a SensorError that names the source and the fix."""
    src = spec.source
    scheme = src.split("://", 1)[0] if "://" in src else ""
    opener = _opener(scheme) if scheme else None
    if opener is not None:
        try:
            return opener(spec)
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
