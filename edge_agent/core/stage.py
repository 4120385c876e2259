"""The core stage: takes each message off the core queue, runs the rules and fusion, writes what fusion
returns to the incident log (through the disk guard), queues the alerts, and keeps house (quiet incidents,
sensor states, rejected input, escalations, retention). It also learns each camera's frame size and hands the
agent what the box's map is drawn from (``SiteView``), new whenever the rules or a frame size change."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edge_agent.config.agent import AgentConfig
from edge_agent.contract.acks import Ack
from edge_agent.contract.alert import Alert
from edge_agent.contract.ids import one_line
from edge_agent.contract.topics import BoxTopics
from edge_agent.core.fusion import EvidenceAdded, FusionEngine, FusionResult
from edge_agent.core.messages import (
    AckReceived,
    CoreMessage,
    CoreQueue,
    FrameBudget,
    FrameTracks,
    InputRejected,
    RulesReloaded,
    SensorEvent,
    source_of,
)
from edge_agent.core.sensorstate import HEALTH_EVENTS, SensorStates, StateChange
from edge_agent.core.site import Site
from edge_agent.core.snapshot import EventFrames, FrameView
from edge_agent.incidents.sensorlog import Rejected
from edge_agent.incidents.writer import IncidentLogWriter
from geofences.rules import TrackPoint
from sensors.events import MetalEvent, RadioEvent
from sensors.feeds import SensorFeed
from sensors.thermal import ThermalCamera

log = logging.getLogger(__name__)

HOUSEKEEPING_EVERY_S = 0.5
RETENTION_EVERY_S = 3600.0
DISK_FULL_RETENTION_EVERY_S = 10.0


@dataclass(slots=True)
class RunSummary:
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, severity) -> count
    incidents: set[str] = field(default_factory=set)
    fused: int = 0
    frames: int = 0
    core_errors: int = 0  # messages the core stage could not handle (kept as rejected input)


@dataclass(frozen=True, slots=True)
class SiteView:
    """What the box's map is drawn from: the site and each camera's frame size (width, height) as known so far.
    The core replaces it whole on every change, so the agent's main loop reads one consistent value; ``version``
    tells it that something changed."""

    version: int
    site: Site
    frame_sizes: Mapping[str, tuple[int, int]]


class Core:
    def __init__(self, config: AgentConfig, root: str, queue: CoreQueue, budget: FrameBudget,
                 writer: IncidentLogWriter, cameras: dict[str, ThermalCamera], feeds: dict[str, SensorFeed],
                 announce: Callable[[Alert | None], None]) -> None:
        self.config = config
        self.root = root
        self.queue = queue
        self.budget = budget
        self.writer = writer
        self.store = writer.store
        self.cameras = cameras
        self.feeds = feeds
        self.announce = announce  # wakes the publisher; tells the agent's on_alert of an alert now in the outbox
        self.on_tracks: list[Callable[[Sequence[TrackPoint]], None]] = []  # each frame's confirmed tracks (SAPIENT)
        self.summary = RunSummary()
        self.sensors = SensorStates(config)
        self.frames = EventFrames()
        self._snapshotted: set[str] = set()
        self.frame_sizes: dict[str, tuple[int, int]] = {}
        self.site_version = 0
        self.build_rules(config)

    def build_rules(self, config: AgentConfig) -> None:
        """Zones, lines and fusion rules from a configuration; fusion keeps its open incidents on a reload."""
        self.config = config
        self.sensors.config = config
        self.site = Site.from_config(config)
        self.rules = self.site.engine()
        if getattr(self, "fusion", None) is None:
            self.fusion: FusionEngine = self.site.fusion_engine()
        else:
            self.fusion.replace_rules(self.site.fusion_rules(), self.site.plane,
                                      {s.id: s.latlon for s in config.fixed_sensors})
        self._site_changed()

    def _site_changed(self) -> None:
        self.site_version += 1
        self.site_view = SiteView(self.site_version, self.site, dict(self.frame_sizes))

    # -- the loop ----------------------------------------------------------------------------------------

    def run(self, beat: Callable[[], None], stop_requested: Callable[[], bool]) -> None:
        """Until stopped with the queue drained (``beat`` on every turn, for the watchdog); housekeeping every half
        second, retention every hour."""
        next_tick = 0.0
        next_retention = time.monotonic() + 60.0
        while True:
            beat()
            msg = self.queue.get(timeout=0.25)
            if msg is not None:
                self.handle_one(msg)
            elif stop_requested():
                break  # the queue is drained
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + HOUSEKEEPING_EVERY_S
                self._guarded("housekeeping", self.housekeeping, time.time())
            if now >= next_retention:
                next_retention = now + (DISK_FULL_RETENTION_EVERY_S if self.writer.disk.full else RETENTION_EVERY_S)
                self._guarded("retention", self.writer.retain, self.config)
        self._guarded("housekeeping", self.housekeeping, time.time())  # rejects and states of the last moments

    def _guarded(self, what: str, work: Callable[..., None], *args: Any) -> None:
        """Housekeeping that fails is logged and tried again on the next turn; it never ends the core stage."""
        try:
            work(*args)
        except Exception:
            log.exception("core stage: %s failed; trying again on the next turn", what)

    def handle_one(self, msg: CoreMessage) -> None:
        """One message; one that raises is logged, kept as rejected input, and the stage goes on."""
        try:
            self.handle(msg)
        except Exception as exc:
            self.summary.core_errors += 1
            log.exception("core stage could not handle a %s message; kept as rejected input", type(msg).__name__)
            self.writer.reject([Rejected(source_of(msg), time.time(),
                                         f"core stage error: {type(exc).__name__}: {exc}"[:500],
                                         repr(msg)[:512].encode("utf-8", "replace"))])
        finally:
            if isinstance(msg, FrameTracks) and msg.frame is not None:
                self.budget.give_back(msg.camera)

    def handle(self, msg: CoreMessage) -> None:
        match msg:
            case FrameTracks():
                self._frame_tracks(msg)
            case SensorEvent(event=RadioEvent() as radio):
                self._apply(self.fusion.on_radio(radio))
            case SensorEvent(event=MetalEvent() as metal) if metal.event in HEALTH_EVENTS:
                self._state_changed(self.sensors.on_metal(metal))
            case SensorEvent(event=MetalEvent() as metal):
                self._apply(self.fusion.on_metal(metal))
            case AckReceived(ack=ack):
                self.writer.write(f"ack of {ack.alert_id}", lambda: self._acknowledge(ack))
            case InputRejected(rejected=rejected):
                self.writer.reject([rejected])
            case RulesReloaded(config=config, path=path):
                self.build_rules(config)
                log.info("reloaded zones, lines and fusion rules from %s (%d zones, %d lines, %d fusion rules)",
                         path, len(config.zones), len(config.lines), len(config.fusion))

    def _frame_tracks(self, msg: FrameTracks) -> None:
        self.summary.frames += 1
        self.frames.seen(msg.camera, FrameView(msg.frame, msg.tracks) if msg.frame is not None else None)
        if msg.size is not None and self.frame_sizes.get(msg.camera) != msg.size:  # its footprint can be drawn now
            self.frame_sizes[msg.camera] = msg.size
            self._site_changed()
        for zev in self.rules.update(msg.camera, msg.ts, *self.site.rule_inputs(msg.points, msg.calibrated)):
            self._apply(self.fusion.on_zone_event(zev))
        for track_id in msg.lost:
            self.rules.forget(msg.camera, track_id)
        for tap in self.on_tracks:
            tap(msg.points)

    # -- housekeeping --------------------------------------------------------------------------------------

    def housekeeping(self, now: float) -> None:
        if self.writer.catch_up():
            self.announce(None)
        self._apply(self.fusion.tick(now))
        for cam_id, cam in self.cameras.items():
            self._observe(cam_id, "ended" if cam.ended else cam.state, cam.counters.last_error or "", now)
        for feed in self.feeds.values():
            rejects = feed.drain_rejects()
            if rejects:
                self.writer.reject([Rejected(r.sensor, r.received, r.reason, r.line) for r in rejects])
            silent = set(feed.faulty(now))
            for sensor in silent:
                self._observe(sensor, "faulty", f"no heartbeat for {feed.health.hb_timeout_s:.0f} s", now)
            if feed.kind == "metal":
                for sensor in list(feed.health.last_heard or {}):
                    if sensor not in silent and self.sensors.state_of(sensor) == "faulty":
                        self._observe(sensor, "ok", "heartbeat back", now)
        for cam in self.cameras.values():
            bad = []
            while cam.counters.rejects:  # popleft: a frame rejected meanwhile by the reader thread is not lost
                bad.append(cam.counters.rejects.popleft())
            if bad:
                self.writer.reject([Rejected(r.camera_id, r.ts, r.reason, b"") for r in bad])
        if self.config.mqtt is not None and not self.writer.unwritten:
            for alert in self.store.due_escalations(now, self.config.mqtt.escalate_after_s):
                log.warning("alert %s not acknowledged in %.0f s: escalated", alert.alert_id,
                            self.config.mqtt.escalate_after_s)
                self.announce(alert)

    def _observe(self, sensor: str, state: str, detail: str, now: float) -> None:
        self._state_changed(self.sensors.observe(sensor, state, detail, now))

    def _state_changed(self, change: StateChange | None) -> None:
        """The incident log records a sensor's new state; fusion gives the fault alert or closes it."""
        if change is None:
            return
        self.writer.write(f"state of {change.sensor}", lambda: self.store.sensor_state(change.sensor, change.state,
                                                                                      change.detail, change.ts))
        self._apply(change.fused(self.fusion))

    # -- incidents and alerts --------------------------------------------------------------------------------

    def _apply(self, result: FusionResult) -> None:
        """What fusion returned, in its order: evidence into the incident log, alerts into the outbox."""
        for step in result.steps:
            if isinstance(step, EvidenceAdded):
                self.writer.write(f"evidence of incident {step.incident.incident_id}",
                                  functools.partial(self.store.add_evidence, step.incident, step.evidence))
            else:
                self._queue_alert(step)

    def _queue_alert(self, alert: Alert) -> None:
        """Snapshot, commit to the outbox, wake the publisher."""
        jpeg = None
        if alert.alert_id not in self._snapshotted and alert.state in ("new", "updated"):
            if self.writer.snapshot_room():  # snapshots give way first when the disk is full
                jpeg = self.frames.snapshot(alert, self.config.incident_log.snapshot_max_kb * 1024)
            if jpeg is not None:
                self._snapshotted.add(alert.alert_id)
                alert = replace(alert, snapshot=BoxTopics(self.root).snapshot(alert.alert_id))

        def commit(alert: Alert = alert, jpeg: bytes | None = jpeg) -> None:
            self.store.queue_alert(alert, jpeg)
            self.announce(alert)

        self.writer.write(f"alert {alert.alert_id} ({alert.state})", commit)
        key = (alert.kind, alert.severity)
        if alert.state in ("new", "updated"):
            self.summary.alerts[key] = self.summary.alerts.get(key, 0) + 1
            self.summary.incidents.add(alert.incident_id)
            if alert.kind == "fused":
                self.summary.fused += 1

    def _acknowledge(self, ack: Ack) -> None:
        result = self.store.record_ack(ack)
        if result.outcome == "unknown_alert":  # spoofed, or of another box: kept as rejected input, not as an ack
            log.warning("ack for unknown alert %s rejected", ack.alert_id)
            self.writer.reject([Rejected("mqtt-acks", time.time(), f"ack for unknown alert {ack.alert_id}",
                                         json.dumps({"alert_id": ack.alert_id, "by": ack.by, "note": ack.note[:200]})
                                         .encode())])
        elif result.alert is not None:
            log.info("alert %s acknowledged by %s", ack.alert_id, one_line(ack.by, 64))
            self.announce(result.alert)
        else:
            log.info("alert %s was acknowledged before; this ack by %s is recorded too", ack.alert_id,
                     one_line(ack.by, 64))
