"""The incident log on a real SQLite file: survives SIGKILL mid-burst, exports every incident with its evidence
(CSV, GeoJSON, HTML), finds tampering, migrates old files, and retention removes the right things first."""

from __future__ import annotations

import base64
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
from collections.abc import Callable
from pathlib import Path

import pytest
import shapely.geometry
import sqlite_utils

from benchmarks.testbed import log_incident
from edge_agent.contract.acks import Ack
from edge_agent.contract.alert import Alert, Evidence
from edge_agent.contract.ids import new_ulid
from edge_agent.incidents import report, review, schema
from edge_agent.incidents.alerts import AckResult
from edge_agent.incidents.errors import SchemaTooNew
from edge_agent.incidents.record import insert_evidence
from edge_agent.incidents.schema import SCHEMA_VERSION
from edge_agent.incidents.sensorlog import Rejected
from edge_agent.incidents.store import IncidentStore
from sensors.sim import ThermalScene
from tests.brokers import ROOT
from tests.scenes import scripted_zone_events
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
def scenario(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The intrusion scene's scripted people through the rules, plus scripted metal and radio lines, logged in a
    real database."""
    scene = ThermalScene.from_url("sim://intrusion")
    store = IncidentStore(tmp_path / "incidents.db")
    h = Harness(scene, store=store)  # fusion's evidence and alerts written as the core writes them
    events = scripted_zone_events(scene, h.config)
    entry = next(e for e in events if e.kind == "entry" and e.rule_id == "strip")
    t = entry.ts
    lines = [(t + 2, "metal", pmdet("md-gate", 1, "ALARM", 88)),
             (t + 4, "radio", radio("rf-1", t + 4, "position", lat=h.gate[0], lon=h.gate[1], freq_hz=446e6)),
             (t + 400, "metal", pmdet("md-gate", 2, "ALARM", 60))]
    h.play(events, lines)
    h.take(h.engine.tick(t + 2000))
    yield store, h
    store.close()


def test_csv_and_geojson_exports_hold_every_incident_with_its_evidence(scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, h = scenario
    incidents = {r[0]: r for r in store.db.execute("SELECT id, kind, lat, lon FROM incidents")}
    evidence: dict[str, list[tuple]] = defaultdict(list)
    for inc_id, sensor, etype, data in store.db.execute("SELECT incident_id, sensor, type, data FROM evidence"):
        evidence[inc_id].append((sensor, etype, json.loads(data)))
    assert len(incidents) >= 2 and any(k == "fused" for _, k, _, _ in incidents.values())
    assert {a.incident_id for a in h.alerts} == set(incidents)  # every alerted incident is in the log

    rows = list(csv.DictReader(io.StringIO(report.export_csv(store, review.Filters()))))
    by_inc: dict[str, list[tuple]] = defaultdict(list)
    for r in rows:
        if r["evidence_sensor"]:
            by_inc[r["incident_id"]].append((r["evidence_sensor"], r["evidence_type"], json.loads(r["evidence_data"])))
    assert {r["incident_id"] for r in rows} == set(incidents)
    for inc_id in incidents:
        assert sorted(map(json.dumps, by_inc[inc_id])) == sorted(map(json.dumps, evidence[inc_id]))

    gj = json.loads(report.export(store, "geojson", review.Filters()))
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
    assert store.version == SCHEMA_VERSION
    assert store.rejects()[0] == Rejected("md-1", 1.0, "bad checksum", b"\0")
    assert {"incidents", "evidence", "alerts", "outbox", "acks", "sensor_health", "ledger"} <= set(
        store.db.table_names())
    sync = store.db.execute("PRAGMA synchronous").fetchone()[0]
    assert sync == 2  # FULL
    store.close()


def test_a_database_of_the_numbered_schema_opens_keeps_its_rows_and_takes_a_further_migration(tmp_path: Path) -> None:
    path = tmp_path / "incidents.db"
    store = IncidentStore(path)
    t = time.time() - 3600
    incidents = [log_incident(store, t + i, severity="critical" if i == 2 else "medium") for i in range(3)]
    store.add_rejects([Rejected("md-1", t, "bad checksum", b"$PMDET")])
    assert store.record_ack(Ack(incidents[0].alert_id or "", "guard", t + 10)).outcome == "acknowledged"
    counts = {name: store.db[name].count for name in ("incidents", "evidence", "alerts", "outbox", "acks", "ledger",
                                                       "rejected_input")}
    store.close()
    with sqlite3.connect(path) as conn:  # as today's agent wrote it: numbered by user_version alone
        conn.execute("DROP TABLE _sqlite_migrations")
    conn.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION

    store = IncidentStore(path)
    assert store.version == SCHEMA_VERSION
    assert "_sqlite_migrations" not in store.db.table_names()  # an up-to-date file is not written on open
    assert {name: store.db[name].count for name in counts} == counts
    assert store.verify() == []

    def tagged(db: sqlite_utils.Database) -> None:
        db["incidents"].add_column("tag", str)

    later = (*schema.STEPS, schema.Step("next", tagged))
    names = [step.name for step in later]
    assert [m.name for m in schema.migrations(later).pending(store.db)] == names  # nothing recorded yet
    schema.upgrade(store.db, path, later)  # the numbered steps are taken as applied; only the next one runs
    assert [m.name for m in schema.migrations(later).applied(store.db)] == names
    assert store.version == SCHEMA_VERSION + 1 and "tag" in {c.name for c in store.db["incidents"].columns}
    assert {name: store.db[name].count for name in counts} == counts
    store.close()
    with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1}, newer than this agent's "):
        IncidentStore(path)


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


# -- hostile stored data: a tampered file, or one written before the checks existed ------------------------

EXTREME_TIMES = [-62135596801.0, -62135596800.0, 253402300800.0, 1e20, float("inf"), float("-inf"), -1e300]


def _hostile_database(tmp_path: Path) -> tuple[Path, list[str]]:
    """A real incident log, then rows edited with sqlite3 the way a tampered (or pre-fix) file holds them."""
    store = IncidentStore(tmp_path / "incidents.db")
    t = time.time() - 3600
    incs = [log_incident(store, t + i) for i in range(len(EXTREME_TIMES) + 3)]
    for inc in incs[:3]:
        store.acknowledge(Ack(inc.alert_id or "", "sgt-novak", t + 100, "seen"))
    store.add_rejects([Rejected("md-1", t, "bad checksum", b"$PMDET")])
    store.close()
    ids = [inc.incident_id for inc in incs]
    conn = sqlite3.connect(tmp_path / "incidents.db")
    with conn:
        for inc_id, extreme in zip(ids, EXTREME_TIMES, strict=False):
            conn.execute("UPDATE incidents SET opened = ?, updated = ?, acked_ts = ?, closed = ? WHERE id = ?",
                         [extreme, extreme, extreme, extreme, inc_id])
            conn.execute("UPDATE evidence SET ts = ? WHERE incident_id = ?", [extreme, inc_id])
        conn.execute("UPDATE acks SET ts = 1e20, received = '9999-99-99'")
        conn.execute("UPDATE rejected_input SET ts = -1e300")
        conn.execute("UPDATE outbox SET created = 'yesterday', delivered = x'00ff'")
        odd = ids[-3]  # wrong types everywhere a text or a number belongs, NULLs where allowed
        conn.execute("UPDATE incidents SET opened = 'Infinity', kind = 7, severity = x'ff00', state = 3.5, "
                     "zone_id = x'1b5b326a', zone_name = NULL, lat = 'north', lon = 1e400, sensors = 12, "
                     "summary = ?, acked_by = x'00', acked_ts = 'soon' WHERE id = ?",
                     ["evil\x1b[2J\r\nFORGED LINE " + "x" * 200_000, odd])
        conn.execute("UPDATE evidence SET data = '{not json', sensor = x'07', type = 4, lat = 'x' "
                     "WHERE incident_id = ?", [odd])
        conn.execute("UPDATE evidence SET data = ? WHERE incident_id = ?", ["[" * 5000 + "]" * 5000, ids[-2]])
        conn.execute("UPDATE evidence SET data = '[1, 2]', ts = 'noon' WHERE incident_id = ?", [ids[-1]])
        conn.execute("UPDATE incidents SET degraded = x'1b5d303b', closed = 'later' WHERE id = ?", [ids[-1]])
    conn.close()
    return tmp_path / "incidents.db", ids


def _strict_json(text: str) -> object:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=refuse)


def test_every_review_verb_survives_hostile_stored_rows(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    db, ids = _hostile_database(tmp_path)
    results = {}
    for name, args in {
        "list": ["incidents", "list", "--limit", "100"],
        "list-json": ["incidents", "list", "--limit", "100", "--json"],
        "stats": ["incidents", "stats"],
        "stats-json": ["incidents", "stats", "--json"],
        "csv": ["incidents", "export", "--format", "csv"],
        "geojson": ["incidents", "export", "--format", "geojson"],
        "html": ["incidents", "export", "--format", "html"],
        **{f"show-{i}": ["incidents", "show", inc_id] for i, inc_id in enumerate(ids)},
        **{f"show-json-{i}": ["incidents", "show", inc_id, "--json"] for i, inc_id in enumerate(ids)},
    }.items():
        res = run_cli(*args, "--db", str(db), timeout=60)
        assert res.returncode == 0 and "Traceback" not in res.stderr, (name, res.stderr[-2000:])
        results[name] = res.stdout
    verify = run_cli("incidents", "verify", "--db", str(db), timeout=60)
    assert verify.returncode == 1 and "Traceback" not in verify.stderr and "TAMPERED: incidents" in verify.stdout

    assert "invalid-time(1e+20)" in results["show-3"] and "invalid-time(inf)" in results["show-4"]
    assert "0001-01-01T00:00:00.000Z" in results["show-1"]  # the first second of year 1 is still a date
    for name in ("list", "stats") + tuple(f"show-{i}" for i in range(len(ids))):
        assert "\x1b" not in results[name] and "\r" not in results[name], name  # escaped for the terminal
    assert "\n  evil\\x1b[2J\\r\\nFORGED LINE x" in results[f"show-{len(ids) - 3}"]
    assert "invalid_data" in results[f"show-json-{len(ids) - 3}"]
    assert len(results["list"].splitlines()) == len(ids) + 1  # one line per incident, none forged
    for name in ("list-json", "stats-json", "geojson", *(f"show-json-{i}" for i in range(len(ids)))):
        _strict_json(results[name])
    features = _strict_json(results["geojson"])["features"]  # type: ignore[index]
    assert len(features) == len(ids)
    assert all(f["geometry"] is None or all(map(math.isfinite, f["geometry"]["coordinates"])) for f in features)
    assert len(list(csv.reader(io.StringIO(results["csv"])))) == len(ids) + 1
    assert results["html"].count("<tr class=") == len(ids) and "\x1b" not in results["html"]


def _snapshot_incident(store: IncidentStore, t: float) -> str:
    inc = log_incident(store, t)
    alert = Alert(new_ulid(t), inc.incident_id, "s", "b", t, "intrusion", "medium", "updated", None, None, (),
                  "with a snapshot")
    store.queue_alert(alert, b"\xff\xd8SNAPSHOT-OK\xff\xd9")
    return inc.incident_id


def test_snapshot_paths_from_the_database_are_never_followed_out_of_the_snapshot_folder(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"TOP-SECRET")
    store = IncidentStore(tmp_path / "box" / "incidents.db")
    t = time.time() - 400 * 86400
    good, *bad = (_snapshot_incident(store, t + i) for i in range(5))
    good_file = store.snapshot_file(store.db.execute("SELECT snapshot FROM incidents WHERE id = ?",
                                                     [good]).fetchone()[0])
    day_dir = good_file.parent
    link = day_dir / f"{new_ulid()}.jpg"
    link.symlink_to(secret)  # the right form, but a link out of the folder
    tampered = ["../../secret.jpg", str(secret), f"snapshots/{day_dir.name}/{link.name}",
                f"snapshots/{day_dir.name}/../../../secret.jpg"]
    for inc_id in bad:
        store.close_incident(inc_id, t + 60)
    store.close_incident(good, t + 60)
    store.delivered([r[0] for r in store.db.execute("SELECT seq FROM outbox")], time.time())
    store.close()
    conn = sqlite3.connect(tmp_path / "box" / "incidents.db")
    with conn:
        for inc_id, rel in zip(bad, tampered, strict=True):
            conn.execute("UPDATE incidents SET snapshot = ? WHERE id = ?", [rel, inc_id])
    conn.close()
    db = str(tmp_path / "box" / "incidents.db")

    verify = run_cli("incidents", "verify", "--db", db, timeout=60)
    assert verify.returncode == 1
    for inc_id, rel in zip(bad, tampered, strict=True):
        refused = [line for line in verify.stdout.splitlines() if inc_id in line and "never read or deleted" in line]
        assert len(refused) == 1, (rel, verify.stdout)
    page = run_cli("incidents", "export", "--format", "html", "--db", db, timeout=60)
    assert page.returncode == 0, page.stderr
    assert base64.b64encode(b"TOP-SECRET").decode() not in page.stdout
    assert base64.b64encode(b"\xff\xd8SNAPSHOT-OK\xff\xd9").decode() in page.stdout
    assert page.stdout.count("snapshot not shown:") == len(tampered)
    show = run_cli("incidents", "show", bad[0], "--db", db, timeout=60)
    assert "snapshot: not shown: snapshot path '../../secret.jpg' is not of the form" in show.stdout

    store = IncidentStore(tmp_path / "box" / "incidents.db")
    removed = store.retain(time.time(), max_age_s=365 * 86400, critical_age_s=730 * 86400)
    assert {inc for inc, what, _ in removed} == {good, *bad}
    store.close()
    assert secret.read_bytes() == b"TOP-SECRET" and link.is_symlink()  # retention deleted none of them
    assert not good_file.exists()  # but it did delete the snapshot the store wrote


def _evidence(t: float, i: int) -> Evidence:
    return Evidence("cam", "thermal", t + i, (("label", "person"), ("track_id", i)), (46.55, 15.65))


def _vm_steps(store: IncidentStore, work: Callable[[], object]) -> int:
    """SQLite virtual-machine steps (in hundreds) a call costs: a count that does not depend on the host."""
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    store.db.conn.set_progress_handler(tick, 100)
    try:
        work()
    finally:
        store.db.conn.set_progress_handler(None, 100)
    return steps[0]


def test_the_incident_digest_is_incremental_and_matches_a_fresh_fold(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    t = time.time() - 3600
    small, big = log_incident(store, t), log_incident(store, t + 1)
    with store.conn.tx():  # 3,000 rows of evidence in one incident, written at once
        insert_evidence(store.db, big.incident_id, [_evidence(t, i) for i in range(3000)])
        store.ledger.chain_incident(big.incident_id)
    cost_small = _vm_steps(store, lambda: store.add_evidence(small, _evidence(t, -1)))
    cost_big = _vm_steps(store, lambda: store.add_evidence(big, _evidence(t, -1)))
    assert cost_big < 2 * cost_small + 50, (cost_small, cost_big)  # not a re-hash of 3,000 rows
    assert store.ledger.incident_digest(big.incident_id) == store.ledger.incident_digest(big.incident_id, cached=False)

    with pytest.raises(RuntimeError), store.conn.tx():  # a write that rolls back after the digest took it in
        insert_evidence(store.db, small.incident_id, [_evidence(t, -2)])
        store.ledger.chain_incident(small.incident_id)
        raise RuntimeError("disk full")
    store.add_evidence(big, _evidence(t, -3))  # takes the rolled-back row's id
    store.add_evidence(small, _evidence(t, -4))
    for inc in (small, big):
        digest = store.ledger.incident_digest
        assert digest(inc.incident_id) == digest(inc.incident_id, cached=False)
    assert store.verify() == []
    store.close()
    with sqlite3.connect(tmp_path / "incidents.db") as conn:
        conn.execute("UPDATE evidence SET data = '{}' WHERE id = (SELECT MIN(id) FROM evidence WHERE incident_id = ?)",
                     [big.incident_id])
    conn.close()
    again = IncidentStore(tmp_path / "incidents.db")
    assert [str(p) for p in again.verify()] == [f"incidents {big.incident_id}: row changed after it was written"]
    again.close()


def test_ledger_entries_written_before_the_running_digest_still_verify(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    t = time.time() - 3600
    old, older = log_incident(store, t), log_incident(store, t + 1)
    for inc in (old, older):  # the last entry of each as the agent wrote it before "v2:"
        with store.conn.tx():
            store.ledger.chain("incident", inc.incident_id, store.ledger.incident_digest_v1(inc.incident_id))
    digests = dict(store.db.execute("SELECT ref, digest FROM ledger WHERE kind = 'incident' ORDER BY seq"))
    assert not digests[old.incident_id].startswith("v2:")
    assert store.verify() == []
    store.add_evidence(older, _evidence(t, 5))  # a new entry in the new form after old ones
    assert store.db.execute("SELECT digest FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()[0].startswith("v2:")
    assert store.verify() == []
    store.db.execute("UPDATE evidence SET ts = 0 WHERE incident_id = ?", [old.incident_id])
    store.db.execute("UPDATE evidence SET ts = 0 WHERE incident_id = ?", [older.incident_id])
    changed = {p.ref for p in store.verify() if p.what == "row changed after it was written"}
    assert changed == {old.incident_id, older.incident_id}  # both forms still catch a change
    store.close()


def test_acks_say_what_they_did_and_are_stored_bounded(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    t = time.time() - 60
    inc = log_incident(store, t)
    unknown = store.record_ack(Ack(new_ulid(), "spoofer", t, "nothing"), received=t + 1)
    assert unknown == AckResult("unknown_alert") and store.db.execute("SELECT COUNT(*) FROM acks").fetchone()[0] == 0
    first = store.record_ack(Ack(inc.alert_id or "", "sgt\x1b[2J-novak" + "x" * 200, math.inf, "n" * 5000 + "\0"),
                             received=t + 2)
    assert first.outcome == "acknowledged" and first.alert is not None and first.alert.state == "acknowledged"
    again = store.record_ack(Ack(inc.alert_id or "", "cpl-horvat", t + 3, "me too"), received=t + 3)
    assert again.outcome == "already_acknowledged" and again.alert is None
    assert store.acknowledge(Ack(inc.alert_id or "", "cpl-horvat", t + 4)) is None  # the old meaning holds
    by, ts, note = store.db.execute("SELECT by, ts, note FROM acks ORDER BY id").fetchone()
    assert by == ("sgt[2J-novak" + "x" * 200)[:64] and by.isprintable() and ts == t + 2 and note == "n" * 1000
    assert store.db.execute("SELECT acked_by, acked_ts FROM incidents").fetchone() == (by, t + 2)
    assert store.verify() == []
    store.close()
