"""The command post's console: live alerts from many boxes, de-duplicated by ``alert_id``, which boxes are
online, and acknowledging an alert. Seen alerts are kept in a small SQLite cache so that ``ack`` finds the box
of an alert id, and a restarted console does not show old alerts as new."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge_agent.config import MqttConfig, default_state_dir
from edge_agent.delivery import IDENT_RE, ULID_RE, ack_payload, make_client
from sensors.events import parse_time

STATE_MARK = {"new": "NEW", "updated": "UPD", "acknowledged": "ACK", "escalated": "ESC!", "closed": "CLOSED"}


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


def alert_line(p: dict[str, Any], received: float | None = None) -> str:
    ts = datetime.fromtimestamp(parse_time(p["ts"])).strftime("%H:%M:%S")
    zone = p["zone"]["name"] if p.get("zone") else "-"
    sensors = "+".join(sorted({e["type"] for e in p.get("evidence", [])})) or "-"
    snap = " [snapshot]" if p.get("snapshot") else ""
    return (f"{ts} {STATE_MARK.get(p['state'], p['state']):<6} {p['severity']:<8} {p['kind']:<13} "
            f"{p['site']}/{p['box']:<12} {zone:<18} {sensors:<20} {p['summary']}{snap}  ({p['alert_id']})")


class Console:
    """Subscribes to ``{prefix}/{site}/{box}/alerts`` and ``status`` (``+`` for all) and calls ``show`` with one
    line per new alert state and per box going online or offline."""

    def __init__(self, cfg: MqttConfig, show: Callable[[str], None], cache: AlertCache | None = None,
                 site: str = "+", box: str = "+", on_alert: Callable[[dict[str, Any], float], None] | None = None,
                 client_id: str | None = None) -> None:
        for what, v in (("site", site), ("box", box)):
            if v != "+" and not IDENT_RE.match(v):
                raise ValueError(f"{what} {v!r}: use letters, digits, '_' and '-'")
        self.cfg, self.show, self.cache, self.on_alert = cfg, show, cache, on_alert
        self.filter = f"{cfg.prefix}/{site}/{box}"
        self.boxes: dict[str, str] = {}
        self.alerts: dict[str, dict[str, Any]] = {}  # alert id -> newest payload
        self.duplicates = 0
        self._seen: set[tuple[str, str, str]] = set()
        self.rejected = 0
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
        client.subscribe([(f"{self.filter}/alerts", 1), (f"{self.filter}/status", 1)])
        self.connected.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 4:
            return
        _prefix, site, box, leaf = parts
        try:
            p = json.loads(msg.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.rejected += 1
            self.show(f"! {msg.topic}: not JSON ({len(msg.payload)} bytes) ignored")
            return
        if leaf == "status":
            state = p.get("state") if isinstance(p, dict) else None
            if state in ("online", "offline") and self.boxes.get(f"{site}/{box}") != state:
                self.boxes[f"{site}/{box}"] = state
                self.show(f"* box {site}/{box} is {state}" + (f" (version {p.get('version')})" if state == "online"
                                                               else ""))
            return
        if not isinstance(p, dict) or not ULID_RE.match(str(p.get("alert_id", ""))) or "state" not in p:
            self.rejected += 1
            self.show(f"! {msg.topic}: not an alert, ignored")
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
        self.show(alert_line(p, received))


def send_ack(cfg: MqttConfig, site: str, box: str, alert_id: str, by: str, note: str = "",
             wait_s: float = 10.0) -> bool:
    """Publish an ack to a box and wait until the box publishes the alert as ``acknowledged``."""
    if not ULID_RE.match(alert_id):
        raise ValueError(f"{alert_id!r} is not an alert id (a 26-character ULID)")
    confirmed = threading.Event()
    root = f"{cfg.prefix}/{site}/{box}"

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            p = json.loads(msg.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
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
        client.subscribe(f"{root}/alerts", qos=1)
        subscribed.wait(5)
        info = client.publish(f"{root}/acks", ack_payload(alert_id, by, note), qos=1)
        info.wait_for_publish(10)
        return confirmed.wait(wait_s)
    finally:
        client.disconnect()
        client.loop_stop()
