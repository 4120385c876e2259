"""A real TAK server for the CoT output's tests, and the clients that watch what reaches it.

``TakServer`` is taky 0.10 (a small TAK server; ``./dev setup`` installs it into its own venv,
``$EDGE_AGENT_HOME/taky-venv``, because its pins are not ours) on a free loopback port, over plain TCP or over
TLS with a test CA and a client certificate. ``CotListener`` is a client of it that collects the events taky
sends; ``MulticastListener`` collects the CoT datagrams sent to a multicast group on the loopback interface.

Every event collected is kept three ways: the raw bytes as they came, lxml's element, and takproto's parse of it
(XML -> TAK protobuf -> ``TakMessage``): takproto is the independent CoT parser the tests check against.

What taky 0.10 does with what a sender writes (taky/cot/client.py, router.py, persistence.py, models/):
  * a stream of ``<event>`` documents, each one may carry an ``<?xml ...?>`` declaration (it strips them);
    an ill-formed document closes the connection;
  * an event lacking uid, type, time/start/stale (ISO 8601) or any of the point's lat/lon/hae/ce/le is dropped
    silently (a debug line in the log); the offset of a time is ignored: send UTC (``Z``);
  * it forwards an event re-serialized: no declaration, time/start/stale with milliseconds and ``Z``, the point
    as ``%.6f``/``%.1f``, attributes other than version/uid/type/how/time/start/stale dropped, ``<detail>`` as is;
  * every event is broadcast to every other client, identified or not; ``<marti><dest callsign>`` sends it to
    those clients only and GeoChat goes to its team or callsign; a client identifies itself with an event whose
    ``<detail>`` holds ``<takv>``, ``<contact callsign>`` and ``<__group>`` (only needed for those two);
  * types ``a-*``, ``b-m-p*``, ``b-r-f-h-c``, ``u-d-{c,r,f}`` are kept by uid (a newer event of that uid replaces it)
    until their stale and sent to a client when it connects (after the TLS handshake); other types (``b-a-*``) are
    not kept; an event already stale is forwarded but neither kept nor does it remove the kept one of its uid;
  * ``t-x-c-t`` (a ping) is answered to its sender only with a pong (uid ``takPong``, type ``t-x-c-t-r``, how
    ``h-g-i-g-o``, stale 20 s, point 0,0) and not forwarded.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import takproto
from lxml import etree

from edge_agent.demo.brokers import free_port

ROOT = Path(__file__).resolve().parents[1]

TAKY = Path(os.environ.get("EDGE_AGENT_HOME") or ROOT / ".state") / "taky-venv" / "bin" / "taky"
HOST = "127.0.0.1"
ATAK_GROUP = "239.2.3.1"  # ATAK's default CoT multicast group (SA on port 6969)


def have_taky() -> bool:
    """Whether ``./dev setup`` has installed taky into its venv."""
    return TAKY.is_file() and os.access(TAKY, os.X_OK)


# --- the server ---------------------------------------------------------------------------------------------------


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_test_pki(directory: Path) -> None:
    """A CA (ca.crt/key), a server certificate for 127.0.0.1 and localhost (server.crt/key) and a client
    certificate (client.crt/key), both signed by the CA, with the extensions strict X.509 checking asks for."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=edge-agent test TAK CA",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)
    leaves = {"server": ("/CN=127.0.0.1", "serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"),
              "client": ("/CN=edge-agent-test", "clientAuth", "")}
    for name, (subject, usage, san) in leaves.items():
        (directory / f"{name}.ext").write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n{san}")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=directory)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=directory)


class TakServer:
    """taky on a free loopback port, its config, log and (with ``tls``) certificates in ``workdir``.

    ``start()`` again after ``stop()`` or ``kill()`` brings it back on the same port (with nothing kept: taky's
    persistence lives in its memory)."""

    def __init__(self, workdir: Path, tls: bool = False) -> None:
        self.workdir = Path(workdir)
        self.tls = tls
        self.host = HOST
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "taky.log"
        pki = self.workdir / "pki"
        self.ca_path = pki / "ca.crt"
        self.client_cert = pki / "client.crt"
        self.client_key = pki / "client.key"

    @property
    def cot_url(self) -> str:
        """Where a CoT client (pytak's COT_URL) reaches it."""
        return f"{'tls' if self.tls else 'tcp'}://{self.host}:{self.port}"

    def _write_config(self) -> Path:
        assert self.port is not None
        lines = ["[taky]", "hostname = taky.test", "node_id = EDGETEST", f"bind_ip = {self.host}", "redis = false",
                 f"root_dir = {self.workdir}", "", "[cot_server]", f"port = {self.port}", "log_cot =",
                 "", "[dp_server]", f"upload_path = {self.workdir / 'dp-user'}", "", "[ssl]",
                 f"enabled = {'true' if self.tls else 'false'}"]
        if self.tls:
            pki = self.ca_path.parent
            if not (pki / "server.crt").exists():
                make_test_pki(pki)
            # server_p12 only feeds taky's client packages (taky_dps, takyctl build_client), never the CoT port
            lines += ["client_cert_required = true", f"ca = {self.ca_path}", f"ca_key = {pki / 'ca.key'}",
                      f"cert = {pki / 'server.crt'}", f"key = {pki / 'server.key'}",
                      f"server_p12 = {pki / 'server.p12'}", f"cert_db = {pki / 'cert-db.txt'}"]
        conf = self.workdir / "taky.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 20.0) -> TakServer:
        """Start taky (on the port it had, if it ran before) and wait until the port accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("taky is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        conf = self._write_config()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([str(TAKY), "-c", str(conf), "-l", "debug"], cwd=self.workdir,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"taky exited with {self.proc.returncode} on starting:\n{self.log_tail()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"taky did not listen on {self.host}:{self.port} in {timeout} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (taky closes its clients and exits within its 1 s select loop), SIGKILL if it does not."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a word (a crash, a power cut); its clients see a reset."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_text()[-chars:]

    def __enter__(self) -> TakServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the events the listeners collect ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CotEvent:
    """One CoT event as it arrived: ``raw`` bytes, lxml's ``element`` (None for a TAK protobuf datagram) and
    takproto's ``proto`` (a ``TakMessage``; None, with ``error`` saying why, where a parse failed)."""

    raw: bytes
    element: Any
    proto: Any
    error: str | None = None
    sender: tuple[str, int] | None = None  # a datagram's source address
    at: float = field(default_factory=time.time)  # when it arrived (epoch seconds)

    @property
    def cot(self) -> Any:
        """takproto's ``cotEvent``: type, uid, how, lat, lon, hae, ce, le, sendTime/startTime/staleTime (ms),
        detail.xmlDetail."""
        if self.proto is None:
            raise AssertionError(f"takproto could not parse this event ({self.error}): {self.raw[:300]!r}")
        return self.proto.cotEvent

    @property
    def type(self) -> str | None:
        if self.element is not None:
            return self.element.get("type")
        return self.proto.cotEvent.type if self.proto is not None else None

    @property
    def uid(self) -> str | None:
        if self.element is not None:
            return self.element.get("uid")
        return self.proto.cotEvent.uid if self.proto is not None else None

    def __str__(self) -> str:
        what = f"{self.type} uid={self.uid}"
        return f"{what} (error: {self.error})" if self.error else what


_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def parse_cot(raw: bytes, sender: tuple[str, int] | None = None) -> CotEvent:
    """Parse one CoT document (XML, or TAK protocol v1 when it starts with 0xbf) with lxml and takproto."""
    if raw[:1] == b"\xbf":
        try:
            return CotEvent(raw, None, takproto.parse_proto(bytearray(raw)), sender=sender)
        except Exception as exc:
            return CotEvent(raw, None, None, f"takproto: {exc!r}", sender)
    try:
        element = etree.fromstring(raw, _XML_PARSER)
    except etree.XMLSyntaxError as exc:
        return CotEvent(raw, None, None, f"not well-formed XML: {exc}", sender)
    if element.tag != "event":
        return CotEvent(raw, element, None, f"root element is <{element.tag}>, not <event>", sender)
    try:
        proto = takproto.parse_proto(takproto.xml2proto(raw))
    except Exception as exc:  # takproto's own strictness (times without 'Z', a bad number): the test sees it
        return CotEvent(raw, element, None, f"takproto: {exc!r}", sender)
    return CotEvent(raw, element, proto, sender=sender)


class CotStreamSplitter:
    """Cuts a CoT byte stream into its ``<event>...</event>`` documents, exactly as sent: whitespace and XML
    declarations between documents are dropped, whatever else is there stays in the document (and fails its parse).
    A regular expression rather than a pull parser so that the raw bytes survive; CoT never nests ``<event>``."""

    _LEAD = re.compile(rb"(?:\s+|<\?xml\b.*?\?>)+", re.S)
    _END = re.compile(rb"</event\s*>")

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        documents: list[bytes] = []
        while True:
            lead = self._LEAD.match(self.buffer)
            if lead:
                self.buffer = self.buffer[lead.end():]
            end = self._END.search(self.buffer)
            if end is None:
                return documents
            documents.append(self.buffer[:end.end()])
            self.buffer = self.buffer[end.end():]


class _Collector:
    """The events a reader thread collects, and waiting for them."""

    what = "listener"

    def __init__(self) -> None:
        self._events: list[CotEvent] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self.error: BaseException | None = None  # what ended the reader, if not close()
        self.disconnected = threading.Event()  # the reader has ended (closed by the peer, an error, or close())

    def _add(self, event: CotEvent) -> None:
        with self._changed:
            self._events.append(event)
            self._changed.notify_all()

    def _ended(self) -> None:
        with self._changed:
            self.disconnected.set()
            self._changed.notify_all()

    def events(self) -> list[CotEvent]:
        """Everything collected so far, in order of arrival."""
        with self._changed:
            return list(self._events)

    def wait_for(self, predicate: Callable[[CotEvent], bool], timeout: float = 10.0, count: int = 1
                 ) -> list[CotEvent]:
        """The collected events ``predicate`` accepts, once there are ``count`` of them; AssertionError listing what
        did arrive when they are not there within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matching = [event for event in self._events if predicate(event)]
                if len(matching) >= count:
                    return matching
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.25))
            arrived = "\n  ".join(str(event) for event in self._events) or "(nothing)"
            state = f"; the connection ended: {self.error!r}" if self.disconnected.is_set() else ""
        raise AssertionError(f"{self.what}: {len(matching)} of {count} matching events in {timeout} s{state}; "
                             f"arrived:\n  {arrived}")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


# --- a TAK client that listens ---------------------------------------------------------------------------------


def sa_event(uid: str, callsign: str, stale_s: float = 300.0) -> bytes:
    """A self-description (SA) event as ATAK sends it: what identifies a client to taky (takv, contact, group)."""
    now = datetime.now(UTC)
    stamp = "%Y-%m-%dT%H:%M:%S.%fZ"
    return (f'<event version="2.0" uid="{uid}" type="a-f-G-U-C" how="h-e" time="{now.strftime(stamp)}" '
            f'start="{now.strftime(stamp)}" stale="{(now + timedelta(seconds=stale_s)).strftime(stamp)}">'
            '<point lat="0" lon="0" hae="0" ce="9999999" le="9999999"/><detail>'
            '<takv os="linux" device="test" version="1" platform="edge-agent tests"/>'
            f'<contact callsign="{callsign}" endpoint="*:-1:stcp"/><__group name="Cyan" role="Team Member"/>'
            '</detail></event>').encode()


class CotListener(_Collector):
    """A client of ``server`` collecting every event taky sends it (over TLS with the client certificate where the
    server is TLS; ``with_cert=False`` leaves it out).

    taky broadcasts to every client, identified or not, so the listener stays anonymous (and out of the other
    clients' way) unless given a ``callsign``: then it identifies with an SA event first, which is what routing
    by callsign (``<marti><dest callsign>``, GeoChat) needs."""

    what = "CoT listener"

    def __init__(self, server: TakServer, callsign: str | None = None, with_cert: bool = True,
                 timeout: float = 5.0) -> None:
        super().__init__()
        assert server.port is not None, "start the server first"
        self.uid = f"edge-test-{uuid.uuid4().hex[:8]}"
        self.callsign = callsign
        self._splitter = CotStreamSplitter()
        raw = socket.create_connection((server.host, server.port), timeout=timeout)
        sock: socket.socket = raw
        try:
            if server.tls:
                context = ssl.create_default_context(cafile=str(server.ca_path))
                if with_cert:
                    context.load_cert_chain(str(server.client_cert), str(server.client_key))
                sock = context.wrap_socket(raw, server_hostname=server.host)
            if callsign is not None:
                sock.sendall(sa_event(self.uid, callsign))
        except BaseException:
            raw.close()
            raise
        sock.settimeout(0.2)
        self.sock = sock
        self._thread = threading.Thread(target=self._read, name=f"cot-listener-{server.port}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                for document in self._splitter.feed(data):
                    self._add(parse_cot(document))
        except OSError as exc:  # ssl.SSLError included: a refused certificate shows here under TLS 1.3
            if not self._stop.is_set():
                self.error = exc
        finally:
            self._ended()

    def send(self, data: bytes) -> None:
        """Send raw bytes to the server (a ping, an event of the test's own)."""
        self.sock.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


# --- multicast --------------------------------------------------------------------------------------------------


class MulticastListener(_Collector):
    """The CoT datagrams sent to ``group:port`` on the interface ``iface`` (port 0: a free one, see ``.port``).

    Multicast on loopback in this sandbox (and a CI container): ``lo`` has no MULTICAST flag and the route to
    239.0.0.0/8 goes out eth0, yet neither ``ip link set lo multicast on`` nor ``ip route add 239.0.0.0/8 dev lo``
    is needed. The listener joins the group on 127.0.0.1 (IP_ADD_MEMBERSHIP with that interface address) and the
    sender picks the loopback interface with ``IP_MULTICAST_IF=127.0.0.1`` (pytak: ``PYTAK_MULTICAST_LOCAL_ADDR=
    127.0.0.1``), IP_MULTICAST_LOOP being on by default. A sender left on the default interface reaches eth0's
    members, not this listener (so a test also proves that the sender chose its interface)."""

    what = "multicast listener"

    def __init__(self, group: str = ATAK_GROUP, port: int = 0, iface: str = HOST) -> None:
        super().__init__()
        self.group = group
        self.iface = iface
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # other listeners of the group may share it
            sock.bind((group, port))  # the group's address: datagrams to other groups on this port stay out
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                            struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(iface)))
        except BaseException:
            sock.close()
            raise
        sock.settimeout(0.2)
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._read, name=f"multicast-listener-{self.port}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    data, sender = self.sock.recvfrom(65536)
                except TimeoutError:
                    continue
                self._add(parse_cot(data, sender))
        except OSError as exc:
            if not self._stop.is_set():
                self.error = exc
        finally:
            self._ended()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
