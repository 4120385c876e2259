"""The incident log on a real SQLite file: survives SIGKILL mid-burst, exports every incident with its evidence
(CSV, GeoJSON, HTML), finds tampering, migrates old files, and retention removes the right things first."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import shapely.geometry

from edge_agent import review
from edge_agent.model import Alert, new_ulid
from edge_agent.store import Ack, IncidentStore, Rejected
from edge_agent.zones import Site
from geofences.rules import ZoneEvent
from sensors.sim import ThermalScene
from tests.brokers import ROOT
from tests.incidents import log_incident
from tests.test_fusion import Harness, pmdet, radio

EXE = str(Path(sys.executable).with_name("edge-agent"))
WRITER = ROOT / "tests" / "agents" / "burst_writer.py"


@pytest.mark.integration
def test_sigkill_during_a_burst_of_writes_loses_no_committed_incident(tmp_path: Path) -> None:
    db = tmp_path / "incidents.db"
    proc = subprocess.Popen([sys.executable, str(WRITER), str(db)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    committed = []
    t0 = time.monotonic()
    while len(committed) < 150 and time.monotonic() - t0 < 60:
        committed.append(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)  # mid-burst: the writer never stops on its own
    proc.wait(10)
    committed = [c for c in committed if c]
    assert len(committed) >= 150
    store = IncidentStore(db)
    assert store.integrity() == "ok"
    present = {r[0] for r in store.db.execute("SELECT id FROM incidents")}
    assert set(committed) <= present
    assert store.verify() == []  # a kill between commits leaves the ledger whole
    store.close()


@pytest.fixture
def scenario(intrusion_run: tuple[list[ZoneEvent], ThermalScene], default_ov640: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The intrusion scene (real detector) plus scripted metal and radio lines, logged in a real database."""
    events, scene = intrusion_run
    h = Harness(scene, default_ov640)
    store = IncidentStore(tmp_path / "incidents.db")
    h.engine = Site.from_config(h.config).fusion_engine(lambda a: (h.alerts.append(a), store.queue_alert(a)),
                                                        on_evidence=store.add_evidence)
    h.metal.on_event = h.engine.on_metal  # type: ignore[assignment]
    h.radio.on_event = h.engine.on_radio  # type: ignore[assignment]
    entry = next(e for e in events if e.kind == "entry" and e.rule_id == "strip")
    t = entry.ts
    lines = [(t + 2, "metal", pmdet("md-gate", 1, "ALARM", 88)),
             (t + 4, "radio", radio("rf-1", t + 4, "position", lat=h.gate[0], lon=h.gate[1], freq_hz=446e6)),
             (t + 400, "metal", pmdet("md-gate", 2, "ALARM", 60))]
    h.play(events, lines)
    h.engine.tick(t + 2000)
    yield store, h
    store.close()


@pytest.mark.slow
def test_csv_and_geojson_exports_hold_every_incident_with_its_evidence(scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, h = scenario
    incidents = {r[0]: r for r in store.db.execute("SELECT id, kind, lat, lon FROM incidents")}
    evidence: dict[str, list[tuple]] = defaultdict(list)
    for inc_id, sensor, etype, data in store.db.execute("SELECT incident_id, sensor, type, data FROM evidence"):
        evidence[inc_id].append((sensor, etype, json.loads(data)))
    assert len(incidents) >= 2 and any(k == "fused" for _, k, _, _ in incidents.values())
    assert {a.incident_id for a in h.alerts} == set(incidents)  # every alerted incident is in the log

    rows = list(csv.DictReader(io.StringIO(review.export_csv(store, review.Filters()))))
    by_inc: dict[str, list[tuple]] = defaultdict(list)
    for r in rows:
        if r["evidence_sensor"]:
            by_inc[r["incident_id"]].append((r["evidence_sensor"], r["evidence_type"], json.loads(r["evidence_data"])))
    assert {r["incident_id"] for r in rows} == set(incidents)
    for inc_id in incidents:
        assert sorted(map(json.dumps, by_inc[inc_id])) == sorted(map(json.dumps, evidence[inc_id]))

    gj = json.loads(review.export(store, "geojson", review.Filters()))
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == len(incidents)
    for f in gj["features"]:
        assert f["type"] == "Feature" and isinstance(f["properties"], dict)
        assert f["properties"]["incident_id"] in incidents
        ev = [(e["sensor"], e["type"], e["data"]) for e in f["properties"]["evidence"]]
        assert sorted(map(json.dumps, ev)) == sorted(map(json.dumps, evidence[f["id"]]))
        geom = f["geometry"]
        if geom is not None:  # RFC 7946: [lon, lat] in WGS84
            lon, lat = geom["coordinates"]
            assert geom["type"] == "Point" and -180 <= lon <= 180 and -90 <= lat <= 90
            assert math.isclose(lat, incidents[f["id"]][2]) and math.isclose(lon, incidents[f["id"]][3])
            assert shapely.geometry.shape(geom).is_valid
    assert any(f["geometry"] for f in gj["features"])

    out = tmp_path / "report.html"
    res = subprocess.run([EXE, "incidents", "export", "--format", "html", "--db", str(store.path), "-o", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    page = out.read_text()
    assert "<svg" in page and page.count("<tr class=") == len(incidents)
    assert 'src="http' not in page and 'href="http' not in page  # readable offline: nothing to fetch


def test_verify_finds_a_row_edited_in_the_sqlite3_shell_and_a_deleted_row(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    t = time.time()
    a, b, c = (log_incident(store, t + i) for i in range(3))
    store.acknowledge(Ack(a.alert_id or "", "sgt-novak", t + 10, "patrol sent"))
    assert store.verify() == []
    store.close()
    db = str(tmp_path / "incidents.db")
    ok = subprocess.run([EXE, "incidents", "verify", "--db", db], capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout
    subprocess.run(["sqlite3", db, f"UPDATE incidents SET severity = 'low', sev_rank = 1 WHERE id = '{b.incident_id}'"],
                   check=True)
    subprocess.run(["sqlite3", db, f"DELETE FROM incidents WHERE id = '{c.incident_id}'"], check=True)
    subprocess.run(["sqlite3", db, "DELETE FROM acks"], check=True)
    bad = subprocess.run([EXE, "incidents", "verify", "--db", db], capture_output=True, text=True)
    assert bad.returncode == 1
    assert f"TAMPERED: incidents {b.incident_id}: row changed after it was written" in bad.stdout
    assert f"TAMPERED: incidents {c.incident_id}: row deleted (not by retention)" in bad.stdout
    assert "TAMPERED: acks 1: row deleted" in bad.stdout
    subprocess.run(["sqlite3", db, "DELETE FROM ledger WHERE seq = 2"], check=True)
    worse = subprocess.run([EXE, "incidents", "verify", "--db", db], capture_output=True, text=True)
    assert "TAMPERED: ledger #2: 1 entry removed" in worse.stdout


def test_retention_removes_old_then_snapshots_then_oldest_and_keeps_unacked_critical(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    day = 86400.0
    now = time.time()
    old = log_incident(store, now - 400 * day)
    old_crit = log_incident(store, now - 500 * day, severity="critical")
    recent = [log_incident(store, now - (10 - i) * day) for i in range(3)]
    for inc in (old, old_crit, *recent):
        store.close_incident(inc.incident_id, inc.opened + 60)
    store.delivered([r[0] for r in store.db.execute("SELECT seq FROM outbox")], now)
    pending = log_incident(store, now - 600 * day)  # never delivered: never removed
    store.close_incident(pending.incident_id, pending.opened + 60)
    # a snapshot on the oldest recent one
    snap_alert = Alert(new_ulid(), recent[0].incident_id, "s", "b", recent[0].opened, "intrusion", "medium", "updated",
                       None, None, (), "with a snapshot", "border/s/b/snapshots/x")
    store.queue_alert(snap_alert, b"\xff\xd8" + b"\0" * 1000)
    store.delivered([r[0] for r in store.db.execute("SELECT seq FROM outbox WHERE alert_id = ?",
                                                    [snap_alert.alert_id])], now)
    snap_file = tmp_path / store.db.execute("SELECT snapshot FROM incidents WHERE id = ?",
                                            [recent[0].incident_id]).fetchone()[0]
    assert snap_file.exists()

    removed = store.retain(now, max_age_s=365 * day, critical_age_s=730 * day)
    assert removed == [(old.incident_id, "incident", "age")]  # the critical one is younger than 730 days

    # the disk is short: free space as retention sees it after each removal (the snapshot, then two incidents)
    free_after = iter([0, 0, 1, 1, 2])
    removed = store.retain(now, 365 * day, 730 * day, min_free_bytes=2, free=lambda _p: next(free_after, 2))
    kinds = [(what, inc) for inc, what, _ in removed]
    assert kinds[0] == ("snapshot", recent[0].incident_id) and not snap_file.exists()
    assert ("incident", recent[0].incident_id) in kinds  # the oldest that is not unacknowledged-critical
    assert old_crit.incident_id not in [inc for _, inc in kinds]
    left = {r[0] for r in store.db.execute("SELECT id FROM incidents")}
    assert pending.incident_id in left and old_crit.incident_id in left
    log = store.db.execute("SELECT incident_id, what, reason FROM retention_log ORDER BY id").fetchall()
    assert log[0] == (old.incident_id, "incident", "age") and any(r[2] == "disk" for r in log)
    assert store.verify() == []  # what retention removed is in the ledger, not tampering
    store.close()


def test_an_old_database_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "incidents.db"
    conn = sqlite3.connect(path)  # the first released schema: rejected inputs only, user_version 0
    conn.execute("CREATE TABLE rejected_input (id INTEGER PRIMARY KEY, sensor TEXT, ts FLOAT, reason TEXT, data BLOB)")
    conn.execute("INSERT INTO rejected_input (sensor, ts, reason, data) VALUES ('md-1', 1.0, 'bad checksum', x'00')")
    conn.commit()
    conn.close()
    store = IncidentStore(path)
    assert store.version == 2
    assert store.rejects()[0] == Rejected("md-1", 1.0, "bad checksum", b"\0")
    assert {"incidents", "evidence", "alerts", "outbox", "acks", "sensor_health", "ledger"} <= set(
        store.db.table_names())
    sync = store.db.execute("PRAGMA synchronous").fetchone()[0]
    assert sync == 2  # FULL
    store.close()


def test_incidents_list_filters_and_show(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    t = time.time() - 3600
    a = log_incident(store, t, zone="strip", severity="high", sensor="cam-a")
    log_incident(store, t + 60, zone="fence", severity="low")
    c = log_incident(store, t + 120, zone="strip", severity="critical", sensor="cam-b")
    store.acknowledge(Ack(a.alert_id or "", "sgt-novak", t + 200, "seen"))
    store.close()
    db = str(tmp_path / "incidents.db")

    def ids(*args: str) -> list[str]:
        out = subprocess.run([EXE, "incidents", "list", "--db", db, "--json", *args], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return [r["id"] for r in json.loads(out.stdout)]

    assert ids("--zone", "strip") == [c.incident_id, a.incident_id]
    assert ids("--severity", "high") == [c.incident_id, a.incident_id]
    assert ids("--state", "acknowledged") == [a.incident_id]
    assert ids("--sensor", "cam-b") == [c.incident_id]
    assert ids("--since", "30m") == []
    assert len(ids("--since", "2h", "--kind", "intrusion")) == 3
    table = subprocess.run([EXE, "incidents", "list", "--db", db], capture_output=True, text=True).stdout
    assert table.splitlines()[0].split()[:4] == ["ID", "OPENED", "(UTC)", "KIND"] and len(table.splitlines()) == 4
    show = subprocess.run([EXE, "incidents", "show", a.incident_id, "--db", db], capture_output=True, text=True)
    assert "ack       by sgt-novak: seen" in show.stdout and "alert     acknowledged" in show.stdout
    missing = subprocess.run([EXE, "incidents", "show", "01NOSUCHINCIDENT0000000000", "--db", db],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no incident 01NOSUCHINCIDENT0000000000" in missing.stderr
    stats = json.loads(subprocess.run([EXE, "incidents", "stats", "--db", db, "--json"], capture_output=True,
                                      text=True).stdout)
    assert stats["incidents"] == 3 and stats["by_zone"] == {"strip": 2, "fence": 1} and stats["acknowledged"] == 1


def test_incidents_a_killed_run_left_open_are_closed_at_the_next_start(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    t = time.time() - 600
    left = log_incident(store, t)  # the run that wrote it was killed before the incident went quiet
    assert store.db.execute("SELECT state FROM incidents").fetchone()[0] == "open"
    assert store.close_open(time.time()) == 1
    state, closed = store.db.execute("SELECT state, closed FROM incidents WHERE id = ?",
                                     [left.incident_id]).fetchone()
    assert state == "closed" and closed == pytest.approx(t)
    assert store.close_open(time.time()) == 0 and store.verify() == []
    assert store.retain(time.time() + 400 * 86400, 365 * 86400, 730 * 86400) == []  # its alert is not out yet
    store.delivered([r[0] for r in store.db.execute("SELECT seq FROM outbox")], time.time())
    removed = store.retain(time.time() + 400 * 86400, 365 * 86400, 730 * 86400)
    assert removed == [(left.incident_id, "incident", "age")]  # and so retention can remove it in time
    store.close()


def test_a_damaged_database_file_gets_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "incidents.db"
    bad.write_bytes(b"this is no database\n" * 200)
    out = subprocess.run([EXE, "incidents", "list", "--db", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"incident database {bad}: file is not a database: it is damaged or not an SQLite file" in out.stderr
    missing = subprocess.run([EXE, "incidents", "list", "--db", str(tmp_path / "nope.db")], capture_output=True,
                             text=True)
    assert missing.returncode == 2 and "no incident database at" in missing.stderr
