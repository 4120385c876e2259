"""Alert delivery against a real Mosquitto: nothing lost through broker outages and a SIGKILL, the last will,
acks and escalation, credentials, mutual TLS and the ACL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config import MqttConfig, TlsConfig
from edge_agent.delivery import AckError, Publisher, ack_payload, parse_ack, topic_root
from edge_agent.model import Alert, Evidence, alert_schema, new_ulid
from edge_agent.store import IncidentStore
from tests.brokers import ROOT, Collector, Mosquitto, wait_for

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
        broker.stop()  # outage 1: the agent keeps committing alerts
        time.sleep(1.5)
        broker.start()
        assert _wait(lambda: _count(db, "SELECT COUNT(*) FROM alerts") >= 500)
        agent.send_signal(signal.SIGKILL)  # power cut: whatever was in flight is only in the database
        agent.wait(10)
        agent = _agent(db, broker.port, 1000, 250)
        assert _wait(lambda: _count(db, "SELECT COUNT(*) FROM alerts") >= 750)
        broker.stop()  # outage 2
        time.sleep(1.5)
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
    seen = Collector(broker.port, "border/#", client_id="command-post", **cp_tls)
    pubs = []
    try:
        assert seen.connected.wait(10), broker.log()[-2000:]

        def box(name: str, box_id: str, protocol: str = "5") -> Publisher:
            tls = TlsConfig(ca_file=test_ca / "ca.crt", cert_file=test_ca / f"{name}.crt",
                            key_file=test_ca / f"{name}.key")
            p = Publisher(MqttConfig(host="localhost", port=broker.port, tls=tls, protocol=protocol,
                                     client_id=f"{name}-as-{box_id}"), "t", box_id, store)
            pubs.append(p)
            return p

        own = box("box1", "box1")
        own.start()
        assert own.connected.wait(10), broker.log()[-2000:]
        alert = _alert("high")
        store.queue_alert(alert)
        own.wake()
        assert seen.wait(lambda: any(m.topic == "border/t/box1/alerts" for m in seen.messages))
        assert _wait(lambda: store.backlog()[0] == 0)
        own.stop()

        # box1's certificate publishing under box2's root: the broker refuses it (MQTT 5 says so in the PUBACK)
        store.queue_alert(_alert("high"))
        impostor = box("box1", "box2")
        impostor.start()
        assert impostor.connected.wait(10)
        assert _wait(lambda: impostor.counters.refused >= 1, 10), impostor.counters
        time.sleep(0.5)
        assert not any(m.topic.startswith("border/t/box2/") for m in seen.messages)
        assert store.backlog()[0] >= 1  # refused means not delivered: it stays in the outbox
        impostor.stop()

        # no client certificate: no connection at all
        nocert = Publisher(MqttConfig(host="localhost", port=broker.port, tls=TlsConfig(ca_file=test_ca / "ca.crt"),
                                      client_id="nocert", reconnect_max_s=1), "t", "box1", store)
        pubs.append(nocert)
        nocert.start()
        time.sleep(2.0)
        assert not nocert.connected.is_set()
        nocert.stop()
    finally:
        seen.close()
        broker.remove()
        store.close()


def test_the_demos_embedded_broker_carries_status_alerts_and_the_will(tmp_path: Path) -> None:
    from edge_agent.brokers import LocalBroker

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

    from edge_agent import review

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
        page = review.export_html(store, review.Filters())
        assert "data:image/jpeg;base64," in page
    finally:
        pub.stop()
        seen.close()
        store.close()
