"""The Cursor on Target output: the alert states owed to ``cot`` as CoT events (``cot``), sent over UDP
multicast or to a TAK server over TCP or TLS with a client certificate. pytak opens the connection (its
``protocol_factory``: multicast TTL and interface, TLS contexts from PEM or PKCS#12 files).

CoT has no receipts. Over UDP an event counts as delivered once sent. Over TCP/TLS, with ``confirm: ping``,
a batch counts only when the server answers a ``t-x-c-t`` ping written after it (a TAK server reads its
clients in order, so its pong says it read the batch); no pong in ``confirm_timeout_s`` drops the connection
and the batch goes again on the next one. A TAK device replaces an event by uid, so a repeat is harmless."""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import logging
import time
import warnings
import xml.etree.ElementTree as ET
from typing import Any

from edge_agent.config.outputs import CotConfig
from edge_agent.contract.alert import Alert
from edge_agent.incidents.deliveries import Deliveries, OwedState
from edge_agent.outputs.base import IDLE_WAKE_S, OutputDown, OutputRunner
from edge_agent.outputs.cot import PONG_TYPE, CotStyle, alert_event, encode_tak, ping_event

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
READ_MAX = 1 << 20  # a server's event longer than this is not one we wait for: dropped unread
KEEPALIVE_S = 30.0  # an idle TCP connection is pinged this often (a dead server is found without an alert)


def pytak_config(cfg: CotConfig) -> configparser.SectionProxy:
    """pytak's settings for this output."""
    scheme = {"udp": "udp+wo", "tcp": "tcp", "tls": "tls"}[cfg.transport]
    values: dict[str, str] = {"COT_URL": f"{scheme}://{cfg.host}:{cfg.server_port}",
                              "PYTAK_MULTICAST_TTL": str(cfg.ttl)}
    if cfg.interface:
        values["PYTAK_MULTICAST_LOCAL_ADDR"] = cfg.interface
    if cfg.tls is not None:
        values |= {"PYTAK_TLS_CLIENT_CERT": str(cfg.tls.cert_file), "PYTAK_TLS_CLIENT_KEY": str(cfg.tls.key_file),
                   "PYTAK_TLS_CLIENT_CAFILE": str(cfg.tls.ca_file)}
        if cfg.tls.insecure:
            values["PYTAK_TLS_DONT_CHECK_HOSTNAME"] = "1"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_dict({"cot": values})
    return parser["cot"]


async def open_transport(cfg: CotConfig) -> tuple[Any, Any]:
    """(reader, writer) from pytak; its own configuration errors (a missing certificate file) become
    ``OutputDown`` with pytak's message."""
    with warnings.catch_warnings():  # pytak says at import which of its extras (enrolment, HTTP) are missing
        warnings.simplefilter("ignore", UserWarning)
        import pytak  # only when the output is configured

    try:
        return await asyncio.wait_for(pytak.protocol_factory(pytak_config(cfg)), CONNECT_TIMEOUT_S)
    except (SyntaxError, ValueError) as exc:  # what pytak raises for settings it cannot use
        raise OutputDown(f"{cfg.transport}://{cfg.host}:{cfg.server_port}: {exc}") from None


class EventReader:
    """Events a TAK server sends us, split at ``</event>`` and parsed one by one; counts its pongs."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.pongs = 0
        self.changed = asyncio.Event()
        self._buf = b""

    async def run(self) -> None:
        while True:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise OutputDown("the TAK server closed the connection")
            self._buf += chunk
            while (end := self._buf.find(b"</event>")) >= 0:
                doc, self._buf = self._buf[:end + 8], self._buf[end + 8:]
                self._take(doc)
            if len(self._buf) > READ_MAX:
                self._buf = b""

    def _take(self, doc: bytes) -> None:
        start = doc.find(b"<event")
        try:
            event = ET.fromstring(doc[start:]) if start >= 0 else None
        except ET.ParseError:
            return
        if event is not None and event.get("type") == PONG_TYPE:
            self.pongs += 1
            self.changed.set()


class CotOutput(OutputRunner):
    """See the module docstring."""

    name = "cot"

    def __init__(self, deliveries: Deliveries, cfg: CotConfig, style: CotStyle) -> None:
        super().__init__(deliveries, cfg)
        self.cfg = cfg
        self.style = style
        self.confirms = cfg.transport != "udp" and cfg.confirm == "ping"
        self.pings = 0

    def encode(self, alert: Alert, owed: OwedState) -> bytes | None:
        xml = alert_event(alert, self.style)
        if xml is None or self.cfg.protocol == "xml":
            return xml
        return encode_tak(xml, mesh=self.cfg.transport == "udp")

    def extra_report(self) -> dict[str, Any]:
        return {"transport": self.cfg.transport, "peer": f"{self.cfg.host}:{self.cfg.server_port}",
                "confirmed_by": "ping" if self.confirms else "send"}

    async def session(self) -> None:
        reader, writer = await open_transport(self.cfg)
        events: EventReader | None = None
        listening: asyncio.Task[None] | None = None
        if self.cfg.transport != "udp":
            events = EventReader(reader)
            listening = asyncio.create_task(events.run())
        try:
            if self.confirms and events is not None:
                await self._ping(writer, events, listening)  # the server answers: it is really there
            self.connected()
            last_io = time.monotonic()
            while not self.stopping:
                if listening is not None and listening.done():
                    listening.result()  # raises why the server's side ended
                    raise OutputDown("the TAK server's stream ended")

                async def send(batch: list[tuple[OwedState, bytes]]) -> None:
                    await self._write(writer, [data for _, data in batch])
                    if self.confirms and events is not None:
                        await self._ping(writer, events, listening)

                if await self.deliver(send):
                    last_io = time.monotonic()
                elif events is not None and time.monotonic() - last_io > KEEPALIVE_S:
                    await self._ping(writer, events, listening) if self.confirms else \
                        await self._write(writer, [ping_event(self.style.callsign, time.time())])
                    last_io = time.monotonic()
                await self.wait_wake(IDLE_WAKE_S)
        finally:
            if listening is not None:
                listening.cancel()
                with contextlib.suppress(BaseException):
                    await listening
            with contextlib.suppress(Exception):
                writer.close()

    async def _write(self, writer: Any, datas: list[bytes]) -> None:
        if hasattr(writer, "send"):  # a datagram endpoint: one event per datagram
            for data in datas:
                await writer.send(data)
            return
        writer.write(b"".join(datas))
        await asyncio.wait_for(writer.drain(), self.cfg.confirm_timeout_s)

    async def _ping(self, writer: Any, events: EventReader, listening: asyncio.Task[None] | None) -> None:
        """Write a ping and wait for the server's pong: everything written before it was read."""
        before = events.pongs
        self.pings += 1
        await self._write(writer, [ping_event(self.style.callsign, time.time())])
        deadline = time.monotonic() + self.cfg.confirm_timeout_s
        while events.pongs <= before:
            self.heartbeat = time.monotonic()
            if listening is not None and listening.done():
                listening.result()
                raise OutputDown("the TAK server's stream ended")
            left = deadline - time.monotonic()
            if left <= 0:
                raise OutputDown(f"no answer to a ping from the TAK server in {self.cfg.confirm_timeout_s:g} s")
            events.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(events.changed.wait(), min(left, 0.5))


async def probe(cfg: CotConfig, callsign: str, timeout_s: float = 8.0) -> str:
    """``doctor``: open the transport; over TCP/TLS, a ping that the TAK server must answer. Returns what was
    seen; raises ``OutputDown``/``OSError``/``TimeoutError`` with why not."""
    reader, writer = await open_transport(cfg)
    try:
        if cfg.transport == "udp":
            return (f"udp {cfg.host}:{cfg.server_port} (ttl {cfg.ttl}) open; nothing answers on UDP, so whether a "
                    "TAK device hears it is not known here")
        events = EventReader(reader)
        listening = asyncio.create_task(events.run())
        started = time.monotonic()
        writer.write(ping_event(callsign, time.time()))
        await asyncio.wait_for(writer.drain(), timeout_s)
        try:
            while events.pongs == 0:
                if listening.done():
                    listening.result()
                await asyncio.wait_for(events.changed.wait(), max(0.01, timeout_s - (time.monotonic() - started)))
        except TimeoutError:
            raise OutputDown(f"connected, but no answer to a ping in {timeout_s:g} s") from None
        finally:
            listening.cancel()
        return (f"{cfg.transport}://{cfg.host}:{cfg.server_port}: the TAK server answered a ping in "
                f"{(time.monotonic() - started) * 1000:.0f} ms")
    finally:
        with contextlib.suppress(Exception):
            writer.close()
