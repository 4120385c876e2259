"""Line transports for radio and metal-detector feeds: UDP, TCP client, TCP server and serial.

A reader thread per source splits the byte stream into lines and hands each one, with its receive time, to
a callback. Lines longer than ``max_line`` are cut off and passed on flagged as oversized (the rest up to
the next newline is dropped), so a sensor that never sends a newline cannot fill memory. Connections that
fail or drop are reopened with backoff (doubling up to a ceiling). Nothing a sensor sends can stop a reader.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from sensors.errors import SensorError

log = logging.getLogger(__name__)

LineHandler = Callable[[bytes, float, bool], object]  # (line, received, oversized)
DEFAULT_MAX_LINE = 4096


@dataclass(slots=True)
class LineCounters:
    lines: int = 0
    bytes: int = 0
    oversized: int = 0
    reconnects: int = 0
    state: str = "starting"  # starting | online | offline | stopped
    last_error: str | None = None


class LineSplitter:
    """Bytes in, complete lines out; bounded memory whatever arrives."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            chunk = data[start:] if nl < 0 else data[start:nl]
            if self._discarding:
                if nl >= 0:
                    self._discarding = False
            else:
                room = self.max_line - len(self._buf)
                if len(chunk) > room:
                    self._buf += chunk[:room]
                    out.append((bytes(self._buf).rstrip(b"\r"), True))
                    self._buf.clear()
                    self._discarding = nl < 0
                else:
                    self._buf += chunk
                    if nl >= 0:
                        line = bytes(self._buf).rstrip(b"\r")
                        self._buf.clear()
                        if line:
                            out.append((line, False))
            if nl < 0:
                return out
            start = nl + 1

    def flush(self) -> list[tuple[bytes, bool]]:
        """The unterminated tail at the end of a stream or datagram."""
        line = bytes(self._buf).rstrip(b"\r")
        self._buf.clear()
        self._discarding = False
        return [(line, False)] if line else []


@dataclass(frozen=True, slots=True)
class LineSpec:
    sensor_id: str
    url: str
    max_line: int = DEFAULT_MAX_LINE
    backoff_min_s: float = 1.0
    backoff_max_s: float = 30.0


def parse_url(url: str) -> tuple[str, str, int, dict[str, str]]:
    """(scheme, host or device, port, options) of udp://, tcp://, tcp-listen:// and serial:// URLs."""
    parts = urlsplit(url)
    scheme = parts.scheme
    opts = dict(parse_qsl(parts.query))
    if scheme == "serial":
        device = parts.path or parts.netloc
        if not device:
            raise SensorError(f"{url}: serial URLs look like serial:///dev/ttyUSB0?baud=9600")
        return scheme, device, 0, opts
    if scheme not in ("udp", "tcp", "tcp-listen"):
        raise SensorError(f"{url}: unknown transport {scheme!r}; use udp://, tcp://, tcp-listen:// or serial://")
    if not parts.hostname or parts.port is None:
        raise SensorError(f"{url}: needs a host and a port, e.g. {scheme}://0.0.0.0:5005")
    return scheme, parts.hostname, parts.port, opts


class LineReader:
    """One sensor feed on one transport, read on its own thread until ``stop`` is set."""

    def __init__(self, spec: LineSpec, handler: LineHandler) -> None:
        self.spec = spec
        self.handler = handler
        self.counters = LineCounters()
        self.scheme, self.host, self.port, self.opts = parse_url(spec.url)
        self._thread: threading.Thread | None = None
        self.bound_port: int | None = None  # the real port of udp:// and tcp-listen:// (port 0 picks one)
        self._ready = threading.Event()

    def start(self, stop: threading.Event) -> None:
        target = {"udp": self._run_udp, "tcp": self._run_tcp_client, "tcp-listen": self._run_tcp_server,
                  "serial": self._run_serial}[self.scheme]
        self._thread = threading.Thread(target=self._guard, args=(target, stop), daemon=True,
                                        name=f"lines-{self.spec.sensor_id}")
        self._thread.start()

    def wait_ready(self, timeout: float = 5.0) -> bool:
        return self._ready.wait(timeout)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # -- plumbing --------------------------------------------------------------------------------------

    def _guard(self, target: Callable[[threading.Event], None], stop: threading.Event) -> None:
        try:
            target(stop)
        finally:
            self.counters.state = "stopped"

    def _deliver(self, splitter: LineSplitter, data: bytes, end: bool = False) -> None:
        now = time.time()
        c = self.counters
        c.bytes += len(data)
        lines = splitter.feed(data) + (splitter.flush() if end else [])
        for line, oversized in lines:
            c.lines += 1
            c.oversized += int(oversized)
            try:
                self.handler(line, now, oversized)
            except Exception:  # a handler bug must not kill the feed; it is logged with the line
                log.exception("sensor %s: handler failed on %r", self.spec.sensor_id, line[:80])

    def _backoff(self, stop: threading.Event, delay: float, error: str) -> float:
        c = self.counters
        c.state, c.last_error = "offline", error
        log.error("sensor %s: %s; retrying in %.1f s", self.spec.sensor_id, error, delay)
        stop.wait(delay)
        c.reconnects += 1
        return min(delay * 2, self.spec.backoff_max_s)

    # -- transports ----------------------------------------------------------------------------------------

    def _listen(self, stop: threading.Event, kind: str, make: Callable[[], socket.socket]) -> socket.socket | None:
        """Bind a listening socket, retrying with backoff until it works or ``stop`` is set."""
        delay = self.spec.backoff_min_s
        while not stop.is_set():
            try:
                sock = make()
            except OSError as exc:
                delay = self._backoff(stop, delay, f"cannot listen on {kind} {self.host}:{self.port}: {exc}")
                continue
            self.bound_port = sock.getsockname()[1]
            self.counters.state = "online"
            self._ready.set()
            return sock
        return None

    def _run_udp(self, stop: threading.Event) -> None:
        def bind() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((self.host, self.port))
            except OSError:
                sock.close()
                raise
            return sock

        sock = self._listen(stop, "udp", bind)
        if sock is None:
            return
        with sock:
            while not stop.is_set():
                if not select.select([sock], [], [], 0.2)[0]:
                    continue
                data = sock.recv(65535)
                self._deliver(LineSplitter(self.spec.max_line), data, end=True)  # a datagram is complete

    def _stream(self, conn: socket.socket, stop: threading.Event) -> None:
        splitter = LineSplitter(self.spec.max_line)
        conn.settimeout(0.2)
        while not stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                self.counters.last_error = str(exc)
                break
            if not data:
                break
            self._deliver(splitter, data)
        self._deliver(splitter, b"", end=True)

    def _run_tcp_client(self, stop: threading.Event) -> None:
        delay = self.spec.backoff_min_s
        while not stop.is_set():
            try:
                conn = socket.create_connection((self.host, self.port), timeout=5.0)
            except OSError as exc:
                delay = self._backoff(stop, delay, f"cannot connect to tcp {self.host}:{self.port}: {exc}")
                continue
            self.counters.state = "online"
            self._ready.set()
            got = self.counters.bytes
            with conn:
                self._stream(conn, stop)
            if stop.is_set():
                return
            if self.counters.bytes > got:
                delay = self.spec.backoff_min_s
            delay = self._backoff(stop, delay, f"tcp {self.host}:{self.port} closed the connection")

    def _run_tcp_server(self, stop: threading.Event) -> None:
        srv = self._listen(stop, "tcp", lambda: socket.create_server((self.host, self.port), reuse_port=False))
        if srv is None:
            return
        with srv:
            srv.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = srv.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=self._serve_client, args=(conn, stop), daemon=True).start()

    def _serve_client(self, conn: socket.socket, stop: threading.Event) -> None:
        with conn:
            self._stream(conn, stop)

    def _run_serial(self, stop: threading.Event) -> None:
        import serial  # pyserial

        delay = self.spec.backoff_min_s
        baud = int(self.opts.get("baud", "9600"))
        while not stop.is_set():
            try:
                port = serial.Serial(self.host, baudrate=baud, timeout=0.2)
            except (serial.SerialException, OSError, ValueError) as exc:
                delay = self._backoff(stop, delay, f"cannot open serial {self.host}: {exc}")
                continue
            self.counters.state = "online"
            self._ready.set()
            splitter = LineSplitter(self.spec.max_line)
            got = self.counters.bytes
            try:
                with port:
                    while not stop.is_set():
                        data = port.read(4096)
                        if data:
                            self._deliver(splitter, data)
            except (serial.SerialException, OSError) as exc:
                if stop.is_set():
                    return
                if self.counters.bytes > got:
                    delay = self.spec.backoff_min_s
                delay = self._backoff(stop, delay, f"serial {self.host} failed: {exc}")
                continue
            return
