"""The command post's console: live alerts from many boxes, de-duplicated by ``alert_id``, which boxes are
online, and acknowledging an alert. Seen alerts are kept in a small SQLite cache so that ``ack`` finds the box
of an alert id, and a restarted console does not show old alerts as new.

Every payload is untrusted: an alert is checked field by field (``parse_alert``) before it is shown, its texts
are printed with control characters escaped, and a bad one is reported on stderr (rate-limited) and skipped.
Nothing a message holds may end the network thread (paho re-raises what a callback raises)."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge_agent.config.mqtt import MqttConfig
from edge_agent.contract.acks import ack_payload
from edge_agent.contract.alert import BadAlert, load_untrusted, parse_alert
from edge_agent.contract.ids import IDENT_RE, ULID_RE, one_line
from edge_agent.contract.topics import parse_topic, subscription
from edge_agent.paths import default_state_dir
from edge_agent.shared.mqttclient import make_client

log = logging.getLogger(__name__)

STATE_MARK = {"new": "NEW", "updated": "UPD", "acknowledged": "ACK", "escalated": "ESC!", "closed": "CLOSED"}
REPORT_EVERY_S = 10.0  # at most one line about bad messages in this time


class CommandPostError(ValueError):
    """A request to the command post's tools that cannot be done as asked (a bad id, an unknown box)."""


def default_cache() -> Path:
    return default_state_dir() / "watch.db"


@dataclass(frozen=True, slots=True)
class Seen:
    alert_id: str
    site: str
    box: str
    state: str
    payload: dict[str, Any]


class AlertCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS seen (alert_id TEXT, state TEXT, site TEXT, box TEXT, "
                          "received REAL, payload TEXT, ts TEXT, PRIMARY KEY (alert_id, state, ts))")
        self.lock = threading.Lock()

    def add(self, s: Seen) -> bool:
        """True when this (alert, state, ts) is new to the console."""
        with self.lock:
            cur = self.conn.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?, ?, ?, ?, ?)",
                                    [s.alert_id, s.state, s.site, s.box, time.time(), json.dumps(s.payload),
                                     str(s.payload.get("ts"))])
            return cur.rowcount == 1

    def box_of(self, alert_id: str) -> tuple[str, str] | None:
        with self.lock:
            row = self.conn.execute("SELECT site, box FROM seen WHERE alert_id = ? LIMIT 1", [alert_id]).fetchone()
        return (row[0], row[1]) if row else None


def alert_line(p: dict[str, Any], ts: float) -> str:
    """One console line for an alert ``parse_alert`` accepted; every text from the box is escaped."""
    when = datetime.fromtimestamp(ts).strftime("%H:%M:%S")
    zone = one_line(p["zone"].get("name") or p["zone"].get("id") or "-", 40) if p.get("zone") else "-"
    sensors = one_line("+".join(sorted({e["type"] for e in p.get("evidence", [])})) or "-", 40)
    snap = " [snapshot]" if p.get("snapshot") else ""
    return (f"{when} {STATE_MARK[p['state']]:<6} {p['severity']:<8} {p['kind']:<13} "
            f"{p['site']}/{p['box']:<12} {zone:<18} {sensors:<20} {one_line(p['summary'], 300)}{snap}  "
            f"({p['alert_id']})")


class BadMessageReport:
    """Tells of bad messages once, then at most once every ``every_s`` with how many more there were."""

    def __init__(self, write: Callable[[str], None], every_s: float = REPORT_EVERY_S) -> None:
        self.write, self.every_s = write, every_s
        self.count = 0
        self._last = -float("inf")
        self._held = 0
        self._lock = threading.Lock()

    def __call__(self, topic: str, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.count += 1
            if now - self._last < self.every_s:
                self._held += 1
                return
            held, self._held, self._last = self._held, 0, now
        more = f" ({held} more bad messages since the last report)" if held else ""
        self.write(f"! {one_line(topic, 200)}: {one_line(reason, 300)}; skipped{more}")


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Console:
    """Subscribes to ``{prefix}/{site}/{box}/alerts`` and ``status`` (``+`` for all) and calls ``show`` with one
    line per new alert state and per box going online or offline."""

    def __init__(self, cfg: MqttConfig, show: Callable[[str], None], cache: AlertCache | None = None,
                 site: str = "+", box: str = "+", on_alert: Callable[[dict[str, Any], float], None] | None = None,
                 client_id: str | None = None, warn: Callable[[str], None] = _to_stderr) -> None:
        for what, v in (("site", site), ("box", box)):
            if v != "+" and not IDENT_RE.match(v):
                raise CommandPostError(f"{what} {v!r}: use letters, digits, '_' and '-'")
        self.cfg, self.show, self.cache, self.on_alert = cfg, show, cache, on_alert
        self.bad = BadMessageReport(warn)
        self.topics = subscription(cfg.prefix, site, box)
        self.boxes: dict[str, str] = {}
        self.alerts: dict[str, dict[str, Any]] = {}  # alert id -> newest payload
        self.duplicates = 0
        self._seen: set[tuple[str, str, str]] = set()
        self.connected = threading.Event()
        self.client = make_client(cfg, client_id or f"cp-watch-{int(time.time() * 1000) % 10**9}")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.broker_port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.show(f"! broker {self.cfg.host}:{self.cfg.broker_port} refused the connection: {reason}")
            return
        client.subscribe([(self.topics.alerts, 1), (self.topics.status, 1)])
        self.connected.set()

    @property
    def rejected(self) -> int:
        return self.bad.count

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._handle(msg)
        except Exception as exc:  # paho would re-raise it, and that ends the network thread
            log.debug("message on %r", msg.topic, exc_info=True)
            self.bad(msg.topic, f"could not be handled ({type(exc).__name__}: {exc})")

    def _handle(self, msg: mqtt.MQTTMessage) -> None:
        topic = parse_topic(msg.topic)
        if topic is None:
            return
        site, box = topic.site, topic.box
        if not topic.names_a_box:
            self.bad(msg.topic, "site and box in the topic must be ids")
            return
        if topic.leaf == "status":
            self._status(site, box, bytes(msg.payload))
            return
        try:
            p, ts = parse_alert(bytes(msg.payload), site, box)
        except BadAlert as exc:
            self.bad(msg.topic, f"not an alert: {exc}")
            return
        received = time.time()
        # a redelivery repeats the same alert state with the same ts; a real change has a new ts
        key = (p["alert_id"], p["state"], str(p.get("ts")))
        if self.cache is not None:
            new = self.cache.add(Seen(p["alert_id"], site, box, p["state"], p))
        else:
            new = key not in self._seen
            self._seen.add(key)
        if not new:
            self.duplicates += 1
            return
        self.alerts[p["alert_id"]] = p
        if self.on_alert is not None:
            self.on_alert(p, received)
        self.show(alert_line(p, ts))

    def _status(self, site: str, box: str, payload: bytes) -> None:
        try:
            p = load_untrusted(payload)
        except BadAlert as exc:
            self.bad(f"{site}/{box}/status", str(exc))
            return
        state = p.get("state") if isinstance(p, dict) else None
        if state in ("online", "offline") and self.boxes.get(f"{site}/{box}") != state:
            self.boxes[f"{site}/{box}"] = state
            version = f" (version {one_line(p.get('version'), 40)})" if state == "online" else ""
            self.show(f"* box {site}/{box} is {state}{version}")


def send_ack(cfg: MqttConfig, site: str, box: str, alert_id: str, by: str, note: str = "",
             wait_s: float = 10.0) -> bool:
    """Publish an ack to a box and wait until the box publishes the alert as ``acknowledged``."""
    if not ULID_RE.match(alert_id):
        raise CommandPostError(f"{alert_id!r} is not an alert id (a 26-character ULID)")
    confirmed = threading.Event()
    topics = subscription(cfg.prefix, site, box)

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            p = load_untrusted(bytes(msg.payload))
        except BadAlert:
            return
        if isinstance(p, dict) and p.get("alert_id") == alert_id and p.get("state") == "acknowledged":
            confirmed.set()

    subscribed = threading.Event()
    client = make_client(cfg, f"cp-ack-{int(time.time() * 1000) % 10**9}")
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.connect(cfg.host, cfg.broker_port, keepalive=cfg.keepalive_s)
    client.loop_start()
    try:
        client.subscribe(topics.alerts, qos=1)
        subscribed.wait(5)
        info = client.publish(topics.acks, ack_payload(alert_id, by, note), qos=1)
        info.wait_for_publish(10)
        return confirmed.wait(wait_s)
    finally:
        client.disconnect()
        client.loop_stop()
