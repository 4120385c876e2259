"""Rejected input lands in the incident database (a real SQLite file), bounded, oldest first out."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge_agent.incidents.sensorlog import Rejected
from edge_agent.incidents.store import IncidentStore
from sensors.events import nmea_checksum
from sensors.feeds import SensorFeed

NOW = 1_795_435_200.0


def test_rejected_lines_of_a_feed_are_kept_in_the_database(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db", max_rejects=50)
    feed = SensorFeed("md-gate", "metal", "udp://127.0.0.1:0", lambda ev: None)
    for i in range(80):
        body = b"PMDET,md-gate,%d,ALARM,50,1" % i
        feed.handle(b"$" + body + b"*%02X" % (nmea_checksum(body) ^ 0x55), NOW + i)  # bad checksums
    stored = store.add_rejects(Rejected(r.sensor, r.received, r.reason, r.line) for r in feed.drain_rejects())
    assert stored == 80 and feed.counters.rejected == 80 and feed.drain_rejects() == []
    assert store.reject_count() == 50  # bounded: the newest 50
    newest = store.rejects("md-gate", limit=1)[0]
    assert newest.ts == NOW + 79 and "bad checksum" in newest.reason and newest.data.startswith(b"$PMDET")
    store.close()
    # it is a plain SQLite file in WAL mode that survives a reopen
    conn = sqlite3.connect(tmp_path / "incidents.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM rejected_input").fetchone()[0] == 50
    conn.close()
    again = IncidentStore(tmp_path / "incidents.db", max_rejects=50)
    assert again.reject_count() == 50
    again.close()


def test_incidents_a_killed_run_left_open_are_closed_and_their_alerts_go_out_closed(tmp_path: Path) -> None:
    from benchmarks.testbed import log_incident

    store = IncidentStore(tmp_path / "incidents.db")
    left = log_incident(store, NOW)
    store.delivered([item.seq for item in store.pending()], NOW + 1)  # the 'new' state reached the broker
    store.close()  # ... and then the agent was killed: the incident is still open

    again = IncidentStore(tmp_path / "incidents.db")
    assert again.close_open(NOW + 60) == 1
    pending = again.pending()
    assert [(p.alert_id, p.state) for p in pending] == [(left.alert_id, "closed")]
    stored = again.alert(left.alert_id)
    assert stored is not None and stored.state == "closed"
    assert again.close_open(NOW + 61) == 0  # once
    assert again.verify() == []
    again.close()
