"""The fleet on this machine: N simulated boxes (``benchmarks/fleet.py``: the product's real outbox and publisher,
one SQLite file and one set of credentials each, end-to-end receipts) on a 3-node NATS JetStream cluster (MQTT
listeners, streams and consumers replicated on the three), two ``edge-agent command-post`` on one PostgreSQL store.
The boxes come up at 20 a second (about 100 to a worker process); once all are online, each raises an alert a
minute and reports health every 30 s, and a burst of 200 alerts/s comes in the middle. Printed for each size, with
all nodes up and with one node down (SIGKILLed once the boxes are online; the first 10 s after the kill, while the
cluster elects new leaders, are reported apart): alerts stored per second, publish-to-store latency p50/p99 (the
box's commit to the shared store's row), loss, how long after the run every receipt was back, and the CPU and
memory of each engine node and each command post over the run.

    .venv/bin/python benchmarks/bench_fleet.py [--sizes 100,500,1000] [--seconds 60] [--burst 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_broker_crash import cpu_line  # noqa: E402
from benchmarks.fleet import Fleet, box_name, box_password  # noqa: E402
from benchmarks.natscluster import NatsCluster  # noqa: E402
from benchmarks.postgres import Postgres  # noqa: E402
from benchmarks.testbed import wait_for  # noqa: E402

EXE = str(Path(sys.executable).with_name("edge-agent"))
os.environ.setdefault("EDGE_AGENT_HOME", str(ROOT / ".state"))  # where ./dev put Leaflet for the command posts
SECRET, CP_PW = "bench-secret", "bench-cp-password"
BOXES_PER_WORKER = 100  # paho waits on select(), which takes no file number over 1023: a box holds about six
CONNECT_RATE = 20.0  # boxes coming up per second (each costs the cluster two replicated consumers)
SETTLE_S = 10.0  # after a node is killed, alerts committed this soon are reported apart (leader elections)


def start_command_post(tmp: Path, name: str, hosts: list[str], url: str) -> subprocess.Popen[str]:
    import yaml

    config = tmp / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"name": name, "store_url": url, "mqtt": {
        "hosts": hosts, "username": "cp", "password": CP_PW, "keepalive_s": 10, "reconnect_min_s": 1,
        "reconnect_max_s": 2}, "listen": {"host": "127.0.0.1", "port": 0}}))
    proc = subprocess.Popen([EXE, "command-post", "-c", str(config)], stdout=subprocess.PIPE,
                            stderr=(tmp / f"{name}.log").open("a"), text=True, cwd=ROOT)
    assert proc.stdout is not None and "command post" in proc.stdout.readline()
    return proc


class Meter:
    """CPU (% of one core) and peak memory of some processes over a run."""

    def __init__(self, procs: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in procs.items()}
        self.cpu0 = {name: self._cpu(p) for name, p in self.procs.items()}
        self.t0 = time.monotonic()
        self.rss: dict[str, float] = dict.fromkeys(self.procs, 0.0)

    @staticmethod
    def _cpu(p: psutil.Process) -> float:
        try:
            t = p.cpu_times()
            return float(t.user + t.system)
        except psutil.Error:
            return 0.0

    def sample(self) -> None:
        for name, p in self.procs.items():
            with contextlib.suppress(psutil.Error):  # a process that died meanwhile
                self.rss[name] = max(self.rss[name], p.memory_info().rss / 2**20)

    def report(self) -> dict[str, tuple[float, float]]:
        wall = time.monotonic() - self.t0
        return {name: ((self._cpu(p) - self.cpu0[name]) / wall * 100, self.rss[name])
                for name, p in self.procs.items()}


def run(size: int, seconds: float, burst: int, node_down: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    cluster = NatsCluster(3, boxes={box_name(i): box_password(SECRET, i) for i in range(size)},
                          command_posts={"cp": CP_PW}).start()
    pg = Postgres().start()
    hosts = [f"127.0.0.1:{p}" for p in cluster.mqtt_ports]
    cps = {"cp-north": start_command_post(tmp, "north", hosts, pg.url),
           "cp-south": start_command_post(tmp, "south", [hosts[1], hosts[2], hosts[0]], pg.url)}
    workers = max(2, -(-size // BOXES_PER_WORKER))
    fleet = Fleet(size, workers, hosts, SECRET, tmp / "fleet", alert_every_s=60, health_every_s=30,
                  burst_at_s=size / CONNECT_RATE + seconds / 2, burst_alerts=burst, burst_rate=200,
                  receipt_timeout_s=10, raise_for_s=size / CONNECT_RATE + seconds, connect_rate=CONNECT_RATE).start()
    import psycopg

    def online() -> int:
        with psycopg.connect(pg.url) as conn:
            return int(conn.execute(b"SELECT COUNT(*) FROM boxes WHERE state = 'online'").fetchone()[0])  # type: ignore[index]

    try:
        connected = wait_for(lambda: online() == size, size / CONNECT_RATE + 120)
        killed = time.time()  # every box online: what is measured starts here
        if node_down:
            cluster.kill(2)
        meter = Meter({**{f"nats-n{i + 1}": p.pid for i, p in enumerate(cluster.procs) if p is not None},
                       **{name: p.pid for name, p in cps.items()},
                       **{f"fleet-{k}": p.pid for k, p in enumerate(fleet.procs)}})
        end = time.monotonic() + seconds + 5
        while time.monotonic() < end:
            meter.sample()
            time.sleep(1)
        usage = meter.report()
        drain_t0 = time.monotonic()
        drained = wait_for(lambda: all(b["backlog"] == 0 for b in fleet.stats().values()), 300)
        drain_s = time.monotonic() - drain_t0
        committed = fleet.committed()
        with psycopg.connect(pg.url) as conn:
            stored = dict(conn.execute(b"SELECT alert_id, MIN(received) FROM alert_states WHERE state = 'new' "
                                       b"GROUP BY alert_id").fetchall())
        # with a node down, the first seconds are the cluster electing new leaders for what that node led: counted
        # apart (the worst alert), the rest is the cluster running on two nodes
        settle = killed + SETTLE_S if node_down else killed  # alerts a box raised before it was up waited for it
        lat = sorted((stored[a] - ts) * 1000 for a, ts in committed.items() if a in stored and ts >= settle)
        worst_settling = max(((stored[a] - ts) * 1000 for a, ts in committed.items() if a in stored and ts < settle),
                             default=0.0)
        span = (max(stored.values()) - min(stored.values())) if stored else 0.0
        return {"size": size, "node_down": node_down, "connected": connected, "drained": drained, "drain_s": drain_s,
                "committed": len(committed), "stored": len(set(stored) & set(committed)),
                "per_s": len(stored) / span if span else 0.0,
                "p50": statistics.median(lat) if lat else float("nan"),
                "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"), "usage": usage,
                "worst_settling": worst_settling}
    finally:
        fleet.stop()
        for p in cps.values():
            p.terminate()
            p.wait(20)
        cluster.remove()
        pg.remove()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,500,1000")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--burst", type=int, default=1000, help="alerts in the burst (at 200/s)")
    parser.add_argument("--node-down", choices=["both", "no", "yes"], default="both")
    args = parser.parse_args()
    print(cpu_line(), f"; {os.cpu_count()} CPUs")
    for size in (int(s) for s in args.sizes.split(",")):
        for down in {"both": (False, True), "no": (False,), "yes": (True,)}[args.node_down]:
            r = run(size, args.seconds, args.burst, down)  # p50/p99: with a node down, after the first seconds
            shown = {k: v for k, v in r["usage"].items() if not k.startswith("fleet-")}
            boxes_cpu = sum(cpu for k, (cpu, _rss) in r["usage"].items() if k.startswith("fleet-"))
            usage = ", ".join(f"{k} {cpu:.0f}% {rss:.0f} MiB" for k, (cpu, rss) in shown.items()) + \
                f"; the simulated boxes {boxes_cpu:.0f}% (the rest of the 2 cores' 200%)"
            worst = r["worst_settling"] / 1000
            settling = f"; in the first {SETTLE_S:.0f} s after the kill the worst took {worst:.1f} s" if down else ""
            print(f"{size:5d} boxes, {'one node down' if down else 'all nodes up  '}: "
                  f"{r['stored']}/{r['committed']} alerts stored (lost {r['committed'] - r['stored']}), "
                  f"{r['per_s']:.1f}/s over the run, publish to store p50 {r['p50']:.0f} ms p99 {r['p99']:.0f} ms"
                  f"{'' if r['connected'] else ' (not all boxes came online)'}; every receipt back "
                  f"{r['drain_s']:.0f} s after the run{'' if r['drained'] else ' (NOT within 300 s)'}"
                  f"{settling}"
                  f"\n        {usage}", flush=True)


if __name__ == "__main__":
    main()
