"""A broker for the demo when none is configured: a private Mosquitto on a free loopback port when it is
installed, else amqtt in-process (MQTT 3.1.1), so the demo needs no server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class DemoError(RuntimeError):
    """The demo cannot run as asked; the message says what to install or pass."""


class BrokerUnavailable(DemoError):
    """No broker could be started; the message says what to install or pass."""


def free_port() -> int:
    """A loopback port free for TCP and for UDP now: the kernel picks a free TCP port without looking at UDP, and a
    UDP listener (a detector's feed) given a port another process holds for UDP would hear nothing."""
    for _ in range(100):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no loopback port is free for both TCP and UDP")


def wait_listening(host: str, port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def give_to_mosquitto(path: Path) -> None:
    """Run as root, Mosquitto drops to the 'mosquitto' user: it must own the folder it reads and writes."""
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    for p in [path, *path.rglob("*")]:
        os.chown(p, user.pw_uid, user.pw_gid)


class LocalBroker:
    """Start with ``start()``; ``kind`` says which one runs; ``stop()`` ends it."""

    def __init__(self, prefer: str = "auto") -> None:
        self.port = free_port()
        self.kind = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self.prefer = prefer

    def start(self) -> LocalBroker:
        mosquitto = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto")
                                                  else None)
        if mosquitto and self.prefer in ("auto", "mosquitto"):
            self._start_mosquitto(mosquitto)
        else:
            self._start_amqtt()
        return self

    def _start_mosquitto(self, exe: str) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="edge-agent-broker-"))
        self._dir.chmod(0o755)
        conf = self._dir / "mosquitto.conf"
        # a large queue per subscriber: Mosquitto's default (1000) drops QoS 1 messages to a slow console
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "log_dest none\nmax_queued_messages 100000\n")
        give_to_mosquitto(self._dir)
        self._proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not wait_listening("127.0.0.1", self.port):
            self._proc.kill()
            err = self._proc.communicate()[1].decode(errors="replace").strip()
            log.warning("mosquitto did not start (%s); using the embedded broker", err[-300:])
            self._proc = None
            self._start_amqtt()
            return
        self.kind = f"mosquitto (private, 127.0.0.1:{self.port})"

    def _start_amqtt(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            raise BrokerUnavailable("no broker for the demo: install Mosquitto (apt-get install mosquitto), the "
                               "embedded one (pip install 'edge-agent[demo]'), or give --broker HOST[:PORT]") from exc

        ready = threading.Event()
        errors: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)

            async def boot() -> None:
                self._broker = Broker({
                    "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                    # anonymous on loopback only; no $SYS topics, no packet logging
                    "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
                }, loop=loop)
                await self._broker.start()

            try:
                loop.run_until_complete(boot())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self._thread = threading.Thread(target=serve, name="embedded-broker", daemon=True)
        self._thread.start()
        ready.wait(15)
        if errors or not wait_listening("127.0.0.1", self.port):
            why = errors[0] if errors else "not listening"
            raise BrokerUnavailable(f"the embedded MQTT broker did not start: {why}")
        self.kind = f"embedded amqtt (in-process, 127.0.0.1:{self.port})"

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
        if self._loop is not None and self._broker is not None:
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            with contextlib.suppress(Exception):
                fut.result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(5)
            self._loop = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
