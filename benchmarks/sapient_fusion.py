"""A SAPIENT fusion node for the tests, written from BSI Flex 335 v2.0: a TCP server that accepts edge nodes,
checks every message they send against the standard's protos (their mandatory, UUID and ULID options), answers
registrations and active alerts, and records what it received and sent as JSON lines.

Run it as ``python -m benchmarks.sapient_fusion --port P --record PATH [--host H] [--ack-alerts]
[--reject-registration]`` from the checkout's root; tests and benchmarks drive it through :class:`FusionNode`.

Framing: a 4-byte little-endian unsigned length, then that many bytes of a serialized ``SapientMessage``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet
from sapient_msg import proto_options_pb2
from sapient_msg.bsi_flex_335_v2_0.alert_ack_pb2 import AlertAck
from sapient_msg.bsi_flex_335_v2_0.alert_pb2 import Alert
from sapient_msg.bsi_flex_335_v2_0.registration_ack_pb2 import RegistrationAck
from sapient_msg.bsi_flex_335_v2_0.sapient_message_pb2 import SapientMessage

ROOT = Path(__file__).resolve().parents[1]

ICD_VERSION = "BSI Flex 335 v2.0"
FUSION_NODE_ID = "5b0c3f1e-7d2a-4c8e-9f41-2a6d8b3c9e70"  # this simulator's own node id (a lower-case UUID v4)
MAX_FRAME = 16 * 1024 * 1024
TIMESTAMP_WINDOW = (-0.9, 0.1)  # message timestamp minus receive time, seconds (Dstl's validator's default)
REJECT_REASON = "rejected by test fusion node"
ACK_REASON = "acknowledged by fusion node"

UUID_V4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_HEADER = struct.Struct("<I")


# ---------------------------------------------------------------------------------------------------- validation


def _field_options(field: FieldDescriptor) -> Any:
    return field.GetOptions().Extensions[proto_options_pb2.field_options]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check_message(msg: Message, path: str, out: list[str]) -> None:
    """The standard's per-field rules on ``msg`` and every sub-message that is set, recursively."""
    desc: Descriptor = msg.DESCRIPTOR
    where = path or desc.name
    unknown = len(UnknownFieldSet(msg))
    if unknown:
        out.append(f"{where}: {unknown} unknown field(s)")
    for oneof in desc.oneofs:
        if oneof.GetOptions().Extensions[proto_options_pb2.oneof_options].is_mandatory \
                and msg.WhichOneof(oneof.name) is None:
            choices = ", ".join(f.name for f in oneof.fields)
            out.append(f"{_join(path, oneof.name)}: mandatory oneof not set (one of {choices})")
    for field in desc.fields:
        _check_field(msg, field, path, out)


def _check_field(msg: Message, field: FieldDescriptor, path: str, out: list[str]) -> None:
    opts = _field_options(field)
    name = _join(path, field.name)
    if field.is_repeated:
        values = list(getattr(msg, field.name))
        if opts.is_mandatory and not values:
            out.append(f"{name}: mandatory repeated field is empty")
        for i, value in enumerate(values):
            _check_value(field, opts, value, f"{name}[{i}]", out)
        return
    if field.has_presence:
        if not msg.HasField(field.name):
            if opts.is_mandatory:
                out.append(f"{name}: mandatory field missing")
            return
    elif getattr(msg, field.name) == field.default_value:
        # a field without presence (proto3 implicit) holding its default was never set on the wire
        if opts.is_mandatory:
            out.append(f"{name}: mandatory field missing")
        return
    _check_value(field, opts, getattr(msg, field.name), name, out)


def _check_value(field: FieldDescriptor, opts: Any, value: Any, name: str, out: list[str]) -> None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        _check_message(value, name, out)
    elif field.type == FieldDescriptor.TYPE_ENUM:
        if value not in field.enum_type.values_by_number:
            out.append(f"{name}: unknown enum value {value} for {field.enum_type.full_name}")
    elif field.type == FieldDescriptor.TYPE_STRING:
        if opts.is_uuid and not UUID_V4.fullmatch(value):
            out.append(f"{name}: {value!r} is not a lower-case UUID v4")
        if opts.is_ulid and not ULID.fullmatch(value):
            out.append(f"{name}: {value!r} is not an upper-case ULID")


def validate(msg: SapientMessage, received_at: float) -> list[str]:
    """What is wrong with ``msg`` (received at epoch second ``received_at``) by the standard, as readable lines;
    empty when nothing is. Covers one message alone: registration order and node ids across a connection are the
    server's to check."""
    out: list[str] = []
    _check_message(msg, "", out)
    if msg.HasField("timestamp"):
        sent_at = msg.timestamp.seconds + msg.timestamp.nanos / 1e9
        skew = sent_at - received_at
        low, high = TIMESTAMP_WINDOW
        if not low <= skew <= high:
            out.append(f"timestamp: {skew:+.3f} s from the receive time, outside [{low:+.1f} s, {high:+.1f} s]")
    if msg.WhichOneof("content") == "registration" and msg.registration.HasField("icd_version") \
            and msg.registration.icd_version != ICD_VERSION:
        out.append(f"registration.icd_version: {msg.registration.icd_version!r}, expected {ICD_VERSION!r}")
    return out


# ---------------------------------------------------------------------------------------------------- framing


def now_timestamp(msg: SapientMessage) -> SapientMessage:
    """Set ``msg.timestamp`` to now; ``msg`` back."""
    msg.timestamp.FromNanoseconds(time.time_ns())
    return msg


def new_ulid() -> str:
    """A fresh ULID (48-bit millisecond time, 80 random bits) in upper-case Crockford base32."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def frame(msg: SapientMessage) -> bytes:
    """``msg`` serialized behind its 4-byte little-endian length."""
    payload: bytes = msg.SerializeToString()
    return _HEADER.pack(len(payload)) + payload


def _read_exactly(source: socket.socket | BinaryIO, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        if isinstance(source, socket.socket):
            chunk = source.recv(size - len(chunks))
        else:
            chunk = source.read(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def read_frame(source: socket.socket | BinaryIO) -> SapientMessage | None:
    """The next framed message from a blocking socket or binary stream; None at the end of the stream."""
    header = _read_exactly(source, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is over the {MAX_FRAME}-byte limit")
    payload = _read_exactly(source, size)
    if payload is None:
        return None
    msg: SapientMessage = SapientMessage.FromString(payload)
    return msg


def read_frames(source: socket.socket | BinaryIO) -> Iterator[SapientMessage]:
    """Every framed message from ``source`` until its end."""
    while (msg := read_frame(source)) is not None:
        yield msg


# ---------------------------------------------------------------------------------------------------- server


class Recorder:
    """Appends JSON lines to the record file, one ``write`` each on an ``O_APPEND`` descriptor (so a line is whole
    on disk as soon as it is written, and a restarted simulator adds to what the killed one left)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.pid = os.getpid()
        if os.fstat(self.fd).st_size:
            with open(path, "rb") as existing:
                existing.seek(-1, os.SEEK_END)
                if existing.read(1) != b"\n":
                    self._write(b"\n")  # end the line a killed predecessor left half written

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def line(self, conn: int, t: float | None = None, **fields: Any) -> None:
        record = {"t": time.time() if t is None else t, "pid": self.pid, "conn": conn, **fields}
        self._write((json.dumps(record) + "\n").encode())

    def close(self) -> None:
        os.close(self.fd)


class FusionServer:
    """The fusion node: one task per connected edge node."""

    def __init__(self, recorder: Recorder, *, ack_alerts: bool, reject_registration: bool) -> None:
        self.recorder = recorder
        self.ack_alerts = ack_alerts
        self.reject_registration = reject_registration
        self.acked_alerts: set[str] = set()
        self.connections = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            await self._serve(conn, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception as exc:  # a bug here must not take the other connections down
            self.recorder.line(conn, type=None, node_id=None, msg=None, violations=[f"simulator error: {exc!r}"])
        finally:
            self.recorder.line(conn, closed=True)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self.tasks.discard(task)

    async def _serve(self, conn: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        registered: str | None = None  # the node id of an accepted registration on this connection
        rejected = False
        while True:
            try:
                header = await reader.readexactly(_HEADER.size)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    self.recorder.line(conn, type=None, node_id=None, msg=None,
                                       violations=[f"connection ended inside a frame header ({len(exc.partial)} "
                                                   "bytes)"])
                return
            (size,) = _HEADER.unpack(header)
            if size > MAX_FRAME:
                self.recorder.line(conn, type=None, node_id=None, msg=None,
                                   violations=[f"frame of {size} bytes is over the {MAX_FRAME}-byte limit: "
                                               "connection closed"])
                return
            try:
                payload = await reader.readexactly(size)
            except asyncio.IncompleteReadError as exc:
                self.recorder.line(conn, type=None, node_id=None, msg=None,
                                   violations=[f"connection ended inside a frame ({len(exc.partial)} of {size} "
                                               "bytes)"])
                return
            received_at = time.time()
            try:
                msg = SapientMessage.FromString(payload)
            except DecodeError as exc:
                self.recorder.line(conn, received_at, type=None, node_id=None, msg=None,
                                   violations=[f"undecodable SapientMessage ({size} bytes): {exc}"])
                continue
            kind = msg.WhichOneof("content")
            node_id = msg.node_id if msg.HasField("node_id") else None
            violations = validate(msg, received_at)
            if registered is None and kind != "registration":
                after = " (its registration was rejected)" if rejected else ""
                violations.append(f"{kind or 'message without content'} before registration{after}")
            if registered is not None and node_id != registered:
                violations.append(f"node_id {node_id!r} differs from the registered {registered!r}")
            self.recorder.line(conn, received_at, type=kind, node_id=node_id,
                               msg=json_format.MessageToDict(msg, preserving_proto_field_name=True),
                               violations=violations)
            if kind == "registration":
                accepted = not self.reject_registration
                if accepted and registered is None:
                    registered = node_id
                rejected = not accepted
                await self._send(conn, writer, self._registration_ack(node_id, accepted), "registration_ack",
                                 acceptance=accepted)
            elif kind == "alert" and self.ack_alerts and registered is not None:
                alert = msg.alert
                if alert.status == Alert.ALERT_STATUS_ACTIVE and alert.alert_id \
                        and alert.alert_id not in self.acked_alerts:
                    self.acked_alerts.add(alert.alert_id)
                    await self._send(conn, writer, self._alert_ack(node_id, alert.alert_id), "alert_ack",
                                     alert_id=alert.alert_id)

    def _reply(self, destination: str | None) -> SapientMessage:
        reply = now_timestamp(SapientMessage(node_id=FUSION_NODE_ID))
        if destination is not None:
            reply.destination_id = destination
        return reply

    def _registration_ack(self, destination: str | None, accepted: bool) -> SapientMessage:
        reply = self._reply(destination)
        reply.registration_ack.CopyFrom(RegistrationAck(acceptance=accepted))
        if not accepted:
            reply.registration_ack.ack_response_reason.append(REJECT_REASON)
        return reply

    def _alert_ack(self, destination: str | None, alert_id: str) -> SapientMessage:
        reply = self._reply(destination)
        reply.alert_ack.CopyFrom(AlertAck(alert_id=alert_id, alert_ack_status=AlertAck.ALERT_ACK_STATUS_ACCEPTED,
                                          reason=[ACK_REASON]))
        return reply

    async def _send(self, conn: int, writer: asyncio.StreamWriter, reply: SapientMessage, sent: str,
                    **extra: Any) -> None:
        writer.write(frame(reply))
        await writer.drain()
        self.recorder.line(conn, sent=sent, **{"alert_id": None, **extra})


async def serve(host: str, port: int, record: Path, *, ack_alerts: bool, reject_registration: bool) -> None:
    """Listen until SIGTERM or SIGINT; then end every connection (each gets its ``closed`` line)."""
    recorder = Recorder(record)
    fusion = FusionServer(recorder, ack_alerts=ack_alerts, reject_registration=reject_registration)
    server = await asyncio.start_server(fusion.handle, host, port, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
        server.close()
        for task in list(fusion.tasks):
            task.cancel()
        await asyncio.gather(*fusion.tasks, return_exceptions=True)
    recorder.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sapient_fusion",
                                     description="A SAPIENT fusion node for the tests.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True, help="JSON-lines file to append to")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ack-alerts", action="store_true", help="answer active alerts with an accepted alert_ack")
    parser.add_argument("--reject-registration", action="store_true", help="answer registrations with acceptance=false")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.record, ack_alerts=args.ack_alerts,
                      reject_registration=args.reject_registration))


# ---------------------------------------------------------------------------------------------------- test helper

Record = dict[str, Any]


class FusionNode:
    """The simulator as a subprocess, and what it recorded."""

    def __init__(self, port: int, record_path: Path | str, ack_alerts: bool = True,
                 reject_registration: bool = False, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.record_path = Path(record_path)
        self.log_path = self.record_path.with_name(self.record_path.name + ".log")
        self.ack_alerts = ack_alerts
        self.reject_registration = reject_registration
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout: float = 20.0) -> FusionNode:
        """Spawn the simulator and wait until its port accepts connections (it says so once it has bound)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"the fusion node already runs (pid {self.proc.pid})")
        cmd = [sys.executable, "-m", "benchmarks.sapient_fusion", "--host", self.host, "--port", str(self.port),
               "--record", str(self.record_path)]
        if self.ack_alerts:
            cmd.append("--ack-alerts")
        if self.reject_registration:
            cmd.append("--reject-registration")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.kill()
                raise AssertionError(f"the fusion node did not listen on {self.host}:{self.port} within "
                                     f"{timeout:.0f} s; its log:\n{self._log_tail()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.1))
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 256)
                if not chunk:
                    continue  # the process ended: poll() says so next turn
                line += chunk
        if line.split() != [b"listening", str(self.port).encode()]:
            self.kill()
            raise AssertionError(f"unexpected first line from the fusion node: {line!r}")
        return self

    def _log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    def _reap(self) -> None:
        if self.proc is not None:
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would end it, and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (it closes its connections and says so in the record), and wait; SIGKILL if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap()

    def __enter__(self) -> FusionNode:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def records(self) -> list[Record]:
        """Every whole line of the record file, in order (a half-written line is left out)."""
        try:
            text = self.record_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out: list[Record] = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def received(self, type: str) -> list[Record]:
        """The records of received messages whose content is ``type`` (``registration``, ``alert``, ...)."""
        return [r for r in self.records() if "msg" in r and r.get("type") == type]

    def violations(self) -> list[tuple[Record, str]]:
        """Every violation recorded, with the record it belongs to."""
        return [(r, v) for r in self.records() for v in r.get("violations", [])]

    def wait_for(self, predicate: Callable[[list[Record]], Any], timeout: float = 10.0) -> list[Record]:
        """Poll the records until ``predicate(records)`` is truthy; the records then."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.records()
            if predicate(records):
                return records
            if time.monotonic() >= deadline:
                raise AssertionError(f"the fusion node's records did not satisfy the condition within {timeout} s:\n"
                                     f"{summarize(records)}\nits log:\n{self._log_tail(1000)}")
            time.sleep(0.05)


def summarize(records: list[Record]) -> str:
    """One short line per record, for failure messages."""
    lines = []
    for r in records:
        head = f"pid {r.get('pid')} conn {r.get('conn')}:"
        if "closed" in r:
            lines.append(f"{head} closed")
        elif "sent" in r:
            lines.append(f"{head} sent {r['sent']} {r.get('alert_id') or ''}".rstrip())
        else:
            lines.append(f"{head} received {r.get('type')} from {r.get('node_id')} violations={r.get('violations')}")
    return "\n".join(lines) or "(nothing recorded)"


if __name__ == "__main__":
    main()
