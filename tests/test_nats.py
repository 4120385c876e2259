"""Issue 24's engine: a NATS JetStream cluster (three nodes of Debian's nats-server, MQTT 3.1.1 listeners, streams
replicated on all three) meets the box's MQTT contract. A running ``edge-agent run`` with ``mqtt.hosts`` listing
the three nodes loses the node it is connected to (SIGKILL) and moves on; a command post with a persistent
session on another node gets every alert, also those queued while it was away and picked up from a third node;
the retained status, the last will, acks and receipts work across nodes; each box may write only under its own
topic root, as with the Mosquitto pattern ACL."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.natscluster import NATS, NatsCluster
from benchmarks.testbed import Collector
from edge_agent.contract.ids import iso_ms
from edge_agent.demo.script import pmdet
from tests.agents.alarm_box import every_alarm_box, metal_alert_ids
from tests.agents.udp_pacer import UdpPacer
from tests.brokers import ROOT, free_port, wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not Path(NATS).exists(), reason="nats-server is not installed (./dev installs it)")]
EXE = str(Path(sys.executable).with_name("edge-agent"))
BATCH = 10
BOX_PW, CP_PW = "box1-horse-battery", "cp-staple-correct"


def _config(tmp_path: Path, cluster: NatsCluster, udp: int) -> Path:
    return every_alarm_box(tmp_path, udp, mqtt={
        "hosts": [f"127.0.0.1:{p}" for p in cluster.mqtt_ports], "username": "box1", "password": BOX_PW,
        "keepalive_s": 5, "reconnect_min_s": 1, "reconnect_max_s": 2, "health_interval_s": 1,
        "require_receipt": True, "receipt_timeout_s": 3})


def test_a_box_on_a_nats_cluster_loses_nothing_when_its_node_dies(tmp_path: Path) -> None:
    cluster = NatsCluster(3, boxes={"box1": BOX_PW}, command_posts={"cp": CP_PW}).start()
    udp = free_port()
    db = tmp_path / "state" / "incidents.db"
    cp = Collector(cluster.mqtt_ports[2], "border/#", client_id="cp-north", receipts_by="cp-north",
                   auth=("cp", CP_PW))
    log = (tmp_path / "agent.log").open("a")
    agent = subprocess.Popen([EXE, "run", "--config", str(_config(tmp_path, cluster, udp))],
                             stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT)
    pacer = UdpPacer(udp)
    sent = 0

    def said() -> str:
        return (f"agent's log:\n{(tmp_path / 'agent.log').read_text()[-2500:]}\n"
                f"n1's log:\n{cluster.log(0)[-1500:]}")

    def alarms() -> None:
        nonlocal sent
        for _ in range(BATCH):
            sent += 1
            pacer.send(pmdet("md-1", sent, "ALARM", 80, 1).encode() + b"\n")
        assert wait_for(lambda: len(metal_alert_ids(db)) == sent, 60), said()

    def got() -> set[str]:
        return {a["alert_id"] for a in cp.json("/alerts")}

    try:
        assert cp.subscribed.wait(20) and pacer.wait_bound(30), said()
        assert wait_for(lambda: [s["state"] for s in cp.json("/status")][-1:] == ["online"], 30), said()
        alarms()
        assert wait_for(lambda: got() >= metal_alert_ids(db), 30), said()
        cluster.kill(0)  # the box's node (the first of its hosts) dies mid-run
        alarms()
        assert wait_for(lambda: got() >= metal_alert_ids(db), 60), \
            f"missing {len(metal_alert_ids(db) - got())}\n{said()}"
        cp.close()  # the command post goes away; its session waits in the cluster
        alarms()
        away = metal_alert_ids(db) - got()
        back = Collector(cluster.mqtt_ports[1], "border/#", client_id="cp-north", receipts_by="cp-north",
                         auth=("cp", CP_PW))  # and comes back through another node
        try:
            assert wait_for(lambda: {a["alert_id"] for a in back.json("/alerts")} >= away, 30), said()
            cluster.start_node(0)
            # an ack from the command post reaches the box across the cluster
            target = sorted(away)[0]
            back.client.publish("border/t/box1/acks", json.dumps({"alert_id": target, "by": "guard-7",
                                                                  "ts": iso_ms(time.time())}), qos=1)
            assert wait_for(lambda: target in metal_alert_ids(db, acked=True), 30), said()
            # a box may not write under another box's root: the cluster refuses, the command post sees nothing
            spoof = Collector(cluster.mqtt_ports[1], "border/t/box1/acks", client_id="spoof", auth=("box1", BOX_PW))
            try:
                assert spoof.connected.wait(10)
                spoof.client.publish("border/t/box2/alerts", b'{"forged": true}', qos=1)
                assert back.barrier("border/t/box1/acks"), "the command post's own marker came through"
                assert not back.on("box2/alerts"), "a box wrote under another box's root"
            finally:
                spoof.close()
            agent.send_signal(signal.SIGKILL)  # the box dies: its last will says so, from whichever node it was on
            agent.wait(10)
            assert wait_for(lambda: [s["state"] for s in back.json("/status")][-1:] == ["offline"], 30), said()
        finally:
            back.close()
        fresh = Collector(cluster.mqtt_ports[0], "border/+/+/status", client_id="late", auth=("cp", CP_PW))
        try:  # a command post starting now learns the box's state from the retained status (on the restarted node)
            assert wait_for(lambda: [s["state"] for s in fresh.json("/status")] == ["offline"], 30)
        finally:
            fresh.close()
        # receipts: every alert state the box committed was confirmed by the command post (end to end)
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            owed = conn.execute("SELECT COUNT(*) FROM outbox WHERE topic = 'alerts' AND receipt IS NULL "
                                "AND state = 'new'").fetchone()[0]
        assert owed == 0, f"{owed} alert states without a receipt"
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(20)
        log.close()
        cluster.remove()


def test_the_example_node_config_is_one_nats_server_accepts(tmp_path: Path) -> None:
    """configs/nats/: its TLS files and store put where this machine has them, nats-server -t says it is valid."""
    from benchmarks.takserver import make_test_pki

    make_test_pki(tmp_path / "pki")
    conf = (ROOT / "configs" / "nats" / "node-1.conf").read_text().replace("/var/lib/nats/jetstream",
                                                                           str(tmp_path / "js"))
    for placeholder, real in (("nats-1.crt", "server.crt"), ("nats-1-mqtt.crt", "server.crt"),
                              ("nats-1.key", "server.key"), ("nats-1-mqtt.key", "server.key"),
                              ("cluster-ca.crt", "ca.crt"), ("fleet-ca.crt", "ca.crt")):
        conf = conf.replace(f"/etc/nats/tls/{placeholder}", str(tmp_path / "pki" / real))
    (tmp_path / "node-1.conf").write_text(conf)
    (tmp_path / "accounts.conf").write_text((ROOT / "configs" / "nats" / "accounts.conf").read_text())
    out = subprocess.run([NATS, "-t", "-c", str(tmp_path / "node-1.conf")], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and "is valid" in out.stdout + out.stderr, out.stdout + out.stderr
