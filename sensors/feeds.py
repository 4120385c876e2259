"""A radio or metal-detector feed: a line transport, the contract's parser, and per-sensor bookkeeping.

Every line ends up either as an event handed to ``on_event`` or as a rejected line, counted and kept (the
newest ``keep_rejects``) with its reason, for the incident database to store: ``events + rejected`` is exactly
the number of lines handed to ``handle``. A feed carries only the sensor ids it is configured for (``accept``):
a line from any other id is rejected before it touches the heartbeat watch, so a detector cabled to the wrong
port cannot make another detector look alive or dead.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sensors.events import (
    MAX_CLOCK_OFF_S,
    MetalEvent,
    MetalHealth,
    ParseError,
    RadioEvent,
    parse_metal,
    parse_radio,
)
from sensors.lines import LineReader, LineSpec

FeedKind = Literal["radio", "metal"]
Event = RadioEvent | MetalEvent


@dataclass(frozen=True, slots=True)
class RejectedLine:
    sensor: str  # the feed's configured id (the line may not say which sensor it came from)
    received: float
    reason: str
    line: bytes  # at most the first 512 bytes


@dataclass(slots=True)
class FeedCounters:
    events: int = 0
    rejected: int = 0
    skewed: int = 0
    seq_gaps: int = 0
    rejects: deque[RejectedLine] = field(default_factory=lambda: deque(maxlen=100))


class SensorFeed:
    """One configured feed; ``accept`` is the set of sensor ids its lines may carry (None: only its own)."""

    def __init__(self, sensor_id: str, kind: FeedKind, url: str, on_event: Callable[[Event], None],
                 max_skew_s: float = 30.0, hb_timeout_s: float = 30.0, max_line: int = 4096,
                 keep_rejects: int = 100, backoff_min_s: float = 1.0, backoff_max_s: float = 30.0,
                 accept: frozenset[str] | None = None, max_clock_off_s: float = MAX_CLOCK_OFF_S,
                 max_conn: int | None = None, idle_s: float | None = None) -> None:
        self.sensor_id = sensor_id
        self.kind = kind
        self.on_event = on_event
        self.max_skew_s = max_skew_s
        self.max_clock_off_s = max_clock_off_s
        self.max_line = max_line
        self.accept = frozenset({sensor_id}) if accept is None else frozenset(accept)
        if not self.accept:
            raise ValueError(f"feed {sensor_id}: accept names no sensor; expected at least one id")
        self._accepted_text = ", ".join(sorted(self.accept))
        self.counters = FeedCounters(rejects=deque(maxlen=keep_rejects))
        self.health = MetalHealth(hb_timeout_s=hb_timeout_s)
        self._lock = threading.Lock()
        self.reader = LineReader(LineSpec(sensor_id, url, max_line, backoff_min_s, backoff_max_s, max_conn, idle_s),
                                 self.handle)

    def start(self, stop: threading.Event) -> None:
        self.reader.start(stop)

    def handle(self, line: bytes, received: float, oversized: bool = False) -> Event | None:
        """Parse one line; never raises. Returns the event, or None for a rejected line."""
        with self._lock:
            try:
                if oversized:
                    raise ParseError(f"line longer than {self.max_line} bytes: cut off")
                ev: Event
                if self.kind == "radio":
                    ev = parse_radio(line, received, self.max_skew_s, self.max_clock_off_s)
                else:
                    ev = parse_metal(line, received, self.max_skew_s, self.max_clock_off_s)
                if ev.sensor not in self.accept:
                    raise ParseError(f"unknown sensor {ev.sensor!r} (this feed accepts {self._accepted_text})")
                if isinstance(ev, MetalEvent):
                    self.counters.seq_gaps += self.health.observe(ev)
            except ParseError as exc:
                self._reject(line, received, str(exc))
                return None
            except Exception as exc:  # a parser bug is still only a rejected line
                self._reject(line, received, f"internal parser error: {type(exc).__name__}: {exc}")
                return None
            self.counters.events += 1
            self.counters.skewed += int(ev.skewed)
        self.on_event(ev)
        return ev

    def _reject(self, line: bytes, received: float, reason: str) -> None:
        self.counters.rejected += 1
        self.counters.rejects.append(RejectedLine(self.sensor_id, received, reason, bytes(line[:512])))

    def drain_rejects(self) -> list[RejectedLine]:
        """Rejected lines not yet handed over (to the incident database); the counters keep counting."""
        with self._lock:
            out = list(self.counters.rejects)
            self.counters.rejects.clear()
        return out

    def faulty(self, now: float) -> list[str]:
        """Metal detectors silent past their heartbeat timeout."""
        return self.health.silent(now) if self.kind == "metal" else []
