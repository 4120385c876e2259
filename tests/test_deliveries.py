"""The outputs' delivery state in the incident database (``output_queue``): what each output besides MQTT is
owed, in order, with backoff, resend after a lost connection, and retention that waits for every output."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge_agent.contract.alert import Alert, Evidence
from edge_agent.contract.ids import new_ulid
from edge_agent.incidents.store import IncidentStore
from tests.test_incident_log import log_incident


def _alert(state: str = "new") -> Alert:
    now = time.time()
    return Alert(new_ulid(), new_ulid(), "t", "box1", now, "metal", "high", state,  # type: ignore[arg-type]
                 ("gate", "Gate"), (46.55, 15.65), (Evidence("md-1", "metal", now),), "Metal at Gate")


def test_alert_states_are_owed_to_each_configured_output_in_order_with_backoff(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    first = _alert()
    store.queue_alert(first)  # before any output is configured: owed to none
    d = store.deliveries
    d.outputs = ("cot", "sapient")
    alerts = [_alert() for _ in range(3)]
    for a in alerts:
        store.queue_alert(a)
    owed = d.owed("cot")
    assert [o.alert_id for o in owed] == [a.alert_id for a in alerts]
    assert [o.alert_id for o in d.owed("sapient")] == [a.alert_id for a in alerts]
    now = time.time()
    d.sent("cot", [owed[0].seq], now)
    d.failed("cot", [owed[1].seq], now, "refused", retry_min_s=2, retry_max_s=5)
    assert [o.alert_id for o in d.owed("cot", now=now)] == [alerts[2].alert_id], "the failed one waits its backoff"
    assert [o.alert_id for o in d.owed("cot", now=now + 2.1)] == [alerts[1].alert_id, alerts[2].alert_id]
    for _ in range(5):  # doubling, at most retry_max_s
        d.failed("cot", [owed[1].seq], now, "refused", retry_min_s=2, retry_max_s=5)
    assert d.next_due("cot") == pytest.approx(now)  # the third was never tried
    assert owed[1].seq not in [o.seq for o in d.owed("cot", now=now + 4.9)]
    assert owed[1].seq in [o.seq for o in d.owed("cot", now=now + 5.1)]
    d.retry_now("cot", now)  # a fresh connection: no more waiting
    assert len(d.owed("cot", now=now)) == 2
    backlog = d.backlog("cot", now)
    assert (backlog.owed, backlog.sent) == (2, 1)
    assert d.backlog("sapient", now).owed == 3, "each output has its own state"
    store.close()


def test_a_lost_connection_sends_again_what_went_out_just_before_and_unconfigured_outputs_are_forgotten(
        tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    d = store.deliveries
    d.outputs = ("sapient", "cot")
    for _ in range(3):
        store.queue_alert(_alert())
    seqs = [o.seq for o in d.owed("sapient")]
    now = time.time()
    d.sent("sapient", seqs[:1], now - 60)
    d.sent("sapient", seqs[1:], now - 1)
    d.sent("sapient", [], now)
    assert d.resend("sapient", since=now - 10, now=now) == 2
    assert [o.seq for o in d.owed("sapient", now=now)] == seqs[1:]
    d.outputs = ("sapient",)  # cot taken out of the config: what it was owed would be owed for ever
    assert d.forget_others() == 3 and d.backlog("cot").owed == 0 and d.backlog("sapient").owed == 2
    store.close()


def test_retention_waits_for_every_output_and_takes_their_rows_with_the_incident(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    store.deliveries.outputs = ("cot",)
    left = log_incident(store, time.time() - 600)
    store.close_open(time.time())
    store.delivered([r[0] for r in store.db.execute("SELECT seq FROM outbox")], time.time())  # MQTT has it all
    later = time.time() + 400 * 86400
    assert store.retain(later, 365 * 86400, 730 * 86400) == [], "the TAK output is still owed its states"
    store.deliveries.sent("cot", [o.seq for o in store.deliveries.owed("cot")], time.time())
    assert store.retain(later, 365 * 86400, 730 * 86400) == [(left.incident_id, "incident", "age")]
    assert store.db.execute("SELECT COUNT(*) FROM output_queue").fetchone()[0] == 0
    assert store.verify() == []
    store.close()


def test_a_version_4_database_gains_the_output_queue_and_keeps_its_alerts(tmp_path: Path) -> None:
    import sqlite3

    from edge_agent.incidents.schema import SCHEMA_VERSION

    path = tmp_path / "incidents.db"
    store = IncidentStore(path)
    store.queue_alert(_alert())
    store.close()
    with sqlite3.connect(path) as conn:  # as the agent before the other outputs left it
        conn.execute("DROP TABLE output_queue")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'v5'")
        conn.execute("PRAGMA user_version = 4")
    conn.close()
    store = IncidentStore(path)
    try:
        assert store.version == SCHEMA_VERSION == 5 and "output_queue" in store.db.table_names()
        store.deliveries.outputs = ("cot",)
        store.queue_alert(_alert())
        assert len(store.deliveries.owed("cot")) == 1
        assert store.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 2
        assert store.verify() == []
    finally:
        store.close()
