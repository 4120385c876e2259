"""What each broker set-up loses when a broker dies holding messages for a command post that is away, one run,
without the box's end-to-end receipts (so the engine's own loss shows; with receipts the outbox sends again):

- a Mosquitto bridge: a site broker that the box publishes to, bridged to a central broker that the command post
  reads; the central broker is unreachable, so the site broker queues, and then it is SIGKILLed;
- a 3-node NATS JetStream cluster (MQTT, streams on three nodes): the box publishes to one node while the command
  post's session waits, and that node is SIGKILLed.

The box publishes N alerts at QoS 1 and each is acknowledged (PUBACK) by its broker before the kill.

    .venv/bin/python benchmarks/bench_engines.py [--alerts 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_broker_crash import cpu_line  # noqa: E402
from benchmarks.natscluster import NatsCluster  # noqa: E402
from benchmarks.testbed import Collector, Mosquitto, shipped_persistence, wait_for  # noqa: E402

TOPIC = "border/t/box1/alerts"


def publish(port: int, n: int, auth: tuple[str, str] | None = None) -> None:
    """``n`` QoS 1 messages, each acknowledged by the broker before the next."""
    box = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="box1", clean_session=False)
    if auth:
        box.username_pw_set(*auth)
    box.connect("127.0.0.1", port, keepalive=10)
    box.loop_start()
    for i in range(n):
        box.publish(TOPIC, json.dumps({"alert_id": f"a{i:05d}"}), qos=1).wait_for_publish(10)
    box.disconnect()
    box.loop_stop()


def received(cp: Collector) -> int:
    return len({m["alert_id"] for m in cp.json("/alerts")})


def bridge(n: int, persistence: list[str], label: str) -> None:
    central = Mosquitto(persistence=persistence).start()
    cp = Collector(central.port, "border/#", client_id="cp-bench")
    assert cp.subscribed.wait(10)
    cp.close()  # away: its session waits at the central broker
    bridge_lines = [f"connection central\naddress 127.0.0.1:{central.port}\ntopic border/# out 1\n"
                    "cleansession false\nrestart_timeout 1"]
    site = Mosquitto(persistence=persistence, extra=bridge_lines).start()
    try:
        central.stop()  # the link is down: the site broker queues what the box publishes
        publish(site.port, n)
        site.kill()  # SIGKILL with the queue
        site.start()
        central.start()
        cp = Collector(central.port, "border/#", client_id="cp-bench")
        wait_for(lambda: received(cp) == n, 15)
        got = received(cp)
        cp.close()
        print(f"  Mosquitto bridge, {label:<38} {n} acknowledged by the site broker, {got} reached the "
              f"command post: lost {n - got}")
    finally:
        site.remove()
        central.remove()


def nats(n: int) -> None:
    cluster = NatsCluster(3, boxes={"box1": "pw"}, command_posts={"cp": "cp"}).start()
    try:
        cp = Collector(cluster.mqtt_ports[1], "border/#", client_id="cp-bench", auth=("cp", "cp"))
        assert cp.subscribed.wait(10)
        cp.close()  # away: its session waits in JetStream
        publish(cluster.mqtt_ports[0], n, ("box1", "pw"))
        cluster.kill(0)  # SIGKILL the node the box published to
        cp = Collector(cluster.mqtt_ports[2], "border/#", client_id="cp-bench", auth=("cp", "cp"))
        wait_for(lambda: received(cp) == n, 30)
        got = received(cp)
        cp.close()
        print(f"  NATS JetStream, 3 nodes, R3{'':<27} {n} acknowledged by node 1, {got} reached the command "
              f"post through node 3: lost {n - got}")
    finally:
        cluster.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=200)
    args = parser.parse_args()
    print(cpu_line())
    t0 = time.monotonic()
    bridge(args.alerts, ["persistence true", "max_queued_messages 100000"], "default persistence (1800 s):")
    bridge(args.alerts, shipped_persistence(), "the shipped edge-agent.conf:")
    nats(args.alerts)
    print(f"  ({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
