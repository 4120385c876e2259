"""What a SIGKILLed Mosquitto loses of what it acknowledged, per persistence setting, one run each:

1. The command post subscribes (persistent session, QoS 1) and goes away. A real ``Publisher`` delivers
   ``--alerts`` alerts, committed at ``--rate`` per second to a temporary incident log (the outbox), to a real
   Mosquitto; once about 60 % of them are acknowledged (PUBACK) the broker is SIGKILLed, restarted on the same
   port, and the command post comes back. The box counts as delivered what was PUBACKed; "lost" is what was
   PUBACKed before the kill and never reached the command post. Settings: Mosquitto's default (``persistence
   true``, a save every 1800 s), ``autosave_interval 1``, and the shipped configs/mosquitto/edge-agent.conf.
2. The same with ``mqtt.require_receipt`` on: the command post sends a receipt (contract: ``alert_id``,
   ``state``, ``by``, ``ts`` on ``{root}/receipts``) for every alert state it gets; nothing may be lost.
3. The price: seconds until the broker has acknowledged ``--cost`` alerts queued for the absent command post
   (committed first, then published), per setting, as ratios to the default.

    .venv/bin/python benchmarks/bench_broker_crash.py [--alerts 1000] [--rate 250] [--cost 1000 5000]
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.testbed import MOSQUITTO, Collector, Mosquitto, shipped_persistence, wait_for  # noqa: E402
from edge_agent.config import DEFAULT_PREFIX  # noqa: E402
from edge_agent.config.mqtt import MqttConfig  # noqa: E402
from edge_agent.contract.alert import Alert, Evidence  # noqa: E402
from edge_agent.contract.ids import new_ulid  # noqa: E402
from edge_agent.contract.topics import BoxTopics  # noqa: E402
from edge_agent.delivery.publisher import Publisher  # noqa: E402
from edge_agent.incidents.store import IncidentStore  # noqa: E402

SITE, BOX = "bench", "box1"
TOPIC = BoxTopics.of(DEFAULT_PREFIX, SITE, BOX).alerts
SETTINGS: list[tuple[str, list[str]]] = [
    ("default (save every 1800 s)", ["persistence true", "max_queued_messages 100000"]),
    ("autosave_interval 1", ["persistence true", "autosave_interval 1", "max_queued_messages 100000"]),
    ("shipped edge-agent.conf", shipped_persistence()),
]


def cpu_line() -> str:
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile")
    have = " ".join(f if f in flags else f"no-{f}" for f in wanted)
    return f"cpu: {model}, {os.cpu_count()} cores; flags: {have}"


def mosquitto_version() -> str:
    out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "mosquitto (version unknown)"


def make_alert(i: int) -> Alert:
    now = time.time()
    ev = Evidence("md-1", "metal", now, (("event", "ALARM"), ("level", 80), ("zone", 1)))
    return Alert(new_ulid(now), new_ulid(now), SITE, BOX, now, "metal", "high", "new", None, None, (ev,),
                 f"alert {i}")


def count(db: Path, sql: str, *args: object) -> int:
    with sqlite3.connect(db, timeout=10) as conn:
        return int(conn.execute(sql, args).fetchone()[0])


def received_ids(c: Collector) -> set[str]:
    return {p["alert_id"] for p in c.json("/alerts")}


@dataclass(frozen=True, slots=True)
class Crash:
    committed: list[str]
    acked_before_kill: set[str]
    received: set[str]
    copies: int  # alert messages the command post got after the restart, duplicates included
    backlog: int
    rate: float  # alerts committed per second, as achieved
    seconds: float

    @property
    def kept(self) -> int:
        return len(self.acked_before_kill & self.received)

    @property
    def lost(self) -> int:
        return len(self.acked_before_kill - self.received)


def crash(tmp: Path, persistence: list[str], total: int, rate: float, receipts: bool, settle_s: float) -> Crash:
    t0 = time.monotonic()
    broker = Mosquitto(persistence=persistence).start()
    store = IncidentStore(tmp / "incidents.db")
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, reconnect_min_s=1, reconnect_max_s=1, keepalive_s=5,
                     require_receipt=receipts, receipt_timeout_s=1.0)
    by = "cp-bench" if receipts else None
    cp_id = f"cp-bench-{time.time_ns()}"
    away = Collector(broker.port, TOPIC, client_id=cp_id, receipts_by=by)
    pub = Publisher(cfg, SITE, BOX, store)
    committed: list[str] = []
    cp_back = threading.Event()
    fed: list[float] = []

    def feed() -> None:
        start = time.monotonic()
        for i in range(total):
            if i == total - 1:  # the last one after the command post is back: when it has that, it has all
                cp_back.wait(60)
            alert = make_alert(i)
            store.queue_alert(alert)
            committed.append(alert.alert_id)
            pub.wake()
            time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
            if i == total - 2:
                fed.append(time.monotonic() - start)

    feeder = threading.Thread(target=feed, daemon=True)
    back: Collector | None = None
    try:
        if not away.subscribed.wait(10):
            raise RuntimeError("the command post did not subscribe")
        away.close()
        pub.start()
        feeder.start()
        kill_after = int(total * 0.6)
        if not wait_for(lambda: count(store.path, "SELECT COUNT(*) FROM outbox WHERE delivered IS NOT NULL")
                        >= kill_after, 120):
            raise RuntimeError(f"fewer than {kill_after} alerts acknowledged in 120 s")
        broker.kill()
        time.sleep(1.0)  # PUBACKs read before the kill are marked delivered; the broker is down a second
        restarted = time.time()  # everything marked delivered before this was acknowledged by the killed broker
        broker.start()
        back = Collector(broker.port, TOPIC, client_id=cp_id, receipts_by=by)
        if not back.subscribed.wait(10):
            raise RuntimeError("the command post did not come back")
        cp_back.set()
        feeder.join(120)
        last = committed[-1]
        wait_for(lambda: last in received_ids(back) and store.backlog()[0] == 0, settle_s)
        time.sleep(0.5)  # stragglers
        with sqlite3.connect(store.path) as conn:
            before = {r[0] for r in conn.execute("SELECT alert_id FROM outbox WHERE delivered < ?", [restarted])}
        return Crash(list(committed), before, received_ids(back), len(back.on("/alerts")), store.backlog()[0],
                     (total - 1) / fed[0] if fed else 0.0, time.monotonic() - t0)
    finally:
        cp_back.set()
        pub.stop()
        for c in (away, back):
            if c is not None:
                c.close()
        broker.remove()
        store.close()


def queue_cost(tmp: Path, persistence: list[str], n: int) -> tuple[float, int]:
    """Seconds until the broker acknowledged ``n`` alerts queued for an absent subscriber; its file's size."""
    broker = Mosquitto(persistence=persistence).start()
    store = IncidentStore(tmp / "incidents.db")
    away = Collector(broker.port, TOPIC, client_id=f"cp-cost-{time.time_ns()}")
    pub = Publisher(MqttConfig(host="127.0.0.1", port=broker.port), SITE, BOX, store)
    try:
        if not away.subscribed.wait(10):
            raise RuntimeError("the command post did not subscribe")
        away.close()
        for i in range(n):
            store.queue_alert(make_alert(i))
        t0 = time.perf_counter()
        pub.start()
        if not wait_for(lambda: store.backlog()[0] == 0, 600):
            raise RuntimeError(f"{store.backlog()[0]} of {n} not acknowledged in 600 s")
        took = time.perf_counter() - t0
        db = broker.dir / "mosquitto.db"
        size = db.stat().st_size if db.exists() else 0
        return took, size
    finally:
        pub.stop()
        broker.remove()
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=1000, help="alerts per crash run (default 1000)")
    ap.add_argument("--rate", type=float, default=250.0, help="alerts committed per second (default 250)")
    ap.add_argument("--cost", type=int, nargs="*", default=[1000, 5000],
                    help="queue sizes for the price (default 1000 5000)")
    ap.add_argument("--settle", type=float, default=60.0, help="most seconds to wait for the last alert")
    args = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # the publisher's reconnect warnings are expected here
    started = time.monotonic()
    print(cpu_line())
    print(f"broker: {mosquitto_version()}, loopback, no TLS; {time.strftime('%Y-%m-%d')}")
    print(f"shipped settings: {'; '.join(SETTINGS[2][1])}")
    with tempfile.TemporaryDirectory() as tmp:
        for receipts in (False, True):
            print(f"\nbroker SIGKILLed after ~60 % of {args.alerts} alerts at {args.rate:g}/s were PUBACKed, command "
                  f"post away; require_receipt {'ON' if receipts else 'off'}:")
            print(f"  {'setting':<28} {'acked before kill':>17} {'received after restart':>22} {'lost':>5}   "
                  f"{'all received':>12} {'duplicates':>10}  backlog  rate    run")
            for k, (name, lines) in enumerate(SETTINGS):
                run = crash(Path(tmp) / f"crash-{int(receipts)}-{k}", lines, args.alerts, args.rate, receipts,
                            args.settle)
                print(f"  {name:<28} {len(run.acked_before_kill):>17} {run.kept:>22} {run.lost:>5}   "
                      f"{len(run.received & set(run.committed)):>5} of {len(run.committed):<5} "
                      f"{run.copies - len(run.received):>10} {run.backlog:>8}  "
                      f"{run.rate:>4.0f}/s {run.seconds:>4.0f} s", flush=True)
        for n in args.cost:
            print(f"\nprice: {n} alerts queued for the absent command post, until all are PUBACKed:")
            base = None
            for k, (name, lines) in enumerate(SETTINGS):
                took, size = queue_cost(Path(tmp) / f"cost-{n}-{k}", lines, n)
                base = base or took
                saved = f"mosquitto.db then {size / 1e3:,.0f} kB" if size else "nothing saved yet"
                print(f"  {name:<28} {took:7.2f} s  {n / took:7,.0f} alerts/s  {took / base:6.1f}x the default   "
                      f"{saved}", flush=True)
    print(f"\none run, {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
