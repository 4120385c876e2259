"""Alert delivery against a real Mosquitto: nothing lost through broker outages and a SIGKILL, the last will,
acks and escalation, credentials, mutual TLS and the ACL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config.mqtt import MqttConfig, TlsConfig
from edge_agent.contract.acks import AckError, Receipt, ack_payload, parse_ack, receipt_payload
from edge_agent.contract.alert import Alert, Evidence, alert_schema
from edge_agent.contract.ids import new_ulid
from edge_agent.contract.topics import topic_root
from edge_agent.delivery.publisher import Publisher
from edge_agent.incidents.store import IncidentStore
from tests.brokers import ROOT, Collector, Mosquitto, shipped_persistence, wait_for

pytestmark = pytest.mark.integration
AGENT = [sys.executable, str(ROOT / "tests" / "agents" / "outbox_agent.py")]


@pytest.fixture()
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    b = Mosquitto().start()
    yield b
    b.remove()


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db, timeout=10) as conn:
        try:
            return int(conn.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def _wait(pred, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    return wait_for(pred, timeout)


def _agent(db: Path, port: int, count: int, rate: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([*AGENT, str(db), str(port), str(count), str(rate)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _alert(severity: str = "critical", ts: float | None = None) -> Alert:
    now = ts or time.time()
    ev = Evidence("md-1", "metal", now, (("event", "ALARM"), ("level", 90), ("zone", 2)))
    return Alert(new_ulid(now), new_ulid(now), "t", "box1", now, "metal", severity, "new", None, None, (ev,),
                 "metal alarm at md-1 (level 90)")


def test_thousand_alerts_survive_two_broker_outages_and_a_sigkill(broker: Mosquitto, tmp_path: Path) -> None:
    db = tmp_path / "incidents.db"
    seen = Collector(broker.port, "border/t/box1/alerts")
    assert seen.connected.wait(10)
    agent = _agent(db, broker.port, 1000, 250)
    try:
        assert _wait(lambda: _count(db, "SELECT COUNT(*) FROM alerts") >= 250)
        broker.stop()  # outage 1: the agent keeps committing alerts, a hundred of them before the broker is back
        before = _count(db, "SELECT COUNT(*) FROM alerts")
        assert _wait(lambda: _count(db, "SELECT COUNT(*) FROM alerts") >= before + 100)
        broker.start()
        assert _wait(lambda: _count(db, "SELECT COUNT(*) FROM alerts") >= 500)
        agent.send_signal(signal.SIGKILL)  # power cut: whatever was in flight is only in the database
        agent.wait(10)
        agent = _agent(db, broker.port, 1000, 250)
        assert _wait(lambda: _count(db, "SELECT COUNT(*) FROM alerts") >= 750)
        broker.stop()  # outage 2
        before = _count(db, "SELECT COUNT(*) FROM alerts")
        assert _wait(lambda: _count(db, "SELECT COUNT(*) FROM alerts") >= min(1000, before + 100))
        broker.start()
        assert _wait(lambda: _count(db, "SELECT COUNT(*) FROM alerts") >= 1000)
        ids = lambda: {p["alert_id"] for p in seen.json("/alerts")}  # noqa: E731
        assert _wait(lambda: len(ids()) >= 1000, 60), f"subscriber saw {len(ids())} of 1000"
        with sqlite3.connect(db) as conn:
            stored = {r[0] for r in conn.execute("SELECT alert_id FROM alerts")}
        assert ids() == stored and len(stored) == 1000
        assert _wait(lambda: _count(db, "SELECT COUNT(*) FROM outbox WHERE delivered IS NULL") == 0, 20)
        schema = alert_schema()
        for payload in seen.json("/alerts")[:50]:
            jsonschema.validate(payload, schema)
    finally:
        agent.kill()
        agent.wait(10)
        seen.close()


def test_last_will_marks_a_killed_agent_offline_and_a_restart_online(broker: Mosquitto, tmp_path: Path) -> None:
    db = tmp_path / "incidents.db"
    status = Collector(broker.port, "border/t/box1/status", client_id="status-watch")
    agent = _agent(db, broker.port, 1, 10)
    try:
        assert status.wait(lambda: [p["state"] for p in status.json("/status")][-1:] == ["online"], 20)
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        assert status.wait(lambda: [p["state"] for p in status.json("/status")][-1:] == ["offline"], 20)
        agent = _agent(db, broker.port, 1, 10)
        assert status.wait(lambda: [p["state"] for p in status.json("/status")][-1:] == ["online"], 20)
        agent.send_signal(signal.SIGTERM)  # a clean stop says offline itself (no will on a clean disconnect)
        assert agent.wait(10) == 0
        assert status.wait(lambda: [p["state"] for p in status.json("/status")][-1:] == ["offline"], 20)
        first = status.json("/status")[0]
        assert set(first) == {"state", "ts", "version"}
    finally:
        agent.kill()
        status.close()


def test_replay_sends_the_most_severe_first_then_the_oldest(broker: Mosquitto, tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    t0 = time.time()
    order = ["low", "critical", "medium", "critical", "high"]
    alerts = [_alert(sev, t0 + i) for i, sev in enumerate(order)]
    for a in alerts:
        store.queue_alert(a)  # queued while no broker was configured / reachable
    seen = Collector(broker.port, "border/t/box1/alerts")
    assert seen.connected.wait(10)
    pub = Publisher(MqttConfig(host="127.0.0.1", port=broker.port, max_inflight=1), "t", "box1", store)
    pub.start()
    try:
        assert seen.wait(lambda: len(seen.on("/alerts")) == 5)
        got = [p["alert_id"] for p in seen.json("/alerts")]
        want = [alerts[i].alert_id for i in (1, 3, 4, 2, 0)]
        assert got == want
        assert _wait(lambda: store.backlog()[0] == 0)
    finally:
        pub.stop()
        seen.close()
        store.close()


def test_ack_from_the_command_post_marks_the_incident_and_republishes_the_state(broker: Mosquitto,
                                                                                 tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    acks = []

    def on_ack(ack):  # type: ignore[no-untyped-def]
        acks.append(ack)
        if store.acknowledge(ack) is not None:
            pub.wake()

    pub = Publisher(MqttConfig(host="127.0.0.1", port=broker.port), "t", "box1", store, on_ack)
    seen = Collector(broker.port, "border/t/box1/alerts")
    assert seen.connected.wait(10)
    pub.start()
    try:
        alert = _alert("high")
        store.queue_alert(alert)
        pub.wake()
        assert seen.wait(lambda: len(seen.on("/alerts")) == 1)
        cp = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cp")
        cp.connect("127.0.0.1", broker.port)
        cp.loop_start()
        cp.publish("border/t/box1/acks", b"{not json", qos=1).wait_for_publish(5)
        cp.publish("border/t/box1/acks", ack_payload(alert.alert_id, "sgt-novak", "patrol sent"), qos=1)
        assert seen.wait(lambda: [p["state"] for p in seen.json("/alerts")] == ["new", "acknowledged"])
        cp.loop_stop()
        row = store.db.execute("SELECT acked_by, ack_note, acked_ts FROM incidents WHERE id = ?",
                               [alert.incident_id]).fetchone()
        assert row[0] == "sgt-novak" and row[1] == "patrol sent" and row[2] > 0
        assert seen.json("/alerts")[1]["alert_id"] == alert.alert_id
        assert next(r.reason for r in store.rejects("mqtt-acks")).startswith("border/t/box1/acks: not JSON")
    finally:
        pub.stop()
        seen.close()
        store.close()


def test_unacknowledged_critical_alert_is_published_again_as_escalated(broker: Mosquitto, tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    crit, high = _alert("critical"), _alert("high")
    store.queue_alert(crit)
    store.queue_alert(high)
    now = time.time()
    assert store.due_escalations(now + 5, after_s=60) == []
    escalated = store.due_escalations(now + 61, after_s=60)
    assert [a.alert_id for a in escalated] == [crit.alert_id]
    assert store.due_escalations(now + 200, after_s=60) == []  # once
    seen = Collector(broker.port, "border/t/box1/alerts")
    assert seen.connected.wait(10)
    pub = Publisher(MqttConfig(host="127.0.0.1", port=broker.port), "t", "box1", store)
    pub.start()
    try:
        assert seen.wait(lambda: len(seen.on("/alerts")) == 3)
        states = [(p["alert_id"], p["state"]) for p in seen.json("/alerts")]
        assert (crit.alert_id, "escalated") in states and (high.alert_id, "new") in states
    finally:
        pub.stop()
        seen.close()
        store.close()


def test_wrong_password_is_refused_and_the_right_one_connects(tmp_path: Path) -> None:
    broker = Mosquitto(users={"box1": "s3cret-box1"}).start()
    try:
        pw = tmp_path / "pw"
        pw.write_text("s3cret-box1\n")
        store = IncidentStore(tmp_path / "incidents.db")
        good = Publisher(MqttConfig(host="127.0.0.1", port=broker.port, username="box1", password_file=pw),
                         "t", "box1", store)
        bad = Publisher(MqttConfig(host="127.0.0.1", port=broker.port, username="box1", password="wrong",
                                   client_id="bad"), "t", "box1", store)
        good.start()
        bad.start()
        assert good.connected.wait(10)
        assert _wait(lambda: "refused" in bad.counters.last_error, 10)
        assert not bad.connected.is_set()
        assert "wrong" not in bad.counters.last_error
        good.stop()
        bad.stop()
        store.close()
    finally:
        broker.remove()


def test_ids_are_checked_before_they_become_topic_levels() -> None:
    assert topic_root("border", "s-1", "box_2") == "border/s-1/box_2"
    for bad in ("a/b", "+", "#", "", "x" * 65):
        with pytest.raises(ValueError, match="topic level"):
            topic_root("border", "site", bad)
    with pytest.raises(AckError, match="ULID"):
        parse_ack(json.dumps({"alert_id": "../../x", "by": "me"}).encode())
    with pytest.raises(AckError, match="by"):
        parse_ack(json.dumps({"alert_id": new_ulid(), "by": ""}).encode())



def test_missing_or_wrong_tls_files_are_named(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    with pytest.raises(ValueError, match=r"mqtt\.tls\.ca_file: .*nope\.crt does not exist"):
        Publisher(MqttConfig(host="localhost", tls=TlsConfig(ca_file=tmp_path / "nope.crt")), "t", "b", store)
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate")
    with pytest.raises(ValueError, match=r"mqtt\.tls: cannot use .*junk\.crt"):
        Publisher(MqttConfig(host="localhost", tls=TlsConfig(ca_file=junk)), "t", "b", store)
    store.close()


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ca")
    subprocess.run([str(ROOT / "configs" / "mosquitto" / "make-test-ca.sh"), str(out), "localhost", "box1", "box2",
                    "command-post"], check=True, capture_output=True)
    return out


def test_mutual_tls_with_the_example_acl(tmp_path: Path, test_ca: Path) -> None:
    acl = (ROOT / "configs" / "mosquitto" / "acl.example").read_text()
    broker = Mosquitto(tls_dir=test_ca, acl=acl).start()
    store = IncidentStore(tmp_path / "incidents.db")
    cp_tls = {"ca_certs": str(test_ca / "ca.crt"), "certfile": str(test_ca / "command-post.crt"),
              "keyfile": str(test_ca / "command-post.key")}
    seen = Collector(broker.port, "border/#", client_id="command-post", receipts_by="command-post", **cp_tls)
    pubs = []
    try:
        assert seen.connected.wait(10), broker.log()[-2000:]

        def box(name: str, box_id: str, protocol: str = "5", require_receipt: bool = False) -> Publisher:
            tls = TlsConfig(ca_file=test_ca / "ca.crt", cert_file=test_ca / f"{name}.crt",
                            key_file=test_ca / f"{name}.key")
            p = Publisher(MqttConfig(host="localhost", port=broker.port, tls=tls, protocol=protocol,
                                     client_id=f"{name}-as-{box_id}", require_receipt=require_receipt),
                          "t", box_id, store)
            pubs.append(p)
            return p

        own = box("box1", "box1", require_receipt=True)
        own.start()
        assert own.connected.wait(10), broker.log()[-2000:]
        alert = _alert("high")
        store.queue_alert(alert)
        own.wake()
        assert seen.wait(lambda: any(m.topic == "border/t/box1/alerts" for m in seen.messages))
        assert _wait(lambda: store.backlog()[0] == 0)  # the command post may send the box its receipt
        assert own.counters.receipts == 1
        own.stop()

        # box1's certificate publishing under box2's root: the broker refuses it (MQTT 5 says so in the PUBACK)
        store.queue_alert(_alert("high"))
        impostor = box("box1", "box2")
        impostor.start()
        assert impostor.connected.wait(10)
        assert _wait(lambda: impostor.counters.refused >= 1, 10), impostor.counters
        assert seen.barrier("border/t/box1/acks")  # had the broker forwarded it, it would be here by now
        assert not any(m.topic.startswith("border/t/box2/") for m in seen.messages)
        assert store.backlog()[0] >= 1  # refused means not delivered: it stays in the outbox
        impostor.stop()

        # no client certificate: no connection at all
        nocert = Publisher(MqttConfig(host="localhost", port=broker.port, tls=TlsConfig(ca_file=test_ca / "ca.crt"),
                                      client_id="nocert", reconnect_max_s=1), "t", "box1", store)
        pubs.append(nocert)
        nocert.start()
        assert _wait(lambda: nocert.counters.last_error is not None, 20)  # it tried, and the handshake failed
        assert not nocert.connected.is_set()
        nocert.stop()
    finally:
        seen.close()
        broker.remove()
        store.close()


def test_the_demos_embedded_broker_carries_status_alerts_and_the_will(tmp_path: Path) -> None:
    from edge_agent.demo.brokers import LocalBroker

    broker = LocalBroker("amqtt").start()
    assert broker.kind.startswith("embedded amqtt")
    store = IncidentStore(tmp_path / "incidents.db")
    seen = Collector(broker.port, ["border/t/box1/alerts", "border/t/box1/status"], client_id="cp-embedded")
    pub = Publisher(MqttConfig(host="127.0.0.1", port=broker.port), "t", "box1", store)
    try:
        assert seen.connected.wait(10)
        pub.start()
        alert = _alert("high")
        store.queue_alert(alert)
        pub.wake()
        assert seen.wait(lambda: [p["alert_id"] for p in seen.json("/alerts")] == [alert.alert_id], 15)
        assert _wait(lambda: store.backlog()[0] == 0, 10)
        pub.stop()
        assert seen.wait(lambda: [p["state"] for p in seen.json("/status")][-1:] == ["offline"], 10)
        jsonschema.validate(seen.json("/alerts")[0], alert_schema())
    finally:
        seen.close()
        broker.stop()
        store.close()


def test_a_snapshot_is_published_on_its_topic_and_inlined_in_the_report(broker: Mosquitto, tmp_path: Path) -> None:
    import dataclasses

    import cv2
    import numpy as np

    from edge_agent.incidents import report, review

    store = IncidentStore(tmp_path / "incidents.db")
    img = np.zeros((120, 160, 3), np.uint8)
    cv2.rectangle(img, (40, 20), (80, 100), (0, 255, 255), 2)
    jpeg = cv2.imencode(".jpg", img)[1].tobytes()
    a = _alert("high")
    topic = f"border/t/box1/snapshots/{a.alert_id}"
    store.queue_alert(dataclasses.replace(a, snapshot=topic), jpeg)
    seen = Collector(broker.port, ["border/t/box1/alerts", "border/t/box1/snapshots/+"])
    assert seen.connected.wait(10)
    pub = Publisher(MqttConfig(host="127.0.0.1", port=broker.port), "t", "box1", store)
    pub.start()
    try:
        assert seen.wait(lambda: len(seen.on(f"/snapshots/{a.alert_id}")) == 1 and len(seen.on("/alerts")) == 1)
        assert seen.on(f"/snapshots/{a.alert_id}")[0].payload == jpeg
        assert seen.json("/alerts")[0]["snapshot"] == topic
        rel = store.db.execute("SELECT snapshot FROM incidents WHERE id = ?", [a.incident_id]).fetchone()[0]
        assert (tmp_path / rel).read_bytes() == jpeg
        page = report.export_html(store, review.Filters())
        assert "data:image/jpeg;base64," in page
    finally:
        pub.stop()
        seen.close()
        store.close()


# -- broker crashes: what a PUBACK is worth, and end-to-end receipts ---------------------------------------


@dataclass(frozen=True, slots=True)
class CrashRun:
    """One broker SIGKILL while the command post was away."""

    committed: list[str]  # every alert id the box committed, in order
    acked_before_kill: set[str]  # taken by the broker (PUBACK) before the kill
    received: set[str]  # what the command post got in the end
    backlog: int  # the box's outbox backlog at the end
    seconds: float

    @property
    def lost(self) -> set[str]:
        return self.acked_before_kill - self.received


def crash_while_away(tmp_path: Path, persistence: list[str] | None, total: int = 400, kill_after: int = 150,
                     rate: float = 200.0, require_receipt: bool = False, settle_s: float = 30.0) -> CrashRun:
    """The command post subscribes (persistent session) and goes away; the box streams ``total`` alerts; after
    ``kill_after`` of them the broker (with ``persistence`` lines) is SIGKILLed while alerts keep coming, then
    restarted; the command post comes back. Counts what it got of what the broker had acknowledged."""
    t0 = time.monotonic()
    broker = Mosquitto(persistence=persistence).start()
    store = IncidentStore(tmp_path / "incidents.db")
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, reconnect_min_s=1, reconnect_max_s=1, keepalive_s=5,
                     require_receipt=require_receipt, receipt_timeout_s=1.0)
    receipts_by = "cp-test" if require_receipt else None
    away = Collector(broker.port, "border/t/box1/alerts", client_id="cp-crash", receipts_by=receipts_by)
    pub = Publisher(cfg, "t", "box1", store)
    committed: list[str] = []
    cp_back = threading.Event()

    def feed() -> None:
        for i in range(total):
            if i == total - 1:  # the last one after the command post is back: when it has that, it has all
                cp_back.wait(30)
            alert = _alert("high")
            store.queue_alert(alert)
            committed.append(alert.alert_id)
            pub.wake()
            time.sleep(1.0 / rate)

    feeder = threading.Thread(target=feed, daemon=True)
    back: Collector | None = None
    try:
        assert away.subscribed.wait(10)
        away.close()
        pub.start()
        feeder.start()
        acked = "SELECT COUNT(*) FROM outbox WHERE delivered IS NOT NULL"
        assert wait_for(lambda: _count(store.path, acked) >= kill_after, 30)
        broker.kill()
        killed_at = time.time()
        broker.start()
        back = Collector(broker.port, "border/t/box1/alerts", client_id="cp-crash", receipts_by=receipts_by)
        assert back.subscribed.wait(10)
        cp_back.set()
        feeder.join(60)
        last = committed[-1]
        wait_for(lambda: last in {p["alert_id"] for p in back.json("/alerts")} and store.backlog()[0] == 0, settle_s)
        with sqlite3.connect(store.path) as conn:
            before = {r[0] for r in conn.execute("SELECT alert_id FROM outbox WHERE delivered <= ?", [killed_at])}
        return CrashRun(list(committed), before, {p["alert_id"] for p in back.json("/alerts")}, store.backlog()[0],
                        time.monotonic() - t0)
    finally:
        cp_back.set()
        pub.stop()
        for c in (away, back):
            if c is not None:
                c.close()
        broker.remove()
        store.close()


def test_the_shipped_broker_settings_keep_what_they_acknowledged_through_a_sigkill(tmp_path: Path) -> None:
    settings = shipped_persistence()
    assert "autosave_on_changes true" in settings and "autosave_interval 1" in settings, settings
    run = crash_while_away(tmp_path, settings)
    assert len(run.acked_before_kill) >= 150
    assert len(run.lost) <= 2, f"{len(run.lost)} of {len(run.acked_before_kill)} acknowledged alerts lost"
    assert run.received >= set(run.committed[-10:]) and run.backlog == 0


def test_receipts_get_every_alert_through_a_broker_that_forgets(tmp_path: Path) -> None:
    # Mosquitto's default persistence saves every 30 minutes: a SIGKILL loses all it acknowledged since
    without = crash_while_away(tmp_path / "plain", ["persistence true"])
    assert without.lost, "the broker kept everything: this run cannot show what receipts are for"
    with_receipts = crash_while_away(tmp_path / "receipts", ["persistence true"], require_receipt=True)
    assert with_receipts.lost == set() and with_receipts.received == set(with_receipts.committed)
    assert with_receipts.backlog == 0


# -- hostile acks and receipts, and a network thread that dies ---------------------------------------------

HOSTILE_ACKS = [b"[" * 100_000, b"[" * 8_000, b"\xff" * 64, b"x" * (1 << 20),
                b'{"alert_id": "%s", "by": "me", "ts": Infinity}', b'{"alert_id": "%s", "by": "me", "ts": 1e20}',
                b'{"alert_id": "%s", "by": "me", "ts": "0000-01-01T00:00:00Z"}',
                b'{"alert_id": "%s", "by": "me\\nFORGED log line"}']


def test_hostile_acks_and_receipts_are_kept_as_rejected_input_and_delivery_goes_on(broker: Mosquitto,
                                                                                    tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    first = _alert("high")
    store.queue_alert(first)
    acks: list[object] = []
    pub = Publisher(MqttConfig(host="127.0.0.1", port=broker.port, require_receipt=True), "t", "box1", store,
                    acks.append)
    seen = Collector(broker.port, "border/t/box1/alerts", receipts_by="cp-1")
    cp = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cp-hostile")
    try:
        assert seen.subscribed.wait(10)
        pub.start()
        assert seen.wait(lambda: len(seen.on("/alerts")) == 1) and _wait(lambda: store.backlog()[0] == 0)
        cp.connect("127.0.0.1", broker.port)
        cp.loop_start()
        for raw in HOSTILE_ACKS:
            cp.publish("border/t/box1/acks", raw.replace(b"%s", first.alert_id.encode()), qos=1).wait_for_publish(5)
        for raw in (receipt_payload(new_ulid(), "new", "cp-1"), receipt_payload(first.alert_id, "closed", "cp-1"),
                    b"[" * 8_000, receipt_payload(first.alert_id, "new", "cp\n1")):
            cp.publish("border/t/box1/receipts", raw, qos=1).wait_for_publish(5)
        cp.publish("border/t/box1/acks", ack_payload(first.alert_id, "sgt-novak"), qos=1).wait_for_publish(5)
        assert _wait(lambda: len(acks) == 1), pub.counters
        later = [_alert("critical") for _ in range(3)]
        for a in later:
            store.queue_alert(a)
        pub.wake()
        want = {first.alert_id, *(a.alert_id for a in later)}
        assert seen.wait(lambda: {p["alert_id"] for p in seen.json("/alerts")} == want)
        assert _wait(lambda: store.backlog()[0] == 0)  # the later alerts' receipts came through too
        c = pub.counters
        assert (c.acks, c.acks_rejected, c.receipts_rejected, c.rebuilds, c.callback_errors) == (1, 8, 4, 0, 0), c
        reasons = [r.reason for r in store.rejects("mqtt-acks")] + [r.reason for r in store.rejects("mqtt-receipts")]
        assert len(reasons) == 12 and all("\n" not in r for r in reasons), reasons
        assert any("nested too deep" in r for r in reasons) and any("no published alert" in r for r in reasons)
    finally:
        cp.loop_stop()
        cp.disconnect()
        pub.stop()
        seen.close()
        store.close()


def test_a_network_thread_stopped_from_outside_is_built_again_and_the_outbox_replayed(broker: Mosquitto,
                                                                                      tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    seen = Collector(broker.port, ["border/t/box1/alerts", "border/t/box1/status"])
    pub = Publisher(MqttConfig(host="127.0.0.1", port=broker.port), "t", "box1", store)
    try:
        assert seen.subscribed.wait(10)
        pub.start()
        assert pub.connected.wait(10)
        dead = pub.client
        dead.loop_stop()  # the thread ends as it would after an exception paho let through
        alerts = [_alert("high") for _ in range(5)]
        for a in alerts:
            store.queue_alert(a)
        pub.wake()
        assert seen.wait(lambda: {a.alert_id for a in alerts} <= {p["alert_id"] for p in seen.json("/alerts")})
        assert _wait(lambda: store.backlog()[0] == 0)
        assert pub.counters.rebuilds == 1 and pub.client is not dead
        assert [p["state"] for p in seen.json("/status")][-1] == "online"
    finally:
        pub.stop()
        seen.close()
        store.close()


def test_a_failing_ack_consumer_does_not_stop_delivery_and_a_hung_one_is_left_behind(broker: Mosquitto,
                                                                                     tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    release = threading.Event()
    calls: list[str] = []

    def on_ack(ack):  # type: ignore[no-untyped-def]
        calls.append(ack.by)
        if ack.by == "raises":
            raise RuntimeError("the core refused it")
        if ack.by == "hangs" and calls.count("hangs") == 1:
            release.wait(60)  # the network thread hangs here (e.g. a full queue downstream)

    seen = Collector(broker.port, "border/t/box1/alerts")
    pub = Publisher(MqttConfig(host="127.0.0.1", port=broker.port, keepalive_s=5), "t", "box1", store, on_ack)
    cp = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cp-acks")
    try:
        assert seen.subscribed.wait(10)
        pub.start()
        assert pub.listening.wait(10)  # acks sent before the broker has our subscription are not ours
        cp.connect("127.0.0.1", broker.port)
        cp.loop_start()
        cp.publish("border/t/box1/acks", ack_payload(new_ulid(), "raises"), qos=1).wait_for_publish(5)
        assert _wait(lambda: pub.counters.acks_rejected == 1)
        assert "not handled: RuntimeError: the core refused it" in store.rejects("mqtt-acks")[0].reason
        a = _alert("high")
        store.queue_alert(a)
        pub.wake()
        assert seen.wait(lambda: [p["alert_id"] for p in seen.json("/alerts")] == [a.alert_id])
        assert pub.counters.rebuilds == 0

        cp.publish("border/t/box1/acks", ack_payload(new_ulid(), "hangs"), qos=1).wait_for_publish(5)
        assert _wait(lambda: "hangs" in calls)
        b = _alert("high")
        store.queue_alert(b)
        pub.wake()
        # keepalive 5 s: silent for 2 x 5 + 2 s while connected means hung; the box builds a new client
        assert seen.wait(lambda: b.alert_id in {p["alert_id"] for p in seen.json("/alerts")}, 40), pub.counters
        assert pub.counters.rebuilds == 1 and calls.count("hangs") == 2  # the ack came again to the new client
        assert _wait(lambda: store.backlog()[0] == 0)
    finally:
        release.set()
        cp.loop_stop()
        cp.disconnect()
        pub.stop()
        seen.close()
        store.close()


# -- receipts in the outbox ----------------------------------------------------------------------------------


def test_with_receipts_required_a_row_is_owed_until_its_receipt_and_sent_again_after_the_timeout(
        tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    a = _alert("high")
    seq = store.queue_alert(a)
    t0 = time.time()
    assert [i.seq for i in store.pending(now=t0)] == [seq]
    store.attempted([seq], t0)
    store.delivered([seq], t0, receipt_timeout_s=30)
    assert store.backlog(t0)[0] == 1  # the broker took it; no command post has said so yet
    assert store.pending(now=t0 + 29) == []
    assert [i.seq for i in store.pending(now=t0 + 31)] == [seq]  # published again, same payload
    store.attempted([seq], t0 + 31)
    store.delivered([seq], t0 + 31, receipt_timeout_s=30)
    assert store.pending(now=t0 + 31 + 59) == [] and len(store.pending(now=t0 + 31 + 61)) == 1  # twice as long
    assert store.record_receipt(Receipt(a.alert_id, "updated", "cp-1", t0)) == "unknown"  # never published
    assert store.record_receipt(Receipt(new_ulid(), "new", "cp-1", t0)) == "unknown"
    assert store.record_receipt(Receipt(a.alert_id, "new", "cp-1", t0 + 40)) == "recorded"
    assert store.record_receipt(Receipt(a.alert_id, "new", "cp-1", t0 + 41)) == "repeated"  # a duplicate's receipt
    assert store.backlog()[0] == 0 and store.pending(now=t0 + 10_000) == []
    row = store.db.execute("SELECT receipt_by, receipt_due, delivered FROM outbox WHERE seq = ?", [seq]).fetchone()
    assert row[0] == "cp-1" and row[1] is None and row[2] == t0

    # a receipt for a row published later: the earlier rows' copies were lost, they are due at once
    lost, later = _alert("high"), _alert("high")
    seq_lost, seq_later = store.queue_alert(lost), store.queue_alert(later)
    for seq, ts in ((seq_lost, t0 + 100), (seq_later, t0 + 101)):
        store.attempted([seq], ts)
        store.delivered([seq], ts, receipt_timeout_s=30)
    assert store.pending(now=t0 + 102) == []
    assert store.record_receipt(Receipt(later.alert_id, "new", "cp-1", t0 + 102), received=t0 + 102) == "recorded"
    assert [i.seq for i in store.pending(now=t0 + 102)] == [seq_lost]

    # PUBACKed while receipts were required, then the box is configured without them
    assert store.backlog()[0] == 1 and store.waive_receipts() == 1 and store.backlog()[0] == 0
    store.close()


def test_a_version_2_database_opens_and_gains_the_receipt_columns(tmp_path: Path) -> None:
    import sqlite_utils

    from edge_agent.incidents import schema

    path = tmp_path / "incidents.db"
    db = sqlite_utils.Database(path)
    for version, step in enumerate(schema.STEPS[:2], start=1):  # as the agent migrated before Migrations
        step.apply(db)
        db.execute(f"PRAGMA user_version = {version}")
    old = _alert("high")
    for delivered in (time.time(), None):
        db.execute("INSERT INTO outbox (alert_id, topic, state, sev_rank, qos, created, payload, attempts, "
                   "delivered) VALUES (?, 'alerts', 'new', 3, 1, ?, ?, 1, ?)",
                   [old.alert_id, time.time(), old.to_json(), delivered])
    db.conn.commit()
    db.conn.close()
    store = IncidentStore(path)
    try:
        assert store.version == schema.SCHEMA_VERSION >= 3
        cols = {c.name for c in store.db["outbox"].columns}
        assert {"receipt", "receipt_by", "receipt_due"} <= cols
        assert store.backlog()[0] == 1 and len(store.pending()) == 1  # what was delivered before owes no receipt
    finally:
        store.close()
