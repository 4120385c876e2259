"""The agent's stages (threads) and the watchdog's bookkeeping: a stage beats a heartbeat; the systemd
watchdog is fed only while every stage is alive."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

STAGE_STALE_S = {"core": 10.0, "delivery": 10.0, "detect": 60.0, "output": 90.0}


@dataclass(slots=True)
class Stage:
    name: str
    kind: str
    thread: threading.Thread | None = None
    beat: float = field(default_factory=time.monotonic)
    error: str = ""
    finished: bool = False  # ended on purpose (a finite source), not died
    beat_of: Callable[[], float] | None = None  # where the heartbeat lives when the stage keeps its own
    ended_of: Callable[[], bool] | None = None  # a finite source that has ended

    def touch(self) -> None:
        """A heartbeat: the stage's loop came round."""
        self.beat = time.monotonic()

    def alive(self, now: float, stale_s: dict[str, float] = STAGE_STALE_S) -> bool:
        if self.error:
            return False
        if self.finished or (self.ended_of is not None and self.ended_of()):
            return True
        if self.thread is not None and not self.thread.is_alive():
            return False
        stale = stale_s.get(self.kind)
        if stale is None:  # readers block on their source: a live thread is a live stage
            return True
        beat = self.beat_of() if self.beat_of is not None else self.beat
        return now - beat < stale


class Stages(dict[str, Stage]):
    """Every stage by name, with the staleness each kind may reach before it counts as hung."""

    def __init__(self) -> None:
        super().__init__()
        self.stale_s = dict(STAGE_STALE_S)

    def add(self, stage: Stage) -> Stage:
        self[stage.name] = stage
        return stage

    def spawn(self, name: str, kind: str, target: Callable[..., None], *args: Any) -> Stage:
        """Start ``target(stage, *args)`` on its own thread; an exception marks the stage dead (the watchdog
        stops and systemd restarts the agent)."""
        stage = Stage(name, kind)

        def guarded() -> None:
            try:
                target(stage, *args)
            except Exception as exc:
                stage.error = f"{type(exc).__name__}: {exc}"
                log.exception("stage %s died", name)

        stage.thread = threading.Thread(target=guarded, name=name, daemon=True)
        self.add(stage)
        stage.thread.start()
        return stage

    def states(self) -> dict[str, str]:
        """Each stage: ``ok``, its error, or ``stalled``."""
        now = time.monotonic()
        return {name: ("ok" if s.alive(now, self.stale_s) else (s.error or "stalled")) for name, s in self.items()}

    def down(self) -> list[str]:
        now = time.monotonic()
        return [name for name, s in self.items() if not s.alive(now, self.stale_s)]

    def all_alive(self) -> bool:
        return not self.down()
