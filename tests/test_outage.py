"""Issue 12's delivery acceptance: 1,000 alerts from a running ``edge-agent run`` reach a command post with
end-to-end receipts through two graceful broker stops, two broker SIGKILLs (one while the command post is
away) and a SIGKILL of the agent itself; only redeliveries of the same alert state come twice.

    python -m tests.test_outage --no-receipt     the same run without receipts: reports what was lost
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.contract.ids import iso_ms
from edge_agent.demo.script import pmdet
from tests.agents.alarm_box import every_alarm_box
from tests.agents.udp_pacer import UdpPacer
from tests.brokers import ROOT, Mosquitto, free_port, wait_for

pytestmark = pytest.mark.integration
EXE = str(Path(sys.executable).with_name("edge-agent"))
ALERTS = 1000
BATCH = 50
ROOT_TOPIC = "border/t/box1"


class CommandPost:
    """The test's command post: a persistent session (fixed client id, clean_session False, QoS 1) that sends
    the contract's receipt ``{"alert_id", "state", "by", "ts"}`` for every alert state it gets. It can go away
    (a clean disconnect: the broker keeps its session and queues for it) and come back."""

    def __init__(self, port: int, client_id: str = "command-post-outage") -> None:
        self.port, self.client_id = port, client_id
        self.alerts: list[dict[str, Any]] = []
        self.health: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.client: mqtt.Client | None = None
        self.subscribed = threading.Event()  # the broker confirmed the subscriptions (SUBACK)
        self.back()

    def back(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False)
        client.on_connect = lambda c, *_a: c.subscribe([(f"{ROOT_TOPIC}/alerts", 1), (f"{ROOT_TOPIC}/health", 0)])
        client.on_message = self._on_message
        client.on_subscribe = lambda *_a: self.subscribed.set()
        client.reconnect_delay_set(1, 1)
        client.connect_async("127.0.0.1", self.port, keepalive=5)
        client.loop_start()
        self.client = client

    def away(self) -> None:
        assert self.client is not None
        self.client.disconnect()
        self.client.loop_stop()
        self.client = None

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        payload = json.loads(msg.payload)
        with self.lock:
            (self.health if msg.topic.endswith("/health") else self.alerts).append(payload)
        if msg.topic.endswith("/alerts"):
            receipt = {"alert_id": payload["alert_id"], "state": payload["state"], "by": self.client_id,
                       "ts": iso_ms(time.time())}
            client.publish(f"{ROOT_TOPIC}/receipts", json.dumps(receipt), qos=1)

    def new_ids(self) -> set[str]:
        with self.lock:
            return {a["alert_id"] for a in self.alerts if a["state"] == "new"}

    def last_health(self) -> dict[str, Any]:
        with self.lock:
            return self.health[-1] if self.health else {}


@dataclass
class OutageRun:
    """What one run saw; the test asserts on it, ``--no-receipt`` prints it."""

    stored: dict[str, str] = field(default_factory=dict)  # alert_id -> incident_id of every metal alert in the DB
    received: list[dict[str, Any]] = field(default_factory=list)  # every alert message the command post got
    backlog: int | None = None
    seconds: float = 0.0
    events: list[str] = field(default_factory=list)

    def new_ids(self) -> set[str]:
        return {a["alert_id"] for a in self.received if a["state"] == "new"}


def _config(tmp_path: Path, port: int, udp: int, require_receipt: bool) -> Path:
    return every_alarm_box(tmp_path, udp, mqtt={
        "host": "127.0.0.1", "port": port, "health_interval_s": 1, "keepalive_s": 5, "reconnect_min_s": 1,
        "reconnect_max_s": 1, "require_receipt": require_receipt,
        **({"receipt_timeout_s": 2} if require_receipt else {})})


def _count(db: Path, sql: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return -1


def _metal_alerts(db: Path) -> int:
    return _count(db, "SELECT COUNT(*) FROM alerts WHERE kind = 'metal'")


def run_outages(tmp_path: Path, require_receipt: bool) -> OutageRun:
    """1,000 ALARMs in batches of 50 through the outages; returns what the command post got."""
    broker = Mosquitto().start()
    udp = free_port()
    config = _config(tmp_path, broker.port, udp, require_receipt)
    db = tmp_path / "state" / "incidents.db"
    cp = CommandPost(broker.port)
    log = (tmp_path / "agent.log").open("a")  # a file, not a pipe: a full pipe would stall the agent's logging

    def start_agent() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([EXE, "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log,
                                cwd=ROOT)
        assert pacer.wait_bound(30), (tmp_path / "agent.log").read_text()[-3000:]  # no ALARM into the void
        return proc

    run = OutageRun()
    pacer = UdpPacer(udp)
    t0 = time.monotonic()
    agent = start_agent()
    sent = 0

    def batch(note: str = "") -> None:
        nonlocal sent
        for _ in range(BATCH):
            sent += 1
            pacer.send(pmdet("md-1", sent, "ALARM", 80, 1).encode() + b"\n")
        assert wait_for(lambda: _metal_alerts(db) == sent, 60), \
            f"{_metal_alerts(db)} alerts in the incident log after {sent} ALARMs"
        if note:
            run.events.append(f"{time.monotonic() - t0:5.1f} s {sent:4d} sent: {note}")

    def delivered_all() -> bool:  # the broker took (PUBACK) every alert state in the outbox
        return _count(db, "SELECT COUNT(*) FROM outbox WHERE delivered IS NULL") == 0

    def outage(stop: Callable[[], None], what: str, batches: int, during: Callable[[], None] | None = None) -> None:
        stop()
        run.events.append(f"{time.monotonic() - t0:5.1f} s broker {what}")
        for _ in range(batches):
            batch("while the broker is down")
        if during is not None:
            during()
        broker.start()
        if cp.client is not None:  # back before what follows, so that it sees the broker's queue for it
            assert wait_for(cp.client.is_connected, 10)

    def restart_agent() -> None:
        nonlocal agent
        agent.send_signal(signal.SIGKILL)  # a power cut: its undelivered alerts are only in the outbox
        agent.wait(10)
        run.events.append(f"{time.monotonic() - t0:5.1f} s agent SIGKILL with a backlog, restarted")
        agent = start_agent()
        batch("into the restarted agent")

    try:
        assert cp.subscribed.wait(10)
        for _ in range(3):
            batch()
        outage(broker.stop, "SIGTERM", 2)
        batch()
        batch()
        assert wait_for(delivered_all, 30)
        outage(broker.kill, "SIGKILL right after its PUBACKs", 1)
        batch()
        batch()
        outage(broker.stop, "SIGTERM", 1, during=restart_agent)
        batch()
        cp.away()  # the command post's link is down: the broker queues its alerts in its session
        batch("while the command post is away")
        assert wait_for(delivered_all, 30)
        outage(broker.kill, "SIGKILL with the command post away", 1)
        cp.back()
        while sent < ALERTS:
            batch()
        if require_receipt:
            wait_for(lambda: len(cp.new_ids()) >= ALERTS and cp.last_health().get("outbox", {}).get("backlog") == 0,
                     120)
        else:  # nothing to wait for but the broker's acks: give stragglers a moment
            wait_for(lambda: len(cp.new_ids()) >= ALERTS, 20)
        run.backlog = cp.last_health().get("outbox", {}).get("backlog")
        run.seconds = time.monotonic() - t0
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(15)
            finally:
                if agent.poll() is None:
                    agent.kill()
        if cp.client is not None:
            cp.away()
        log.close()
        pacer.close()
        broker.remove()
    with sqlite3.connect(db) as conn:
        run.stored = dict(conn.execute("SELECT alert_id, incident_id FROM alerts WHERE kind = 'metal'").fetchall())
    run.received = list(cp.alerts)
    return run


def test_a_thousand_alerts_reach_the_command_post_through_broker_and_agent_kills(tmp_path: Path) -> None:
    run = run_outages(tmp_path, require_receipt=True)
    print(f"outage run: {run.seconds:.1f} s", *run.events, sep="\n  ")
    assert len(run.stored) == ALERTS and len(set(run.stored.values())) == ALERTS  # one incident per ALARM
    missing = set(run.stored) - run.new_ids()
    assert not missing, f"{len(missing)} of {ALERTS} alerts never reached the command post in state new"
    assert {a["alert_id"] for a in run.received} <= set(run.stored)
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for a in run.received:  # a duplicate is a redelivery of the same alert state, never a new version of it
        assert a["incident_id"] == run.stored[a["alert_id"]], a
        assert first.setdefault((a["alert_id"], a["state"]), a) == a, (first[(a["alert_id"], a["state"])], a)
    assert run.backlog == 0, f"outbox backlog {run.backlog} in the last health message"
    with sqlite3.connect(tmp_path / "state" / "incidents.db") as conn:
        owed = conn.execute("SELECT COUNT(*) FROM outbox WHERE delivered IS NULL OR receipt IS NULL").fetchone()[0]
    assert owed == 0, f"{owed} outbox rows without a receipt after the agent stopped"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-receipt", action="store_true", help="run with mqtt.require_receipt off")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-outage-") as tmp:
        run = run_outages(Path(tmp), require_receipt=not args.no_receipt)
    lost = set(run.stored) - run.new_ids()
    dups = len(run.received) - len({(a["alert_id"], a["state"]) for a in run.received})
    print(f"require_receipt={not args.no_receipt}: {len(run.stored)} alerts stored, {len(run.new_ids())} reached "
          f"the command post, {len(lost)} lost, {dups} duplicate deliveries, backlog {run.backlog}, "
          f"{run.seconds:.1f} s", *run.events, sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
