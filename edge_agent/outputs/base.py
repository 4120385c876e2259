"""What every output besides MQTT shares: its own thread with an asyncio loop (the transports, pytak's among
them, are asyncio), a connection kept up with backoff, the alert states owed to it read from the incident
database (``Deliveries``), and its state for ``health``.

A subclass gives ``session``: connect, then deliver until the connection fails (raise ``OutputDown`` or an
``OSError``). ``deliver`` walks what is owed in order and hands each alert state to the subclass's ``encode``
(None: nothing to send for this state, e.g. a sensor fault on a TAK map) and ``send``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from edge_agent.config.outputs import RetryConfig
from edge_agent.contract.alert import Alert, BadAlert, parse_alert
from edge_agent.incidents.deliveries import Deliveries, OwedState

log = logging.getLogger(__name__)

BATCH = 50
IDLE_WAKE_S = 1.0  # an idle session looks at the queue at least this often (backoffs ending, timers)


class OutputError(Exception):
    """What goes wrong in an output besides MQTT (the package's one exception base)."""


class OutputDown(OutputError):
    """The peer is gone or refused us; the session ends and the output tries again after a backoff."""


@dataclass(slots=True)
class OutputCounters:
    state: str = "starting"  # starting | connecting | up | down | stopped
    connects: int = 0
    sent: int = 0
    skipped: int = 0
    failures: int = 0
    last_error: str = ""
    since: float = field(default_factory=time.time)


class OutputRunner:
    """One output on its own thread; see the module docstring."""

    name = "output"

    def __init__(self, deliveries: Deliveries, retry: RetryConfig) -> None:
        self.deliveries = deliveries
        self.retry = retry
        self.counters = OutputCounters()
        self.heartbeat = time.monotonic()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle (any thread) ------------------------------------------------------------------------

    def start(self) -> OutputRunner:
        self._thread = threading.Thread(target=self._run, name=f"output-{self.name}", daemon=True)
        self._thread.start()
        return self

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def wake(self) -> None:
        """Something new is in the outbox."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(wake.set)

    def stop(self, timeout: float = 3.0) -> None:
        """Say goodbye where the protocol has one (``farewell``), close, end the thread."""
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def report(self, now: float | None = None) -> dict[str, Any]:
        """For ``health``: state, backlog, oldest owed, counters, last error."""
        backlog = self.deliveries.backlog(self.name, now)
        c = self.counters
        return {"state": c.state, "backlog": backlog.owed, "oldest_s": backlog.oldest_s, "sent": c.sent,
                "skipped": c.skipped, "connects": c.connects, "failures": c.failures, "last_error": c.last_error,
                **self.extra_report()}

    def extra_report(self) -> dict[str, Any]:
        return {}

    # -- the thread -------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:  # never silently: the watchdog sees the thread end
            log.exception("output %s: its thread ended", self.name)
            raise

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        delay = self.retry.retry_min_s
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            self.counters.state = "connecting"
            started = time.monotonic()
            try:
                await self.session()
            except (TimeoutError, OSError, OutputDown, asyncio.IncompleteReadError) as exc:
                self._went_down(exc)
            except Exception as exc:  # a fault of ours: logged with its trace, the output goes on after a backoff
                log.exception("output %s: the session failed", self.name)
                self._went_down(exc)
            if self._stop.is_set():
                break
            if time.monotonic() - started > max(30.0, self.retry.retry_max_s):
                delay = self.retry.retry_min_s  # a connection that lasted a while: start the backoff over
            await self.pause(delay)
            delay = min(delay * 2, self.retry.retry_max_s)
        self.counters.state = "stopped"

    def _went_down(self, exc: BaseException) -> None:
        why = f"{type(exc).__name__}: {exc}" if not isinstance(exc, OutputDown) else str(exc)
        if self.counters.state == "up" or why != self.counters.last_error:
            log.warning("output %s: %s; alerts wait in the incident log, trying again", self.name, why)
        self.counters.failures += 1
        self.counters.last_error = why
        self.counters.state = "down"
        self.counters.since = time.time()
        self.lost()

    def lost(self) -> None:
        """The connection was lost: what the subclass does about what it sent before (e.g. ``resend``)."""

    def connected(self) -> None:
        self.counters.state = "up"
        self.counters.connects += 1
        self.counters.since = time.time()
        self.counters.last_error = ""
        self.deliveries.retry_now(self.name, time.time())
        log.info("output %s: connected", self.name)

    async def pause(self, seconds: float) -> None:
        """Sleep, waking early for a stop."""
        end = time.monotonic() + seconds
        while not self._stop.is_set() and (left := end - time.monotonic()) > 0:
            self.heartbeat = time.monotonic()
            await self.wait_wake(min(left, IDLE_WAKE_S))

    async def wait_wake(self, timeout: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- what a session does ----------------------------------------------------------------------------

    async def session(self) -> None:
        raise NotImplementedError

    def encode(self, alert: Alert, owed: OwedState) -> bytes | None:
        raise NotImplementedError

    async def deliver(self, send: Callable[[list[tuple[OwedState, bytes]]], Awaitable[None]]) -> int:
        """Everything owed and due, in batches: each encoded and handed to ``send`` (which raises when the
        connection fails: the batch stays owed); returns how many states were done."""
        done = 0
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            owed = self.deliveries.owed(self.name, BATCH)
            if not owed:
                return done
            batch, skipped = [], []
            for item in owed:
                try:
                    data = self.encode(parse_alert(item.payload), item)
                except BadAlert as exc:  # the box's own stored copy: cannot happen unless the file was edited
                    log.error("output %s: alert state %s cannot be read: %s; skipped", self.name, item.seq, exc)
                    self.deliveries.sent(self.name, [item.seq], time.time(), f"unreadable: {exc}")
                    continue
                if data is None:
                    skipped.append(item.seq)
                else:
                    batch.append((item, data))
            if skipped:
                self.deliveries.sent(self.name, skipped, time.time(), f"not for {self.name}")
                self.counters.skipped += len(skipped)
            if batch:
                try:
                    await send(batch)
                except (TimeoutError, OSError, OutputDown) as exc:
                    self.deliveries.failed(self.name, [i.seq for i, _ in batch], time.time(), str(exc) or
                                           type(exc).__name__, self.retry.retry_min_s, self.retry.retry_max_s)
                    raise
                self.deliveries.sent(self.name, [i.seq for i, _ in batch], time.time())
                self.counters.sent += len(batch)
            done += len(owed)
        return done
