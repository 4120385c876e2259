"""The command-and-control outputs on loopback, one run:

1. what building each message costs the box (CPU µs per message): a CoT event (XML), the same as TAK Protocol
   v1, a SAPIENT alert and a SAPIENT detection report, framed;
2. delivery from the incident database to a real peer, for a burst of alerts committed at ``--rate`` per
   second: CoT over TCP to taky with ping-confirmed delivery and without (``confirm: none``), CoT on UDP
   multicast to a listener on loopback, and SAPIENT to the tests' fusion node. For each: alerts per second
   drained, commit-to-arrival latency p50/p99, and the CPU per alert of the process (the box's side, and the
   TAK client or multicast listener that parses what arrives); the baseline commits the alerts and sends
   nothing, so the difference is what an output costs.

    .venv/bin/python benchmarks/bench_outputs.py [--alerts 1000] [--rate 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_broker_crash import cpu_line  # noqa: E402
from benchmarks.sapient_fusion import FusionNode  # noqa: E402
from benchmarks.takserver import CotListener, MulticastListener, TakServer, have_taky  # noqa: E402
from edge_agent.config.outputs import CotConfig, SapientConfig  # noqa: E402
from edge_agent.contract.alert import Alert, Evidence  # noqa: E402
from edge_agent.contract.ids import new_ulid  # noqa: E402
from edge_agent.demo.brokers import free_port  # noqa: E402
from edge_agent.incidents.store import IncidentStore  # noqa: E402
from edge_agent.outputs.base import OutputRunner  # noqa: E402
from edge_agent.outputs.cot import CotStyle, alert_event, encode_tak  # noqa: E402
from edge_agent.outputs.sapient import SapientOutput  # noqa: E402
from edge_agent.outputs.sapient_messages import (  # noqa: E402
    NodeSheet,
    alert_message,
    detection_report,
    frame,
    node_id_of,
)
from edge_agent.outputs.tak import CotOutput  # noqa: E402
from geofences.rules import TrackPoint  # noqa: E402

STYLE = CotStyle(callsign="bench-box", uid_prefix="edge-agent.bench.box", stale_s=600, snapshot_url=None,
                 errors_m={"cam": 1.4}, default_error_m=10.0)
SHEET = NodeSheet(node_id_of("bench", "box"), "edge-agent bench/box", "box", 1, 1, 0, 10.0)


def alert(ts: float | None = None) -> Alert:
    now = time.time() if ts is None else ts
    return Alert(new_ulid(now), new_ulid(now), "bench", "box", now, "intrusion", "high", "new", ("gate", "Gate"),
                 (46.5501797, 15.65), (Evidence("cam", "thermal", now),),
                 "Person (1.7 m tall, 1.3 m/s; 64 px, by model) entered Gate")


def per_message_us(build: Callable[[], object], n: int = 5000) -> float:
    start = time.process_time()
    for _ in range(n):
        build()
    return (time.process_time() - start) / n * 1e6


def build_costs() -> None:
    a = alert()
    xml = alert_event(a, STYLE)
    assert xml is not None
    point = TrackPoint("cam", 7, "person", 0.8, time.time(), (300, 200, 320, 260), 0.5, 18.0, latlon=(46.55, 15.65))
    rows = [("CoT event, XML", lambda: alert_event(a, STYLE)),
            ("CoT event, TAK Protocol v1 (mesh)", lambda: encode_tak(alert_event(a, STYLE) or b"", mesh=True)),
            ("SAPIENT alert, framed", lambda: frame(alert_message(SHEET.node_id, time.time(), a, 1.4))),
            ("SAPIENT detection report, framed",
             lambda: frame(detection_report(SHEET.node_id, time.time(), new_ulid(), point, 1.4)))]  # type: ignore[arg-type]
    print("1. building one message (CPU µs, median of 3 runs of 5,000)")
    for name, build in rows:
        us = statistics.median(per_message_us(build) for _ in range(3))
        print(f"   {name:<36} {us:7.1f} µs  ({1e6 / us:9,.0f} per second on one core)")


def drive(name: str, out: OutputRunner, store: IncidentStore, alerts: int, rate: float,
          arrivals: Callable[[], dict[str, float]]) -> None:
    """Commit ``alerts`` at ``rate`` per second, wait until the peer has them all; print the figures."""
    committed: dict[str, float] = {}
    cpu0, t0 = time.process_time(), time.monotonic()
    for i in range(alerts):
        due = t0 + i / rate
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        a = alert()
        store.queue_alert(a)
        committed[a.alert_id] = a.ts
        out.wake()
    deadline = time.monotonic() + 120
    got: dict[str, float] = {}
    while time.monotonic() < deadline:
        got = arrivals()
        if set(committed) <= set(got):
            break
        time.sleep(0.05)
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    lat = sorted((got[k] - committed[k]) * 1000 for k in committed if k in got)
    missing = len(set(committed) - set(got))
    p = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else (lambda q: float("nan"))
    print(f"   {name:<34} {len(lat) / wall:7.0f} alerts/s drained; commit to arrival p50 {p(0.5):6.1f} ms, "
          f"p99 {p(0.99):7.1f} ms; box CPU {cpu / alerts * 1e6:6.0f} µs per alert; missing {missing}")


class NoOutput(OutputRunner):
    """The baseline: alerts committed, nothing sent (what committing costs without any output)."""

    name = "none"

    def wake(self) -> None:
        pass


def bench_commit_only(tmp: Path, alerts: int, rate: float) -> None:
    store = IncidentStore(tmp / "commit-only.db")
    committed: dict[str, float] = {}
    original = store.queue_alert

    def queue(a: Alert, snapshot: bytes | None = None) -> int:
        seq = original(a, snapshot)
        committed[a.alert_id] = time.time()
        return seq

    store.queue_alert = queue  # type: ignore[method-assign,assignment]
    try:
        drive("commit only (baseline, no output)", NoOutput(store.deliveries, CotConfig()), store, alerts, rate,
              lambda: committed)
    finally:
        store.close()


def bench_cot_tcp(tmp: Path, alerts: int, rate: float, confirm: str) -> None:
    server = TakServer(tmp / f"taky-{confirm}").start()
    client = CotListener(server)
    store = IncidentStore(tmp / f"cot-{confirm}.db")
    store.deliveries.outputs = ("cot",)
    cfg = CotConfig(transport="tcp", host="127.0.0.1", port=server.port, confirm=confirm)
    out = CotOutput(store.deliveries, cfg, STYLE).start()

    def arrivals() -> dict[str, float]:
        return {e.uid.rsplit(".", 1)[-1]: e.at for e in client.events() if e.uid and e.type == "b-a-g"}

    try:
        drive(f"CoT, TCP to taky, confirm {confirm}", out, store, alerts, rate, arrivals)
    finally:
        out.stop()
        client.close()
        server.stop()
        store.close()


def bench_cot_multicast(tmp: Path, alerts: int, rate: float) -> None:
    device = MulticastListener()
    store = IncidentStore(tmp / "cot-udp.db")
    store.deliveries.outputs = ("cot",)
    cfg = CotConfig(transport="udp", host="239.2.3.1", port=device.port, interface="127.0.0.1")
    out = CotOutput(store.deliveries, cfg, STYLE).start()

    def arrivals() -> dict[str, float]:
        return {e.uid.rsplit(".", 1)[-1]: e.at for e in device.events() if e.uid}

    try:
        drive("CoT, UDP multicast on loopback", out, store, alerts, rate, arrivals)
    finally:
        out.stop()
        device.close()
        store.close()


def bench_sapient(tmp: Path, alerts: int, rate: float) -> None:
    node = FusionNode(free_port(), tmp / "fusion.jsonl", ack_alerts=False).start()
    store = IncidentStore(tmp / "sapient.db")
    store.deliveries.outputs = ("sapient",)
    out = SapientOutput(store.deliveries, SapientConfig(host="127.0.0.1", port=node.port), SHEET, None, {}).start()
    seen: dict[str, float] = {}
    offset = 0

    def arrivals() -> dict[str, float]:  # the fusion node's record, read as it grows
        nonlocal offset
        with node.record_path.open("rb") as f:
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        offset += end
        for line in data[:end].splitlines():
            rec: dict[str, Any] = json.loads(line)
            if rec.get("type") == "alert":
                seen.setdefault(rec["msg"]["alert"]["alert_id"], rec["t"])
        return seen

    try:
        drive("SAPIENT to the fusion node", out, store, alerts, rate, arrivals)
        bad = node.violations()
        print(f"   {'':<34} messages failing the standard's checks: {len(bad)}")
    finally:
        out.stop()
        node.stop()
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0, help="alerts committed per second (a burst)")
    args = parser.parse_args()
    print(cpu_line())
    build_costs()
    print(f"2. {args.alerts} alerts committed at {args.rate:g}/s, delivered from the incident database to a real peer")
    with tempfile.TemporaryDirectory() as tmp:
        bench_commit_only(Path(tmp), args.alerts, args.rate)
        if have_taky():
            bench_cot_tcp(Path(tmp), args.alerts, args.rate, "ping")
            bench_cot_tcp(Path(tmp), args.alerts, args.rate, "none")
        else:
            print("   (taky's venv is missing: ./dev setup installs it; CoT over TCP not measured)")
        bench_cot_multicast(Path(tmp), args.alerts, args.rate)
        bench_sapient(Path(tmp), args.alerts, args.rate)
    print(f"   (process {os.getpid()}: the box's side and the TAK clients and multicast listener share it)")


if __name__ == "__main__":
    main()
