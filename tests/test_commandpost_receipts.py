"""Acceptance: end-to-end receipts from the real command post (``edge-agent command-post`` in a subprocess) carry
every alert state of a box through a Mosquitto SIGKILL while the command post was stopped.

The scenario is ``crash_while_away`` of tests/test_delivery.py with the real command post instead of a fake
subscriber: the command post subscribes once (persistent session) and is stopped (SIGTERM); a box (real
``Publisher`` and ``IncidentStore``) commits 300 alerts plus later ``updated`` and ``closed`` states; once the
broker has acknowledged some of them it is SIGKILLed and restarted on the same port; the command post comes back.
Three runs show what receipts are for: (a) the shipped broker settings with receipts on lose nothing; (b) a broker
that forgets (Mosquitto's default persistence: a save every 30 minutes) with receipts off loses what it had
acknowledged, though the box counts it delivered; (c) the same broker with receipts on loses nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config.mqtt import MqttConfig
from edge_agent.contract.alert import Alert, Evidence
from edge_agent.contract.ids import new_ulid
from edge_agent.contract.topics import OUTBOX_ALERTS
from edge_agent.delivery.publisher import Publisher
from edge_agent.incidents.store import IncidentStore
from tests.brokers import ROOT, Mosquitto, shipped_persistence, wait_for

pytestmark = pytest.mark.integration

CP_NAME = "cp-test"
SITE, BOX, PROBE_BOX = "t", "box1", "probe"
FORGETFUL = ["persistence true"]  # Mosquitto's default autosave: every 30 minutes, so a SIGKILL loses all since
START_S = 60.0  # the command post's start (Python imports on a slow host)
SETTLE_S = 180.0  # receipts overdue are published again 1, 2, 4, 8... s apart: generous on a slow host

AlertKey = tuple[str, str]  # (alert_id, state): what the command post de-duplicates on, with ts


def _alert(box: str = BOX) -> Alert:
    now = time.time()
    ev = Evidence("md-1", "metal", now, (("event", "ALARM"), ("level", 90), ("zone", 2)))
    return Alert(new_ulid(now), new_ulid(now), SITE, box, now, "metal", "high", "new", None, None, (ev,),
                 "metal alarm at md-1 (level 90)")


class CommandPost:
    """The real ``edge-agent command-post`` in a subprocess: its config, store and output in one folder."""

    def __init__(self, folder: Path, broker_port: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.store = folder / "cp.db"
        self.config = folder / "cp.yaml"
        self.config.write_text(
            f"name: {CP_NAME}\n"
            f"mqtt: {{host: 127.0.0.1, port: {broker_port}, prefix: border, reconnect_min_s: 1, "
            "reconnect_max_s: 1, keepalive_s: 5}\n"
            "listen: {host: 127.0.0.1, port: 0}\n"
            f"store: {self.store}\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _out(self, stream: str) -> Path:
        return self.folder / f"{stream}-{self.starts}.txt"

    def start(self) -> str:
        """Start it; its page's URL, read from its first line of output."""
        self.starts += 1
        exe = Path(sys.executable).with_name("edge-agent")
        with self._out("stdout").open("wb") as out, self._out("stderr").open("wb") as err:
            self.proc = subprocess.Popen([str(exe), "command-post", "-c", str(self.config)], stdout=out, stderr=err,
                                         env=dict(os.environ), cwd=ROOT)
        proc = self.proc
        assert wait_for(lambda: self._url() is not None or proc.poll() is not None, START_S), \
            f"the command post printed no URL in {START_S} s: {self.output()}"
        url = self._url()
        assert url is not None, f"the command post ended with {proc.returncode}: {self.output()}"
        return url

    def _url(self) -> str | None:
        first = self._out("stdout").read_text(errors="replace").partition("\n")
        if not first[1] or not first[0].startswith(f"command post {CP_NAME}: "):
            return None
        return first[0].split()[3]

    def stop(self) -> int | None:
        """SIGTERM, as an operator stops it: its exit status, or None when it had to be killed after 30 s."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is not None:
            return proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        """Its standard error (logs) of the latest start, the last 3000 characters."""
        p = self._out("stderr")
        return p.read_text(errors="replace")[-3000:] if p.exists() else "(no output)"

    def stored(self) -> set[AlertKey]:
        """Every alert state in its store (read-only, while it runs); empty before the store exists."""
        try:
            with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=10) as conn:
                return {(r[0], r[1]) for r in conn.execute("SELECT alert_id, state FROM alert_states")}
        except sqlite3.OperationalError:
            return set()

    def latest(self) -> dict[str, str]:
        """Each alert's current state as the board shows it."""
        with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=10) as conn:
            return {r[0]: r[1] for r in conn.execute("SELECT alert_id, state FROM alerts")}


def probe(cp: CommandPost, broker_port: int) -> None:
    """Publish one alert from another box, again every half second, until the command post has stored it: then it
    is connected and subscribed (a copy sent before it subscribed is dropped; a later copy is a duplicate)."""
    alert = _alert(PROBE_BOX)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{alert.alert_id}")
    client.connect("127.0.0.1", broker_port)
    client.loop_start()
    try:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            client.publish(f"border/{SITE}/{PROBE_BOX}/alerts", alert.to_json(), qos=1).wait_for_publish(5)
            if wait_for(lambda: (alert.alert_id, "new") in cp.stored() or not cp.running(), 0.5):
                break
        assert (alert.alert_id, "new") in cp.stored(), f"the command post stored no probe alert: {cp.output()}"
    finally:
        client.loop_stop()
        client.disconnect()


class Feed:
    """The box's detections: ``total`` alerts ``new``; every 10th alert ``updated`` five alerts later, every 30th
    ``closed`` twenty later. The last alert's states are committed only once the command post is back: when its
    store has the last of them, it has had its chance at everything before."""

    def __init__(self, store: IncidentStore, pub: Publisher, total: int, rate: float) -> None:
        self.store, self.pub, self.total, self.rate = store, pub, total, rate
        self.committed: list[AlertKey] = []
        self.cp_back = threading.Event()
        self.thread = threading.Thread(target=self._run, name="feed", daemon=True)

    def _commit(self, alert: Alert) -> None:
        self.store.queue_alert(alert)
        self.committed.append((alert.alert_id, alert.state))
        self.pub.wake()

    def _run(self) -> None:
        alerts: list[Alert] = []
        for i in range(self.total):
            if i == self.total - 1:
                self.cp_back.wait(SETTLE_S)
            alerts.append(_alert())
            self._commit(alerts[-1])
            if i % 10 == 9:  # a later state's ts is after the earlier one's: the board shows the later
                self._commit(alerts[i - 5].with_state("updated", alerts[i - 5].ts + 1.0))
            if i % 30 == 29:
                self._commit(alerts[i - 20].with_state("closed", alerts[i - 20].ts + 2.0))
            time.sleep(1.0 / self.rate)


@dataclass(frozen=True, slots=True)
class ReceiptRun:
    """One broker SIGKILL while the real command post was stopped."""

    committed: list[AlertKey]  # every alert state the box committed, in order
    acked_before_kill: set[AlertKey]  # the broker took them (PUBACK) before its SIGKILL
    stored: set[AlertKey]  # what the command post's store has in the end
    latest: dict[str, str]  # the command post's current state of each alert
    backlog: int  # the box's outbox backlog in the end
    receipts: int  # receipts the box took
    receipts_rejected: int  # receipts for an alert state the box never published
    seconds: float
    cp_alive: bool  # the command post still ran at the end (it did not crash)
    cp_log: str

    @property
    def missing(self) -> set[AlertKey]:
        return set(self.committed) - self.stored

    @property
    def lost(self) -> set[AlertKey]:
        return self.acked_before_kill - self.stored


def _acked(store: IncidentStore) -> set[AlertKey]:
    with sqlite3.connect(store.path, timeout=10) as conn:
        return {(r[0], r[1]) for r in conn.execute(
            "SELECT alert_id, state FROM outbox WHERE topic = ? AND delivered IS NOT NULL", [OUTBOX_ALERTS])}


def crash_with_command_post(tmp_path: Path, persistence: list[str], require_receipt: bool, total: int = 300,
                            kill_after: int = 100, rate: float = 200.0) -> ReceiptRun:
    """See the module docstring: one run, counted from both ends."""
    t0 = time.monotonic()
    broker = Mosquitto(persistence=persistence).start()
    cp = CommandPost(tmp_path / "cp", broker.port)
    store = IncidentStore(tmp_path / "incidents.db")
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, reconnect_min_s=1, reconnect_max_s=1, keepalive_s=5,
                     require_receipt=require_receipt, receipt_timeout_s=1.0)
    pub = Publisher(cfg, SITE, BOX, store)
    feed = Feed(store, pub, total, rate)
    try:
        cp.start()
        probe(cp, broker.port)  # its persistent session and subscriptions now exist at the broker
        status = cp.stop()  # a clean stop: exit status 0 (its store closed)
        assert status == 0, f"the command post's exit status on SIGTERM: {status}: {cp.output()}"
        pub.start()
        feed.thread.start()
        assert wait_for(lambda: len(_acked(store)) >= kill_after, 60), f"the broker took {len(_acked(store))}"
        broker.kill()
        acked_before_kill = _acked(store)
        broker.start()
        cp.start()
        probe(cp, broker.port)
        feed.cp_back.set()
        feed.thread.join(SETTLE_S)
        assert not feed.thread.is_alive(), "the box's feed did not finish"
        last = feed.committed[-1]
        # not asserted here: where it does not settle, each test names what is missing
        wait_for(lambda: last in cp.stored() and store.backlog()[0] == 0, SETTLE_S)
        c = pub.counters
        return ReceiptRun(list(feed.committed), acked_before_kill, cp.stored(), cp.latest(), store.backlog()[0],
                          c.receipts, c.receipts_rejected, time.monotonic() - t0, cp.running(), cp.output())
    finally:
        feed.cp_back.set()
        pub.stop()
        cp.stop()
        broker.remove()
        store.close()


def _states_ok(run: ReceiptRun) -> None:
    """Nothing lost, each alert's current state on the board the box's last, the box owes nothing."""
    assert run.cp_alive, run.cp_log
    assert Counter(state for _, state in run.committed) == {"new": 300, "updated": 30, "closed": 10}
    assert len(set(run.committed)) == len(run.committed)
    assert run.missing == set(), (f"{len(run.missing)} of {len(run.committed)} alert states never reached the "
                                  f"command post's store, e.g. {sorted(run.missing)[:5]}; its log: {run.cp_log}")
    last_state = dict(run.committed)  # in commit order: the last state of each alert wins
    wrong = {a: (run.latest.get(a), s) for a, s in last_state.items() if run.latest.get(a) != s}
    assert wrong == {}, f"{len(wrong)} alerts show another state than the box's last (shown, last): {wrong}"
    assert run.backlog == 0 and run.receipts >= len(run.committed), (run.backlog, run.receipts)
    assert run.receipts_rejected == 0


def test_with_the_shipped_broker_settings_and_receipts_every_alert_state_reaches_the_command_post(
        tmp_path: Path) -> None:
    settings = shipped_persistence()
    assert "autosave_on_changes true" in settings, settings
    run = crash_with_command_post(tmp_path, settings, require_receipt=True)
    assert len(run.acked_before_kill) >= 100
    _states_ok(run)


def test_a_broker_that_forgets_loses_alert_states_it_acknowledged_when_receipts_are_off(tmp_path: Path) -> None:
    run = crash_with_command_post(tmp_path, FORGETFUL, require_receipt=False)
    assert run.cp_alive, run.cp_log
    assert run.committed[-1] in run.stored  # the command post was back and storing...
    assert run.backlog == 0  # ...and the box counts every state delivered on the broker's word...
    assert run.lost, ("the broker kept everything it acknowledged: this run cannot show what receipts are for "
                      f"({len(run.acked_before_kill)} acknowledged before the kill)")  # ...but some never arrived


def test_a_broker_that_forgets_loses_nothing_when_receipts_are_required(tmp_path: Path) -> None:
    run = crash_with_command_post(tmp_path, FORGETFUL, require_receipt=True)
    assert len(run.acked_before_kill) >= 100
    assert run.lost == set()
    _states_ok(run)
