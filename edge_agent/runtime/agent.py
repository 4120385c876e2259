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
lines and fusion rules from the config file without touching sensors. The box's map (``sitemap``) is built at
start and again whenever the core says its site changed (a reload, a camera's first frame): published retained
on ``.../site`` and kept in the incident database.

Here: building the stages, the main loop (watchdog, health, reloads), stopping. The stages themselves live with
what they do: a camera's detection stage in ``perception``, the core stage and its messages in ``core``, the
publisher in ``delivery``; the health payload is in ``health`` and the watchdog's bookkeeping in ``stages``.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detectors.engine import SharedEngine
from edge_agent.config import DEFAULT_PREFIX
from edge_agent.config.agent import AgentConfig, load_config
from edge_agent.contract.acks import Ack
from edge_agent.contract.alert import Alert
from edge_agent.contract.topics import topic_root
from edge_agent.core.fusion import FusionEngine
from edge_agent.core.messages import AckReceived, CoreQueue, FrameBudget, RulesReloaded, SensorEvent
from edge_agent.core.sitemap import encode_site_map, site_map
from edge_agent.core.stage import Core, RunSummary, SiteView
from edge_agent.delivery.publisher import Publisher
from edge_agent.incidents.diskguard import DiskGuard
from edge_agent.incidents.errors import StoreError
from edge_agent.incidents.store import IncidentStore
from edge_agent.incidents.writer import IncidentLogWriter
from edge_agent.outputs import build_outputs
from edge_agent.outputs.base import OutputRunner
from edge_agent.paths import ConfigError
from edge_agent.perception.build import build_detector, build_pipeline
from edge_agent.perception.geometry import CameraGeometry
from edge_agent.perception.stage import CameraLoad, DetectionStage, load_line
from edge_agent.perception.tracks import CameraPerception
from edge_agent.runtime.errors import CoreBusy, NotStarted
from edge_agent.runtime.health import health_payload
from edge_agent.runtime.sdnotify import Notifier
from edge_agent.runtime.stages import Stage, Stages
from sensors.captures import is_live
from sensors.feeds import SensorFeed
from sensors.thermal import ThermalCamera

log = logging.getLogger(__name__)

FEED_READY_S = 3.0  # how long start waits for a line sensor's socket before it says online anyway


class Agent:
    """The whole box in one process: builds the stages, runs the main loop, reloads, stops."""

    def __init__(self, config: AgentConfig, config_path: Path | None = None,
                 on_alert: Callable[[Alert], None] | None = None, notifier: Notifier | None = None) -> None:
        self._config = config
        self.config_path = config_path
        self.on_alert = on_alert
        self.notifier = notifier or Notifier()
        self.stop_event = threading.Event()
        self.queue = CoreQueue(self.stop_event)
        self.budget = FrameBudget()
        self.stages = Stages()
        self.stale_s = self.stages.stale_s
        self.started = time.time()
        self.cameras: dict[str, ThermalCamera] = {}
        self.feeds: dict[str, SensorFeed] = {}
        self.publisher: Publisher | None = None
        self.outputs: list[OutputRunner] = []  # Cursor on Target, SAPIENT: fed from the outbox too
        self.store: IncidentStore | None = None
        self.core: Core | None = None
        self._detect_ms: dict[str, float] = {}
        self.loads: dict[str, CameraLoad] = {}  # each camera's detection load, for health and the end of a run
        self.engine: SharedEngine | None = None
        self._reload_requested = threading.Event()
        self._site_shared = 0  # the version of the core's site view last published and stored

    @property
    def config(self) -> AgentConfig:
        """The running configuration (zones and rules as last reloaded)."""
        return self.core.config if self.core is not None else self._config

    @property
    def summary(self) -> RunSummary:
        return self._core().summary

    @property
    def fusion(self) -> FusionEngine:
        return self._core().fusion

    def _core(self) -> Core:
        if self.core is None:
            raise NotStarted("the agent has not started: call start() first")
        return self.core

    # -- building ----------------------------------------------------------------------------------------

    def _ack_arrived(self, ack: Ack) -> None:
        """On paho's network thread, which must not block on a full core queue (the broker would see a dead
        client): an ack the core cannot take within a second is kept as rejected input (the publisher does
        that with what this raises), and the command post can send it again."""
        if not self.queue.offer(AckReceived(ack), timeout=1.0):
            raise CoreBusy(f"the core queue stayed full for 1 s; ack of {ack.alert_id} not taken")

    def start(self) -> None:
        cfg = self._config
        self.root = topic_root(cfg.mqtt.prefix if cfg.mqtt else DEFAULT_PREFIX, cfg.site, cfg.box)
        self.store = IncidentStore(cfg.db_path, max_rejects=cfg.incident_log.max_rejects,
                                   snapshot_max_bytes=cfg.incident_log.snapshot_max_kb * 1024)
        disk = DiskGuard(cfg.db_path.parent, int(cfg.incident_log.reserve_mb * 2**20))
        disk.hold_reserve()
        # before anything enters the outbox: from now on alert states are owed to these outputs too
        self.outputs = build_outputs(cfg, self.store.deliveries, self._ack_arrived, self._faults)
        left_open = self.store.close_open(time.time())
        if left_open:
            log.info("closed %d incident(s) a previous run left open; their alerts go out as closed", left_open)
        self.core = Core(cfg, self.root, self.queue, self.budget, IncidentLogWriter(self.store, disk), self.cameras,
                         self.feeds, self._announce)
        for out in self.outputs:
            if hasattr(out, "offer_tracks"):  # SAPIENT's detection reports: the confirmed tracks of every frame
                self.core.on_tracks.append(out.offer_tracks)
        pipelines, perceptions = {}, {}
        cams = [c for c in cfg.cameras if c.enabled]
        if cams:
            detector = build_detector(cfg)
            # one model for every camera: frames of several cameras inferred at once, served fairly
            self.engine = SharedEngine(detector, workers=cfg.detector.parallel).start()
            for cam_cfg in cams:
                geometry = CameraGeometry.of(cam_cfg)
                pipelines[cam_cfg.id] = build_pipeline(cfg, self.engine.client(cam_cfg.id), geometry)
                perceptions[cam_cfg.id] = CameraPerception(geometry)
                cam = ThermalCamera(cam_cfg.spec(pace="live" if is_live(cam_cfg.source) or cam_cfg.loop
                                                 or "realtime=1" in cam_cfg.source else "every"))
                self.cameras[cam_cfg.id] = cam
        for s in cfg.fixed_sensors:
            if s.url:
                self.feeds[s.id] = SensorFeed(s.id, s.kind, s.url, lambda ev: self.queue.put(SensorEvent(ev)),
                                              max_skew_s=s.max_skew_s, hb_timeout_s=s.hb_timeout_s,
                                              accept=cfg.accepted_ids(s.id))
        first_map = self.core.site_view  # the map of the start, before any frame: cameras without a footprint yet
        core = self.core
        self.stages.spawn("core", "core", lambda stage: core.run(stage.touch, self.stop_event.is_set))
        for cam_id, cam in self.cameras.items():
            cam.start(self.stop_event)
            cam_stage = self.stages.add(Stage(f"camera:{cam_id}", "camera", cam.thread,
                                              ended_of=functools.partial(_source_ended, cam)))
            detection = DetectionStage(cam_id, cam, pipelines[cam_id], perceptions[cam_id], self.queue, self.budget,
                                       self._detect_ms)
            self.loads[cam_id] = detection.load
            self.stages.spawn(f"detect:{cam_id}", "detect", functools.partial(_detect, detection), cam_stage)
        for feed in self.feeds.values():
            feed.start(self.stop_event)
            self.stages.add(Stage(f"feed:{feed.sensor_id}", "feed", feed.reader.thread))
        for feed in self.feeds.values():  # the box says online once its sensors listen (a bind can retry)
            if not feed.reader.wait_ready(FEED_READY_S):
                log.warning("sensor %s: not listening or connected after %.0f s; going on", feed.sensor_id,
                            FEED_READY_S)
        if cfg.mqtt is not None:
            self.publisher = Publisher(cfg.mqtt, cfg.site, cfg.box, self.store, self._ack_arrived)
            self.publisher.start()
            pub = self.publisher
            self.stages.add(Stage("delivery", "delivery", pub.thread, beat_of=lambda: pub.heartbeat))
        for out in self.outputs:
            out.start()
            self.stages.add(Stage(f"output:{out.name}", "output", out.thread,
                                  beat_of=functools.partial(getattr, out, "heartbeat")))
        log.info("agent %s started: %d camera(s), %d feed(s), incident log %s, broker %s%s", self.root,
                 len(self.cameras), len(self.feeds), cfg.db_path,
                 ", ".join(f"{h}:{p}" for h, p in cfg.mqtt.brokers) if cfg.mqtt else "none (alerts stay in the outbox)",
                 "".join(f", output {out.name}" for out in self.outputs))
        self._share_site(first_map)  # once every sensor listens: storing it waits for the disk

    def _faults(self) -> list[str]:
        """The sensors found faulty now, for a SAPIENT status report (read from the output's thread)."""
        core = self.core
        try:
            return [f"{sensor}: {reason}" for sensor, reason in list(core.fusion.faulty.items())] if core else []
        except RuntimeError:  # changed while read: the next report has it
            return []

    def _announce(self, alert: Alert | None) -> None:
        """Wake the publisher and the other outputs; tell ``on_alert`` of an alert now in the outbox."""
        if self.publisher is not None:
            self.publisher.wake()
        for out in self.outputs:
            out.wake()
        if self.on_alert is not None and alert is not None:
            self.on_alert(alert)

    # -- health, reload, watchdog, stop -----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        pub = self.publisher
        broker = {"broker": pub.where, "connected": pub.connected.is_set(), "failovers": pub.counters.failovers} \
            if pub is not None else None
        return health_payload(self._core(), self.stages, self._detect_ms, self.started, self.loads, self.engine,
                              self.outputs, broker)

    def load_lines(self) -> list[str]:
        """Each camera's detection load in words (the end of ``run`` and ``demo``)."""
        mono = time.monotonic()
        return [load_line(cam_id, load.report(self.cameras[cam_id].counters.frames_read,
                                              self.cameras[cam_id].counters.frames_dropped, mono))
                for cam_id, load in self.loads.items()]

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
        if fresh.outputs != self.config.outputs:
            log.warning("SIGHUP: output changes (outputs.cot, outputs.sapient) take effect on restart")
        fresh = fresh.model_copy(update={"cameras": self.config.cameras, "fixed_sensors": self.config.fixed_sensors,
                                         "outputs": self.config.outputs})
        self.queue.put(RulesReloaded(fresh, self.config_path))

    def _share_site(self, view: SiteView | None = None) -> None:
        """The box's map, when the core's site view (or ``view``) changed since the last one: handed to the
        publisher (retained on ``.../site``) and kept in the incident database. A map that cannot be built or
        stored is logged and waits for the next change; it never stops the main loop."""
        view = view or self._core().site_view
        if view.version == self._site_shared:
            return
        self._site_shared = view.version
        try:
            value = site_map(view.site, view.frame_sizes, time.time())
            if self.publisher is not None:
                self.publisher.set_site(encode_site_map(value))
            if self.store is not None:
                self.store.save_site_map(value)
        except Exception:
            log.exception("the site map (version %d) could not be published or stored", view.version)

    def all_alive(self) -> bool:
        return self.stages.all_alive()

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
            self._share_site()
            alive = self.all_alive()
            if alive:
                self.notifier.watchdog()
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + health_every
                self._publish_health()
            status = "ok" if alive else "stage down: " + ", ".join(self.stages.down())
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
        for out in self.outputs:  # SAPIENT says goodbye; what is owed stays in the incident log
            out.stop(max(0.5, min(2.0, deadline - time.monotonic())))
        if self.publisher is not None:
            self.publisher.stop(max(0.5, deadline - time.monotonic()))
        if self.engine is not None:
            self.engine.stop(1.0)
        if self.store is not None:
            self.store.close()
        log.info("agent stopped")


def _detect(detection: DetectionStage, stage: Stage, camera_stage: Stage) -> None:
    """A camera's detection stage on its thread; a source that ended finishes both stages (not a death)."""
    if detection.run(stage.touch):
        stage.finished = camera_stage.finished = True


def _source_ended(cam: ThermalCamera) -> bool:
    """A finite source that has ended is a stage that finished, not one that died."""
    return cam.counters.state == "ended"


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
        for line in agent.load_lines():  # did detection keep up with each camera
            log.info("%s", line)
    return 0

