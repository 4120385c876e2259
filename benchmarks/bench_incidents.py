"""The incident log at scale, one run:

1. ``incidents list`` on a database of 1,000,000 incidents (and as many evidence rows) with the common
   filters (goal: under 100 ms each), timed in-process (median of 5) and once through the CLI;
2. insert throughput the way the agent writes (evidence + alert into the outbox, each its own commit) with
   ``synchronous=FULL`` against NORMAL, same run;
3. one more piece of evidence in an incident that already holds 1, 1,000 and 5,000 (the tamper-evidence
   digest of the incident is written with every one), median of 50 inserts each, with and without fsync.

    .venv/bin/python benchmarks/bench_incidents.py [--incidents 1000000] [--inserts 300] [--keep DB]
    .venv/bin/python benchmarks/bench_incidents.py --evidence-only
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.testbed import log_incident  # noqa: E402
from edge_agent.contract.alert import SEVERITIES, Evidence  # noqa: E402
from edge_agent.contract.ids import new_ulid  # noqa: E402
from edge_agent.incidents import review  # noqa: E402
from edge_agent.incidents.schema import SEV_RANK  # noqa: E402
from edge_agent.incidents.store import IncidentStore  # noqa: E402

ZONES = ["strip", "fence", "gate", "ford", "track", "ridge", "culvert", "bridge"]
KINDS = ["intrusion", "loitering", "line_crossing", "metal", "radio", "fused", "sensor_fault"]
SENSORS = {"thermal": "cam-1", "metal": "md-gate", "radio": "rx-east"}


def build(path: Path, n: int) -> float:
    store = IncidentStore(path)
    store.db.execute("PRAGMA synchronous=OFF")  # building the fixture, not the measurement
    rng = random.Random(7)
    t_end = time.time()
    t0 = t_end - 3 * 365 * 86400  # three years of a busy sector
    started = time.perf_counter()
    batch, ev = [], []
    for i in range(n):
        opened = t0 + (t_end - t0) * i / n
        sev = SEVERITIES[min(4, int(rng.expovariate(1.2)))]
        kind = rng.choice(KINDS)
        types = sorted(rng.sample(list(SENSORS), rng.choice([1, 1, 1, 2, 3])))
        inc_id = new_ulid(opened)
        acked = rng.random() < 0.7
        batch.append((inc_id, "r", kind, sev, SEV_RANK[sev], "closed", rng.choice(ZONES), None, 46.55, 15.65, opened,
                      opened + 60, opened + 180, ",".join(types), f"{kind} {i}", None,
                      "sgt" if acked else None, opened + 90 if acked else None, None, None, None))
        ev.append((inc_id, SENSORS[types[0]], types[0], opened, 46.55, 15.65, json.dumps({"n": i})))
        if len(batch) == 50_000:
            _flush(store, batch, ev)
    _flush(store, batch, ev)
    took = time.perf_counter() - started
    store.db.execute("ANALYZE")
    store.close()
    return took


def _flush(store: IncidentStore, batch: list, ev: list) -> None:
    with store.db.conn:
        store.db.conn.executemany(f"INSERT INTO incidents VALUES ({','.join('?' * 21)})", batch)
        store.db.conn.executemany("INSERT INTO evidence (incident_id, sensor, type, ts, lat, lon, data) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?)", ev)
    batch.clear()
    ev.clear()


def time_list(store: IncidentStore, f: review.Filters) -> tuple[float, int]:
    times = []
    rows: list = []
    for _ in range(5):
        t0 = time.perf_counter()
        rows = review.list_incidents(store, f, 50)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), len(rows)


def inserts(path: Path, n: int, sync: str) -> float:
    store = IncidentStore(path)
    store.db.execute(f"PRAGMA synchronous={sync}")
    t0 = time.perf_counter()
    for _ in range(n):
        log_incident(store, time.time(), severity="high", sensor="cam-1", summary="bench")
    took = time.perf_counter() - t0
    store.close()
    return n / took


def evidence_growth(path: Path, sizes: tuple[int, ...] = (1, 1000, 5000), samples: int = 50) -> None:
    """Per-insert time of one more piece of evidence in one incident holding N already (synchronous=FULL)."""
    store = IncidentStore(path)
    t = time.time()
    inc = log_incident(store, t, severity="high", sensor="cam-1", summary="bench")
    n = len(inc.evidence)

    def grow(to: int, sync: str) -> list[float]:
        nonlocal n
        store.db.execute(f"PRAGMA synchronous={sync}")
        took = []
        while n < to:
            ev = Evidence("cam-1", "thermal", t + n * 0.1, (("label", "person"), ("track_id", n)), (46.55, 15.65))
            inc.evidence.append(ev)
            t0 = time.perf_counter()
            store.add_evidence(inc, ev)
            took.append(time.perf_counter() - t0)
            n += 1
        return took

    print(f"\none more piece of evidence in one incident (median of {samples}; OFF leaves out the disk's fsync):")
    for size in sizes:
        grow(size, "OFF")  # filling the incident up to the size is not the measurement
        cpu = statistics.median(grow(size + samples, "OFF")) * 1000
        full = statistics.median(grow(size + 2 * samples, "FULL")) * 1000
        print(f"  at {size:>5,} evidence rows: {full:6.2f} ms per insert (synchronous=FULL), {cpu:6.2f} ms (OFF)")
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--incidents", type=int, default=1_000_000)
    ap.add_argument("--inserts", type=int, default=300)
    ap.add_argument("--keep", help="build the big database here and keep it")
    ap.add_argument("--evidence-only", action="store_true", help="only section 3 (evidence in one incident)")
    args = ap.parse_args()
    if args.evidence_only:
        with tempfile.TemporaryDirectory() as tmp:
            evidence_growth(Path(tmp) / "evidence.db")
        return
    with tempfile.TemporaryDirectory(dir=ROOT / ".state" if (ROOT / ".state").exists() else None) as tmp:
        db = Path(args.keep) if args.keep else Path(tmp) / "big.db"
        if not db.exists():
            took = build(db, args.incidents)
            print(f"built {args.incidents:,} incidents + {args.incidents:,} evidence rows in {took:.0f} s "
                  f"({db.stat().st_size / 2**20:.0f} MB)")
        store = IncidentStore(db)
        now = time.time()
        cases = [
            ("newest 50, no filter", review.Filters()),
            ("--zone gate", review.Filters(zone="gate")),
            ("--severity high", review.Filters(severity="high")),
            ("--since 24h", review.Filters(since=now - 86400)),
            ("--since 7d --zone strip", review.Filters(since=now - 7 * 86400, zone="strip")),
            ("--kind fused", review.Filters(kind="fused")),
            ("--state unacknowledged --severity critical", review.Filters(state="unacknowledged",
                                                                          severity="critical")),
            ("--sensor metal", review.Filters(sensor="metal")),
            ("--sensor md-gate", review.Filters(sensor="md-gate")),
            ("--since 30d --until 23d --zone ford --severity medium",
             review.Filters(since=now - 30 * 86400, until=now - 23 * 86400, zone="ford", severity="medium")),
        ]
        print(f"\nincidents list on {store.db.execute('SELECT COUNT(*) FROM incidents').fetchone()[0]:,} incidents "
              "(median of 5, in-process; goal < 100 ms):")
        worst = 0.0
        for name, f in cases:
            ms, n = time_list(store, f)
            worst = max(worst, ms)
            print(f"  {name:<55} {ms:7.1f} ms  ({n} rows)")
        print(f"  slowest: {worst:.1f} ms")
        store.close()
        exe = Path(sys.executable).with_name("edge-agent")
        t0 = time.perf_counter()
        subprocess.run([str(exe), "incidents", "list", "--db", str(db), "--zone", "gate", "--severity", "high"],
                       capture_output=True, check=True)
        cli = time.perf_counter() - t0
        print(f"  the CLI end to end (--zone gate --severity high), Python start-up included: {cli * 1000:.0f} ms")

        full = inserts(Path(tmp) / "full.db", args.inserts, "FULL")
        normal = inserts(Path(tmp) / "normal.db", args.inserts, "NORMAL")
        print(f"\ninsert as the agent writes (evidence, then alert + outbox; 2 commits per incident), "
              f"{args.inserts} incidents:")
        print(f"  synchronous=FULL   {full:8,.0f} incidents/s")
        print(f"  synchronous=NORMAL {normal:8,.0f} incidents/s   (FULL costs {normal / full:.2f}x)")
        evidence_growth(Path(tmp) / "evidence.db")


if __name__ == "__main__":
    main()
