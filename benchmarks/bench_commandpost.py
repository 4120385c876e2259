"""The command post under load with a real browser open, one run:

1. A private Mosquitto, a real ``edge-agent command-post`` subprocess (config and store in a temporary folder, a
   guard added with the CLI) and Debian's chromium (Playwright) signed in on the board.
2. ``--boxes`` simulated boxes, published from one paho client: each a retained ``status`` online, then ``health``
   every 30 s (the agent's payload shape, the boxes staggered over the 30 s).
3. The window: ``--rate`` alerts per second for ``--seconds`` (contract alerts, state ``new``, spread over the
   boxes; every 10th critical, every other one with a location), each published with QoS 1 and its publish time
   (epoch ms) kept. Latency "published -> drawn on the page" is the page's ``window.__cp.shown["ID/new"]`` minus
   that time. An alert the board holds back (``max_alerts_shown`` open alerts rank above it) is never drawn: it is
   counted apart from one that is lost, as the board counts it ("more open in History"). The page's copy of each
   server-sent ``alert`` event (tapped before the board's own handler) splits the time into: broker -> command
   post received it, stored + receipt + event built, event on the page, drawn.
   The command post's CPU (``cpu_times``, % of one core) and RSS over the window, and the other processes'.
4. The flood: alerts at ``--flood-rate`` until ``--total`` in all, then the page's JS heap (after a forced GC),
   DOM size and rows on the board, and whether it still responds: single alerts published after the flood
   until drawn (critical ones, so that they rank on the board), a full re-render of the board, a reload of its
   state (``/api/state``).

5. Where the page's time goes (``--trace S``, off by default since it adds load): a Chromium trace of the last S
   seconds of each phase, the page's main thread's time by kind of work. ``--json FILE`` keeps every alert's times.

Goal: p99 published -> drawn <= 1000 ms in the window. About 3 minutes.

    .venv/bin/python benchmarks/bench_commandpost.py [--boxes 200] [--rate 20] [--seconds 60] [--total 10000]
        [--flood-rate 200] [--trace S] [--json FILE]
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("EDGE_AGENT_HOME", str(ROOT / ".state"))

from benchmarks.bench_broker_crash import cpu_line, mosquitto_version  # noqa: E402
from benchmarks.testbed import Mosquitto, wait_for  # noqa: E402
from edge_agent.config import DEFAULT_PREFIX  # noqa: E402
from edge_agent.contract.alert import Alert, AlertKind, Evidence, Severity  # noqa: E402
from edge_agent.contract.ids import iso_ms, new_ulid  # noqa: E402
from edge_agent.contract.topics import BoxTopics, subscription  # noqa: E402

PREFIX = DEFAULT_PREFIX
GUARD, PASSWORD = "bench-guard", "bench-password-1"
HEALTH_EVERY_S = 30.0
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high")  # and every 10th critical
# Runs in the page before its own scripts: the board's `alert` events are copied (id, received and sent by the
# command post, arrived on the page) before the board handles them, and long tasks (> 50 ms) are counted.
TAP = """
window.__bench = {events: [], longtasks: 0, longtaskMs: 0, hiddenSeen: new Set()};
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) { window.__bench.longtasks++; window.__bench.longtaskMs += e.duration; }
}).observe({type: "longtask"});
const addListener = EventSource.prototype.addEventListener;
EventSource.prototype.addEventListener = function (type, fn, options) {
  if (type !== "alert") return addListener.call(this, type, fn, options);
  return addListener.call(this, type, (ev) => {
    const at = performance.timeOrigin + performance.now();
    const d = JSON.parse(ev.data);
    window.__bench.events.push([d.alert_id, d.received * 1000, d.sent * 1000, at]);
    return fn(ev);
  }, options);
};
"""
# New "ID/new" entries of window.__cp.shown from position `off` on (a Map keeps insertion order; a state drawn
# again keeps its first position), the ids the board has held back (state.hidden: open alerts beyond
# max_alerts_shown, counted "more open in History") not reported before, and the tap's events since the last read.
COLLECT = """(off) => {
  const s = window.__cp.shown, shown = [];
  if (s.size < off) off = 0;
  let i = 0;
  for (const [k, v] of s) { if (i++ >= off && k.endsWith("/new")) shown.push([k.slice(0, -4), v]); }
  const b = window.__bench, hidden = [];
  for (const id of state.hidden) if (!b.hiddenSeen.has(id)) { b.hiddenSeen.add(id); hidden.push(id); }
  return {size: s.size, shown, hidden, events: b.events.splice(0), longtasks: [b.longtasks, b.longtaskMs]};
}"""
RERENDER = """() => {
  for (const id of state.alerts.keys()) state.dirty.add(id);
  const t = performance.now(); renderBoard(); void document.body.offsetHeight; return performance.now() - t;
}"""
RELOAD = "async () => { const t = performance.now(); await load(); void document.body.offsetHeight; " \
         "return performance.now() - t; }"
PAGE_SIZE = """() => ({elements: document.getElementsByTagName("*").length,
  rows: document.querySelectorAll("#alerts tbody tr").length, kept: state.alerts.size, hidden: state.hidden.size,
  boxes: document.querySelectorAll("#boxes tbody tr").length, heap: performance.memory.usedJSHeapSize})"""


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def now_ms() -> float:
    return time.time() * 1000


def client(name: str, port: int) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{name}-{time.time_ns()}")
    c.max_inflight_messages_set(100)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    return c


@dataclass(frozen=True, slots=True)
class Box:
    site: str
    box: str
    lat: float
    lon: float

    @property
    def topics(self) -> BoxTopics:
        return BoxTopics.of(PREFIX, self.site, self.box)


def make_boxes(n: int) -> list[Box]:
    """20 boxes a site, the sites 10 km apart."""
    return [Box(f"site-{i // 20:02d}", f"box-{i:03d}", 46.0 + 0.09 * (i // 20), 15.0 + 0.004 * (i % 20))
            for i in range(n)]


def health(box: Box, started: float, rng: random.Random) -> bytes:
    """A box's health as the agent publishes it (``edge_agent.runtime.health``), with plausible numbers."""
    now = time.time()
    return json.dumps({
        "ts": iso_ms(now), "version": "0.1.0", "uptime_s": round(now - started, 1), "state": "ok",
        "sensors": {"cam-1": {"kind": "camera", "state": "streaming", "rate_hz": round(rng.uniform(9.5, 10), 2),
                              "frames_bad": 0},
                    "md-1": {"kind": "metal", "state": "ok", "lines": rng.randint(1000, 9000), "dropped": 0,
                             "events": rng.randint(100, 900), "rejected": 0, "seq_gaps": 0},
                    "rf-1": {"kind": "radio", "state": "ok", "lines": rng.randint(100, 900), "dropped": 0,
                             "events": rng.randint(10, 90), "rejected": 0, "seq_gaps": 0}},
        "detector_ms": {"cam-1": round(rng.uniform(110, 140), 1)},
        "queues": {"core": 0, "core_max": 1000, "core_errors": 0},
        "outbox": {"backlog": 0, "oldest_s": 0.0}, "disk_free_mb": round(rng.uniform(20_000, 40_000), 1),
        "disk": {"full": False, "reserve_held": True, "unwritten": 0, "dropped_snapshots": 0, "dropped_rejects": 0,
                 "lost": 0},
        "stages": {"camera": "ok", "detector": "ok", "core": "ok", "publisher": "ok"},
        "ledger_head": "0" * 64,
    }).encode()


class Fleet:
    """Every box's retained status (online) at once, then its health every 30 s, staggered, from one client."""

    def __init__(self, port: int, boxes: list[Box]) -> None:
        self.boxes, self.client, self.stop = boxes, client("fleet", port), threading.Event()
        self.sent = 0
        for b in boxes:
            status = {"state": "online", "ts": iso_ms(time.time()), "version": "0.1.0"}
            self.client.publish(b.topics.status, json.dumps(status), qos=1, retain=True)
        self.thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        rng, started = random.Random(1), time.time()
        t0 = time.monotonic()
        due = [(t0 + HEALTH_EVERY_S * i / len(self.boxes), i) for i in range(len(self.boxes))]
        while not self.stop.is_set():
            at, i = heapq.heappop(due)
            if self.stop.wait(max(0.0, at - time.monotonic())):
                return
            self.client.publish(self.boxes[i].topics.health, health(self.boxes[i], started, rng), qos=0)
            self.sent += 1
            heapq.heappush(due, (at + HEALTH_EVERY_S, i))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def make_alert(i: int, box: Box, critical: bool = False) -> Alert:
    """Alert number ``i``: kinds and severities in turn, every 10th critical (or this one), every other one placed."""
    now = time.time()
    severity: Severity = "critical" if critical or i % 10 == 0 else SEVERITIES[i % 4]
    where = (box.lat + 0.0005 * (i % 7), box.lon + 0.0005 * (i % 5)) if i % 2 == 0 else None
    thermal = Evidence("cam-1", "thermal", now, (("label", "person"), ("confidence", 0.81), ("track_id", i),
                                                 ("bbox", [312.0, 140.5, 338.0, 212.0]), ("temp_c", 31.4),
                                                 ("height_m", 1.74), ("speed_mps", 1.2)), where)
    metal = Evidence("md-1", "metal", now, (("event", "ALARM"), ("level", 70 + i % 30), ("zone", 2)), where)
    radio = Evidence("rf-1", "radio", now, (("kind", "bearing"), ("freq_hz", 446_006_250), ("rssi_db", -71.5),
                                            ("bearing_deg", 212.0)), where)
    choices: list[tuple[AlertKind, tuple[Evidence, ...], str]] = [
        ("intrusion", (thermal,), f"person in North gate ({box.box})"),
        ("metal", (metal,), f"metal alarm at md-1 (level {70 + i % 30})"),
        ("radio", (radio,), "PMR446 bearing 212 deg at rf-1"),
        ("fused", (thermal, metal), "person and metal alarm in North gate"),
    ]
    kind, evidence, summary = choices[i % 4]
    return Alert(new_ulid(now), new_ulid(now), box.site, box.box, now, kind, severity, "new",
                 ("gate", "North gate"), where, evidence, summary)


class AlertSource:
    """Publishes alerts (QoS 1) at a steady rate in a thread, keeping each alert's publish time (epoch ms)."""

    def __init__(self, port: int, boxes: list[Box]) -> None:
        self.boxes, self.client = boxes, client("alerts", port)
        self.published: dict[str, float] = {}
        self.count = 0

    def publish_one(self, critical: bool = False) -> str:
        a = make_alert(self.count, self.boxes[(self.count * 7) % len(self.boxes)], critical)
        self.count += 1
        self.published[a.alert_id] = now_ms()
        self.client.publish(BoxTopics.of(PREFIX, a.site, a.box).alerts, a.to_json(), qos=1)
        return a.alert_id

    def run(self, n: int, rate: float) -> threading.Thread:
        """Publish ``n`` alerts at ``rate`` per second in a thread (started), on a fixed schedule."""

        def go() -> None:
            t0 = time.monotonic()
            for k in range(n):
                wait = t0 + k / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self.publish_one()

        t = threading.Thread(target=go, name="alerts", daemon=True)
        t.start()
        return t

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Receipts:
    """The receipts the command post sends back (stored -> receipt), first arrival per alert id (epoch ms)."""

    def __init__(self, port: int) -> None:
        self.at: dict[str, float] = {}
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-receipts-{time.time_ns()}")
        self.client.on_message = self._receipt
        self.client.on_subscribe = lambda *_a: self.ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(subscription(PREFIX).receipts, qos=1)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("the receipts subscription was not confirmed in 10 s")

    def _receipt(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.at.setdefault(json.loads(msg.payload)["alert_id"], now_ms())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class CommandPost:
    """``edge-agent command-post`` in a subprocess with its config and store in ``folder``, one guard."""

    def __init__(self, folder: Path, port: int) -> None:
        self.conf = folder / "cp.yaml"
        self.store = folder / "cp.db"
        self.conf.write_text(f"name: bench\nmqtt: {{host: 127.0.0.1, port: {port}, prefix: {PREFIX}}}\n"
                             f"listen: {{host: 127.0.0.1, port: 0}}\nstore: {self.store}\n")
        exe = str(Path(sys.executable).with_name("edge-agent"))
        self.cmd = [exe, "command-post", "-c", str(self.conf)]
        added = subprocess.run([*self.cmd, "user", "add", GUARD, "--role", "guard"], capture_output=True, text=True,
                               env={**os.environ, "EDGE_AGENT_PASSWORD": PASSWORD}, timeout=60)
        if added.returncode != 0:
            raise RuntimeError(f"'user add' failed ({added.returncode}): {added.stderr.strip()}")
        self.log = folder / "cp.log"
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()  # blocks until the line (or the end, on a failed start)
        found = re.search(r"(http://\S+/) ", first)
        if found is None:
            self.proc.kill()
            raise RuntimeError(f"the command post did not start: {first!r}\n{self.log.read_text()[-2000:]}")
        self.url = found.group(1)
        self.ps = psutil.Process(self.proc.pid)
        threading.Thread(target=self._drain, name="cp-stdout", daemon=True).start()

    def _drain(self) -> None:
        """Keep reading its stdout, so that a full pipe never blocks it."""
        assert self.proc.stdout is not None
        for _line in self.proc.stdout:
            pass

    def stored(self) -> int:
        with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=10) as db:
            return int(db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0])

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


class Board:
    """The signed-in page: what it has drawn and the events it got, by alert id, in epoch ms on this process's
    clock (the page's clock offset, measured once while the page is idle, taken off)."""

    def __init__(self, page: Page, url: str, boxes: int) -> None:
        self.page = page
        page.goto(url + "login")
        page.fill("input[name=name]", GUARD)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(url, timeout=30_000)
        page.wait_for_function("(n) => document.querySelectorAll('#boxes tbody tr').length >= n", arg=boxes,
                               timeout=60_000)
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Performance.enable")
        self.shown: dict[str, float] = {}
        self.events: dict[str, tuple[float, float, float]] = {}  # received, sent (command post), on the page
        self.held: set[str] = set()  # ids the board has held back (beyond max_alerts_shown), drawn or not
        self.read = 0  # entries of __cp.shown read so far
        self.longtasks = (0, 0.0)
        self.offset_ms, self.offset_rtt_ms = self.clock_offset_ms()

    def clock_offset_ms(self) -> tuple[float, float]:
        """The page's clock (timeOrigin + now) minus this process's, from the quickest of five evaluates, and that
        evaluate's round trip (the offset is known to within half of it)."""
        tries = []
        for _ in range(5):
            before = now_ms()
            at = float(self.page.evaluate("performance.timeOrigin + performance.now()"))
            after = now_ms()
            tries.append((after - before, at - (before + after) / 2))
        round_trip, offset = min(tries)
        return offset, round_trip

    def collect(self) -> None:
        got = self.page.evaluate(COLLECT, self.read)
        self.read = got["size"]
        for alert_id, at in got["shown"]:
            self.shown.setdefault(alert_id, at - self.offset_ms)
        self.held.update(got["hidden"])
        for alert_id, received, sent, at in got["events"]:
            self.events.setdefault(alert_id, (received, sent, at - self.offset_ms))
        self.longtasks = (int(got["longtasks"][0]), float(got["longtasks"][1]))

    def follow(self, busy: threading.Thread | None, ids: Iterable[str], settle_s: float) -> None:
        """Read the page every 0.25 s while ``busy`` publishes, then until every id is drawn or held back by the
        board, or ``settle_s`` passed."""
        while busy is not None and busy.is_alive():
            self.collect()
            self.page.wait_for_timeout(250)
        wanted = list(ids)
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            self.collect()
            if all(i in self.shown or i in self.held for i in wanted):
                return
            self.page.wait_for_timeout(250)

    def size(self) -> dict[str, float]:
        """Elements, board rows, alerts the board keeps, JS heap (after a forced GC) and CDP's node count."""
        self.cdp.send("HeapProfiler.collectGarbage")
        size = self.page.evaluate(PAGE_SIZE)
        metrics = {m["name"]: m["value"] for m in self.cdp.send("Performance.getMetrics")["metrics"]}
        return {**size, "nodes": metrics["Nodes"]}

    def timed(self, script: str, n: int = 3) -> list[float]:
        return [float(self.page.evaluate(script)) for _ in range(n)]

    def ping_ms(self) -> float:
        t = time.perf_counter()
        self.page.evaluate("1")
        return (time.perf_counter() - t) * 1000


class Load:
    """CPU seconds of a set of processes between ``start`` and ``stop`` (processes that appear count from 0)."""

    def __init__(self, procs: dict[str, list[psutil.Process]]) -> None:
        self.procs = procs
        self.t0 = 0.0
        self.before: dict[str, dict[int, float]] = {}

    @staticmethod
    def _cpu(ps: list[psutil.Process]) -> dict[int, float]:
        out = {}
        for p in ps:
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        return out

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.before = {name: self._cpu(ps) for name, ps in self.procs.items()}

    def stop(self) -> dict[str, float]:
        """% of one core per name over the interval."""
        wall = time.monotonic() - self.t0
        out = {}
        for name, ps in self.procs.items():
            after, before = self._cpu(ps), self.before[name]
            out[name] = 100 * sum(v - before.get(pid, 0.0) for pid, v in after.items()) / wall
        return out


def chromium_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name().lower()]


@dataclass(frozen=True, slots=True)
class Latency:
    drawn: list[float]  # published -> drawn, ms
    held: int  # never drawn: the board held them back (max_alerts_shown open alerts ranked above), counted
    missing: int  # never drawn, not held back either: lost
    receipt: list[float]  # published -> receipt back at the box side
    # the legs up to the page, of every alert whose event reached the page (drawn or held back)
    to_cp: list[float]  # published -> the command post received it
    stored: list[float]  # received -> event built (stored with FULL sync, receipt sent, row read)
    to_page: list[float]  # event built -> on the page
    drawing: list[float]  # on the page -> drawn (the drawn ones)
    received: list[float]  # when the command post received each (epoch ms)


def latency(ids: list[str], published: dict[str, float], board: Board, receipts: dict[str, float]) -> Latency:
    shown = board.shown
    ev = [(i, board.events[i]) for i in ids if i in board.events]
    never = [i for i in ids if i not in shown]
    held = sum(1 for i in never if i in board.held)
    return Latency([shown[i] - published[i] for i in ids if i in shown], held, len(never) - held,
                   [receipts[i] - published[i] for i in ids if i in receipts],
                   [e[0] - published[i] for i, e in ev], [e[1] - e[0] for _, e in ev],
                   [e[2] - e[1] for _, e in ev], [shown[i] - e[2] for i, e in ev if i in shown],
                   [e[0] for _, e in ev])


def row(label: str, xs: list[float]) -> str:
    if not xs:
        return f"  {label:<44} (none)"
    return (f"  {label:<44} p50 {statistics.median(xs):7.1f}   p99 {pct(xs, 0.99):7.1f}   max {max(xs):7.1f}   "
            f"(n={len(xs)})")


@dataclass(frozen=True, slots=True)
class Phase:
    """Alerts published at a rate, followed until drawn: latencies, and the load from the first publish until
    the last alert was drawn."""

    n: int
    lat: Latency
    cpu: dict[str, float]
    seconds: float
    rss: int  # the command post's, at the end
    longtasks: tuple[int, float]  # the page's tasks over 50 ms: how many, ms in all
    trace: bytes | None  # a Chromium trace of the page over the end of the phase


def run_phase(board: Board, source: AlertSource, receipts: Receipts, load: Load, cp: CommandPost, n: int,
              rate: float, settle_s: float, trace: Browser | None = None, trace_s: float = 0) -> Phase:
    """Publish ``n`` alerts at ``rate``, follow them until drawn; with ``trace``, trace the page over the last
    ``trace_s`` seconds of publishing."""
    first, tasks = source.count, board.longtasks
    t0 = time.monotonic()
    load.start()
    busy = source.run(n, rate)
    if trace is not None:
        while busy.is_alive() and source.count - first < n - rate * trace_s:
            board.collect()
            board.page.wait_for_timeout(250)
        trace.start_tracing(page=board.page, categories=["devtools.timeline", "toplevel"])
    board.follow(busy, [], 0)
    traced = trace.stop_tracing() if trace is not None else None
    ids = list(source.published)[first:]
    board.follow(None, ids, settle_s)
    cpu = load.stop()
    seconds = time.monotonic() - t0
    rss = cp.ps.memory_info().rss
    wait_for(lambda: all(i in receipts.at for i in ids), settle_s)
    return Phase(n, latency(ids, source.published, board, receipts.at), cpu, seconds, rss,
                 (board.longtasks[0] - tasks[0], board.longtasks[1] - tasks[1]), traced)


def trace_label(e: dict[str, Any]) -> str:
    data = e.get("args", {}).get("data") or {}
    if e["name"] == "FunctionCall":
        where = str(data.get("url", "")).rsplit("/", 1)[-1]
        return f"JS {data.get('functionName') or '(anonymous)'} {where}:{int(data.get('lineNumber', 0)) + 1}"
    if e["name"] == "EventDispatch":
        return f"event {data.get('type', '?')}"
    return str(e["name"])


def print_trace(raw: bytes, top: int = 14) -> None:
    """Where the page's main thread spent its time (a Chromium trace, devtools.timeline): self time per kind of
    work (a JS callback by function and line, style, layout, paint, GC...), nested events taken off their parent."""
    events = json.loads(raw)["traceEvents"]
    mains = {(e["pid"], e["tid"]) for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"
             and e.get("args", {}).get("name") == "CrRendererMain"}
    busiest: dict[tuple[int, int], float] = {}
    for e in events:
        if e.get("ph") == "X" and (e["pid"], e["tid"]) in mains:
            busiest[(e["pid"], e["tid"])] = busiest.get((e["pid"], e["tid"]), 0.0) + e.get("dur", 0)
    thread = max(busiest, key=lambda k: busiest[k])  # the board's renderer
    spans = sorted(((e["ts"], e["ts"] + e.get("dur", 0), trace_label(e)) for e in events
                    if e.get("ph") == "X" and (e["pid"], e["tid"]) == thread), key=lambda sp: (sp[0], -sp[1]))
    own: dict[str, float] = {}
    stack: list[tuple[float, str]] = []
    for start, end, label in spans:
        while stack and stack[-1][0] <= start:
            stack.pop()
        if stack:
            own[stack[-1][1]] -= end - start
        own[label] = own.get(label, 0.0) + end - start
        stack.append((end, label))
    wall = (spans[-1][1] - spans[0][0]) / 1000 if spans else 0.0
    busy = sum(own.values()) / 1000
    print(f"  the page's main thread over the last {wall / 1000:.0f} s of publishing (Chromium trace): busy "
          f"{busy:,.0f} ms ({100 * busy / wall:.0f} %), self time by kind of work:")
    for label, us in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {label[:50]:<50} {us / 1000:>9,.0f} ms {100 * us / 1000 / wall:5.1f} %")


def print_phase(title: str, ph: Phase) -> None:
    lat = ph.lat
    print(f"\n{title}")
    print(row("published -> drawn on the page (ms)", lat.drawn))
    print(f"  {'never drawn':<44} {lat.held + lat.missing} of {ph.n}: {lat.held} held back by the board (beyond "
          f"max_alerts_shown, counted), {lat.missing} lost")
    print(row("published -> receipt back (stored)", lat.receipt))
    if len(lat.received) > 1:
        span = (max(lat.received) - min(lat.received)) / 1000
        print(f"  {'the command post took them in at':<44} {len(lat.received) / span:,.0f} alerts/s "
              f"(first to last received, {span:.1f} s)")
    print("  where the time goes:")
    print(row("  broker -> command post received", lat.to_cp))
    print(row("  stored (FULL sync), receipt, event built", lat.stored))
    print(row("  event -> on the page (SSE)", lat.to_page))
    print(row("  on the page -> drawn (next frame)", lat.drawing))
    print(f"  CPU from the first publish until all drawn ({ph.seconds:.1f} s), % of one core "
          f"({os.cpu_count()} cores here):")
    for name, value in ph.cpu.items():
        print(f"    {name:<42} {value:6.1f} %")
    print(f"  command post RSS {ph.rss / 2**20:.0f} MiB; the page's long tasks (> 50 ms): {ph.longtasks[0]}, "
          f"{ph.longtasks[1]:,.0f} ms in all")
    if ph.trace is not None:
        print_trace(ph.trace)


def print_page(board: Board, source: AlertSource, sizes: list[tuple[str, dict[str, float]]]) -> None:
    """The page's size at each point, then how it responds now: new alerts, a full re-render, a reload."""
    print("\nthe page (the board's max_alerts_shown is 500, the default):")
    print(f"  {'':<34}" + "".join(f"{name:>20}" for name, _ in sizes))
    for key, label, unit in (("heap", "JS heap used after GC (MiB)", 2**20), ("elements", "DOM elements", 1),
                             ("nodes", "DOM nodes (CDP)", 1), ("rows", "rows on the board", 1),
                             ("kept", "alerts kept by the board", 1),
                             ("hidden", "open ones held back (counted)", 1), ("boxes", "box rows", 1)):
        print(f"  {label:<34}" + "".join(f"{size[key] / unit:>20,.1f}" if unit > 1 else f"{size[key]:>20,.0f}"
                                         for _, size in sizes))
    after = []
    for _ in range(5):
        alert_id = source.publish_one(critical=True)
        board.follow(None, [alert_id], 30)
        after.append(f"{board.shown[alert_id] - source.published[alert_id]:.0f}" if alert_id in board.shown
                     else "never")
    print(f"  then a new critical alert, published -> drawn, 5 in turn: {', '.join(after)} ms")
    print(f"  full re-render of the board (every row, with layout): "
          f"{', '.join(f'{x:,.0f}' for x in board.timed(RERENDER))} ms")
    print(f"  reload of its state (/api/state, then render): {', '.join(f'{x:,.0f}' for x in board.timed(RELOAD))} ms")
    print(f"  an evaluate round trip (waits for the page's main thread): {board.ping_ms():.1f} ms")
    end, rtt = board.clock_offset_ms()
    print(f"  page clock - this clock: {board.offset_ms:+.1f} ms at the start (+-{board.offset_rtt_ms / 2:.1f}; taken "
          f"off the page's times), {end:+.1f} ms at the end (+-{rtt / 2:.1f})")


def alert_times(source: AlertSource, board: Board, receipts: Receipts) -> list[dict[str, Any]]:
    """Each alert's times, epoch ms: published, received and sent on by the command post, on the page, drawn,
    receipt back (null where it never happened)."""
    out = []
    for alert_id, published in source.published.items():
        received, sent, on_page = board.events.get(alert_id, (None, None, None))
        out.append({"alert_id": alert_id, "published": published, "received": received, "sent": sent,
                    "on_page": on_page, "drawn": board.shown.get(alert_id), "receipt": receipts.at.get(alert_id)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boxes", type=int, default=200, help="simulated boxes (default 200)")
    ap.add_argument("--rate", type=float, default=20.0, help="alerts per second in the window (default 20)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the window (default 60)")
    ap.add_argument("--total", type=int, default=10_000, help="alerts in all after the flood (default 10000)")
    ap.add_argument("--flood-rate", type=float, default=200.0, help="alerts per second in the flood (default 200)")
    ap.add_argument("--settle", type=float, default=60.0, help="most seconds to wait for the last alert drawn")
    ap.add_argument("--json", type=Path, help="write every alert's times (epoch ms) here")
    ap.add_argument("--trace", type=float, default=0.0, metavar="S",
                    help="trace the page over the last S seconds of the window and of the flood (default off: it "
                    "adds load)")
    args = ap.parse_args()
    started = time.monotonic()
    print(cpu_line())
    print(f"broker: {mosquitto_version()}, loopback, no TLS; {time.strftime('%Y-%m-%d')}; load average "
          f"{os.getloadavg()[0]:.1f}")
    boxes = make_boxes(args.boxes)
    broker = Mosquitto().start()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        cp = CommandPost(Path(tmp), broker.port)
        fleet = Fleet(broker.port, boxes)
        receipts = Receipts(broker.port)
        source = AlertSource(broker.port, boxes)
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                     args=["--no-sandbox", "--enable-precise-memory-info"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.add_init_script(TAP)
            board = Board(page, cp.url, args.boxes)
            print(f"browser: chromium {browser.version} (headless), signed in as a guard; command post at {cp.url} "
                  f"(pid {cp.proc.pid})", flush=True)
            print(f"{args.boxes} boxes: retained status online, health every {HEALTH_EVERY_S:g} s each (staggered)")
            load = Load({"command post": [cp.ps], "chromium (all processes)": chromium_processes(),
                         "mosquitto": [psutil.Process(broker.proc.pid)] if broker.proc else [],
                         "this script (publishers, Playwright)": [psutil.Process()]})
            n = int(args.rate * args.seconds)
            window = run_phase(board, source, receipts, load, cp, n, args.rate, args.settle,
                               browser if args.trace > 0 else None, args.trace)
            print_phase(f"window: {n} alerts at {args.rate:g}/s over {args.seconds:g} s, the page open, "
                        f"{args.boxes} boxes' health arriving:", window)
            p99 = pct(window.lat.drawn, 0.99)
            met = p99 <= 1000 and window.lat.missing == 0
            print(f"  goal p99 published -> drawn <= 1000 ms: {'MET' if met else 'MISSED'} (p99 {p99:.0f} ms, "
                  f"{window.lat.missing} lost, {window.lat.held} held back by the board)")
            sizes = [(f"after {source.count:,}", board.size())]
            n = max(0, args.total - source.count)
            flood = run_phase(board, source, receipts, load, cp, n, args.flood_rate, args.settle,
                              browser if args.trace > 0 else None, args.trace)
            print_phase(f"flood: {n} more at {args.flood_rate:g}/s ({source.count:,} in all):", flood)
            print(f"  stored by the command post: {cp.stored():,} alerts; receipts back: {len(receipts.at):,}; "
                  f"health messages sent: {fleet.sent:,}")
            sizes.append((f"after {source.count:,}", board.size()))
            print_page(board, source, sizes)
            if args.json:
                args.json.write_text(json.dumps(alert_times(source, board, receipts), indent=0))
        finally:
            browser.close()
            source.close()
            receipts.close()
            fleet.close()
            code = cp.stop()
            broker.remove()
    print(f"\ncommand post stopped on SIGTERM (exit status {code}); one run, {time.monotonic() - started:.0f} s; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
