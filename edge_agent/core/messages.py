"""What travels on the core queue: one frozen value per kind of message, and the bounded queue itself.

Every stage that feeds the core (detection per camera, the sensor feeds, MQTT acks, a SIGHUP reload) puts one
of these; the core dispatches on the type. A camera frame rides along by reference for the snapshot of the
event it causes, and ``FrameBudget`` keeps those frames from piling up behind a slow core.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

from detectors.types import Detections
from edge_agent.config.agent import AgentConfig
from edge_agent.contract.acks import Ack
from edge_agent.incidents.sensorlog import Rejected
from geofences.rules import TrackPoint
from sensors.feeds import Event
from sensors.frames import ThermalFrame

log = logging.getLogger(__name__)

CORE_QUEUE = 2000
FRAMES_IN_FLIGHT = 4  # frames per camera queued for the core; beyond, a message goes without its frame


@dataclass(frozen=True, slots=True)
class FrameTracks:
    """One processed camera frame: its confirmed tracks as rule inputs (classified, ``x, y`` the anchor pixel,
    ``latlon`` where the camera is calibrated), their boxes for a snapshot, the ids of the tracks lost with it,
    and the frame for a snapshot (None when the camera's budget of frames in flight was spent, or at the end of
    the source)."""

    camera: str
    ts: float
    points: tuple[TrackPoint, ...]
    tracks: Detections
    lost: tuple[int, ...] = ()
    frame: ThermalFrame | None = None
    size: tuple[int, int] | None = None  # the frame's width and height in pixels
    calibrated: bool = False  # the points have a place on the map (geographic rules apply to them)


@dataclass(frozen=True, slots=True)
class SensorEvent:
    """A radio or metal-detector event from a line feed."""

    event: Event


@dataclass(frozen=True, slots=True)
class AckReceived:
    """A command post acknowledged an alert."""

    ack: Ack


@dataclass(frozen=True, slots=True)
class RulesReloaded:
    """SIGHUP: zones, lines and fusion rules of this configuration replace the running ones."""

    config: AgentConfig
    path: Path | None = None  # the file it was read from


@dataclass(frozen=True, slots=True)
class InputRejected:
    """Input a stage could not take (a frame the detector failed on), to be kept with its reason."""

    rejected: Rejected


CoreMessage = FrameTracks | SensorEvent | AckReceived | RulesReloaded | InputRejected


def source_of(msg: CoreMessage) -> str:
    """Whose input a message is, as the rejected-input log names it."""
    match msg:
        case SensorEvent(event=ev):
            return ev.sensor
        case FrameTracks(camera=camera):
            return camera
        case AckReceived():
            return "mqtt-acks"
        case _:
            return "core"


class FrameBudget:
    """Frames in flight per camera. A frame is big (a Y16 VGA frame is 600 KiB) and the core queue long, so
    a detection stage takes a frame along only while fewer than ``limit`` of its camera's frames wait for the
    core; the core gives each back once it has handled the message. Memory for frames stays at ``limit``
    frames per camera however far the core falls behind; what goes without a frame is only its snapshot."""

    def __init__(self, limit: int = FRAMES_IN_FLIGHT) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._taken: dict[str, int] = {}

    def take(self, camera: str) -> bool:
        with self._lock:
            if self._taken.get(camera, 0) >= self.limit:
                return False
            self._taken[camera] = self._taken.get(camera, 0) + 1
            return True

    def give_back(self, camera: str) -> None:
        with self._lock:
            self._taken[camera] = max(0, self._taken.get(camera, 0) - 1)


class CoreQueue:
    """The bounded queue into the core stage. A producer blocks while it is full (events are never dropped;
    a detection stage that waits drops camera frames instead) and gives up once ``stop`` is set."""

    def __init__(self, stop: threading.Event, maxsize: int = CORE_QUEUE) -> None:
        self.stop = stop
        self.maxsize = maxsize
        self._q: queue.Queue[CoreMessage] = queue.Queue(maxsize=maxsize)

    def put(self, msg: CoreMessage) -> None:
        while not self.stop.is_set():
            try:
                self._q.put(msg, timeout=0.5)
                return
            except queue.Full:
                log.warning("core queue full (%d): a stage waits", self.maxsize)

    def offer(self, msg: CoreMessage, timeout: float) -> bool:
        """Put unless the queue stays full for ``timeout`` seconds: for a thread that must not wait long
        (paho's network thread hands acks over here)."""
        try:
            self._q.put(msg, timeout=timeout)
        except queue.Full:
            return False
        return True

    def get(self, timeout: float) -> CoreMessage | None:
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def qsize(self) -> int:
        return self._q.qsize()
