"""A real RTSP H.264 camera for the tests: the simulator's scene, AGC'd to 8-bit grey, written to one raw file and
served in a loop by ``tests/rtsp_server.py`` (GStreamer's RTSP server under Debian's /usr/bin/python3, a child
process) on a free loopback port; stoppable (SIGTERM), killable (SIGKILL) and restartable on the same port."""

from __future__ import annotations

import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.demo.brokers import free_port
from sensors.frames import ThermalFrame
from sensors.sim import SIM_OFFSET, SIM_SCALE, ThermalScene, TruthObject

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with GStreamer's bindings (gi); the project's .venv has none
SERVER = Path(__file__).resolve().with_name("rtsp_server.py")


MARK_PX, MARK_BITS = 8, 10  # the frame number's mark: up to 1,024 frames


@dataclass(frozen=True, slots=True)
class SentScene:
    """What the camera sends: the grey frames in order (looped), their truth, and the raw file that holds them."""

    frames: np.ndarray  # n x height x width, uint8
    truths: list[list[TruthObject]]
    path: Path
    fps: int

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    def nearest(self, image: np.ndarray) -> tuple[int, float]:
        """The sent frame an image shows (index) and the mean absolute grey difference to it (on every 4th
        pixel: the neighbours in time differ by a person's step, not by what a codec does)."""
        diff = np.abs(self.frames[:, ::4, ::4].astype(np.int16) - image[::4, ::4]).mean(axis=(1, 2))
        i = int(diff.argmin())
        return i, float(diff[i])


    def marked(self, image: np.ndarray) -> int:
        """The sent frame an image shows, read from the mark ``render_scene(..., mark=True)`` put in its top left
        corner: for realistic scenes, whose noise and drift differ more from frame to frame than a far person's
        few pixels, so that no frame can be told by its picture."""
        blocks = image[:MARK_PX, : MARK_BITS * MARK_PX].reshape(MARK_PX, MARK_BITS, MARK_PX).mean(axis=(0, 2))
        return int(sum(1 << k for k, v in enumerate(blocks) if v > 127))


def render_scene(url: str, folder: Path, fps: int = 10, mark: bool = False) -> SentScene:
    """Render a ``sim://`` scene to 8-bit grey (the camera's own gain control; a scene that already streams
    8-bit frames, like the realistic preset, as it is) and write it as one raw file. ``mark``: each frame's
    number in its top left corner, one black or white 8 x 8 block a bit (whole blocks of the codec survive it;
    the sky there is no ground for a target)."""
    scene = ThermalScene.from_url(url)
    assert not mark or scene.frame_count <= 1 << MARK_BITS, f"{url}: too many frames to mark"
    frames, truths = [], []
    for i in range(scene.frame_count):
        image, truth = scene.render(i)
        frames.append(image if image.dtype == np.uint8 else
                      ThermalFrame("sim", i, 0.0, image, SIM_SCALE, SIM_OFFSET).gray8())
        truths.append(truth)
        if mark:
            frames[-1] = frames[-1].copy()
            for k in range(MARK_BITS):
                frames[-1][:MARK_PX, k * MARK_PX:(k + 1) * MARK_PX] = 255 if (i >> k) & 1 else 0
    stack = np.stack(frames)
    path = folder / "frames.gray8"
    path.write_bytes(stack.tobytes())
    return SentScene(stack, truths, path, fps)


class RtspCamera:
    """``rtsp://127.0.0.1:PORT/thermal`` serving a ``SentScene``; the port stays the same across restarts."""

    def __init__(self, scene: SentScene, path: str = "/thermal") -> None:
        self.scene = scene
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}{path}"
        self._args = [SYSTEM_PYTHON, str(SERVER), "--port", str(self.port), "--path", path,
                      "--frames", str(scene.path), "--fps", str(scene.fps),
                      "--width", str(scene.width), "--height", str(scene.height)]
        self.log = scene.path.with_name(f"rtsp-server-{self.port}.log")  # its stderr, across restarts
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20.0) -> RtspCamera:
        """Start the server and wait for its ``READY`` line (it listens by then)."""
        with self.log.open("a") as err:
            proc = self.proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while not line.startswith("READY") and proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                line = proc.stdout.readline()
        if not line.startswith("READY"):
            self.kill()
            raise RuntimeError(f"RTSP server did not start on port {self.port} in {timeout} s: "
                               f"{self.log.read_text()[-2000:]}")
        return self

    def _end(self, sig: signal.Signals) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            try:
                self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
        self.proc = None

    def stop(self) -> None:
        """SIGTERM: the server quits its main loop."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the camera loses power mid-stream."""
        self._end(signal.SIGKILL)
