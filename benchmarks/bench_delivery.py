"""Alert delivery on loopback, one run:

1. latency from the triggering event (a metal-detector ALARM line sent over UDP) to the command post's
   subscriber, through the whole agent (feed, parser, fusion, incident log with FULL sync, outbox, MQTT);
   the same subscriber's latency for a bare MQTT publish is the baseline;
2. outbox replay rate after an outage: alerts committed while no broker was reachable, then published
   when it comes back, until the subscriber has every one.

    .venv/bin/python benchmarks/bench_delivery.py [--events 200] [--backlog 5000]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.config import DEFAULT_PREFIX  # noqa: E402
from edge_agent.config.agent import parse_config  # noqa: E402
from edge_agent.config.mqtt import MqttConfig  # noqa: E402
from edge_agent.contract.alert import Alert, Evidence  # noqa: E402
from edge_agent.contract.ids import new_ulid  # noqa: E402
from edge_agent.contract.topics import BoxTopics  # noqa: E402
from edge_agent.delivery.publisher import Publisher  # noqa: E402
from edge_agent.demo.brokers import LocalBroker, free_port  # noqa: E402
from edge_agent.demo.script import pmdet  # noqa: E402
from edge_agent.incidents.store import IncidentStore  # noqa: E402
from edge_agent.runtime.agent import Agent  # noqa: E402

SITE, BOX = "bench", "b1"
ALERTS = BoxTopics.of(DEFAULT_PREFIX, SITE, BOX).alerts


class Sub:
    def __init__(self, port: int, topic: str) -> None:
        self.got: dict[str, float] = {}
        self.raw: list[tuple[bytes, float]] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{time.time_ns()}")
        self.c.on_connect = lambda c, *_: (c.subscribe(topic, qos=1), self.ready.set())
        self.c.on_message = self._msg
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.ready.wait(5)
        time.sleep(0.2)

    def _msg(self, _c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        self.raw.append((m.payload, now))
        try:
            p = json.loads(m.payload)
        except ValueError:
            return
        if isinstance(p, dict) and "alert_id" in p:
            self.got.setdefault(p["alert_id"], now)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def bare_mqtt(port: int, n: int) -> list[float]:
    sub = Sub(port, "bench/bare")
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare-pub")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        pub.publish("bench/bare", json.dumps({"i": i}), qos=1)
        while len(sub.raw) <= i and time.perf_counter() - t0 < 2:
            time.sleep(0.0002)
        lat.append((sub.raw[i][1] - t0) * 1000)
        time.sleep(0.01)
    pub.loop_stop()
    pub.disconnect()
    sub.close()
    return lat


def agent_latency(port: int, n: int, state: Path) -> list[float]:
    udp = free_port()
    cfg = parse_config(json.dumps({
        "site": SITE, "box": BOX, "state_dir": str(state),
        "zones": [{"id": "gate", "space": "geo", "polygon": [[46.55, 15.65], [46.55, 15.6502], [46.5502, 15.6502],
                                                             [46.5502, 15.65]]}],
        "fixed_sensors": [{"id": "md-1", "kind": "metal", "latlon": [46.5501, 15.6501],
                           "url": f"udp://127.0.0.1:{udp}", "hb_timeout_s": 3600}],
        "fusion": [{"id": "gate", "place": "gate", "metal": ["md-1"], "window_s": 0.001, "quiet_s": 0.01,
                    "cooldown_s": 0, "severity": "high"}],
        "mqtt": {"host": "127.0.0.1", "port": port, "health_interval_s": 60},
    }))
    agent = Agent(cfg)
    agent.start()
    sub = Sub(port, ALERTS)
    assert agent.publisher is not None and agent.publisher.connected.wait(10)
    lat = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(n):
            before = len(sub.got)
            t0 = time.perf_counter()
            s.sendto(pmdet("md-1", i + 1, "ALARM", 80, 1).encode() + b"\n", ("127.0.0.1", udp))
            while len(sub.got) == before and time.perf_counter() - t0 < 5:
                time.sleep(0.0002)
            if len(sub.got) > before:
                lat.append((max(sub.got.values()) - t0) * 1000)
            time.sleep(0.05)  # the fusion window is 1 ms: each alarm is an incident of its own
    agent.stop_event.set()
    agent.stop()
    sub.close()
    return lat


def replay(port: int, n: int, state: Path) -> tuple[float, float, int]:
    store = IncidentStore(state / "replay.db")
    now = time.time()
    for i in range(n):  # committed during the outage, as the agent does
        ev = Evidence("md-1", "metal", now, (("event", "ALARM"), ("level", 80), ("zone", 1)))
        store.queue_alert(Alert(new_ulid(now), new_ulid(now), SITE, BOX, now, "metal",
                                "critical" if i % 10 == 0 else "medium", "new", None, None, (ev,), f"alert {i}"))
    sub = Sub(port, ALERTS)
    pub = Publisher(MqttConfig(host="127.0.0.1", port=port), SITE, BOX, store)
    t0 = time.perf_counter()
    pub.start()  # the broker is back
    while store.backlog()[0] and time.perf_counter() - t0 < 300:
        time.sleep(0.005)
    acked = time.perf_counter() - t0  # every row acknowledged by the broker and marked delivered
    while len(sub.got) < n and time.perf_counter() - t0 < 120:
        time.sleep(0.005)
    took = time.perf_counter() - t0
    pub.stop()
    got = len(sub.got)
    sub.close()
    store.close()
    return acked, took, got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--backlog", type=int, default=5000)
    args = ap.parse_args()
    broker = LocalBroker().start()
    print(f"broker: {broker.kind}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = bare_mqtt(broker.port, args.events)
            lat = agent_latency(broker.port, args.events, Path(tmp) / "agent")
            print(f"\nevent -> subscriber latency, {len(lat)} alarms over UDP, one incident each:")
            print(f"  agent (feed, fusion, FULL-sync log, outbox, MQTT): p50 {statistics.median(lat):6.1f} ms   "
                  f"p99 {pct(lat, 0.99):6.1f} ms   (goal p50 <= 50, p99 <= 250)")
            print(f"  bare MQTT publish (baseline):                      p50 {statistics.median(base):6.1f} ms   "
                  f"p99 {pct(base, 0.99):6.1f} ms")
            print(f"  the agent adds {statistics.median(lat) - statistics.median(base):.1f} ms at p50 "
                  f"({statistics.median(lat) / statistics.median(base):.1f}x the bare publish)")
            acked, took, got = replay(broker.port, args.backlog, Path(tmp))
            print(f"\noutbox replay after an outage, {args.backlog} alerts committed while the broker was away:")
            print(f"  all acknowledged by the broker and marked delivered in {acked:.2f} s = "
                  f"{args.backlog / acked:,.0f} alerts/s")
            print(f"  {got} of {args.backlog} at the subscriber in {took:.2f} s = {got / took:,.0f} alerts/s")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
