"""Issue 12's fuzz acceptance: a running ``edge-agent run`` takes over 100,000 hostile lines on two UDP feeds
and a tcp-listen feed, and hostile acks over MQTT, and afterwards still raises a real alarm within 2 s, says
it is healthy, has counted every line, kept a bounded reject log, and leaves a database every review verb
reads."""

from __future__ import annotations

import json
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.contract.ids import iso_ms
from edge_agent.demo.script import pmdet
from tests.agents.hostile_input import HostileLines, datagrams, hostile_acks, lines_in, stream
from tests.agents.udp_pacer import UdpPacer
from tests.brokers import ROOT, Collector, Mosquitto, free_port, wait_port
from tests.conftest import run_cli

pytestmark = pytest.mark.integration
EXE = str(Path(sys.executable).with_name("edge-agent"))
SEED = 20_261_123
MAX_REJECTS = 5_000
UDP_LINES = 30_000  # per UDP feed (a little less: datagrams are whole)
TCP_LINES = (25_000, 24_999)  # per connection to the tcp-listen feed; the second ends without a newline
ROUND_LINES = 8_000  # lines per UDP feed before the agent's counters must catch up
ROOT_TOPIC = "border/t/box1"


def _config(tmp_path: Path, broker: int, gate: int, tcp: int, radio: int) -> Path:
    cfg = {
        "site": "t", "box": "box1", "state_dir": str(tmp_path / "state"),
        "zones": [{"id": "gate", "name": "Gate", "space": "geo",
                   "polygon": [[46.5500, 15.6500], [46.5500, 15.6502], [46.5502, 15.6502], [46.5502, 15.6500]]}],
        "fixed_sensors": [  # md-tcp and rx-gate sit kilometres away: only rule membership brings them in
            {"id": "md-gate", "kind": "metal", "latlon": [46.5501, 15.6501], "url": f"udp://127.0.0.1:{gate}",
             "hb_timeout_s": 3600},
            {"id": "md-tcp", "kind": "metal", "latlon": [46.60, 15.60], "url": f"tcp-listen://127.0.0.1:{tcp}",
             "hb_timeout_s": 3600},
            {"id": "rx-gate", "kind": "radio", "latlon": [46.60, 15.70], "url": f"udp://127.0.0.1:{radio}"}],
        "fusion": [{"id": "gate-watch", "place": "gate", "metal": ["md-gate"], "radio": ["rx-gate"],
                    "severity": "high"}],
        "mqtt": {"host": "127.0.0.1", "port": broker, "health_interval_s": 1, "keepalive_s": 5},
        "incident_log": {"max_rejects": MAX_REJECTS},
    }
    path = tmp_path / "box.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _counted(seen: Collector, feed: str) -> int:
    """events + rejected of one feed in the newest health message."""
    health = seen.json("/health")
    if not health:
        return -1
    s = health[-1]["sensors"].get(feed, {})
    return int(s.get("events", 0)) + int(s.get("rejected", 0))


def _send_tcp(port: int, data: bytes, rng: random.Random) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        at = 0
        while at < len(data):  # uneven writes: lines straddle the agent's reads
            step = rng.randint(1, 96 * 1024)
            conn.sendall(data[at:at + step])
            at += step


def _rounds(items: list[bytes]) -> list[list[bytes]]:
    out: list[list[bytes]] = [[]]
    n = 0
    for d in items:
        if n >= ROUND_LINES:
            out.append([])
            n = 0
        out[-1].append(d)
        n += lines_in(d)
    return out


def _publish_all(port: int, topic: str, payloads: list[bytes]) -> None:
    cp = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hostile-command-post")
    cp.connect("127.0.0.1", port)
    cp.loop_start()
    try:
        for p in payloads:
            cp.publish(topic, p, qos=1).wait_for_publish(10)
    finally:
        cp.disconnect()
        cp.loop_stop()


def _incident_of(seen: Collector, alert_id: str) -> str:
    return next(a["incident_id"] for a in seen.json("/alerts") if a["alert_id"] == alert_id)


def _fresh_health(seen: Collector, after: int) -> dict | None:
    """A health message that arrived after the first ``after`` ones, stamped within 5 s of now."""
    health = seen.json("/health")[after:]
    for h in reversed(health):
        if abs(datetime.fromisoformat(h["ts"]).timestamp() - time.time()) < 5.0:
            return h
    return None


def test_a_fuzzed_agent_counts_every_line_alarms_in_time_and_leaves_a_readable_log(tmp_path: Path) -> None:
    broker = Mosquitto().start()
    gate, tcp, radio = free_port(), free_port(), free_port()
    config = _config(tmp_path, broker.port, gate, tcp, radio)
    seen = Collector(broker.port, [f"{ROOT_TOPIC}/alerts", f"{ROOT_TOPIC}/health"])
    log = (tmp_path / "agent.log").open("w")  # a file, not a pipe: a full pipe would stall the agent's logging
    proc = subprocess.Popen([EXE, "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT)
    now = time.time()
    pacers = {"md-gate": UdpPacer(gate), "rx-gate": UdpPacer(radio)}
    try:
        assert seen.wait(lambda: _counted(seen, "md-gate") == 0 and _counted(seen, "rx-gate") == 0, 60), \
            (tmp_path / "agent.log").read_text()[-3000:]
        assert all(p.wait_bound() for p in pacers.values())
        wait_port(tcp)

        # the tcp-listen feed takes its lines (64 KiB ones among them) on its own thread: TCP paces itself
        tcp_rng = random.Random(SEED + 2)
        tcp_lines = HostileLines("metal", "md-tcp", ("md-gate", "rx-gate"), now, tcp_rng, heavy=2.0)
        tcp_data = [stream(tcp_lines, n, tail=i == 1) for i, n in enumerate(TCP_LINES)]
        tcp_sent = sum(lines_in(d) for d in tcp_data)
        tcp_errors: list[BaseException] = []

        def tcp_sender() -> None:
            try:
                for d in tcp_data:
                    _send_tcp(tcp, d, tcp_rng)
            except BaseException as exc:  # reported by the main thread
                tcp_errors.append(exc)

        sender = threading.Thread(target=tcp_sender, daemon=True)
        sender.start()

        # the UDP feeds: many lines per datagram, some single huge datagrams, in rounds the agent catches up with
        udp = {
            "md-gate": _rounds(list(datagrams(HostileLines("metal", "md-gate", ("md-tcp", "rx-gate"), now,
                                                           random.Random(SEED), heavy=0.3), UDP_LINES, 16_000))),
            "rx-gate": _rounds(list(datagrams(HostileLines("radio", "rx-gate", ("md-gate", "md-tcp"), now,
                                                           random.Random(SEED + 1), heavy=0.3), UDP_LINES, 16_000))),
        }
        t_fuzz = time.monotonic()
        for i in range(max(len(r) for r in udp.values())):
            for feed, rounds in udp.items():
                for d in rounds[i] if i < len(rounds) else []:
                    pacers[feed].send(d)
            assert seen.wait(lambda: all(_counted(seen, f) == p.lines for f, p in pacers.items()), 60), (
                {f: (_counted(seen, f), p.lines, p.dropped()) for f, p in pacers.items()}, "counted, sent, dropped")
        sender.join(120)
        assert not sender.is_alive() and not tcp_errors, tcp_errors
        assert seen.wait(lambda: _counted(seen, "md-tcp") == tcp_sent, 60), (_counted(seen, "md-tcp"), tcp_sent)
        sent = {"md-gate": pacers["md-gate"].lines, "rx-gate": pacers["rx-gate"].lines, "md-tcp": tcp_sent}
        assert sum(sent.values()) >= 100_000, sent
        fuzz_s = time.monotonic() - t_fuzz
        assert {f: p.dropped() for f, p in pacers.items()} == {"md-gate": 0, "rx-gate": 0}

        # a tampered detector gives an alert the hostile acks can name (an accepted odd ack then sits in the log)
        _send_tcp(tcp, pmdet("md-tcp", 999_999, "TAMPER", 100, 1).encode() + b"\n", tcp_rng)
        sent["md-tcp"] += 1
        assert seen.wait(lambda: any(a["kind"] == "sensor_fault" for a in seen.json("/alerts")), 10)
        decoy = next(a for a in seen.json("/alerts") if a["kind"] == "sensor_fault")["alert_id"]
        _publish_all(broker.port, f"{ROOT_TOPIC}/acks", hostile_acks(decoy, time.time()))

        # a real alarm at the gate, corroborated by the gate's receiver, becomes an alert within 2 s
        assert proc.poll() is None, (tmp_path / "agent.log").read_text()[-3000:]
        t0 = time.monotonic()
        pacers["md-gate"].send(pmdet("md-gate", 1_000_000, "ALARM", 90, 1).encode() + b"\n")
        pacers["rx-gate"].send(json.dumps({"sensor": "rx-gate", "ts": iso_ms(time.time()), "kind": "rf_detect",
                                           "freq_hz": 446_006_250, "rssi_db": -61.5}).encode() + b"\n")
        sent["md-gate"] += 1
        sent["rx-gate"] += 1

        def real() -> list[dict]:  # nothing the fuzzing sent belongs to the gate's rule
            return [a for a in seen.json("/alerts") if (a.get("zone") or {}).get("id") == "gate"]

        seen.wait(lambda: bool(real()), 2.0)
        took = time.monotonic() - t0
        assert real() and took <= 2.0, f"the real alarm's alert took {took:.2f} s"
        # the feeds run on threads of their own, so either line may open the incident ('new') and the other
        # join it ('updated', fused); the more severe state may also go out first
        assert seen.wait(lambda: {"new", "updated"} <= {a["state"] for a in real()}, 5), real()
        alert = real()[0]
        assert {a["alert_id"] for a in real()} == {alert["alert_id"]}, real()
        assert any({e["sensor"] for e in a["evidence"]} >= {"md-gate", "rx-gate"} for a in real()), real()

        # acks still work after the hostile ones (they are handled in order, so those are behind us)
        _publish_all(broker.port, f"{ROOT_TOPIC}/acks", [json.dumps(
            {"alert_id": alert["alert_id"], "by": "sgt-novak", "ts": iso_ms(time.time()), "note": "checked"}).encode()])
        assert seen.wait(lambda: any(a["alert_id"] == alert["alert_id"] and a["state"] == "acknowledged"
                                     for a in seen.json("/alerts")), 10)

        # health is current, every stage ok, and every line sent was counted once: an event or a reject
        before = len(seen.json("/health"))
        assert seen.wait(lambda: _fresh_health(seen, before) is not None, 10), seen.json("/health")[-1:]
        health = _fresh_health(seen, before)
        assert health is not None and set(health["stages"].values()) == {"ok"}, health["stages"]
        assert seen.wait(lambda: {f: _counted(seen, f) for f in sent} == sent, 10), \
            ({f: _counted(seen, f) for f in sent}, sent)
        assert proc.poll() is None, "the agent died"
        split = {f: (s["events"], s["rejected"]) for f, s in seen.json("/health")[-1]["sensors"].items()}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
            seen.close()
            broker.remove()
    agent_log = (tmp_path / "agent.log").read_text()
    assert rc == 0, agent_log[-3000:]
    assert "Traceback" not in agent_log, agent_log[agent_log.index("Traceback") - 500:][:3000]
    print(f"fuzz: {sent} lines in {fuzz_s:.1f} s (events, rejected: {split}); real alarm to alert {took * 1000:.0f} ms")

    db = tmp_path / "state" / "incidents.db"
    with sqlite3.connect(db) as conn:
        kept = conn.execute("SELECT COUNT(*) FROM rejected_input").fetchone()[0]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert 0 < kept <= MAX_REJECTS

    # every review verb reads what the fuzzing left behind
    verbs = [("list", "-c", str(config)), ("list", "--json", "--db", str(db)),
             ("show", alert["incident_id"], "--db", str(db)), ("show", _incident_of(seen, decoy), "--db", str(db)),
             *[("export", "--format", f, "--db", str(db)) for f in ("csv", "geojson", "html")],
             ("stats", "--db", str(db)), ("stats", "--json", "--db", str(db)), ("verify", "--db", str(db))]
    for verb in verbs:
        out = run_cli("incidents", *verb, timeout=120)
        assert out.returncode == 0 and "Traceback" not in out.stderr, (verb, out.stdout[-2000:], out.stderr[-3000:])
    listed = json.loads(run_cli("incidents", "list", "--json", "--db", str(db)).stdout)
    assert alert["incident_id"] in json.dumps(listed)
