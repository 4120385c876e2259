"""The command post's console: live alerts from many boxes, de-duplicated by ``alert_id``, which boxes are
online, and acknowledging an alert. Seen alerts are kept in a small SQLite cache so that ``ack`` finds the box
of an alert id, and a restarted console does not show old alerts as new.

It takes its messages from the command post's one receiver (``receiver``): every payload is checked there (an
alert by the contract's parser) before it is shown, a bad one is reported on stderr (rate-limited) and
skipped, and this module prints every text from a box with control characters escaped."""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from edge_agent.commandpost.messages import AlertReceived, BoxStatus, BrokerLink, Received
from edge_agent.commandpost.receiver import Receiver, check_alert_id
from edge_agent.config.mqtt import MqttConfig
from edge_agent.contract.alert import Alert
from edge_agent.contract.ids import iso_ms, one_line
from edge_agent.contract.topics import ANY, BoxTopics
from edge_agent.paths import default_state_dir

CONNECT_WAIT_S = 10.0  # for ``ack``: connected and subscribed within this, or the broker is not reachable
STATE_MARK = {"new": "NEW", "updated": "UPD", "acknowledged": "ACK", "escalated": "ESC!", "closed": "CLOSED"}


def default_cache() -> Path:
    return default_state_dir() / "watch.db"


class AlertCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS seen (alert_id TEXT, state TEXT, site TEXT, box TEXT, "
                          "received REAL, payload TEXT, ts TEXT, PRIMARY KEY (alert_id, state, ts))")
        self.lock = threading.Lock()

    def add(self, alert: Alert) -> bool:
        """True when this (alert, state, ts) is new to the console."""
        with self.lock:
            cur = self.conn.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?, ?, ?, ?, ?)",
                                    [alert.alert_id, alert.state, alert.site, alert.box, time.time(),
                                     alert.to_json().decode("utf-8"), iso_ms(alert.ts)])
            return cur.rowcount == 1

    def box_of(self, alert_id: str) -> tuple[str, str] | None:
        with self.lock:
            row = self.conn.execute("SELECT site, box FROM seen WHERE alert_id = ? LIMIT 1", [alert_id]).fetchone()
        return (row[0], row[1]) if row else None


def alert_line(alert: Alert) -> str:
    """One console line for an alert; every text from the box is escaped."""
    when = datetime.fromtimestamp(alert.ts).strftime("%H:%M:%S")
    zone = one_line(alert.zone[1] or alert.zone[0], 40) if alert.zone else "-"
    sensors = one_line("+".join(sorted({e.type for e in alert.evidence})) or "-", 40)
    snap = " [snapshot]" if alert.snapshot else ""
    return (f"{when} {STATE_MARK[alert.state]:<6} {alert.severity:<8} {alert.kind:<13} "
            f"{alert.site}/{alert.box:<12} {zone:<18} {sensors:<20} {one_line(alert.summary, 300)}{snap}  "
            f"({alert.alert_id})")


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Console:
    """Watches ``{prefix}/{site}/{box}/alerts`` and ``status`` (``+`` for all) and calls ``show`` with one line
    per new alert state and per box going online or offline (``on_alert`` gets each new alert state too)."""

    def __init__(self, cfg: MqttConfig, show: Callable[[str], None], cache: AlertCache | None = None,
                 site: str = ANY, box: str = ANY, on_alert: Callable[[Alert, float], None] | None = None,
                 client_id: str | None = None, warn: Callable[[str], None] = _to_stderr) -> None:
        self.cfg, self.show, self.cache, self.on_alert = cfg, show, cache, on_alert
        self.boxes: dict[str, str] = {}
        self.alerts: dict[str, Alert] = {}  # alert id -> newest state shown
        self.duplicates = 0
        self._seen: set[tuple[str, str, float]] = set()
        self.receiver = Receiver(cfg, client_id or f"cp-watch-{int(time.time() * 1000) % 10**9}", self.take,
                                 site=site, box=box, leaves=("alerts", "status"), warn=warn)

    @property
    def topics(self) -> BoxTopics:
        return self.receiver.topics

    @property
    def connected(self) -> threading.Event:
        return self.receiver.connected

    @property
    def rejected(self) -> int:
        return self.receiver.counters.rejected

    def start(self) -> None:
        self.receiver.start()

    def stop(self) -> None:
        self.receiver.stop()

    def take(self, message: Received) -> None:
        match message:
            case AlertReceived(alert, received):
                self._alert(alert, received)
            case BoxStatus(site, box, state, version):
                key = f"{site}/{box}"
                if self.boxes.get(key) != state:
                    self.boxes[key] = state
                    shown = f" (version {one_line(version, 40)})" if state == "online" and version else ""
                    self.show(f"* box {key} is {state}{shown}")
            case BrokerLink(connected=False, detail=detail):
                self.show(f"! broker {self.cfg.host}:{self.cfg.broker_port} {detail}")

    def _alert(self, alert: Alert, received: float) -> None:
        # a redelivery repeats the same alert state with the same ts; a real change has a new ts
        if self.cache is not None:
            new = self.cache.add(alert)
        else:
            key = (alert.alert_id, alert.state, alert.ts)
            new = key not in self._seen
            self._seen.add(key)
        if not new:
            self.duplicates += 1
            return
        self.alerts[alert.alert_id] = alert
        if self.on_alert is not None:
            self.on_alert(alert, received)
        self.show(alert_line(alert))


def ack_and_confirm(cfg: MqttConfig, site: str, box: str, alert_id: str, by: str, note: str = "",
                    wait_s: float = 10.0) -> bool:
    """``edge-agent ack``: send the ack (the receiver's ``send_ack``, as the page does) and wait until the box
    publishes the alert as ``acknowledged``. ``ConnectionError`` when the broker cannot be reached."""
    check_alert_id(alert_id)  # before connecting: a typo is said at once
    confirmed = threading.Event()

    def take(message: Received) -> None:
        if isinstance(message, AlertReceived) and message.alert.alert_id == alert_id \
                and message.alert.state == "acknowledged":
            confirmed.set()

    receiver = Receiver(cfg, f"cp-ack-{int(time.time() * 1000) % 10**9}", take, site=site, box=box,
                        leaves=("alerts",), warn=lambda _line: None)  # only the confirmation matters here
    receiver.start()
    try:
        if not receiver.subscribed.wait(CONNECT_WAIT_S):  # subscribed first: the confirmation must not pass unseen
            raise ConnectionError(f"the broker {cfg.host}:{cfg.broker_port} is not reachable")
        receiver.send_ack(site, box, alert_id, by, note).wait_for_publish(10)
        return confirmed.wait(wait_s)
    finally:
        receiver.stop()
