"""How many cameras one box keeps up with: 1 to 12 busy synthetic cameras (``sim://border`` at 5 fps each, real
time, a different seed each) through the real ``edge-agent run`` and a real Mosquitto, at 320 and at 640.

For each camera count it measures, after a warm-up, from the agent's own ``health`` (published every 2 s):
each camera's frames looked at per second (through the model, or found empty by the heat proposals or the gate),
the p99 age of a frame when its detection finished (capture to tracks);
from the alerts a subscriber receives: frame-to-subscriber latency (the thermal evidence's frame time to the
subscriber's clock, for each new or updated alert state) p50/p99; from the agent process: CPU (% of one
core) and peak RSS. A count "holds" when
every camera gets at least 95 % of its 5 frames a second looked at and the frame age p99 stays under 1 s. It prints the
largest count that holds per size, and the CPU flags it ran on.

    .venv/bin/python benchmarks/bench_capacity.py [--sizes 320 640] [--counts 1 2 4 6 8 10 12]
        [--seconds 30] [--warmup 15] [--quiet N] [--precision auto|fp32|int8] [--runtime auto|ultralytics]
        [--heat on|off] [--resolution WxH]

``--quiet N`` adds N quiet cameras (``sim://quiet``) to each count: the "16 cameras of which 4 busy" case is
``--counts 4 --quiet 12``. ``--runtime ultralytics`` runs the model through ultralytics, as before the shared
engine, for the comparison. ``--heat off`` runs every frame whole through the model behind the motion gate, as
before heat-first proposals. ``--resolution 1280x1024`` gives every camera frames that large (the same lens: its
calibration and zone scaled about the centre), looked at in full resolution.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import yaml
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("EDGE_AGENT_HOME", str(ROOT / ".state"))

from benchmarks.testbed import Mosquitto  # noqa: E402
from edge_agent.config import DEFAULT_PREFIX  # noqa: E402
from edge_agent.contract.ids import parse_time  # noqa: E402
from edge_agent.contract.topics import BoxTopics  # noqa: E402
from edge_agent.ops.quantize import cpu_flags  # noqa: E402

EXE = str(Path(sys.executable).with_name("edge-agent"))
FPS = 5.0
HOLD_RATE = 0.95 * FPS
HOLD_AGE_MS = 1000.0
SITE, BOX = "bench", "capacity"
TOPICS = BoxTopics.of(DEFAULT_PREFIX, SITE, BOX)
CALIBRATION: list[dict[str, list[float]]] = [  # the demo's border camera
    {"pixel": [40, 469], "latlon": [46.5501078, 15.6499478]},
    {"pixel": [600, 469], "latlon": [46.5501078, 15.6500522]},
    {"pixel": [76, 254], "latlon": [46.5502875, 15.6498824]},
    {"pixel": [564, 254], "latlon": [46.5502875, 15.6501176]},
    {"pixel": [320, 333], "latlon": [46.5501797, 15.6500000]},
]


def box_config(tmp: Path, port: int, size: int, busy: int, quiet: int, precision: str, runtime: str,
               lone_latency: bool = True, heat: bool = True, resolution: tuple[int, int] = (640, 480)) -> Path:
    cams, zones, fusion = [], [], []
    w, h = resolution
    k = w / 640.0  # the same lens over more pixels: the calibration's pixels scale about the centre
    calibration = [{"pixel": [px * k, (py - 240) * k + h / 2], "latlon": p["latlon"]}
                   for p in CALIBRATION for px, py in [p["pixel"]]]
    for i in range(busy + quiet):
        scene = "border" if i < busy else "quiet"
        cam = f"cam{i:02d}"
        cams.append({"id": cam, "source": f"sim://{scene}?fps={FPS:g}&realtime=1&loop=1&seed={i}&width={w}&height={h}",
                     "pixel_format": "y16", "scale": 0.01, "offset": -273.15,
                     "calibration": {"points": calibration}})
        # every person stepping onto the near half of the picture is an alert (pixel zone: one per camera)
        zones.append({"id": f"near{i:02d}", "camera": cam,
                      "polygon": [[0, 300 * k], [w, 300 * k], [w, h], [0, h]],
                      "entry": True, "cooldown_s": 0, "filters": {"labels": ["person"], "unknown": "same"}})
        # each entry its own incident (closed 1 s after its evidence), so that alerts keep coming to be timed
        fusion.append({"id": f"near{i:02d}", "place": f"near{i:02d}", "window_s": 1, "quiet_s": 1, "cooldown_s": 0})
    cfg = {"site": SITE, "box": BOX, "state_dir": os.environ["EDGE_AGENT_HOME"],  # the provisioned models
           "incident_log": {"path": str(tmp / "incidents.db")},
           "detector": {"model": "default", "imgsz": size, "precision": precision, "runtime": runtime,
                        "lone_latency": lone_latency},
           "heat": {"enabled": heat},
           "cameras": cams, "zones": zones, "fusion": fusion,
           "mqtt": {"host": "127.0.0.1", "port": port, "health_interval_s": 2, "keepalive_s": 10}}
    path = tmp / "box.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@dataclass
class Listener:
    port: int
    health: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    latencies_ms: list[tuple[float, float]] = field(default_factory=list)  # (received, latency)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Listener:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-capacity-{os.getpid()}")
        self.client.on_connect = lambda c, *_a: c.subscribe([(TOPICS.health, 0), (TOPICS.alerts, 1)])
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        return self

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        p = json.loads(msg.payload)
        with self.lock:
            if msg.topic.endswith("/health"):
                self.health.append((now, p))
            elif p.get("state") in ("new", "updated"):
                # the frame that made this alert state: its newest thermal evidence (an incident that is open
                # takes later entries as updates)
                frames = [parse_time(e["ts"]) for e in p.get("evidence", []) if e.get("type") == "thermal"]
                if frames:
                    self.latencies_ms.append((now, (now - max(frames)) * 1000.0))

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100.0 * len(s)))]


def run_one(size: int, busy: int, quiet: int, warmup: float, seconds: float, precision: str, runtime: str,
            lone_latency: bool = True, heat: bool = True, resolution: tuple[int, int] = (640, 480)) -> dict[str, Any]:
    broker = Mosquitto().start()
    listener = Listener(broker.port).start()
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        path = box_config(Path(tmp), broker.port, size, busy, quiet, precision, runtime, lone_latency, heat,
                          resolution)
        proc = subprocess.Popen([EXE, "run", "-c", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
        ps = psutil.Process(proc.pid)
        cpu0 = cpu1 = ps.cpu_times()
        w0 = w1 = time.time()
        peak_rss = 0
        try:
            deadline = time.time() + 120
            while not listener.health and time.time() < deadline and proc.poll() is None:  # started: model loaded
                time.sleep(0.2)
            t_start = time.time() + warmup
            while time.time() < t_start and proc.poll() is None:
                peak_rss = max(peak_rss, ps.memory_info().rss)
                time.sleep(0.5)
            cpu0, w0 = ps.cpu_times(), time.time()
            while time.time() < w0 + seconds and proc.poll() is None:
                peak_rss = max(peak_rss, ps.memory_info().rss)
                time.sleep(0.5)
            cpu1, w1 = ps.cpu_times(), time.time()
            if proc.poll() is not None:
                raise RuntimeError(f"the agent ended: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            listener.stop()
            broker.remove()
    with listener.lock:
        window = [(t, h) for t, h in listener.health if w0 <= t <= w1 + 1]
        lat = [ms for t, ms in listener.latencies_ms if w0 <= t <= w1 + 1]
    if len(window) < 2:
        raise RuntimeError("too few health messages in the window")
    (ta, ha), (tb, hb) = window[0], window[-1]
    cams = {}
    for cam, b in hb["cameras"].items():
        a = ha["cameras"].get(cam, {})
        # frames looked at: through the model, through the heat proposals alone, or found still by the gate; a
        # camera keeps up when it looks at every frame (heat-first passes a frame with nothing warm moving, as the
        # gate did, without the model)
        looked = (b["detected"] + b["gated"]) - (a.get("detected", 0) + a.get("gated", 0))
        cams[cam] = {"detect_fps": looked / (tb - ta), "age_p99": b["age_ms_p99"], "busy": int(cam[3:]) < busy}
    busy_cams = [c for c in cams.values() if c["busy"]]
    ages = [c["age_p99"] for c in busy_cams if c["age_p99"] is not None]
    cpu = ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (w1 - w0) * 100.0
    min_fps = min((c["detect_fps"] for c in busy_cams), default=0.0)
    return {"size": size, "busy": busy, "quiet": quiet, "min_fps": min_fps,
            "mean_fps": statistics.fmean(c["detect_fps"] for c in busy_cams) if busy_cams else 0.0,
            "quiet_fps": statistics.fmean(c["detect_fps"] for c in cams.values() if not c["busy"]) if quiet else None,
            "age_p99": max(ages) if ages else None, "lat_p50": pct(lat, 50), "lat_p99": pct(lat, 99),
            "alerts": len(lat), "cpu": cpu, "rss_mb": peak_rss / 2**20, "engine": hb.get("engine"),
            "holds": min_fps >= HOLD_RATE and bool(ages) and max(ages) <= HOLD_AGE_MS}


def fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 6, 8, 10, 12])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--quiet", type=int, default=0)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"])
    ap.add_argument("--runtime", default="auto", choices=["auto", "ultralytics"])
    ap.add_argument("--all", action="store_true", help="go on with larger counts after one fails")
    ap.add_argument("--no-lone-latency", dest="lone_latency", action="store_false",
                    help="detector.lone_latency off: a lone frame runs on one stream's share of the cores")
    ap.add_argument("--heat", choices=["on", "off"], default="on",
                    help="off: every frame whole through the model behind the gate (the box before heat-first)")
    ap.add_argument("--resolution", default="640x480", help="the cameras' frames, WxH (e.g. 1280x1024)")
    args = ap.parse_args()
    resolution = tuple(int(v) for v in args.resolution.lower().split("x"))
    assert len(resolution) == 2, "--resolution WxH"
    lone = "-" if args.runtime == "ultralytics" else "on all threads" if args.lone_latency else "on one stream"
    print(f"CPU: {os.cpu_count()} cores, {cpu_flags()}; precision {args.precision}, runtime {args.runtime}, "
          f"lone frames {lone}; heat-first {args.heat}; {args.resolution} frames; "
          f"{FPS:g} fps per camera, holds: every busy camera >= {HOLD_RATE:g} frames looked at/s and frame age p99 <= "
          f"{HOLD_AGE_MS:.0f} ms", flush=True)
    print(f"{'size':>4} {'busy':>4} {'quiet':>5} {'min fr/s':>9} {'mean':>5} {'quiet':>5} {'age p99':>7} "
          f"{'alert p50':>9} {'p99':>5} {'alerts':>6} {'CPU %':>6} {'RSS MB':>6} holds", flush=True)
    best: dict[int, int] = {}
    for size in args.sizes:
        for n in args.counts:
            r = run_one(size, n, args.quiet, args.warmup, args.seconds, args.precision, args.runtime,
                        args.lone_latency, args.heat == "on", (resolution[0], resolution[1]))
            print(f"{size:>4} {n:>4} {args.quiet:>5} {r['min_fps']:>9.2f} {r['mean_fps']:>5.2f} "
                  f"{fmt(r['quiet_fps'], '.2f'):>5} {fmt(r['age_p99']):>7} {fmt(r['lat_p50']):>9} "
                  f"{fmt(r['lat_p99']):>5} {r['alerts']:>6} {r['cpu']:>6.0f} {r['rss_mb']:>6.0f} "
                  f"{'yes' if r['holds'] else 'NO'}", flush=True)
            if r["holds"]:
                best[size] = max(best.get(size, 0), n)
            elif not args.all:
                break
    for size in args.sizes:
        print(f"largest camera count holding {FPS:g} frames/s each at {size}: {best.get(size, 0)}"
              f"{f' (+{args.quiet} quiet)' if args.quiet else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
