"""A full disk degrades the box, it never stops it: ``edge-agent run`` with its state directory on a small
filesystem (a tmpfs this test mounts) that fills up and is freed again, with a real Mosquitto."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge_agent.demo.script import pmdet
from edge_agent.incidents.diskguard import DiskGuard, UnwrittenQueue, is_disk_full
from tests.brokers import ROOT, Collector, Mosquitto, free_port
from tests.test_agent import EXE, _send

pytestmark = pytest.mark.integration


@pytest.fixture()
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs: the box's state directory on a disk that really fills up."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs and needs root (as CI and ./dev test run here)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0755", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path) -> Path:
    """Write a file until the filesystem says it is full."""
    filler = folder / "filler.bin"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            with contextlib.suppress(OSError):
                while f.write(b"\0" * 512):  # the last few bytes too
                    pass
    return filler


def test_a_full_disk_degrades_and_writing_resumes_by_itself(small_fs: Path, tmp_path: Path) -> None:
    broker = Mosquitto().start()
    udp = free_port()
    cfg = {
        "site": "t", "box": "box1", "state_dir": str(small_fs / "state"),
        "zones": [{"id": "gate", "name": "Gate", "space": "geo",
                   "polygon": [[46.5500, 15.6500], [46.5500, 15.6502], [46.5502, 15.6502], [46.5502, 15.6500]]}],
        "fixed_sensors": [{"id": "md-1", "kind": "metal", "latlon": [46.5501, 15.6501],
                           "url": f"udp://127.0.0.1:{udp}", "hb_timeout_s": 600}],
        "fusion": [{"id": "gate-metal", "place": "gate", "metal": ["md-1"], "severity": "high",
                    "window_s": 0.01, "cooldown_s": 0}],
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "health_interval_s": 1, "keepalive_s": 5},
        "incident_log": {"reserve_mb": 2, "retention": {"min_free_mb": 0}},
    }
    path = tmp_path / "box.yaml"
    path.write_text(yaml.safe_dump(cfg))
    seen = Collector(broker.port, ["border/t/box1/status", "border/t/box1/alerts", "border/t/box1/health"])
    proc = subprocess.Popen([EXE, "run", "--config", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)

    def alerts() -> list[dict]:
        return [a for a in seen.json("/alerts") if a["kind"] == "metal" and a["state"] == "new"]

    def health_since(t: float) -> list[dict]:
        return [h for h in seen.json("/health") if h["uptime_s"] > 0 and _epoch(h["ts"]) > t]

    try:
        assert seen.wait(lambda: [p["state"] for p in seen.json("/status")][-1:] == ["online"], 60)
        assert (small_fs / "state" / ".disk-reserve").stat().st_size == 2 * 2**20
        _send(udp, pmdet("md-1", 1, "ALARM", 80, 1))
        assert seen.wait(lambda: len(alerts()) == 1, 20)

        filler = _fill(small_fs)
        filled_at = time.time()
        assert seen.wait(lambda: any(h["disk"]["full"] for h in health_since(filled_at)), 20), \
            seen.json("/health")[-1:]
        # full: the reserve is given up for incidents and the outbox; health stays current and says so
        _send(udp, pmdet("md-1", 2, "ALARM", 81, 1))
        assert seen.wait(lambda: len(alerts()) == 2, 20)
        logged_at = time.time()
        assert seen.wait(lambda: len(health_since(logged_at)) >= 1, 10)  # health still goes out, every second
        last = health_since(logged_at)[-1]
        assert last["disk"]["full"] and last["state"] == "degraded" and not last["disk"]["reserve_held"], last
        assert last["stages"]["core"] == "ok"
        doctor = subprocess.run([EXE, "doctor", "-c", str(path)], capture_output=True, text=True, timeout=120)
        assert "disk reserve is given up" in doctor.stdout and "fix: free space" in doctor.stdout, doctor.stdout

        filler.unlink()  # space comes back: the agent takes its reserve again and goes on, no restart
        freed_at = time.time()
        assert seen.wait(lambda: any(not h["disk"]["full"] and h["disk"]["reserve_held"]
                                     for h in health_since(freed_at)), 20)
        _send(udp, pmdet("md-1", 3, "ALARM", 82, 1))
        assert seen.wait(lambda: len(alerts()) == 3, 20)
        published_at = time.time()
        assert seen.wait(lambda: any(h["outbox"]["backlog"] == 0 and h["state"] == "ok"
                                     for h in health_since(published_at)), 20), seen.json("/health")[-1:]
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        seen.close()
        broker.remove()
    db = small_fs / "state" / "incidents.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM incidents WHERE kind = 'metal'").fetchone()[0] == 3
    out = subprocess.run([EXE, "incidents", "verify", "--db", str(db)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _epoch(ts: str) -> float:
    from sensors.events import parse_time

    return parse_time(ts)


def test_writes_wait_in_order_while_the_disk_is_full_and_go_through_after(tmp_path: Path) -> None:
    free = {"bytes": 100 * 2**20}
    guard = DiskGuard(tmp_path, 2**20, free=lambda _p: free["bytes"])
    assert guard.hold_reserve() and (tmp_path / ".disk-reserve").exists()
    assert not guard.check()
    free["bytes"] = 1000
    assert guard.check() and not (tmp_path / ".disk-reserve").exists()  # the reserve is given up at once
    queue, done, space = UnwrittenQueue(guard.counters, limit=3), [], {"ok": False}

    def write(n: int):  # type: ignore[no-untyped-def]
        def go() -> None:
            if not space["ok"]:
                raise sqlite3.OperationalError("database or disk is full")
            done.append(n)
        return go

    for n in range(4):
        queue.add(f"write {n}", write(n))
    assert len(queue) == 3 and guard.counters.unwritten_lost == 1  # bounded: the oldest goes first
    assert queue.flush() == 0 and len(queue) == 3
    space["ok"] = True
    assert queue.flush() == 3 and done == [1, 2, 3]
    free["bytes"] = 100 * 2**20
    assert not guard.check() and (tmp_path / ".disk-reserve").exists()  # room again: the reserve is back
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_disk_full(sqlite3.OperationalError("no such table: x"))
