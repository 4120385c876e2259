"""The command post without a browser: sign-in, sessions, roles, CSRF and the sign-in limit through the real
Starlette app; its store (de-duplication, late states, acks); its MQTT side against a real Mosquitto (hostile
messages refused and counted, receipts for every stored state); history filters and exports; HTTPS; an MBTiles
base map; its config and user verbs."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from starlette.testclient import TestClient

from edge_agent.commandpost.console import AlertCache, Console
from edge_agent.commandpost.ingest import Ingest
from edge_agent.commandpost.messages import AlertReceived, BoxStatus
from edge_agent.commandpost.server import CommandPost, leaflet_dir
from edge_agent.commandpost.store import CommandPostStore
from edge_agent.commandpost.users import UserError, Users
from edge_agent.commandpost.web import LiveEvents, Page, build_app
from edge_agent.config.commandpost import CommandPostConfig, load_command_post_config, parse_command_post_config
from edge_agent.config.mqtt import MqttConfig
from edge_agent.contract.acks import parse_ack, parse_receipt
from edge_agent.contract.alert import Alert, parse_alert
from edge_agent.contract.ids import iso_ms, new_ulid
from edge_agent.paths import ConfigError
from tests.brokers import ROOT, Mosquitto, wait_for
from tests.conftest import run_cli

PASSWORD = "correct horse 1"


def _cfg(tmp_path: Path, **extra: Any) -> CommandPostConfig:
    return CommandPostConfig.model_validate({"name": "cp-unit", "mqtt": {"host": "127.0.0.1", "port": 1},
                                             "store": str(tmp_path / "cp.db"), **extra})


def _alert(state: str = "new", severity: str = "high", ts: float | None = None, alert_id: str | None = None,
           **extra: Any) -> dict[str, Any]:
    """An alert's payload as a box publishes it (``extra`` replaces fields)."""
    return {"schema": "edge-agent/alert@1", "alert_id": alert_id or new_ulid(), "incident_id": new_ulid(),
            "site": "t", "box": "b1", "ts": iso_ms(ts or time.time()), "kind": "intrusion", "severity": severity,
            "state": state, "zone": {"id": "strip", "name": "Patrol strip"}, "location": {"lat": 46.55, "lon": 15.65},
            "evidence": [{"sensor": "cam", "type": "thermal", "ts": iso_ms(time.time()), "label": "person"}],
            "summary": "Person entered Patrol strip", "snapshot": None, **extra}


def _typed(state: str = "new", severity: str = "high", ts: float | None = None, **extra: Any) -> Alert:
    """The same alert as the command post takes it: through the contract's parser."""
    return parse_alert(json.dumps(_alert(state, severity, ts, **extra)).encode(), "t", extra.get("box", "b1"))


@pytest.fixture()
def site(tmp_path: Path) -> Iterator[tuple[TestClient, CommandPostStore, Users]]:
    cfg = _cfg(tmp_path)
    store = CommandPostStore(cfg.store_path)
    users = Users(store)
    for name, role in (("gina", "guard"), ("vic", "viewer"), ("cora", "commander")):
        users.add(name, role, PASSWORD)
    page = Page(cfg, store, LiveEvents(store, cfg.silent_after_s), None, leaflet_dir(cfg))
    with TestClient(build_app(page), base_url="http://testserver") as client:
        yield client, store, users
    store.close()


def _csrf(client: TestClient, path: str = "/login") -> str:
    found = re.search(r'name="csrf" content="([^"]+)"', client.get(path).text)
    assert found
    return found.group(1)


def _sign_in(client: TestClient, name: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/login", data={"csrf": _csrf(client), "name": name, "password": password},
                       follow_redirects=False)


def test_sign_in_sessions_end_when_the_user_changes_and_failures_are_limited(site: Any) -> None:
    client, _store, users = site
    assert client.get("/api/state").status_code == 401
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    token = _csrf(client)
    assert client.post("/login", data={"name": "gina", "password": PASSWORD}).status_code == 403  # no CSRF token
    assert client.post("/login", data={"csrf": token, "name": "gina", "password": "wrong password"}).status_code == 401
    r = _sign_in(client, "gina")
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie  # plain HTTP here
    me = client.get("/api/state").json()["me"]
    assert me == {"name": "gina", "role": "guard", "can_ack": True, "can_export": False}
    page = client.get("/")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    users.passwd("gina", "another password")  # her open session ends
    assert client.get("/api/state").status_code == 401
    assert _sign_in(client, "gina", "another password").status_code == 303
    users.remove("gina")
    assert client.get("/api/state").status_code == 401

    # five failures from one address (gina's wrong password above was the first): the next try waits, even with
    # the right password or another name
    for _ in range(4):
        assert _sign_in(client, "vic", "guess guess").status_code == 401
    r = _sign_in(client, "vic")
    assert r.status_code == 429 and "Try again in" in r.text
    assert _sign_in(client, "cora").status_code == 429


def test_acks_need_a_guard_a_csrf_token_and_this_origin(site: Any) -> None:
    client, store, _users = site
    alert = _typed()
    store.add_alert(alert, time.time())
    url = f"/api/alerts/{alert.alert_id}/ack"
    _sign_in(client, "vic")
    token = _csrf(client, "/")
    r = client.post(url, json={"note": "x"}, headers={"x-csrf-token": token})
    assert r.status_code == 403 and "viewers cannot acknowledge" in r.json()["error"]
    _sign_in(client, "cora")
    token = _csrf(client, "/")
    assert client.post(url, json={}).status_code == 403  # no token
    elsewhere = {"x-csrf-token": token, "origin": "http://evil.example"}
    assert client.post(url, json={}, headers=elsewhere).status_code == 403
    assert client.post(url, json={"note": 5}, headers={"x-csrf-token": token}).status_code == 400
    # allowed, but this command post has no broker connection: said so, nothing stored as sent
    r = client.post(url, json={"note": "patrol sent"}, headers={"x-csrf-token": token})
    assert r.status_code == 503 and store.acks_of(alert.alert_id) == []
    assert client.post("/api/alerts/nonsense/ack", json={}, headers={"x-csrf-token": token}).status_code == 404


def test_the_store_keeps_each_state_once_and_a_late_state_does_not_win(tmp_path: Path) -> None:
    store = CommandPostStore(tmp_path / "cp.db")
    t = time.time()
    a = _typed("new", ts=t)
    assert store.add_alert(a, t).new
    assert not store.add_alert(a, t + 1).new  # a redelivery
    upd = replace(a, state="updated", ts=t + 5, summary="now two people")
    assert store.add_alert(upd, t + 6).latest
    late = a.with_state("escalated", t + 2)
    stored = store.add_alert(late, t + 7)
    assert stored.new and not stored.latest
    row = store.alert(a.alert_id)
    assert row is not None and row["state"] == "updated" and row["summary"] == "now two people"
    assert [s["state"] for s in store.states_of(a.alert_id)] == ["new", "escalated", "updated"]
    store.ack_sent(a.alert_id, "gina", "on my way", t + 8)
    store.add_alert(a.with_state("acknowledged", t + 9), t + 9)
    row = store.alert(a.alert_id)
    assert row is not None and (row["acked_by"], row["ack_note"]) == ("gina", "on my way")
    assert store.acks_of(a.alert_id)[0]["confirmed"] == t + 9
    store.close()


class _Listener:
    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"listener-{new_ulid()}")
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda *_a: self.ready.set()
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_hostile_messages_are_refused_and_every_stored_state_gets_a_receipt(tmp_path: Path) -> None:
    broker = Mosquitto().start()
    store = CommandPostStore(tmp_path / "cp.db")
    events: list[dict[str, Any]] = []
    store.on_change = events.append  # the store tells the pages what changed; ingest only the broker link
    ingest = Ingest(MqttConfig(host="127.0.0.1", port=broker.port), "cp-unit", store, events.append, by="cp-unit")
    ingest.start()
    side = _Listener(broker.port, "border/+/+/receipts")
    try:
        assert wait_for(ingest.receiver.connected.is_set, 10)
        hostile = [
            ("border/t/b1/site", b'{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
                                 b'{"type": "Point", "coordinates": [NaN, 1]}, "properties": {}}]}'),
            ("border/t/b1/site", json.dumps({"type": "FeatureCollection", "features": [
                {"type": "Feature", "geometry": {"type": "Point", "coordinates": [500, 1]}, "properties": {}}]})),
            ("border/t/b1/site", b'{"type": "Topology"}'),
            ("border/t/b1/site", json.dumps({"type": "FeatureCollection", "features": [{}] * 6000})),
            ("border/t/b1/health", b'{"sensors": [1, 2], "uptime_s": "long"}'),
            ("border/t/b1/health", b"\xff\xfe not json"),
            ("border/t/b1/status", b'{"state": "<b>up</b>"}'),
            ("border/t/b1/snapshots/" + new_ulid(), b"GIF89a not a jpeg"),
            ("border/t/b1/alerts", json.dumps(_alert(location={"lat": 95, "lon": 0}))),
            ("border/t/b1/alerts", json.dumps({**_alert(), "site": "other"})),
            ("border/t/b1/alerts", b"[" * 100_000),
        ]
        for topic, payload in hostile:
            side.publish(topic, payload)
        good = _alert(severity="critical")
        side.publish("border/t/b1/alerts", json.dumps(good))
        side.publish("border/t/b1/alerts", json.dumps(good))  # a redelivery: stored once, receipt again
        side.publish("border/t/b1/site", json.dumps({"type": "FeatureCollection", "center": [15.65, 46.55],
                                                     "features": [{"type": "Feature", "properties": {
                                                         "kind": "zone", "id": "strip", "name": "<i>Strip</i>"},
                                                         "geometry": {"type": "Polygon", "coordinates": [[
                                                             [15.65, 46.55], [15.651, 46.55], [15.651, 46.551],
                                                             [15.65, 46.55]]]}}]}))
        assert wait_for(lambda: len(side.messages) >= 2 and ingest.counters.site_maps == 1, 10), side.messages
        receipts = [parse_receipt(p) for _t, p in side.messages]
        assert {(r.alert_id, r.state, r.by) for r in receipts} == {(good["alert_id"], "new", "cp-unit")}
        assert [t for t, _p in side.messages] == ["border/t/b1/receipts"] * len(side.messages)
        assert ingest.receiver.counters.rejected == len(hostile), ingest.receiver.counters
        assert ingest.counters.alerts == 1 and ingest.counters.duplicates == 1
        assert store.counts()["alerts"] == 1 and store.counts()["snapshots"] == 0
        assert store.boxes() == []  # the bad status and health made no box
        stored_map = json.loads(store.site_maps()[0]["geojson"])
        assert stored_map["features"][0]["properties"]["name"] == "<i>Strip</i>"  # kept as text; the page escapes
        assert [e["type"] for e in events if e["type"] != "broker"] == ["alert", "site"]
    finally:
        side.close()
        ingest.stop()
        store.close()
        broker.remove()


def test_the_pages_ack_leaves_through_the_receiver_and_the_detail_shows_the_typed_alert(tmp_path: Path) -> None:
    """One receiver takes the alert (evidence fields the contract does not name kept), the page's detail is made
    from the typed alert, and the page's Ack goes out through the receiver's ``send_ack`` to the box's acks."""
    broker = Mosquitto().start()
    cfg = _cfg(tmp_path, mqtt={"host": "127.0.0.1", "port": broker.port})
    store = CommandPostStore(cfg.store_path)
    Users(store).add("gina", "guard", PASSWORD)
    ingest = Ingest(cfg.mqtt, cfg.client_id, store, lambda _e: None, by=cfg.name)
    ingest.start()
    side = _Listener(broker.port, "border/+/+/acks")
    page = Page(cfg, store, LiveEvents(store, cfg.silent_after_s), ingest.receiver, leaflet_dir(cfg))
    try:
        assert wait_for(ingest.receiver.connected.is_set, 10)
        alert = _alert(evidence=[{"sensor": "cam", "type": "thermal", "ts": iso_ms(time.time()), "label": "person",
                                  "by": "physics", "px_tall": 9, "height_m": 1.74, "speed_mps": 1.2}])
        side.publish("border/t/b1/alerts", json.dumps(alert))
        assert wait_for(lambda: store.alert(alert["alert_id"]) is not None, 10)
        with TestClient(build_app(page), base_url="http://testserver") as client:
            _sign_in(client, "gina")
            detail = client.get(f"/api/alerts/{alert['alert_id']}").json()
            assert detail["evidence"] == alert["evidence"] and detail["sensors"] == ["cam"]
            assert detail["types"] == ["thermal"] and detail["zone"] == "Patrol strip"
            r = client.post(f"/api/alerts/{alert['alert_id']}/ack", json={"note": "patrol 3"},
                            headers={"x-csrf-token": _csrf(client, "/")})
            assert r.status_code == 200, r.text
        assert wait_for(lambda: len(side.messages) == 1, 10)
        topic, payload = side.messages[0]
        ack = parse_ack(payload)
        assert topic == "border/t/b1/acks" and (ack.alert_id, ack.by, ack.note) == (alert["alert_id"], "gina",
                                                                                    "patrol 3")
        assert [(a["by"], a["note"]) for a in store.acks_of(alert["alert_id"])] == [("gina", "patrol 3")]
    finally:
        side.close()
        ingest.stop()
        store.close()
        broker.remove()


def test_the_console_shows_each_typed_alert_state_once_with_its_texts_escaped(tmp_path: Path) -> None:
    lines: list[str] = []
    got: list[Alert] = []
    console = Console(MqttConfig(host="127.0.0.1", port=1), lines.append, AlertCache(tmp_path / "watch.db"),
                      on_alert=lambda a, _received: got.append(a))
    alert = _typed(summary="Person\nFAKE line\x1b[2J")
    for _ in range(2):  # a redelivery is shown once
        console.take(AlertReceived(alert, time.time()))
    console.take(BoxStatus("t", "b1", "online", "1.0\x1b[31m", time.time()))
    console.take(AlertReceived(alert.with_state("acknowledged", alert.ts + 1), time.time()))
    assert got == [alert, alert.with_state("acknowledged", alert.ts + 1)] and console.duplicates == 1
    assert " NEW " in lines[0] and "Person\\nFAKE line\\x1b[2J" in lines[0]
    assert lines[0].endswith(f"({alert.alert_id})") and "Patrol strip" in lines[0] and "thermal" in lines[0]
    assert lines[1] == "* box t/b1 is online (version 1.0\\x1b[31m)"
    assert " ACK " in lines[2] and len(lines) == 3
    assert "\x1b" not in "".join(lines) and "\n" not in "".join(lines)


def _history_store(store: CommandPostStore) -> dict[str, Alert]:
    t = time.time()
    alerts = {
        "old": _typed(severity="low", ts=t - 3 * 86400),
        "high": _typed(severity="high", ts=t - 60),
        "crit": _typed(severity="critical", ts=t - 30, box="b2", summary="=HYPERLINK(\"http://x\")"),
        "closed": _typed(state="closed", severity="medium", ts=t - 10),
    }
    for a in alerts.values():
        store.add_alert(a, t)
    return alerts


def test_history_filters_and_commanders_export_csv_and_geojson(site: Any) -> None:
    client, store, _users = site
    alerts = _history_store(store)
    _sign_in(client, "vic")
    page = client.get("/history", params={"severity": "high"})
    assert page.status_code == 200
    assert alerts["high"].alert_id not in page.text  # ids are not shown, summaries are
    assert page.text.count("<tr class=") == 2
    assert client.get("/history", params={"format": "csv"}).status_code == 403  # viewers do not export
    bad = client.get("/history", params={"since": "yesterday", "severity": "huge"})
    assert bad.status_code == 400 and "since: &#39;yesterday&#39; is not a date" in bad.text
    assert "severity: one of info, low" in bad.text

    _sign_in(client, "cora")
    since = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 86400))
    r = client.get("/history", params={"since": since, "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert r.headers["content-type"].startswith("text/csv")
    assert {row["alert_id"] for row in rows} == {alerts[k].alert_id for k in ("high", "crit", "closed")}
    crit = next(row for row in rows if row["alert_id"] == alerts["crit"].alert_id)
    assert crit["summary"].startswith("'=")  # a spreadsheet shows it, never runs it
    r = client.get("/history", params={"box": "t/b2", "format": "geojson"})
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 1
    assert fc["features"][0]["geometry"]["coordinates"] == [15.65, 46.55]
    open_only = client.get("/history", params={"state": "open", "format": "csv"}).text
    assert alerts["closed"].alert_id not in open_only and alerts["old"].alert_id in open_only


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "page.crt", tmp_path / "page.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def _mbtiles(path: Path) -> bytes:
    import cv2
    import numpy as np

    ok, png = cv2.imencode(".png", np.full((256, 256, 3), 200, np.uint8))
    assert ok
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
        db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        db.execute("INSERT INTO tiles VALUES (1, 0, 1, ?)", [png.tobytes()])  # TMS row 1 = XYZ y 0 at zoom 1
    return png.tobytes()


def test_https_with_a_certificate_and_a_local_mbtiles_base_map(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    png = _mbtiles(tmp_path / "base.mbtiles")
    cfg = _cfg(tmp_path, listen={"port": 0, "tls": {"cert_file": str(cert), "key_file": str(key)}},
               map={"tiles": str(tmp_path / "base.mbtiles"), "attribution": "Survey <office>"})
    cp = CommandPost(cfg)
    Users(cp.store).add("gina", "guard", PASSWORD)
    cp.start()
    try:
        assert cp.url.startswith("https://")
        with httpx.Client(base_url=cp.url, verify=ssl.create_default_context(cafile=str(cert))) as client:
            login = client.get("/login")
            assert login.headers["strict-transport-security"].startswith("max-age=")
            token = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
            r = client.post("/login", data={"csrf": token, "name": "gina", "password": PASSWORD})
            assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
            state = client.get("/api/state").json()
            assert state["map"]["tiles"] is True and state["map"]["max_zoom"] == 1
            tile = client.get("/tiles/1/0/0")
            assert tile.status_code == 200 and tile.content == png and tile.headers["content-type"] == "image/png"
            assert client.get("/tiles/1/1/1").status_code == 204  # not in the file: the map shows the grid colour
            assert client.get("/tiles/1/5/0").status_code == 404
        with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError)):  # plain HTTP is not served
            httpx.get(cp.url.replace("https://", "http://") + "login", timeout=5)
    finally:
        cp.stop()


def test_config_errors_name_file_line_and_key_and_the_example_loads(tmp_path: Path) -> None:
    example = load_command_post_config(ROOT / "configs" / "commandpost" / "command-post.yaml")
    assert example.mqtt.prefix == "border" and example.listen.port == 8080
    with pytest.raises(ConfigError) as err:
        parse_command_post_config("name: cp\nmqtt:\n  host: x\n  client_id: mine\nlisten:\n  port: 99999\n", "cp.yaml")
    text = str(err.value)
    assert "cp.yaml:6: listen.port" in text and "client_id" in text


def test_user_verbs_add_list_change_and_remove(tmp_path: Path) -> None:
    cfg = tmp_path / "cp.yaml"
    cfg.write_text(f"name: cp\nmqtt: {{host: 127.0.0.1}}\nstore: {tmp_path / 'cp.db'}\n")
    env = {"EDGE_AGENT_PASSWORD": PASSWORD}
    assert run_cli("command-post", "-c", str(cfg), "user", "add", "gina", "--role", "guard", env=env).returncode == 0
    again = run_cli("command-post", "-c", str(cfg), "user", "add", "gina", "--role", "guard", env=env)
    assert again.returncode == 2 and "exists" in again.stderr
    weak = run_cli("command-post", "-c", str(cfg), "user", "add", "sam", "--role", "viewer",
                   env={"EDGE_AGENT_PASSWORD": "short"})
    assert weak.returncode == 2 and "password: 8 to 256 characters" in weak.stderr
    changed = run_cli("command-post", "-c", str(cfg), "user", "passwd", "gina", "--role", "commander", env=env)
    assert changed.returncode == 0 and "sessions have ended" in changed.stdout
    assert run_cli("command-post", "-c", str(cfg), "user", "list").stdout.split() == ["gina", "commander"]
    assert run_cli("command-post", "-c", str(cfg), "user", "remove", "gina").returncode == 0
    gone = run_cli("command-post", "-c", str(cfg), "user", "remove", "gina")
    assert gone.returncode == 2 and "no user 'gina'" in gone.stderr
    with pytest.raises(UserError):
        Users(CommandPostStore(tmp_path / "other.db")).add("bad name!", "guard", PASSWORD)
