"""The tcp-listen:// transport: one thread serves every sensor connection through ``selectors``.

A thread per connection let 1,015 idle connections exhaust the process's descriptors and kill the server for
good. Here the connections are capped (``max_conn``): when full, a new connection evicts the one with least
claim to its place -- a connection that never sent a line the handler took goes before one that did, and
among those the one silent longest -- so a real sensor connecting after a flood of idle or garbage
connections still gets in and is heard. A connection that sends nothing for ``idle_s`` is closed. accept()
failures (out of descriptors, a handshake aborted) are counted, logged with a rate limit and followed by a
short pause while the open connections are still served; the loop never dies of them.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from sensors.linesplit import LineSplitter


class ListenerCounters(Protocol):
    connections: int
    open_connections: int
    evicted: int
    idle_closed: int
    refused: int
    state: str
    last_error: str | None


class LineOwner(Protocol):
    """What the listener needs of the line reader it serves (``sensors.lines.LineReader``)."""

    spec: Any
    host: str
    bound_port: int | None
    max_conn: int
    idle_s: float
    log: Any

    @property
    def counters(self) -> ListenerCounters: ...

    def deliver(self, splitter: LineSplitter, data: bytes, end: bool = False) -> int: ...


ACCEPT_BATCH = 64  # connections taken per turn, so a flood cannot starve the reads of open connections
ACCEPT_PAUSE_MIN_S = 0.05
ACCEPT_PAUSE_MAX_S = 1.0
TURN_S = 0.2  # the longest select() wait: how soon ``stop`` is seen


@dataclass(slots=True, eq=False)
class SensorConnection:
    """One accepted connection and what eviction and the idle timeout go by (monotonic seconds)."""

    sock: socket.socket
    peer: str
    splitter: LineSplitter
    last_data: float  # the last byte received, or the accept time
    last_heard: float  # the last line the handler took, or the accept time
    heard: bool = False  # it has sent at least one line the handler took
    fd: int = field(init=False)

    def __post_init__(self) -> None:
        self.fd = self.sock.fileno()

    def claim(self) -> tuple[bool, float]:
        """Ordering for eviction: the smallest claim goes first."""
        return self.heard, self.last_heard


class TcpListener:
    """Serves a listening socket and its connections for ``reader`` until ``stop`` is set.

    Made before the socket is bound, so that once the feed is ready only accept() still needs a descriptor.
    """

    def __init__(self, reader: LineOwner) -> None:
        self.reader = reader
        self.max_conn = reader.max_conn
        self.idle_s = reader.idle_s
        self.connections: dict[int, SensorConnection] = {}
        self._sel = selectors.DefaultSelector()
        self._pause_s = ACCEPT_PAUSE_MIN_S
        self._paused_until: float | None = None  # accepting stops until then after an accept() failure
        self._next_sweep = 0.0

    def __enter__(self) -> TcpListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sel.close()

    def serve(self, srv: socket.socket, stop: threading.Event) -> None:
        srv.setblocking(False)
        self._sel.register(srv, selectors.EVENT_READ)
        try:
            while not stop.is_set():
                now = time.monotonic()
                timeout = TURN_S if self._paused_until is None else max(0.0, min(TURN_S, self._paused_until - now))
                ready = self._sel.select(timeout)
                # reads first: a sensor's first line counts before new arrivals can push it out
                for key, _ in ready:
                    if key.data is not None:
                        self._read(key.data)
                if any(key.fileobj is srv for key, _ in ready):
                    self._accept(srv)
                now = time.monotonic()
                if self._paused_until is not None and now >= self._paused_until:
                    self._paused_until = None
                    self._sel.register(srv, selectors.EVENT_READ)
                if now >= self._next_sweep:
                    self._close_idle(now)
        finally:
            for conn in list(self.connections.values()):
                self._close(conn)
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(srv)
            self._paused_until = None

    def _accept(self, srv: socket.socket) -> None:
        c = self.reader.counters
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = srv.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS, ECONNABORTED, ...: pause, then try again
                c.refused += 1
                c.last_error = f"cannot accept a connection: {exc}"
                self.reader.log(logging.WARNING, "accept", "sensor %s: cannot accept a connection on %s:%s: %s "
                                "(%d so far); pausing %.2f s", self.reader.spec.sensor_id, self.reader.host,
                                self.reader.bound_port, exc, c.refused, self._pause_s)
                self._sel.unregister(srv)
                self._paused_until = time.monotonic() + self._pause_s
                self._pause_s = min(self._pause_s * 2, ACCEPT_PAUSE_MAX_S)
                return
            self._pause_s = ACCEPT_PAUSE_MIN_S
            self._add(sock, f"{addr[0]}:{addr[1]}")

    def _add(self, sock: socket.socket, peer: str) -> None:
        c = self.reader.counters
        if len(self.connections) >= self.max_conn:
            victim = min(self.connections.values(), key=SensorConnection.claim)
            self._close(victim)
            c.evicted += 1
            self.reader.log(logging.WARNING, "evict", "sensor %s: max_conn %d reached: closed %s (%s) to let %s in",
                            self.reader.spec.sensor_id, self.max_conn, victim.peer,
                            "heard" if victim.heard else "never sent a good line", peer)
        sock.setblocking(False)
        now = time.monotonic()
        conn = SensorConnection(sock, peer, LineSplitter(self.reader.spec.max_line), now, now)
        self.connections[conn.fd] = conn
        self._sel.register(sock, selectors.EVENT_READ, conn)
        c.connections += 1
        c.open_connections = len(self.connections)

    def _read(self, conn: SensorConnection) -> None:
        if self.connections.get(conn.fd) is not conn:  # closed earlier in this turn
            return
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # reset by the peer
            self.reader.counters.last_error = f"connection from {conn.peer}: {exc}"
            data = b""
        if not data:
            self._close(conn)
            return
        now = time.monotonic()
        conn.last_data = now
        if self.reader.deliver(conn.splitter, data):
            conn.heard, conn.last_heard = True, now

    def _close_idle(self, now: float) -> None:
        self._next_sweep = now + min(1.0, self.idle_s / 4)
        for conn in [k for k in self.connections.values() if now - k.last_data > self.idle_s]:
            self.reader.counters.idle_closed += 1
            self.reader.log(logging.INFO, "idle", "sensor %s: closed %s, silent for %.0f s (idle_s)",
                            self.reader.spec.sensor_id, conn.peer, now - conn.last_data)
            self._close(conn)

    def _close(self, conn: SensorConnection) -> None:
        """Close a connection; its unterminated last line is still handed on (as at the end of any stream)."""
        self.connections.pop(conn.fd, None)
        self.reader.counters.open_connections = len(self.connections)
        with contextlib.suppress(KeyError, ValueError):  # not registered: nothing to undo
            self._sel.unregister(conn.sock)
        conn.sock.close()
        self.reader.deliver(conn.splitter, b"", end=True)
