"""The running agent: every configured sensor, detection, rules, fusion, the incident log and delivery in one
process.

Stages and the bounded queue between them::

    camera reader (newest frame only) -> detection + tracking  \
    radio / metal feeds (line readers) -------------------------+-> core queue (bounded) -> core
    MQTT acks --------------------------------------------------/

The core stage owns the rules, fusion and writes to the incident log; alerts go to the outbox and the
publisher sends them. A detection stage that cannot keep up drops camera frames, never events: it blocks on
the full core queue instead. Every stage beats a heartbeat; the systemd watchdog is fed only while all of
them are alive. SIGTERM/SIGINT stop everything, flush, publish ``offline`` and exit; SIGHUP reloads zones,
lines and fusion rules from the config file without touching sensors.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detectors.annotate import annotate
from detectors.pipeline import TrackingPipeline
from detectors.types import Detections
from edge_agent import __version__
from edge_agent.config.agent import AgentConfig, ConfigError, load_config
from edge_agent.contract.alert import Alert, iso_ms, one_line
from edge_agent.incidents.store import Ack, IncidentStore, Rejected, StoreError
from edge_agent.runtime.detection import build_detector, build_pipeline, is_live
from edge_agent.runtime.diskguard import DiskGuard, UnwrittenQueue, is_disk_full
from edge_agent.runtime.publisher import Publisher, topic_root
from edge_agent.runtime.sdnotify import Notifier
from edge_agent.runtime.site import Site
from sensors.events import MetalEvent
from sensors.feeds import Event, SensorFeed
from sensors.frames import ThermalFrame
from sensors.thermal import ThermalCamera

log = logging.getLogger(__name__)

CORE_QUEUE = 2000
STAGE_STALE_S = {"core": 10.0, "delivery": 10.0, "detect": 60.0}
RETENTION_EVERY_S = 3600.0
DISK_FULL_RETENTION_EVERY_S = 10.0
FAULT_HOLD_MIN_S = 10.0  # a sensor back from a fault must stay well this long before it counts as back
FAULT_ALERTS_PER_H = 6  # sensor_fault alerts per sensor per hour; more state changes are logged, not alerted


@dataclass(slots=True)
class Stage:
    name: str
    kind: str
    thread: threading.Thread | None = None
    beat: float = field(default_factory=time.monotonic)
    error: str = ""
    finished: bool = False  # ended on purpose (a finite source), not died
    beat_of: Callable[[], float] | None = None  # where the heartbeat lives when the stage keeps its own
    ended_of: Callable[[], bool] | None = None  # a finite source that has ended

    def alive(self, now: float, stale_s: dict[str, float] = STAGE_STALE_S) -> bool:
        if self.error:
            return False
        if self.finished or (self.ended_of is not None and self.ended_of()):
            return True
        if self.thread is not None and not self.thread.is_alive():
            return False
        stale = stale_s.get(self.kind)
        if stale is None:  # readers block on their source: a live thread is a live stage
            return True
        beat = self.beat_of() if self.beat_of is not None else self.beat
        return now - beat < stale


@dataclass(slots=True)
class RunSummary:
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, severity) -> count
    incidents: set[str] = field(default_factory=set)
    fused: int = 0
    frames: int = 0
    core_errors: int = 0  # messages the core stage could not handle (kept as rejected input)


@dataclass(slots=True)
class SensorState:
    """The one record of a sensor's health state: what it is, since when, and its recent fault alerts."""

    state: str
    since: float
    hold_s: float
    fault_alerts: list[float] = field(default_factory=list)


class Agent:
    def __init__(self, config: AgentConfig, config_path: Path | None = None,
                 on_alert: Callable[[Alert], None] | None = None, notifier: Notifier | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.on_alert = on_alert
        self.notifier = notifier or Notifier()
        self.stop_event = threading.Event()
        self.core_q: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=CORE_QUEUE)
        self.stages: dict[str, Stage] = {}
        self.summary = RunSummary()
        self.started = time.time()
        self.cameras: dict[str, ThermalCamera] = {}
        self.pipelines: dict[str, TrackingPipeline] = {}
        self.feeds: dict[str, SensorFeed] = {}
        self.publisher: Publisher | None = None
        self.store: IncidentStore | None = None
        self._latest: dict[str, tuple[ThermalFrame, Detections]] = {}
        self._latest_lock = threading.Lock()
        self._snapshotted: set[str] = set()
        self._first_seen: dict[tuple[str, int], float] = {}
        self._sensors: dict[str, SensorState] = {}
        self._detect_ms: dict[str, float] = {}
        self._reload_requested = threading.Event()
        self.stale_s = dict(STAGE_STALE_S)
        self.disk: DiskGuard | None = None
        self.unwritten: UnwrittenQueue | None = None

    # -- building ----------------------------------------------------------------------------------------

    def _build_rules(self, config: AgentConfig) -> None:
        self.site = Site.from_config(config)
        self.rules = self.site.engine()
        if getattr(self, "fusion", None) is None:
            self.fusion = self.site.fusion_engine(self._alert, on_evidence=self._evidence)
        else:
            self.fusion.replace_rules(self.site.fusion_rules(), self.site.plane,
                                      {s.id: s.latlon for s in config.fixed_sensors})

    def start(self) -> None:
        cfg = self.config
        self.root = topic_root(cfg.mqtt.prefix if cfg.mqtt else "border", cfg.site, cfg.box)
        self.store = IncidentStore(cfg.db_path, max_rejects=cfg.incident_log.max_rejects,
                                   snapshot_max_bytes=cfg.incident_log.snapshot_max_kb * 1024)
        self.disk = DiskGuard(cfg.db_path.parent, int(cfg.incident_log.reserve_mb * 2**20))
        self.disk.hold_reserve()
        self.unwritten = UnwrittenQueue(self.disk.counters)
        left_open = self.store.close_open(time.time())
        if left_open:
            log.info("closed %d incident(s) a previous run left open; their alerts go out as closed", left_open)
        self._build_rules(cfg)
        cams = [c for c in cfg.cameras if c.enabled]
        if cams:
            detector = build_detector(cfg)
            detector.load()
            for cam_cfg in cams:
                self.pipelines[cam_cfg.id] = build_pipeline(cfg, detector)
                cam = ThermalCamera(cam_cfg.spec(pace="live" if is_live(cam_cfg.source) or cam_cfg.loop
                                                 or "realtime=1" in cam_cfg.source else "every"))
                self.cameras[cam_cfg.id] = cam
        for s in cfg.fixed_sensors:
            if s.url:
                self.feeds[s.id] = SensorFeed(s.id, s.kind, s.url, self._feed_event, max_skew_s=s.max_skew_s,
                                              hb_timeout_s=s.hb_timeout_s, accept=cfg.accepted_ids(s.id))
        if cfg.mqtt is not None:
            self.publisher = Publisher(cfg.mqtt, cfg.site, cfg.box, self.store, self._mqtt_ack)
            self.publisher.start()
            pub = self.publisher
            self.stages["delivery"] = Stage("delivery", "delivery", pub._thread, beat_of=lambda: pub.heartbeat)
        self._spawn("core", "core", self._core)
        for cam_id, cam in self.cameras.items():
            cam.start(self.stop_event)
            self.stages[f"camera:{cam_id}"] = Stage(f"camera:{cam_id}", "camera", cam._thread,
                                                    ended_of=lambda cam=cam: cam.counters.state == "ended")
            self._spawn(f"detect:{cam_id}", "detect", self._detect, cam_id)
        for feed in self.feeds.values():
            feed.start(self.stop_event)
            self.stages[f"feed:{feed.sensor_id}"] = Stage(f"feed:{feed.sensor_id}", "feed", feed.reader._thread)
        log.info("agent %s started: %d camera(s), %d feed(s), incident log %s, broker %s", self.root,
                 len(self.cameras), len(self.feeds), cfg.db_path,
                 f"{cfg.mqtt.host}:{cfg.mqtt.broker_port}" if cfg.mqtt else "none (alerts stay in the outbox)")

    def _spawn(self, name: str, kind: str, target: Callable[..., None], *args: Any) -> None:
        stage = Stage(name, kind)

        def guarded() -> None:
            try:
                target(stage, *args)
            except Exception as exc:  # a dead stage stops the watchdog; systemd restarts the agent
                stage.error = f"{type(exc).__name__}: {exc}"
                log.exception("stage %s died", name)

        stage.thread = threading.Thread(target=guarded, name=name, daemon=True)
        self.stages[name] = stage
        stage.thread.start()

    # -- stages ------------------------------------------------------------------------------------------

    def _detect(self, stage: Stage, cam_id: str) -> None:
        cam, pipeline = self.cameras[cam_id], self.pipelines[cam_id]
        last_ts = time.time()
        while not self.stop_event.is_set():
            stage.beat = time.monotonic()
            if cam.ended:
                break
            frame = cam.read(0.5)
            if frame is None:
                continue
            try:
                result = pipeline.process(frame)
            except Exception as exc:  # one frame the detector cannot take is a rejected frame, not a dead stage
                log.exception("camera %s: frame %s could not be processed", cam_id, frame.seq)
                self._put(("reject", Rejected(cam_id, time.time(), f"detection failed on frame {frame.seq}: "
                                              f"{type(exc).__name__}: {exc}", b"")))
                continue
            last_ts = frame.ts
            if result.detected:
                self._detect_ms[cam_id] = result.detect_ms
            with self._latest_lock:
                self._latest[cam_id] = (frame, result.tracks)
            self._put(("frame", cam_id, frame.ts, result.tracks, [e for e in result.events if e.kind == "lost"]))
        if cam.ended:
            self._put(("frame", cam_id, last_ts, Detections.empty(), pipeline.finish(last_ts)))
            stage.finished = True
            self.stages[f"camera:{cam_id}"].finished = True
            log.info("camera %s: the source ended", cam_id)

    def _feed_event(self, ev: Event) -> None:
        self._put(("event", ev))

    def _mqtt_ack(self, ack: Ack) -> None:
        self._put(("ack", ack))

    def _put(self, item: tuple[Any, ...]) -> None:
        while not self.stop_event.is_set():
            try:
                self.core_q.put(item, timeout=0.5)
                return
            except queue.Full:
                log.warning("core queue full (%d): a stage waits", CORE_QUEUE)

    def _core(self, stage: Stage) -> None:
        next_tick = 0.0
        next_retention = time.monotonic() + 60.0
        while True:
            stage.beat = time.monotonic()
            try:
                item = self.core_q.get(timeout=0.25)
            except queue.Empty:
                item = None
            if item is not None:
                self._handle_one(item)
            elif self.stop_event.is_set():
                break  # the queue is drained
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + 0.5
                self._guarded("housekeeping", self._housekeeping, time.time())
            if now >= next_retention:
                next_retention = now + (DISK_FULL_RETENTION_EVERY_S if self.disk is not None and self.disk.full
                                        else RETENTION_EVERY_S)
                self._guarded("retention", self._retention)
        self._guarded("housekeeping", self._housekeeping, time.time())  # rejects and states of the last moments

    def _guarded(self, what: str, work: Callable[..., None], *args: Any) -> None:
        """Housekeeping that fails is logged and tried again on the next turn; it never ends the core stage."""
        try:
            work(*args)
        except Exception:
            log.exception("core stage: %s failed; trying again on the next turn", what)

    def _handle_one(self, item: tuple[Any, ...]) -> None:
        """One message; one that raises is logged, kept as rejected input, and the stage goes on."""
        try:
            self._handle(item)
        except Exception as exc:
            self.summary.core_errors += 1
            log.exception("core stage could not handle a %s message; kept as rejected input", item[0])
            sensor = {"event": lambda: item[1].sensor, "frame": lambda: item[1], "ack": lambda: "mqtt-acks"}.get(
                item[0], lambda: "core")()
            self._reject([Rejected(str(sensor), time.time(), f"core stage error: {type(exc).__name__}: {exc}"[:500],
                                   repr(item[1:])[:512].encode("utf-8", "replace"))])

    def _handle(self, item: tuple[Any, ...]) -> None:
        what = item[0]
        if what == "frame":
            _, cam_id, ts, tracks, lost = item
            self.summary.frames += 1
            if tracks is not None and len(tracks):
                keys = [(cam_id, int(t)) for t in tracks.track_id]
                ages = [ts - self._first_seen.setdefault(k, ts) for k in keys]
                pixel, geo = self.site.track_points(cam_id, ts, tracks, ages)
            else:
                pixel, geo = [], []
            for zev in self.rules.update(cam_id, ts, pixel, geo):
                self.fusion.on_zone_event(zev)
            for ev in lost:
                self._first_seen.pop((cam_id, ev.track_id), None)
                self.rules.forget(cam_id, ev.track_id)
        elif what == "event":
            ev = item[1]
            if isinstance(ev, MetalEvent):
                self._metal(ev)
            else:
                self.fusion.on_radio(ev)
        elif what == "ack":
            ack = item[1]
            self._write(f"ack of {ack.alert_id}", lambda: self._acknowledge(ack))
        elif what == "reject":
            self._reject([item[1]])
        elif what == "reload":
            self.config = item[1]
            self._build_rules(item[1])
            log.info("reloaded zones, lines and fusion rules from %s (%d zones, %d lines, %d fusion rules)",
                     self.config_path, len(self.config.zones), len(self.config.lines), len(self.config.fusion))

    def _housekeeping(self, now: float) -> None:
        assert self.store is not None and self.disk is not None and self.unwritten is not None
        self.disk.check()
        if self.unwritten and self.unwritten.flush():
            self._announce(None)
        self.fusion.tick(now)
        for cam_id, cam in self.cameras.items():
            self._sensor(cam_id, "ended" if cam.ended else cam.state, cam.counters.last_error or "", now)
        for feed in self.feeds.values():
            rejects = feed.drain_rejects()
            if rejects:
                self._reject([Rejected(r.sensor, r.received, r.reason, r.line) for r in rejects])
            silent = set(feed.faulty(now))
            for sensor in silent:
                self._sensor(sensor, "faulty", f"no heartbeat for {feed.health.hb_timeout_s:.0f} s", now)
            if feed.kind == "metal":
                for sensor in list(feed.health.last_heard or {}):
                    if sensor not in silent and self._state_of(sensor) == "faulty":
                        self._sensor(sensor, "ok", "heartbeat back", now)
        for cam in self.cameras.values():
            bad = []
            while cam.counters.rejects:  # popleft: a frame rejected meanwhile by the reader thread is not lost
                bad.append(cam.counters.rejects.popleft())
            if bad:
                self._reject([Rejected(r.camera_id, r.ts, r.reason, b"") for r in bad])
        if self.config.mqtt is not None and not self.unwritten:
            for alert in self.store.due_escalations(now, self.config.mqtt.escalate_after_s):
                log.warning("alert %s not acknowledged in %.0f s: escalated", alert.alert_id,
                            self.config.mqtt.escalate_after_s)
                self._announce(alert)

    # -- sensor health: one owner --------------------------------------------------------------------------

    def _hold_s(self, sensor: str) -> float:
        """A sensor's own hysteresis: its heartbeat timeout (metal), its stall time (camera), at least 10 s."""
        for s in self.config.fixed_sensors:
            if s.id == sensor:
                return max(FAULT_HOLD_MIN_S, s.hb_timeout_s)
        for c in self.config.cameras:
            if c.id == sensor:
                return max(FAULT_HOLD_MIN_S, c.stall_s)
        return FAULT_HOLD_MIN_S

    def _state_of(self, sensor: str) -> str | None:
        known = self._sensors.get(sensor)
        return known.state if known is not None else None

    def _metal(self, ev: MetalEvent) -> None:
        """Metal events: TAMPER and FAULT are sensor states (owned here), the rest goes to fusion."""
        if ev.event in ("TAMPER", "FAULT"):
            self._sensor(ev.sensor, "faulty", f"the detector reports {ev.event}", ev.received, ev)
        elif ev.event == "HB":
            if self._state_of(ev.sensor) == "faulty":
                self._sensor(ev.sensor, "ok", "heartbeat back", ev.received)
        else:
            self.fusion.on_metal(ev)

    def _sensor(self, sensor: str, state: str, detail: str, now: float, ev: MetalEvent | None = None) -> None:
        """A sensor's state as seen now. A fault counts at once; a recovery only after the sensor's hold time
        in the fault, so one sensor cannot flap faster than its own hysteresis; fault alerts per sensor and
        hour are bounded."""
        known = self._sensors.get(sensor)
        if known is None:
            self._sensors[sensor] = known = SensorState("ok", now, self._hold_s(sensor))
            if state in ("online", "ok", "starting"):
                known.state = state
                return
        elif state == known.state or (state in ("online", "ok") and known.state in ("online", "ok", "starting")):
            known.state = state
            return
        failed = state in ("offline", "faulty")
        recovered = known.state in ("offline", "faulty") and state in ("online", "ok")
        if recovered and now - known.since < known.hold_s:
            return  # not yet: it must stay well for its hold time first (asked again on the next turn)
        before, known.state, known.since = known.state, state, now
        self._write(f"state of {sensor}", lambda: self._store().sensor_state(sensor, state, detail, now))
        if failed:
            log.error("sensor %s is %s: %s", sensor, state, detail)
            if before in ("offline", "faulty"):
                return  # one fault episode, one alert
            known.fault_alerts = [t for t in known.fault_alerts if now - t < 3600.0]
            if len(known.fault_alerts) >= FAULT_ALERTS_PER_H:
                log.warning("sensor %s: %d fault alerts in the last hour; this one is logged, not alerted",
                            sensor, len(known.fault_alerts))
                return
            known.fault_alerts.append(now)
            self.fusion.sensor_fault(sensor, f"{sensor} {state}: {detail}" if detail else f"{sensor} {state}", now,
                                     ev)
        elif recovered:
            log.info("sensor %s is back (%s)", sensor, state)
            self.fusion.sensor_ok(sensor, now)

    # -- writing the incident log: a full disk degrades, never stops -----------------------------------------

    def _store(self) -> IncidentStore:
        assert self.store is not None
        return self.store

    def _write(self, what: str, write: Callable[[], None]) -> None:
        """An incident-log write that must not be lost: done now, or, when the disk is full, held in order and
        done when there is room."""
        assert self.disk is not None and self.unwritten is not None
        if self.unwritten:
            self.unwritten.add(what, write)  # keep the order: older writes wait
            return
        try:
            write()
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            if self.disk.give_up_reserve():
                try:
                    write()
                    return
                except Exception as again:
                    if not is_disk_full(again):
                        raise
            self.unwritten.add(what, write)

    def _reject(self, rows: list[Rejected]) -> None:
        """Rejected input goes to the log unless the disk is full (then it is counted and dropped first)."""
        assert self.disk is not None
        if self.disk.full:
            self.disk.counters.dropped_rejects += len(rows)
            return
        try:
            self._store().add_rejects(rows)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            self.disk.counters.dropped_rejects += len(rows)
            self.disk.give_up_reserve()

    def _retention(self) -> None:
        assert self.store is not None
        r = self.config.incident_log.retention
        min_free = int(r.min_free_mb * 2**20)
        if self.disk is not None and self.disk.full:  # room for the reserve and as much again
            min_free = max(min_free, 3 * self.disk.reserve_bytes, 2**21)
        try:
            removed = self.store.retain(time.time(), r.max_age_days * 86400, r.critical_age_days * 86400, min_free)
        except StoreError as exc:
            log.error("retention: %s", exc)
            return
        if removed:
            log.info("retention removed %d item(s), e.g. %s", len(removed), removed[0])

    # -- incidents and alerts (core thread) --------------------------------------------------------------

    def _evidence(self, inc: Any, evidence: Any) -> None:
        self._write(f"evidence of incident {inc.incident_id}", lambda: self._store().add_evidence(inc, evidence))

    def _acknowledge(self, ack: Ack) -> None:
        result = self._store().record_ack(ack)
        if result.outcome == "unknown_alert":  # spoofed, or of another box: kept as rejected input, not as an ack
            log.warning("ack for unknown alert %s rejected", ack.alert_id)
            self._reject([Rejected("mqtt-acks", time.time(), f"ack for unknown alert {ack.alert_id}",
                                   json.dumps({"alert_id": ack.alert_id, "by": ack.by, "note": ack.note[:200]})
                                   .encode())])
        elif result.alert is not None:
            log.info("alert %s acknowledged by %s", ack.alert_id, one_line(ack.by, 64))
            self._announce(result.alert)
        else:
            log.info("alert %s was acknowledged before; this ack by %s is recorded too", ack.alert_id,
                     one_line(ack.by, 64))

    def _alert(self, alert: Alert) -> None:
        """The fusion engine's emit: snapshot, commit to the outbox, wake the publisher."""
        assert self.disk is not None
        jpeg = None
        if alert.alert_id not in self._snapshotted and alert.state in ("new", "updated"):
            if self.disk.full:  # snapshots give way first when the disk is full
                self.disk.counters.dropped_snapshots += 1
            else:
                jpeg = self._snapshot(alert)
            if jpeg is not None:
                self._snapshotted.add(alert.alert_id)
                alert = replace(alert, snapshot=f"{self.root}/snapshots/{alert.alert_id}")

        def commit(alert: Alert = alert, jpeg: bytes | None = jpeg) -> None:
            self._store().queue_alert(alert, jpeg)
            self._announce(alert)

        self._write(f"alert {alert.alert_id} ({alert.state})", commit)
        key = (alert.kind, alert.severity)
        if alert.state in ("new", "updated"):
            self.summary.alerts[key] = self.summary.alerts.get(key, 0) + 1
            self.summary.incidents.add(alert.incident_id)
            if alert.kind == "fused":
                self.summary.fused += 1

    def _announce(self, alert: Alert | None) -> None:
        """Wake the publisher; tell ``on_alert`` of an alert now in the outbox."""
        if self.publisher is not None:
            self.publisher.wake()
        if self.on_alert is not None and alert is not None:
            self.on_alert(alert)

    def _snapshot(self, alert: Alert) -> bytes | None:
        thermal = [e for e in alert.evidence if e.type == "thermal"]
        if not thermal:
            return None
        with self._latest_lock:
            latest = self._latest.get(thermal[-1].sensor)
        if latest is None:
            return None
        frame, tracks = latest
        img = annotate(frame.gray8(), tracks, f"{alert.kind} {alert.severity} {iso_ms(alert.ts)}")
        for e in thermal[-5:]:
            bbox = dict(e.fields).get("bbox")
            if bbox:
                x1, y1, x2, y2 = (int(round(v)) for v in bbox)
                cv2.rectangle(img, (x1 - 2, y1 - 2), (x2 + 2, y2 + 2), (0, 255, 255), 2)
        limit = self.config.incident_log.snapshot_max_kb * 1024
        for quality in (85, 70, 55, 40, 25):
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(buf) <= limit:
                return bytes(np.asarray(buf).tobytes())
            img = cv2.resize(img, None, fx=0.8, fy=0.8) if quality <= 40 else img
        return None

    # -- health, reload, watchdog, stop -----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        assert self.store is not None
        now = time.time()
        backlog, oldest = self.store.backlog(now)
        sensors: dict[str, Any] = {}
        for cam_id, cam in self.cameras.items():
            c = cam.counters
            sensors[cam_id] = {"kind": "camera", "state": "ended" if cam.ended else cam.state,
                               "rate_hz": round(c.fps, 2), "frames_bad": c.frames_bad}
        for feed in self.feeds.values():
            sensors[feed.sensor_id] = {"kind": feed.kind, "state": self._state_of(feed.sensor_id) or "ok",
                                       "lines": feed.reader.counters.lines, "events": feed.counters.events,
                                       "rejected": feed.counters.rejected, "seq_gaps": feed.counters.seq_gaps}
        assert self.disk is not None and self.unwritten is not None
        free = self.disk.free_bytes()
        d = self.disk.counters
        mono = time.monotonic()
        stages = {name: ("ok" if s.alive(mono, self.stale_s) else (s.error or "stalled"))
                  for name, s in self.stages.items()}
        return {
            "ts": iso_ms(now), "version": __version__, "uptime_s": round(now - self.started, 1),
            "state": "ok" if all(v == "ok" for v in stages.values()) and not self.fusion.faulty and not self.disk.full
            else "degraded",
            "sensors": sensors,
            "detector_ms": {k: round(v, 1) for k, v in self._detect_ms.items()},
            "queues": {"core": self.core_q.qsize(), "core_max": CORE_QUEUE, "core_errors": self.summary.core_errors},
            "outbox": {"backlog": backlog, "oldest_s": round(oldest, 1)},
            "disk_free_mb": round(free / 2**20, 1) if free is not None else None,
            "disk": {"full": self.disk.full, "reserve_held": self.disk.reserve.exists(),
                     "unwritten": len(self.unwritten), "dropped_snapshots": d.dropped_snapshots,
                     "dropped_rejects": d.dropped_rejects, "lost": d.unwritten_lost},
            "stages": stages,
            "ledger_head": self.store.ledger_head(),
        }

    def request_reload(self) -> None:
        self._reload_requested.set()

    def _reload(self) -> None:
        if self.config_path is None:
            log.warning("SIGHUP: no config file to reload")
            return
        try:
            fresh = load_config(self.config_path)
        except ConfigError as exc:
            log.error("SIGHUP: %s; keeping the running rules", exc)
            return
        if [c.model_dump() for c in fresh.cameras] != [c.model_dump() for c in self.config.cameras] or \
                [s.model_dump() for s in fresh.fixed_sensors] != [s.model_dump() for s in self.config.fixed_sensors]:
            log.warning("SIGHUP: camera and sensor changes take effect on restart; zones and rules reload now")
        fresh = fresh.model_copy(update={"cameras": self.config.cameras, "fixed_sensors": self.config.fixed_sensors})
        self._put(("reload", fresh))

    def all_alive(self) -> bool:
        now = time.monotonic()
        return all(s.alive(now, self.stale_s) for s in self.stages.values())

    def _publish_health(self) -> None:
        """From the main thread, so that health still goes out (and says so) when a stage hangs or dies."""
        if self.publisher is None:
            return
        try:
            self.publisher.publish_health(self.health())
        except Exception:
            log.exception("health could not be published")

    def run_forever(self, duration_s: float | None = None, until: Callable[[], bool] | None = None) -> int:
        """The main loop: watchdog, reload requests; returns when stopped (signal, duration or ``until``)."""
        self.notifier.ready(f"running {self.root}")
        interval = min(5.0, (self.notifier.watchdog_s or 10.0) / 3)
        end = time.monotonic() + duration_s if duration_s else None
        last_status = ""
        health_every = self.config.mqtt.health_interval_s if self.config.mqtt else 30.0
        next_health = time.monotonic() + min(2.0, health_every)
        while not self.stop_event.wait(min(interval, 0.5)):
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self._reload()
            alive = self.all_alive()
            if alive:
                self.notifier.watchdog()
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + health_every
                self._publish_health()
            status = "ok" if alive else "stage down: " + ", ".join(
                n for n, s in self.stages.items() if not s.alive(time.monotonic(), self.stale_s))
            if status != last_status:
                self.notifier.status(status)
                if not alive:
                    log.error("watchdog not fed: %s", status)
                last_status = status
            if end is not None and time.monotonic() >= end:
                break
            if until is not None and until():
                break
        return 0

    def stop(self, timeout: float = 4.0) -> None:
        """Stop sensors, drain the core queue into the incident log, say offline, close the database."""
        deadline = time.monotonic() + timeout
        self.notifier.stopping()
        self.stop_event.set()
        for name, stage in self.stages.items():
            if stage.thread is not None and stage.kind in ("camera", "detect", "feed", "core"):
                stage.thread.join(max(0.05, deadline - 1.5 - time.monotonic()))
                if stage.thread.is_alive():
                    log.warning("stage %s did not stop in time", name)
        if self.publisher is not None:
            self.publisher.stop(max(0.5, deadline - time.monotonic()))
        if self.store is not None:
            self.store.close()
        log.info("agent stopped")


def install_signals(agent: Agent) -> None:
    def on_stop(signum: int, _frame: object) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        agent.stop_event.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, lambda *_: agent.request_reload())


def run(config_path: Path) -> int:
    """``edge-agent run``."""
    config = load_config(config_path)
    agent = Agent(config, config_path)
    install_signals(agent)
    try:
        agent.start()
        agent.run_forever()
    except StoreError as exc:
        log.error("%s", exc)
        return 1
    finally:
        agent.stop()
    return 0

