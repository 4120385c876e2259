"""Issue 24: command posts sharing one store. The PostgreSQL store (a real server from a fresh data directory) has
the same tables as the SQLite default, behaves the same way on both (states once, never backwards, acks
confirmed by the box's state, users), stays right when two command posts store the same messages at once, and
tells every command post of a change any of them made."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.postgres import Postgres, have_postgres
from edge_agent.commandpost.store import CommandPostStore
from edge_agent.commandpost.users import Users
from edge_agent.contract.alert import Alert, parse_alert
from edge_agent.contract.ids import iso_ms, new_ulid
from tests.brokers import wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not have_postgres(), reason="PostgreSQL is not installed (./dev installs it)")]


@pytest.fixture(scope="module")
def server() -> Iterator[Postgres]:
    pg = Postgres().start()
    yield pg
    pg.remove()


@pytest.fixture()
def pg_url(server: Postgres) -> Iterator[str]:
    """A fresh database on the module's server for each test."""
    import psycopg

    name = f"t{new_ulid().lower()}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield server.url.rsplit("/", 1)[0] + f"/{name}"


def _alert(state: str = "new", ts: float | None = None, alert_id: str | None = None) -> Alert:
    payload = {"schema": "edge-agent/alert@1", "alert_id": alert_id or new_ulid(), "incident_id": new_ulid(),
               "site": "t", "box": "b1", "ts": iso_ms(ts or time.time()), "kind": "intrusion", "severity": "high",
               "state": state, "zone": {"id": "strip", "name": "Strip"}, "location": {"lat": 46.55, "lon": 15.65},
               "evidence": [{"sensor": "cam", "type": "thermal", "ts": iso_ms(time.time()), "label": "person"}],
               "summary": "Person entered Strip", "snapshot": None}
    return parse_alert(json.dumps(payload).encode(), "t", "b1")


def _pg_type(sqlite_type: str) -> str:
    return {"TEXT": "text", "FLOAT": "double precision", "REAL": "double precision", "INTEGER": "bigint",
            "BLOB": "bytea"}[sqlite_type.upper()]


def test_postgres_has_the_same_tables_columns_types_and_indexes_as_sqlite(tmp_path: Path, pg_url: str) -> None:
    CommandPostStore(tmp_path / "cp.db").close()
    shared = CommandPostStore(pg_url)
    try:
        lite = sqlite3.connect(tmp_path / "cp.db")
        tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                             "'\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite%'")]
        assert set(tables) == {"boxes", "alerts", "alert_states", "snapshots", "acks", "site_maps", "users", "meta"}
        for table in tables:
            want = [(r[1], _pg_type(r[2])) for r in lite.execute(f"PRAGMA table_info({table})")]
            got = [(r["column_name"], r["data_type"]) for r in shared.rows(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position", [table])]
            assert got == want, table
            want_idx = {tuple(c[2] for c in lite.execute(f"PRAGMA index_info({i[1]})")) for i in
                        lite.execute(f"PRAGMA index_list({table})") if i[3] == "c"}
            got_idx = {tuple(r["indexdef"].split("(", 1)[1].rstrip(")").replace(" ", "").split(","))
                       for r in shared.rows("SELECT indexdef FROM pg_indexes WHERE tablename = ? AND indexname "
                                            "NOT LIKE '%pkey'", [table])}
            assert got_idx == want_idx, table
        lite.close()
    finally:
        shared.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_both_stores_keep_each_state_once_never_go_backwards_and_confirm_acks(backend: str, tmp_path: Path,
                                                                              pg_url: str) -> None:
    store = CommandPostStore(tmp_path / "cp.db" if backend == "sqlite" else pg_url)
    changes: list[dict[str, Any]] = []
    store.on_change = changes.append
    store.listen()
    try:
        if backend == "postgres":  # heard once LISTEN is in place, which its thread says with a resync
            assert wait_for(lambda: {"type": "resync"} in changes, 10), changes
        first = _alert()
        assert store.add_alert(first, time.time()).latest
        assert not store.add_alert(first, time.time()).new, "a redelivery is stored once"
        later = _alert("updated", first.ts + 5, first.alert_id)
        assert store.add_alert(later, time.time()).latest
        late = _alert("updated", first.ts + 2, first.alert_id)
        stored = store.add_alert(late, time.time())
        assert stored.new and not stored.latest, "an older state arriving late keeps its place in the history"
        row = store.alert(first.alert_id)
        assert row is not None and row["ts"] == later.ts and row["first_seen"] is not None
        store.ack_sent(first.alert_id, "gina", "seen", time.time())
        store.add_alert(_alert("acknowledged", first.ts + 9, first.alert_id), time.time())
        row = store.alert(first.alert_id)
        assert row is not None and (row["state"], row["acked_by"], row["ack_note"]) == ("acknowledged", "gina", "seen")
        assert store.acks_of(first.alert_id)[0]["confirmed"] is not None
        assert [s["state"] for s in store.states_of(first.alert_id)] == ["new", "updated", "updated", "acknowledged"]
        assert store.box_status("t", "b1", "online", "1.0", time.time()) is True
        assert store.box_status("t", "b1", "online", "1.0", time.time()) is False
        store.box_health("t", "b1", {"state": "ok"}, time.time())
        store.add_snapshot(first.alert_id, b"\xff\xd8jpeg", time.time())
        assert store.snapshot(first.alert_id) == b"\xff\xd8jpeg" and store.has_snapshot([first.alert_id])
        users = Users(store)
        users.add("gina", "guard", "correct horse battery")
        assert users.verify("gina", "correct horse battery") is not None and users.verify("gina", "wrong") is None
        assert store.counts() == {"alerts": 1, "alert_states": 4, "snapshots": 1, "acks": 1, "boxes": 1}
        kinds = ["alert", "box", "snapshot"]
        assert wait_for(lambda: all(any(c["type"] == k for c in changes) for k in kinds), 5), changes
    finally:
        store.close()


def test_two_command_posts_storing_the_same_messages_at_once_keep_one_of_each(pg_url: str) -> None:
    posts = [CommandPostStore(pg_url), CommandPostStore(pg_url)]
    alerts = [_alert() for _ in range(40)]
    updates = [_alert("updated", a.ts + 1, a.alert_id) for a in alerts]
    results: list[list[bool]] = [[], []]

    def ingest(i: int) -> None:  # each command post gets every message from the broker, in the same order
        for a in [*alerts, *updates]:
            results[i].append(posts[i].add_alert(a, time.time()).new)

    threads = [threading.Thread(target=ingest, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert posts[0].counts()["alert_states"] == 80 and posts[1].counts()["alerts"] == 40
        assert [a + b for a, b in zip(results[0], results[1], strict=True)] == [1] * 80, "each stored exactly once"
        assert {r["state"] for r in posts[1].rows("SELECT state FROM alerts")} == {"updated"}
    finally:
        for p in posts:
            p.close()


def test_an_ack_made_on_one_command_post_is_heard_by_the_other(pg_url: str) -> None:
    north, south = CommandPostStore(pg_url), CommandPostStore(pg_url)
    heard: list[dict[str, Any]] = []
    south.on_change = heard.append
    south.listen()
    try:  # listening starts on its own thread and says so with a resync (what a page then loads again)
        assert wait_for(lambda: {"type": "resync"} in heard, 10), heard
        a = _alert()
        north.add_alert(a, time.time())
        assert wait_for(lambda: {"type": "alert", "alert_id": a.alert_id} in
                        [{k: c.get(k) for k in ("type", "alert_id")} for c in heard], 5), heard
        north.ack_sent(a.alert_id, "gina", "on my way", time.time())
        assert wait_for(lambda: any(c.get("ack") == "gina" for c in heard), 2), heard
        assert south.acks_of(a.alert_id)[0]["by"] == "gina"
        assert north.secret() == south.secret(), "a signed-in page can move to the other command post"
    finally:
        north.close()
        south.close()


def test_a_store_whose_postgres_restarted_works_again(tmp_path: Path) -> None:
    pg = Postgres().start()
    store = CommandPostStore(pg.url)
    try:
        store.add_alert(_alert(), time.time())
        pg.kill()  # the database server dies under a running command post
        with pytest.raises(Exception):  # noqa: B017 - what fails with the connection fails (psycopg's error)
            store.add_alert(_alert(), time.time())
        pg.start()
        later = _alert()
        assert store.add_alert(later, time.time()).new, "the next write works on a new connection"
        assert store.alert(later.alert_id) is not None and store.counts()["alerts"] == 2
    finally:
        store.close()
        pg.remove()
