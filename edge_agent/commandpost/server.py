"""``edge-agent command-post``: the store, the MQTT side and the page in one process (uvicorn), and the user
verbs. Stops cleanly on SIGTERM/SIGINT (uvicorn's handlers): the page's connections close, the MQTT client
disconnects (its persistent session keeps what arrives meanwhile), the store closes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from edge_agent.commandpost.ingest import Ingest
from edge_agent.commandpost.store import CommandPostStore
from edge_agent.commandpost.web import LiveEvents, Page, build_app
from edge_agent.config.commandpost import CommandPostConfig
from edge_agent.paths import default_state_dir

log = logging.getLogger(__name__)

LEAFLET_VERSION = "1.9.4"


class CommandPostError(RuntimeError):
    """The command post cannot start as configured; the message says what to do."""


def leaflet_dir(cfg: CommandPostConfig) -> Path:
    """Leaflet's ``dist`` folder (npm package), checked to hold what the page loads."""
    d = cfg.map.leaflet_dir or default_state_dir() / "web" / "node_modules" / "leaflet" / "dist"
    if not (d / "leaflet.js").is_file() or not (d / "leaflet.css").is_file():
        raise CommandPostError(
            f"Leaflet is not installed at {d} (leaflet.js, leaflet.css): run ./dev setup, or "
            f"'npm install --prefix {default_state_dir() / 'web'} leaflet@{LEAFLET_VERSION}', or set map.leaflet_dir")
    return d


def check_files(cfg: CommandPostConfig) -> None:
    tls = cfg.listen.tls
    if tls is not None:
        for what, p in (("listen.tls.cert_file", tls.cert_file), ("listen.tls.key_file", tls.key_file)):
            if not p.is_file():
                raise CommandPostError(f"{what}: {p} does not exist or is not a file")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except (ssl.SSLError, OSError) as exc:
            raise CommandPostError(f"listen.tls: cannot use {tls.cert_file} with {tls.key_file}: {exc}") from exc
    if cfg.map.tiles is not None and not cfg.map.tiles.is_file():
        raise CommandPostError(f"map.tiles: {cfg.map.tiles} does not exist (an MBTiles file)")


def bind(cfg: CommandPostConfig) -> socket.socket:
    host, port = cfg.listen.host, cfg.listen.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CommandPostError(f"listen: cannot listen on {host}:{port}: {exc.strerror} (another program there? "
                               "change listen.port)") from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(cfg: CommandPostConfig, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"{'https' if cfg.listen.tls else 'http'}://{shown}:{port}/"


class _Server(uvicorn.Server):
    """uvicorn's server, stopping on SIGTERM/SIGINT like uvicorn does, but without raising the signal again
    afterwards (uvicorn does, and the process then dies before the store is closed, with status -15)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        before = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)


class CommandPost:
    """The whole command post, built from its config: store, live events, the MQTT side and the page."""

    def __init__(self, cfg: CommandPostConfig) -> None:
        check_files(cfg)
        leaflet = leaflet_dir(cfg)
        self.cfg = cfg
        self.store = CommandPostStore(cfg.store_location)
        self.events = LiveEvents(self.store, cfg.silent_after_s)
        self.store.on_change = self.events.publish  # every change, this command post's or (shared store) another's
        self.store.listen()
        self.ingest = Ingest(cfg.mqtt, cfg.client_id, self.store, self.events.publish, by=cfg.name)
        self.page = Page(cfg, self.store, self.events, self.ingest.receiver, leaflet)
        app = build_app(self.page, on_start=self.ingest.start, on_stop=self.ingest.stop)
        self.sock = bind(cfg)
        self.url = url_of(cfg, self.sock)
        tls = cfg.listen.tls
        self.server = _Server(uvicorn.Config(
            app, log_level="warning", access_log=False, timeout_graceful_shutdown=2, lifespan="on",
            ssl_certfile=str(tls.cert_file) if tls else None, ssl_keyfile=str(tls.key_file) if tls else None))
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (uvicorn's handlers; main thread only)."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.close()

    def start(self) -> None:
        """Serve on a thread (the demo): no signal handlers, ``stop()`` ends it."""
        self._thread = threading.Thread(target=self.run, name="command-post", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        self.sock.close()
        self.store.close()


def serve(cfg: CommandPostConfig) -> int:
    cp = CommandPost(cfg)
    if not cp.page.users.list():
        log.warning("no users yet: add one with 'edge-agent command-post -c CONFIG user add NAME --role guard'")
    print(f"command post {cfg.name}: {cp.url} (broker {cfg.mqtt.host}:{cfg.mqtt.broker_port}, "
          f"prefix {cfg.mqtt.prefix}, store {cfg.store_shown})", flush=True)
    cp.run()
    return 0


def read_password(prompt: str = "password: ") -> str:
    """From ``EDGE_AGENT_PASSWORD`` (scripts), else the terminal (twice), else one line of stdin."""
    env = os.environ.get("EDGE_AGENT_PASSWORD")
    if env is not None:
        return env
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass(prompt)
        if getpass.getpass("again: ") != first:
            raise CommandPostError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")
