"""Line transports for radio and metal-detector feeds: UDP, TCP client, TCP server and serial.

A reader thread per source splits the byte stream into lines and hands each one, with its receive time, to
a callback. Lines longer than ``max_line`` are cut off and passed on flagged as oversized (the rest up to
the next newline is dropped), so a sensor that never sends a newline cannot fill memory. Connections that
fail or drop are reopened with backoff (doubling up to a ceiling). Nothing a sensor sends can stop a reader:
whatever a transport or the handler raises is logged (rate-limited), counted, and the reader goes on.
URL options are checked by ``parse_url``, so a bad one is a configuration error, not a failure at run time.
"""

from __future__ import annotations

import contextlib
import logging
import math
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from sensors.errors import SensorError
from sensors.linesplit import DEFAULT_MAX_LINE, LineSplitter
from sensors.listeners import TcpListener

log = logging.getLogger(__name__)

# (line, received, oversized) -> something not None when it took the line (an event), None when it rejected it
LineHandler = Callable[[bytes, float, bool], object]
UDP_RCVBUF = 4 * 1024 * 1024  # the kernel caps it at net.core.rmem_max
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)  # Linux: a drop counter with every datagram
DEFAULT_MAX_CONN = 16
DEFAULT_IDLE_S = 300.0
MAX_CONN_LIMIT = 1000  # well under the usual 1,024 descriptors per process
BAUD_RATES = (50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400, 57600, 115200,
              230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000, 2000000, 2500000, 3000000,
              3500000, 4000000)  # what pyserial accepts on every platform
URL_OPTIONS: dict[str, tuple[str, ...]] = {"udp": (), "tcp": (), "tcp-listen": ("max_conn", "idle_s"),
                                           "serial": ("baud",)}


@dataclass(slots=True)
class LineCounters:
    lines: int = 0
    bytes: int = 0
    oversized: int = 0
    reconnects: int = 0
    errors: int = 0  # failures the reader survived: receive errors, a transport that raised
    connections: int = 0  # tcp-listen: connections accepted
    open_connections: int = 0  # tcp-listen: connections being served now
    evicted: int = 0  # tcp-listen: closed to make room for a new one (max_conn)
    idle_closed: int = 0  # tcp-listen: closed after idle_s without a byte
    refused: int = 0  # tcp-listen: accept() failed (out of descriptors, handshake aborted)
    dropped: int = 0  # udp: datagrams the kernel dropped before the reader got them (its buffer was full)
    state: str = "starting"  # starting | online | offline | stopped
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class LineSpec:
    sensor_id: str
    url: str
    max_line: int = DEFAULT_MAX_LINE
    backoff_min_s: float = 1.0
    backoff_max_s: float = 30.0
    max_conn: int | None = None  # tcp-listen: connections served at once; None: the URL's ?max_conn= or 16
    idle_s: float | None = None  # tcp-listen: a connection silent this long is closed; None: ?idle_s= or 300

    def __post_init__(self) -> None:
        if self.max_conn is not None and not 1 <= self.max_conn <= MAX_CONN_LIMIT:
            raise ValueError(f"sensor {self.sensor_id}: max_conn must be 1-{MAX_CONN_LIMIT}, got {self.max_conn}")
        if self.idle_s is not None and not (math.isfinite(self.idle_s) and self.idle_s > 0):
            raise ValueError(f"sensor {self.sensor_id}: idle_s must be a positive number, got {self.idle_s}")


def _option_value(url: str, key: str, value: str) -> None:
    """Raise a SensorError naming the option unless ``value`` is valid for ``key``."""
    if key == "baud":
        if not value.isascii() or not value.isdigit() or int(value) not in BAUD_RATES:
            raise SensorError(f"{url}: baud {value!r} is not a standard serial rate; use one of "
                              f"{', '.join(map(str, BAUD_RATES))}")
    elif key == "max_conn":
        if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_CONN_LIMIT:
            raise SensorError(f"{url}: max_conn {value!r} must be a whole number from 1 to {MAX_CONN_LIMIT}")
    elif key == "idle_s":
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and seconds > 0):
            raise SensorError(f"{url}: idle_s {value!r} must be a positive number of seconds")


def parse_url(url: str) -> tuple[str, str, int, dict[str, str]]:
    """(scheme, host or device, port, options) of udp://, tcp://, tcp-listen:// and serial:// URLs; every
    option checked, so a bad one is a configuration error, never a failure at run time."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in URL_OPTIONS:
        raise SensorError(f"{url}: unknown transport {scheme!r}; use udp://, tcp://, tcp-listen:// or serial://")
    opts: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in URL_OPTIONS[scheme]:
            allowed = ", ".join(URL_OPTIONS[scheme]) or "none"
            raise SensorError(f"{url}: unknown option {key!r} for {scheme}:// (options: {allowed})")
        if key in opts:
            raise SensorError(f"{url}: option {key} is given twice")
        _option_value(url, key, value)
        opts[key] = value
    if scheme == "serial":
        device = parts.path or parts.netloc
        if not device:
            raise SensorError(f"{url}: serial URLs look like serial:///dev/ttyUSB0?baud=9600")
        return scheme, device, 0, opts
    try:
        port = parts.port
    except ValueError:
        raise SensorError(f"{url}: port {parts.netloc.rpartition(':')[2]!r} is not a number from 0 to 65535") from None
    if not parts.hostname or port is None:
        raise SensorError(f"{url}: needs a host and a port, e.g. {scheme}://0.0.0.0:5005")
    if scheme == "tcp" and port == 0:
        raise SensorError(f"{url}: port 0 cannot be connected to; use the sensor's port (1-65535)")
    return scheme, parts.hostname, port, opts


class LogLimiter:
    """At most one log line per key every ``every_s`` seconds; the next one says how many were held back."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, level: int, key: str, msg: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            msg, args = msg + " (%d more like this not logged)", (*args, held)
        log.log(level, msg, *args, exc_info=exc_info)


class LineReader:
    """One sensor feed on one transport, read on its own thread until ``stop`` is set."""

    def __init__(self, spec: LineSpec, handler: LineHandler) -> None:
        self.spec = spec
        self.handler = handler
        self.counters = LineCounters()
        self.scheme, self.host, self.port, self.opts = parse_url(spec.url)
        self.max_conn = spec.max_conn if spec.max_conn is not None else int(self.opts.get("max_conn",
                                                                                            DEFAULT_MAX_CONN))
        self.idle_s = spec.idle_s if spec.idle_s is not None else float(self.opts.get("idle_s", DEFAULT_IDLE_S))
        self.log = LogLimiter()
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

    @property
    def thread(self) -> threading.Thread | None:
        """The reader thread (None before ``start``), for the agent's watchdog."""
        return self._thread

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- plumbing --------------------------------------------------------------------------------------

    def _guard(self, target: Callable[[threading.Event], None], stop: threading.Event) -> None:
        """Run the transport until ``stop``; whatever it raises is logged and the transport starts again."""
        delay = self.spec.backoff_min_s
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    target(stop)
                    if stop.is_set():
                        return
                    error = "reader ended unexpectedly"
                except Exception as exc:  # a bug or a surprise from a transport must not end the feed
                    error = f"reader failed: {type(exc).__name__}: {exc}"
                    self.log(logging.ERROR, "reader", "sensor %s: %s", self.spec.sensor_id, error, exc_info=True)
                self.counters.errors += 1
                if time.monotonic() - started > self.spec.backoff_max_s:
                    delay = self.spec.backoff_min_s  # it ran a good while: start the backoff from the bottom
                delay = self._backoff(stop, delay, error)
        finally:
            self.counters.state = "stopped"

    def deliver(self, splitter: LineSplitter, data: bytes, end: bool = False) -> int:
        """Split ``data`` into lines for the handler; how many lines it took (returned something not None)."""
        now = time.time()
        c = self.counters
        c.bytes += len(data)
        lines = splitter.feed(data) + (splitter.flush() if end else [])
        taken = 0
        for line, oversized in lines:
            c.lines += 1
            c.oversized += int(oversized)
            try:
                taken += self.handler(line, now, oversized) is not None
            except Exception:  # a handler bug must not kill the feed; it is logged with the line
                self.log(logging.ERROR, "handler", "sensor %s: handler failed on %r", self.spec.sensor_id,
                         line[:80], exc_info=True)
        return taken

    def transport_error(self, what: str, exc: BaseException) -> None:
        """Count and log (rate-limited) a failure the reader survives."""
        c = self.counters
        c.errors += 1
        c.last_error = f"{what}: {exc}"
        self.log(logging.WARNING, what, "sensor %s: %s: %s (%d so far)", self.spec.sensor_id, what, exc, c.errors)

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
            # a burst larger than the default buffer (~200 KB) would be dropped by the kernel: ask for more, and
            # have the kernel say how many it dropped anyway (the count rides on the next datagram it delivers),
            # so that nothing is lost silently
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            return sock

        sock = self._listen(stop, "udp", bind)
        if sock is None:
            return
        with sock:
            while not stop.is_set():
                try:
                    if not select.select([sock], [], [], 0.2)[0]:
                        continue
                    data, ancillary, _flags, _addr = sock.recvmsg(65535, socket.CMSG_SPACE(4))
                except OSError as exc:  # e.g. out of buffer memory: the next datagram may well come through
                    self.transport_error("udp receive failed", exc)
                    stop.wait(0.05)
                    continue
                self._note_drops(ancillary)
                self.deliver(LineSplitter(self.spec.max_line), data, end=True)  # a datagram is complete

    def _note_drops(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        """The kernel's count of datagrams dropped on this socket so far (SO_RXQ_OVFL), logged when it grows."""
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(data) >= 4:
                total = int.from_bytes(data[:4], sys.byteorder)
                if total > self.counters.dropped:
                    log.error("sensor %s: the kernel dropped %d datagram(s) (%d in all): the reader fell behind",
                              self.spec.sensor_id, total - self.counters.dropped, total)
                    self.counters.dropped = total

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
            self.deliver(splitter, data)
        self.deliver(splitter, b"", end=True)

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
        with TcpListener(self) as listener:
            srv = self._listen(stop, "tcp", lambda: socket.create_server((self.host, self.port), backlog=128))
            if srv is None:
                return
            with srv:
                listener.serve(srv, stop)

    def _run_serial(self, stop: threading.Event) -> None:
        import serial  # pyserial

        delay = self.spec.backoff_min_s
        baud = int(self.opts.get("baud", "9600"))  # checked by parse_url
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
                            self.deliver(splitter, data)
            except (serial.SerialException, OSError) as exc:
                if stop.is_set():
                    return
                if self.counters.bytes > got:
                    delay = self.spec.backoff_min_s
                delay = self._backoff(stop, delay, f"serial {self.host} failed: {exc}")
                continue
            return
