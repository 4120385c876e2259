"""``edge-agent run`` as a real process against a real Mosquitto: SIGTERM flushes, says offline and exits in
time; SIGHUP reloads rules without dropping sensors; the watchdog stops when a stage dies; the demo."""

from __future__ import annotations

import contextlib
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.config.agent import parse_config
from edge_agent.demo.script import pmdet
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.sdnotify import Notifier
from tests.brokers import ROOT, Collector, Mosquitto, free_port, wait_for

pytestmark = pytest.mark.integration
EXE = str(Path(sys.executable).with_name("edge-agent"))


@pytest.fixture()
def broker():  # type: ignore[no-untyped-def]
    b = Mosquitto().start()
    yield b
    b.remove()


def _config(tmp_path: Path, port: int, udp: int, model: Path | None, fusion: bool = True) -> dict:
    cfg: dict = {
        "site": "t", "box": "box1", "state_dir": str(tmp_path / "state"),
        "zones": [{"id": "gate", "name": "Gate", "space": "geo",
                   "polygon": [[46.5500, 15.6500], [46.5500, 15.6502], [46.5502, 15.6502], [46.5502, 15.6500]]}],
        "fixed_sensors": [{"id": "md-1", "kind": "metal", "latlon": [46.5501, 15.6501],
                           "url": f"udp://127.0.0.1:{udp}", "hb_timeout_s": 60}],
        "fusion": [{"id": "gate-metal", "place": "gate", "metal": ["md-1"], "severity": "high"}] if fusion else [],
        "mqtt": {"host": "127.0.0.1", "port": port, "health_interval_s": 1, "keepalive_s": 5},
    }
    if model is not None:
        cfg["detector"] = {"model": str(model), "imgsz": 320}
        cfg["cameras"] = [{"id": "cam", "source": "sim://walkers?realtime=1&loop=1", "pixel_format": "y16",
                           "calibration": {"points": [
                               {"pixel": [40, 469], "latlon": [46.5501078, 15.6499478]},
                               {"pixel": [600, 469], "latlon": [46.5501078, 15.6500522]},
                               {"pixel": [76, 254], "latlon": [46.5502875, 15.6498824]},
                               {"pixel": [564, 254], "latlon": [46.5502875, 15.6501176]},
                               {"pixel": [320, 333], "latlon": [46.5501797, 15.6500000]}]}}]
    return cfg


def _write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "box.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _send(udp: int, *lines: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for line in lines:
            s.sendto(line.encode() + b"\n", ("127.0.0.1", udp))


def _said(proc: subprocess.Popen[str], seen: Collector) -> str:
    """What the agent logged and last reported, for a failed assertion (the agent is stopped)."""
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    health = seen.json("/health")
    return f"agent's log:\n{err[-3000:]}\nlast health: {health[-1] if health else None}"


def _states(c: Collector) -> list[str]:
    return [p["state"] for p in c.json("/status")]


class Lines:
    """What a subprocess writes to one of its pipes, line by line, read on a thread as it comes."""

    def __init__(self, pipe: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: Any) -> None:
        for line in pipe:
            self.lines.append(line.rstrip("\n"))

    def has(self, text: str) -> bool:
        return any(text in ln for ln in list(self.lines))

    def text(self, timeout: float = 5.0) -> str:
        self._thread.join(timeout)
        return "\n".join(self.lines)


def test_run_stops_on_sigterm_within_5s_offline_with_a_clean_database(broker: Mosquitto, tmp_path: Path,
                                                                         default_ov320: Path) -> None:
    udp = free_port()
    path = _write(tmp_path, _config(tmp_path, broker.port, udp, default_ov320))
    seen = Collector(broker.port, ["border/t/box1/status", "border/t/box1/alerts", "border/t/box1/health"])
    proc = subprocess.Popen([EXE, "run", "--config", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        assert seen.wait(lambda: _states(seen)[-1:] == ["online"], 60), proc.stderr.read() if proc.poll() else ""
        _send(udp, pmdet("md-1", 1, "HB", 0, 1), pmdet("md-1", 2, "ALARM", 80, 1))
        assert seen.wait(lambda: any(p["kind"] == "metal" for p in seen.json("/alerts")), 30), _said(proc, seen)
        assert seen.wait(lambda: any(p["sensors"].get("cam", {}).get("rate_hz", 0) > 0
                                     for p in seen.json("/health")), 30)
        health = seen.json("/health")[-1]
        assert health["outbox"]["backlog"] == 0 and "md-1" in health["sensors"]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(10)
        took = time.monotonic() - t0
        assert rc == 0 and took < 5.0, f"exit {rc} after {took:.1f} s"
        assert seen.wait(lambda: _states(seen)[-1:] == ["offline"], 5)
    finally:
        if proc.poll() is None:
            proc.kill()
        seen.close()
    db = tmp_path / "state" / "incidents.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM outbox WHERE delivered IS NULL").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM incidents WHERE kind = 'metal'").fetchone()[0] == 1
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0  # checkpointed on the way out
    out = subprocess.run([EXE, "incidents", "verify", "--db", str(db)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_sighup_reloads_rules_keeps_sensors_and_sigkill_leaves_the_will(broker: Mosquitto, tmp_path: Path) -> None:
    udp = free_port()
    cfg = _config(tmp_path, broker.port, udp, None, fusion=False)
    path = _write(tmp_path, cfg)
    seen = Collector(broker.port, ["border/t/box1/status", "border/t/box1/alerts", "border/t/box1/health"])
    proc = subprocess.Popen([EXE, "run", "--config", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    log = Lines(proc.stderr)
    try:
        assert seen.wait(lambda: _states(seen)[-1:] == ["online"], 30)
        _send(udp, pmdet("md-1", 1, "ALARM", 80, 1))  # no rule puts md-1 at the gate yet: no alert
        assert seen.wait(lambda: any(h["sensors"]["md-1"]["events"] == 1 for h in seen.json("/health")), 15)
        cfg["fusion"] = [{"id": "gate-metal", "place": "gate", "metal": ["md-1"], "severity": "high"}]
        path.write_text(yaml.safe_dump(cfg))
        proc.send_signal(signal.SIGHUP)
        # the reload is queued behind the first alarm: once it is done, that alarm was handled under the old rules
        assert wait_for(lambda: log.has("reloaded zones, lines and fusion rules"), 15), log.text(0)
        _send(udp, pmdet("md-1", 2, "ALARM", 85, 1))  # the same UDP feed, never reopened
        assert seen.wait(lambda: any(p["kind"] == "metal" and p["zone"]["id"] == "gate"
                                     for p in seen.json("/alerts")), 15)
        levels = {e.get("level") for p in seen.json("/alerts") for e in p["evidence"]}
        assert levels == {85}, levels  # nothing from the alarm before the reload
        assert _states(seen) == ["online"]  # never went offline
        proc.send_signal(signal.SIGKILL)  # power cut: the broker publishes the last will
        proc.wait(10)
        assert seen.wait(lambda: _states(seen)[-1:] == ["offline"], 15)
    finally:
        if proc.poll() is None:
            proc.kill()
        seen.close()
    assert "reloaded zones, lines and fusion rules" in log.text()
    with sqlite3.connect(tmp_path / "state" / "incidents.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_watchdog_is_fed_only_while_every_stage_is_alive(tmp_path: Path) -> None:
    """A message the core cannot handle is kept as rejected input and the stage goes on; a core stage that hangs
    makes health say so and stops the watchdog."""
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(0.2)
    udp = free_port()
    cfg = _config(tmp_path, 1, udp, None)
    del cfg["mqtt"]
    agent = Agent(parse_config(yaml.safe_dump(cfg)),
                  notifier=Notifier({"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "600000"}))
    agent.stale_s["core"] = 1.5  # a hang shows in seconds, not the production 10 s
    got: list[tuple[float, str]] = []
    agent.start()
    runner = threading.Thread(target=agent.run_forever, daemon=True)
    runner.start()
    release = threading.Event()

    def drain_until(predicate: object, timeout: float = 20.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                got.append((time.monotonic(), listener.recv(4096).decode()))
            if predicate():  # type: ignore[operator]
                return True
        return False

    try:
        assert drain_until(lambda: sum("WATCHDOG=1" in m for _, m in got) >= 5)
        assert got[0][1].startswith("READY=1")

        def broken(ev: object) -> None:
            raise RuntimeError("fusion broke")

        agent.fusion.on_metal = broken  # type: ignore[method-assign]
        _send(udp, pmdet("md-1", 1, "ALARM", 70, 1))  # real input reaches the core stage, which raises on it
        assert drain_until(lambda: agent.summary.core_errors == 1)
        survived_at = time.monotonic()
        assert drain_until(lambda: sum("WATCHDOG=1" in m for t, m in got if t > survived_at) >= 3)  # still fed
        assert agent.stages["core"].error == ""

        def hangs(ev: object) -> None:
            release.wait(60)

        agent.fusion.on_metal = hangs  # type: ignore[method-assign]
        _send(udp, pmdet("md-1", 2, "ALARM", 70, 1))
        assert drain_until(lambda: any("STATUS=stage down: core" in m for _, m in got))
        hung_at = time.monotonic()
        assert agent.health()["stages"]["core"] == "stalled" and agent.health()["state"] == "degraded"
        drain_until(lambda: False, 1.0)
        assert not [m for t, m in got if t > hung_at + 0.3 and "WATCHDOG=1" in m]
    finally:
        release.set()
        agent.stop_event.set()
        runner.join(5)
        agent.stop()
        listener.close()
    with sqlite3.connect(tmp_path / "state" / "incidents.db") as conn:
        rows = conn.execute("SELECT sensor, reason FROM rejected_input").fetchall()
    assert ("md-1", "core stage error: RuntimeError: fusion broke") in rows, rows


def test_demo_prints_a_fused_incident_and_ends_cleanly(tmp_path: Path, default_ov640: Path) -> None:
    t0 = time.monotonic()
    out = subprocess.run([EXE, "demo", "-c", str(ROOT / "configs" / "demo.yaml"), "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=180, cwd=tmp_path)
    took = time.monotonic() - t0
    assert out.returncode == 0, out.stderr[-3000:]
    assert took < 180
    lines = out.stdout.splitlines()
    # what the README's demo section promises: the box online, the strip's intrusion fused step by step up to
    # three sensor kinds, the fence alarm with nobody on camera, the escalation, and the summary
    assert "* box demo-site/demo-box is online (version 0.1.0)" in lines, out.stdout
    assert any(" fused " in ln and ("NEW" in ln or "UPD" in ln) for ln in lines), out.stdout
    assert any(" critical " in ln and " fused " in ln and "metal+radio+thermal" in ln and "3 sensor kinds agree" in ln
               for ln in lines), out.stdout
    assert any(" metal " in ln and "metal alarm at md-fence" in ln and "Border fence" in ln for ln in lines)
    assert any(ln.split()[1:2] == ["ESC!"] for ln in lines if ln[:2].isdigit()), out.stdout
    assert "== demo summary ==" in out.stdout and "latency, event to command post" in out.stdout
    assert "rejected input lines: 1 (kept with their reasons in the incident log)" in lines
    db = Path(next(ln for ln in lines if ln.startswith("incident log: ")).split()[2])
    assert db == tmp_path / "run" / "incidents.db"  # nothing written into the checkout
    review = next(ln for ln in lines if ln.startswith("review it: ")).removeprefix("review it: ").split()
    assert review[:3] == ["edge-agent", "incidents", "list"]
    listed = subprocess.run([EXE, *review[1:]], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "fused" in listed.stdout, listed.stdout + listed.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM incidents WHERE kind = 'fused'").fetchone()[0] >= 1
        reasons = [r for (r,) in conn.execute("SELECT reason FROM rejected_input")]
        snap = conn.execute("SELECT snapshot FROM incidents WHERE snapshot IS NOT NULL").fetchone()
    assert len(reasons) == 1 and "bad checksum" in reasons[0], reasons  # the scripted malformed sentence
    assert snap is not None and (db.parent / snap[0]).read_bytes()[:2] == b"\xff\xd8"


def test_watch_shows_many_boxes_once_each_and_ack_reaches_the_incident(broker: Mosquitto, tmp_path: Path) -> None:
    procs, udps = [], {}
    for box in ("box1", "box2"):
        udps[box] = free_port()
        cfg = _config(tmp_path / box, broker.port, udps[box], None)
        cfg["box"] = box
        (tmp_path / box).mkdir()
        procs.append(subprocess.Popen([EXE, "run", "--config", str(_write(tmp_path / box, cfg))],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT))
    cache = tmp_path / "watch.db"
    watch = subprocess.Popen([EXE, "watch", "--broker", f"127.0.0.1:{broker.port}", "--cache", str(cache),
                              "--duration", "25"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = Collector(broker.port, ["border/t/+/alerts", "border/t/+/status"], client_id="test-side")
    shown = Lines(watch.stdout)
    try:
        assert seen.connected.wait(10)
        # both boxes up (their retained status) and the console subscribed (it has shown them)
        assert wait_for(lambda: shown.has("* box t/box1 is online") and shown.has("* box t/box2 is online"), 60)
        for udp in udps.values():
            _send(udp, pmdet("md-1", 1, "ALARM", 90, 1))
        assert seen.wait(lambda: {m.topic.split("/")[2] for m in seen.on("/alerts")} == {"box1", "box2"}, 20)
        first = seen.on("/alerts")[0]
        # a redelivery (at least once): the console shows it once
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        dup = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="redeliver")
        dup.connect("127.0.0.1", broker.port)
        dup.loop_start()
        dup.publish(first.topic, first.payload, qos=1).wait_for_publish(5)
        dup.loop_stop()
        alert = seen.json("/alerts")[0]
        site_box = first.topic.split("/")[2]
        assert wait_for(lambda: shown.has(alert["alert_id"]), 10)  # in the console's cache, where ack looks
        ack = subprocess.run([EXE, "ack", alert["alert_id"], "--by", "sgt-novak", "--note", "patrol 3 sent",
                              "--broker", f"127.0.0.1:{broker.port}", "--cache", str(cache)],
                             capture_output=True, text=True, timeout=30)
        assert ack.returncode == 0, ack.stdout + ack.stderr
        assert f"box t/{site_box} confirmed" in ack.stdout
        assert seen.wait(lambda: any(p["alert_id"] == alert["alert_id"] and p["state"] == "acknowledged"
                                     for p in seen.json("/alerts")), 10)
        watch.wait(40)
        out = shown.text()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(10)
        if watch.poll() is None:
            watch.kill()
        seen.close()
    lines = out.splitlines()
    assert "* box t/box1 is online (version 0.1.0)" in lines and "* box t/box2 is online (version 0.1.0)" in lines
    news = [ln for ln in lines if " NEW " in ln]
    assert len(news) == 2 and {("t/box1" in ln) for ln in news} == {True, False}  # one per box, no duplicate
    assert sum(alert["alert_id"] in ln and " NEW " in ln for ln in lines) == 1
    assert any(alert["alert_id"] in ln and "ACK" in ln for ln in lines)
    db = tmp_path / site_box / "state" / "incidents.db"
    with sqlite3.connect(db) as conn:
        by, note = conn.execute("SELECT acked_by, ack_note FROM incidents WHERE alert_id = ?",
                                [alert["alert_id"]]).fetchone()
    assert (by, note) == ("sgt-novak", "patrol 3 sent")


def test_bad_frames_and_bad_lines_end_up_in_the_incident_log(tmp_path: Path, default_ov320: Path) -> None:
    import cv2
    import numpy as np

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        cv2.imwrite(str(frames / f"f{i}0.png"), rng.integers(20, 60, (240, 320), dtype=np.uint8))
    (frames / "f15.png").write_bytes(b"\x89PNG broken in transfer")  # a corrupt file mid-recording
    udp = free_port()
    cfg = _config(tmp_path, 1, udp, None)
    del cfg["mqtt"]
    cfg["detector"] = {"model": str(default_ov320), "imgsz": 320}
    cfg["cameras"] = [{"id": "cam-rec", "source": str(frames), "pixel_format": "gray8"}]
    agent = Agent(parse_config(yaml.safe_dump(cfg)))
    agent.start()
    try:
        assert agent.feeds["md-1"].reader.wait_ready(5)  # bound before anything is sent
        _send(udp, "$PMDET,md-1,1,ALARM,50,1*00")  # wrong checksum
        agent.run_forever(20, until=lambda: agent.stages["detect:cam-rec"].finished)
    finally:
        agent.stop()  # the core's last housekeeping turn writes what was rejected meanwhile
    with sqlite3.connect(tmp_path / "state" / "incidents.db") as conn:
        rows = conn.execute("SELECT sensor, reason FROM rejected_input ORDER BY id").fetchall()
    assert [s for s, _ in rows if s == "cam-rec"] == ["cam-rec"], rows  # the corrupt file, and only it
    assert any(s == "md-1" and "checksum" in r for s, r in rows), rows
    assert agent.summary.frames >= 4


def test_spoofed_sensors_raise_nothing_and_a_sensor_cannot_flap(tmp_path: Path) -> None:
    """Lines for sensors that are not configured on a feed are rejected input, not ghost faults; a detector that
    alternates TAMPER and heartbeats is one fault episode within its hold time, not an alert storm."""
    udp, udp2 = free_port(), free_port()
    cfg = _config(tmp_path, 1, udp, None)
    del cfg["mqtt"]
    cfg["fixed_sensors"].append({"id": "md-2", "kind": "metal", "latlon": [46.5501, 15.6502],
                                 "url": f"udp://127.0.0.1:{udp2}", "hb_timeout_s": 60})
    alerts: list[Any] = []
    agent = Agent(parse_config(yaml.safe_dump(cfg)), on_alert=alerts.append)
    agent.start()
    try:
        assert agent.feeds["md-1"].reader.wait_ready(5) and agent.feeds["md-2"].reader.wait_ready(5)
        ghosts = [pmdet(f"ghost-{i}", 1, "HB", 0, 1) for i in range(30)]
        ghosts += [pmdet(f"ghost-{i}", 2, "TAMPER", 100, 1) for i in range(5)]
        ghosts += [pmdet("md-2", 1, "CLEAR", 0, 1)]  # a real sensor's line on another sensor's port
        _send(udp, *ghosts)
        flaps = [pmdet("md-1", 10 + i, "TAMPER" if i % 2 == 0 else "HB", 100 if i % 2 == 0 else 0, 1)
                 for i in range(40)]
        _send(udp, *flaps)
        feed = agent.feeds["md-1"].counters
        assert wait_for(lambda: feed.events + feed.rejected == len(ghosts) + len(flaps), 20)
        assert feed.rejected == len(ghosts) and feed.events == len(flaps)
    finally:
        agent.stop()  # drains the core queue into the log
    faults = [a for a in alerts if a.kind == "sensor_fault"]
    assert [(a.state, a.evidence[0].sensor) for a in faults] == [("new", "md-1")], faults  # one episode, held
    with sqlite3.connect(tmp_path / "state" / "incidents.db") as conn:
        reasons = [r for (r,) in conn.execute("SELECT reason FROM rejected_input WHERE sensor = 'md-1'")]
    assert sum("unknown sensor 'ghost-" in r for r in reasons) == 35, reasons[:3]
    assert sum("unknown sensor 'md-2'" in r for r in reasons) == 1
