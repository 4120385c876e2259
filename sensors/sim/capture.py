"""A synthetic scene read like a camera: frame by frame, paced at the scene's fps when ``realtime``, and never
with its truth (a camera streams frames only)."""

from __future__ import annotations

import time

import numpy as np

from sensors.captures import CameraSpec
from sensors.sim.render import ThermalScene


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
        # A scene paced in real time stands for a live camera: its frames are stamped when read (the reader's clock).
        # Stamped from scene time instead, a frame rendered faster than the first one would carry a time ahead of
        # the wall clock.
        self.media_ts = None if self.scene.params.realtime else self.index / self.scene.params.fps
        self.index += 1
        return True, counts

    def release(self) -> None:
        pass


def open_sim(spec: CameraSpec) -> SimCapture:
    """The capture of a ``sim://`` source (the camera reader's scheme registry names this function)."""
    return SimCapture(spec.source, spec.loop)
