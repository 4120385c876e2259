"""The SAPIENT output: the box as an edge node of a SAPIENT fusion node (BSI Flex 335 v2.0) over TCP.

On every connection the node registers first and waits for the fusion node's registration ack (refused or
silent: the connection is dropped and tried again with backoff). Then it sends the alert states owed to
``sapient`` as ``Alert`` messages (from the incident database, so nothing is lost while the fusion node is
away), a status report every declared interval, and detection reports of confirmed tracks (live, at most one
per track every ``detection_interval_s``; dropped while unregistered). An ``AlertAck`` (accepted) from the
fusion node acknowledges the alert as a command post's ack does; a ``Task`` is answered as refused. On stop it
says ``GOODBYE`` in a last status report.

TCP has no receipts: alert states written shortly before a connection was found dead (``resend_window_s``)
are sent again after the next registration; a fusion node keys alerts by ``alert_id`` and status."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.message import DecodeError
from sapient_msg.bsi_flex_335_v2_0 import alert_ack_pb2, sapient_message_pb2

from edge_agent.config.outputs import SapientConfig
from edge_agent.contract.acks import Ack
from edge_agent.contract.alert import Alert
from edge_agent.contract.ids import new_ulid, one_line
from edge_agent.incidents.deliveries import Deliveries, OwedState
from edge_agent.outputs.base import IDLE_WAKE_S, OutputDown, OutputRunner
from edge_agent.outputs.sapient_messages import (
    FRAME_MAX,
    SR,
    NodeSheet,
    alert_message,
    detection_report,
    frame,
    registration,
    status_report,
    task_refused,
)
from geofences.rules import TrackPoint

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
TRACKS_WAITING = 2000  # track updates waiting for the output's thread; beyond, the oldest go
TRACK_FORGET_S = 60.0  # a track not seen this long gets a new object id if it comes back


class SapientOutput(OutputRunner):
    """See the module docstring."""

    name = "sapient"

    def __init__(self, deliveries: Deliveries, cfg: SapientConfig, sheet: NodeSheet,
                 on_ack: Callable[[Ack], None] | None, errors_m: dict[str, float],
                 faults: Callable[[], Sequence[str]] = tuple, snapshot_url: str | None = None) -> None:
        super().__init__(deliveries, cfg)
        self.cfg = cfg
        self.sheet = sheet
        self.on_ack = on_ack
        self.errors_m = errors_m
        self.faults = faults  # what is wrong with the box now, for the status report
        self.snapshot_url = snapshot_url
        self.registered = False
        self.fusion_node = ""
        self.acks = 0
        self.detections = 0
        self.detections_dropped = 0
        self._tracks: collections.deque[TrackPoint] = collections.deque(maxlen=TRACKS_WAITING)
        self._tracks_lock = threading.Lock()
        self._objects: dict[tuple[str, int], tuple[str, float, float]] = {}  # track -> object id, last sent, seen
        self._writer: asyncio.StreamWriter | None = None
        self._last_faults: tuple[str, ...] = ()

    # -- from other threads ----------------------------------------------------------------------------

    def offer_tracks(self, points: Sequence[TrackPoint]) -> None:
        """The core's confirmed tracks of one frame (never blocks)."""
        if not points:
            return
        if not self.registered:
            self.detections_dropped += len(points)
            return
        with self._tracks_lock:
            self._tracks.extend(points)

    def extra_report(self) -> dict[str, Any]:
        return {"peer": f"{self.cfg.host}:{self.cfg.port}", "node_id": self.sheet.node_id,
                "registered": self.registered, "fusion_node": self.fusion_node, "acks": self.acks,
                "detections": self.detections, "detections_dropped": self.detections_dropped}

    # -- a session -------------------------------------------------------------------------------------

    def encode(self, alert: Alert, owed: OwedState) -> bytes | None:
        errors = [self.errors_m[e.sensor] for e in alert.evidence if e.sensor in self.errors_m]
        return frame(alert_message(self.sheet.node_id, time.time(), alert, max(errors, default=None),
                                   self.snapshot_url))

    def lost(self) -> None:
        self.registered = False
        since = time.time() - self.cfg.resend_window_s
        again = self.deliveries.resend(self.name, since, time.time())
        if again:
            log.info("output sapient: %d alert state(s) sent in the last %.0f s go again after registration",
                     again, self.cfg.resend_window_s)

    async def session(self) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.cfg.host, self.cfg.port),
                                                CONNECT_TIMEOUT_S)
        self._writer = writer
        accepted: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        listening = asyncio.create_task(self._listen(reader, accepted))
        try:
            await self._send([frame(registration(self.sheet, time.time()))])
            try:
                ok, why = await asyncio.wait_for(asyncio.shield(accepted), self.cfg.registration_timeout_s)
            except TimeoutError:
                if listening.done():
                    listening.result()
                raise OutputDown(f"no registration ack from the fusion node in "
                                 f"{self.cfg.registration_timeout_s:g} s") from None
            if not ok:
                raise OutputDown(f"the fusion node refused the registration: {why or 'no reason given'}")
            self.registered = True
            self.connected()
            await self._status(new_info=True)
            next_status = time.monotonic() + self.cfg.status_interval_s
            while not self.stopping:
                if listening.done():
                    listening.result()
                    raise OutputDown("the fusion node's stream ended")
                await self.deliver(lambda batch: self._send([data for _, data in batch]))
                await self._detections()
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + self.cfg.status_interval_s
                    await self._status(new_info=False)
                await self.wait_wake(min(IDLE_WAKE_S, self.cfg.detection_interval_s))
            await self._farewell()
        finally:
            self.registered = False
            self._writer = None
            listening.cancel()
            with contextlib.suppress(BaseException):
                await listening
            with contextlib.suppress(Exception):
                writer.close()

    async def _send(self, frames: list[bytes]) -> None:
        if self._writer is None:
            raise OutputDown("not connected")
        self._writer.write(b"".join(frames))
        await asyncio.wait_for(self._writer.drain(), CONNECT_TIMEOUT_S)

    async def _status(self, new_info: bool) -> None:
        faults = tuple(self.faults())
        system: SR.System = SR.SYSTEM_WARNING if faults else SR.SYSTEM_OK
        await self._send([frame(status_report(self.sheet.node_id, time.time(), system,
                                              new_info or faults != self._last_faults, faults))])
        self._last_faults = faults

    async def _farewell(self) -> None:
        with contextlib.suppress(Exception):
            await self._send([frame(status_report(self.sheet.node_id, time.time(), SR.SYSTEM_GOODBYE, True))])

    async def _detections(self) -> None:
        with self._tracks_lock:
            points, self._tracks = list(self._tracks), collections.deque(maxlen=TRACKS_WAITING)
        if not points:
            return
        now, mono = time.time(), time.monotonic()
        out = []
        latest: dict[tuple[str, int], TrackPoint] = {}
        for point in points:  # the newest update of each track
            latest[(point.camera, point.track_id)] = point
        for key, point in latest.items():
            object_id, last_sent, _ = self._objects.get(key, (new_ulid(point.ts), -1e9, mono))
            if mono - last_sent < self.cfg.detection_interval_s:
                self._objects[key] = (object_id, last_sent, mono)
                continue
            msg = detection_report(self.sheet.node_id, now, object_id, point, self.errors_m.get(point.camera))
            self._objects[key] = (object_id, mono if msg is not None else last_sent, mono)
            if msg is not None:
                out.append(frame(msg))
        self._objects = {k: v for k, v in self._objects.items() if mono - v[2] < TRACK_FORGET_S}
        if out:
            await self._send(out)
            self.detections += len(out)

    # -- what the fusion node sends ----------------------------------------------------------------------

    async def _listen(self, reader: asyncio.StreamReader, accepted: asyncio.Future[tuple[bool, str]]) -> None:
        while True:
            try:
                head = await reader.readexactly(4)
            except asyncio.IncompleteReadError:
                raise OutputDown("the fusion node closed the connection") from None
            (size,) = struct.unpack("<I", head)
            if size > FRAME_MAX:
                raise OutputDown(f"the fusion node sent a {size}-byte message (limit {FRAME_MAX})")
            data = await reader.readexactly(size)
            msg = sapient_message_pb2.SapientMessage()
            try:
                msg.ParseFromString(data)
            except DecodeError as exc:
                log.warning("output sapient: a message from the fusion node does not parse: %s", exc)
                continue
            await self._take(msg, accepted)

    async def _take(self, msg: sapient_message_pb2.SapientMessage,
                    accepted: asyncio.Future[tuple[bool, str]]) -> None:
        content = msg.WhichOneof("content")
        if content == "registration_ack":
            if not accepted.done():
                self.fusion_node = msg.node_id
                accepted.set_result((msg.registration_ack.acceptance,
                                     "; ".join(msg.registration_ack.ack_response_reason)))
        elif content == "alert_ack":
            self._alert_ack(msg)
        elif content == "task":
            await self._send([frame(task_refused(self.sheet.node_id, time.time(), msg.task.task_id, msg.node_id))])
        elif content == "error":
            log.warning("output sapient: the fusion node reports an error: %s",
                        one_line("; ".join(msg.error.error_message), 300))

    def _alert_ack(self, msg: sapient_message_pb2.SapientMessage) -> None:
        ack = msg.alert_ack
        status = alert_ack_pb2.AlertAck.AlertAckStatus.Name(ack.alert_ack_status)
        if ack.alert_ack_status != alert_ack_pb2.AlertAck.ALERT_ACK_STATUS_ACCEPTED:
            log.info("output sapient: the fusion node answered alert %s with %s", one_line(ack.alert_id, 40), status)
            return
        if self.on_ack is None:
            return
        by = f"sapient:{one_line(msg.node_id, 40)}"
        try:
            self.on_ack(Ack(ack.alert_id, by, time.time(), one_line("; ".join(ack.reason), 200)))
            self.acks += 1
        except Exception as exc:  # the core did not take it: the fusion node may send it again
            log.warning("output sapient: the alert ack of %s was not taken: %s", one_line(ack.alert_id, 40), exc)


async def probe(cfg: SapientConfig, sheet: NodeSheet) -> str:
    """``doctor``: connect, register, and say goodbye once the fusion node accepted. Returns what was seen;
    raises ``OutputDown``/``OSError``/``TimeoutError`` with why not."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(cfg.host, cfg.port), CONNECT_TIMEOUT_S)
    try:
        started = time.monotonic()
        writer.write(frame(registration(sheet, time.time())))
        await writer.drain()
        deadline = started + cfg.registration_timeout_s
        while True:
            head = await asyncio.wait_for(reader.readexactly(4), max(0.01, deadline - time.monotonic()))
            (size,) = struct.unpack("<I", head)
            if size > FRAME_MAX:
                raise OutputDown(f"the fusion node sent a {size}-byte message")
            msg = sapient_message_pb2.SapientMessage()
            msg.ParseFromString(await asyncio.wait_for(reader.readexactly(size), CONNECT_TIMEOUT_S))
            if msg.WhichOneof("content") == "registration_ack":
                break
        ack = msg.registration_ack
        if not ack.acceptance:
            raise OutputDown(f"the fusion node refused the registration: "
                             f"{'; '.join(ack.ack_response_reason) or 'no reason given'}")
        writer.write(frame(status_report(sheet.node_id, time.time(), SR.SYSTEM_GOODBYE, True)))
        await writer.drain()
        return (f"{cfg.host}:{cfg.port}: registration of node {sheet.node_id} accepted by fusion node "
                f"{one_line(msg.node_id, 40)} in {(time.monotonic() - started) * 1000:.0f} ms")
    except (asyncio.IncompleteReadError, DecodeError) as exc:
        raise OutputDown(f"the fusion node closed the connection or sent no SAPIENT message: {exc}") from None
    finally:
        with contextlib.suppress(Exception):
            writer.close()
