"""A fleet of simulated boxes for the fleet's tests and benchmarks. Each box is the product's real delivery: its
own incident database (SQLite, the real outbox) and its own ``Publisher`` (paho, QoS 1, retained status with a
last will, persistent session, end-to-end receipts, ``mqtt.hosts`` failover), raising alerts at a set rate,
publishing health, and taking acks as the agent does (the ack recorded, the alert published ``acknowledged``).
Only the sensors are left out. The boxes run in a few worker processes (``python -m benchmarks.fleet worker``;
at most about 150 boxes each: paho waits on ``select()``, which takes no file number over 1023, and a box holds
about six: its socket, paho's wake-up pair, the database with its WAL and shared memory),
each writing what it did to ``stats-N.json`` every second and once more when it stops (SIGTERM: every box
says offline and disconnects).

    Fleet(boxes=50, processes=2, hosts=[...], password=..., workdir=...).start() ... .stop()
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge_agent.config.mqtt import MqttConfig  # noqa: E402
from edge_agent.contract.acks import Ack  # noqa: E402
from edge_agent.contract.alert import Alert, Evidence  # noqa: E402
from edge_agent.contract.ids import new_ulid  # noqa: E402
from edge_agent.delivery.publisher import Publisher  # noqa: E402
from edge_agent.incidents.store import IncidentStore  # noqa: E402

SITE = "fleet"


def box_name(i: int) -> str:
    return f"box{i:04d}"


def box_password(secret: str, i: int) -> str:
    """Each box its own password (derived: a test bench)."""
    return f"{secret}-{i:04d}"


@dataclass
class Spec:
    """What one worker process runs."""

    first: int
    count: int
    hosts: list[str]
    secret: str
    workdir: str
    alert_every_s: float  # each box raises an alert this often (jittered start)
    health_every_s: float
    burst_at_s: float | None = None  # after this long, the worker's share of a burst
    burst_alerts: int = 0
    burst_rate: float = 200.0  # the whole burst's alerts per second, spread over the workers
    workers: int = 1
    receipt_timeout_s: float = 10.0
    raise_for_s: float | None = None  # after this long no more alerts: the boxes go on delivering and reporting
    connect_rate: float = 0.0  # boxes (of the whole fleet) connecting per second; 0: all at once


@dataclass
class SimBox:
    name: str
    store: IncidentStore
    pub: Publisher
    acks: queue.SimpleQueue[Ack] = field(default_factory=queue.SimpleQueue)
    committed: list[tuple[str, float]] = field(default_factory=list)  # (alert id, commit time)
    acked: list[str] = field(default_factory=list)
    next_alert: float = 0.0
    next_health: float = 0.0


def _alert(box: str, now: float, severity: str = "high") -> Alert:
    return Alert(new_ulid(now), new_ulid(now), SITE, box, now, "metal", severity, "new",  # type: ignore[arg-type]
                 ("gate", "Gate"), (46.55, 15.65), (Evidence("md-1", "metal", now),), f"Metal at Gate ({box})")


def run_worker(spec: Spec, index: int) -> None:
    """The boxes of one worker until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_a: stop.set())
    work = Path(spec.workdir)
    boxes: list[SimBox] = []
    t0 = time.time()
    for i in range(spec.first, spec.first + spec.count):
        name = box_name(i)
        cfg = MqttConfig.model_validate({"hosts": spec.hosts, "username": name,
                                         "password": box_password(spec.secret, i), "keepalive_s": 10,
                                         "reconnect_min_s": 1, "reconnect_max_s": 2, "require_receipt": True,
                                         "receipt_timeout_s": spec.receipt_timeout_s,
                                         "health_interval_s": spec.health_every_s})
        store = IncidentStore(work / f"{name}.db")
        acks: queue.SimpleQueue[Ack] = queue.SimpleQueue()  # from paho's thread to the worker's loop
        pub = Publisher(cfg, SITE, name, store, on_ack=acks.put)
        sim = SimBox(name, store, pub, acks, next_alert=t0 + (i % 97) / 97 * spec.alert_every_s,
                     next_health=t0 + (i % 89) / 89 * spec.health_every_s)  # boxes report at their own times
        boxes.append(sim)
        if spec.connect_rate > 0:  # a fleet coming up box by box, as boxes do in the field
            time.sleep(spec.workers / spec.connect_rate)
        pub.start()
    burst_left = spec.burst_alerts // spec.workers + (1 if index < spec.burst_alerts % spec.workers else 0)
    burst_gap = spec.workers / spec.burst_rate if spec.burst_rate > 0 else 0.0
    next_burst = t0 + spec.burst_at_s if spec.burst_at_s is not None else float("inf")
    next_stats = t0 + 1.0
    turn = 0
    while not stop.is_set():
        now = time.time()
        raising = spec.raise_for_s is None or now - t0 < spec.raise_for_s
        for sim in boxes:
            if raising and now >= sim.next_alert:
                alert = _alert(sim.name, now)
                sim.store.queue_alert(alert)
                sim.committed.append((alert.alert_id, now))
                sim.pub.wake()
                sim.next_alert += spec.alert_every_s
            while True:
                try:
                    ack = sim.acks.get_nowait()
                except queue.Empty:
                    break
                result = sim.store.record_ack(ack)
                if result.alert is not None:
                    sim.acked.append(ack.alert_id)
                    sim.pub.wake()
        while burst_left and now >= next_burst:
            sim = boxes[turn % len(boxes)]
            turn += 1
            alert = _alert(sim.name, now, "critical")
            sim.store.queue_alert(alert)
            sim.committed.append((alert.alert_id, now))
            sim.pub.wake()
            burst_left -= 1
            next_burst += burst_gap
        for sim in boxes:
            if now >= sim.next_health:
                sim.next_health += spec.health_every_s
                sim.pub.publish_health({"ts": now, "state": "ok", "outbox": {"backlog": sim.store.backlog()[0]}})
        if now >= next_stats:
            next_stats += 1.0
            _write_stats(work / f"stats-{index}.json", boxes, final=False)
        stop.wait(0.02)
    for sim in boxes:
        sim.pub.stop(2.0)
    _write_stats(work / f"stats-{index}.json", boxes, final=True)
    for sim in boxes:
        sim.store.close()


def _write_stats(path: Path, boxes: list[SimBox], final: bool) -> None:
    data = {"final": final, "ts": time.time(), "boxes": {
        sim.name: {"committed": sim.committed, "acked": sim.acked, "backlog": sim.store.backlog()[0],
                   "connected": sim.pub.connected.is_set(), "broker": sim.pub.where,
                   "failovers": sim.pub.counters.failovers}
        for sim in boxes}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


class Fleet:
    """``boxes`` simulated boxes in ``processes`` workers; see the module docstring."""

    def __init__(self, boxes: int, processes: int, hosts: list[str], secret: str, workdir: Path,
                 alert_every_s: float = 60.0, health_every_s: float = 30.0, burst_at_s: float | None = None,
                 burst_alerts: int = 0, burst_rate: float = 200.0, receipt_timeout_s: float = 10.0,
                 raise_for_s: float | None = None, connect_rate: float = 0.0) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        per, extra = divmod(boxes, processes)
        first = 0
        self.specs = []
        for k in range(processes):
            count = per + (1 if k < extra else 0)
            self.specs.append(Spec(first, count, hosts, secret, str(workdir), alert_every_s, health_every_s,
                                   burst_at_s, burst_alerts, burst_rate, processes, receipt_timeout_s,
                                   raise_for_s, connect_rate))
            first += count

    def start(self) -> Fleet:
        for k, spec in enumerate(self.specs):
            log = (self.workdir / f"worker-{k}.log").open("ab")
            self.procs.append(subprocess.Popen([sys.executable, "-m", "benchmarks.fleet", "worker", str(k),
                                                json.dumps(spec.__dict__)], cwd=ROOT, stdout=log,
                                               stderr=subprocess.STDOUT))
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM: each box says offline; its stats are written a last time."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()

    def stats(self) -> dict[str, dict[str, Any]]:
        """Every box's committed alerts (id, time), acked alerts, backlog, connection, as last written."""
        out: dict[str, dict[str, Any]] = {}
        for k in range(len(self.specs)):
            path = self.workdir / f"stats-{k}.json"
            with contextlib.suppress(OSError, ValueError, KeyError):  # not written yet, or being replaced
                out.update(json.loads(path.read_text())["boxes"])
        return out

    def committed(self) -> dict[str, float]:
        return {alert_id: ts for box in self.stats().values() for alert_id, ts in box["committed"]}

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def logs(self) -> str:
        return "\n".join((self.workdir / f"worker-{k}.log").read_text(errors="replace")[-1500:]
                         for k in range(len(self.specs)) if (self.workdir / f"worker-{k}.log").exists())


def main() -> None:
    parser = argparse.ArgumentParser(description="a worker of the simulated fleet (see benchmarks/fleet.py)")
    parser.add_argument("role", choices=["worker"])
    parser.add_argument("index", type=int)
    parser.add_argument("spec")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run_worker(Spec(**json.loads(args.spec)), args.index)


if __name__ == "__main__":
    main()
