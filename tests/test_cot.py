"""Issue 23's Cursor on Target acceptance, on the output itself: alert states committed to a real incident
database reach a real TAK server (taky 0.10, its own venv) over TLS with a client certificate and a TAK device on
UDP multicast (loopback); a client of the server parses them with takproto (an independent CoT implementation);
a TAK server killed mid-run loses no alert; an acknowledged alert sends the cancel. The whole agent on the
intrusion scenario is in ``test_c2_scenario``."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from benchmarks.takserver import CotListener, MulticastListener, TakServer, have_taky, make_test_pki
from edge_agent.config.outputs import CotConfig
from edge_agent.contract.acks import Ack
from edge_agent.contract.alert import Alert, Evidence
from edge_agent.contract.ids import new_ulid
from edge_agent.incidents.store import IncidentStore
from edge_agent.outputs.cot import CotStyle
from edge_agent.outputs.tak import CotOutput
from tests.brokers import wait_for

pytestmark = pytest.mark.integration
STYLE = CotStyle(callsign="t-box1", uid_prefix="edge-agent.t.box1", stale_s=600, snapshot_url=None,
                 errors_m={"cam": 2.5, "md-1": 10.0}, default_error_m=10.0)
EXE = str(Path(sys.executable).with_name("edge-agent"))
needs_taky = pytest.mark.skipif(not have_taky(), reason="taky's venv is missing: run ./dev setup")


def _alert(kind: str = "intrusion", lat: float = 46.55012, lon: float = 15.65011) -> Alert:
    now = time.time()
    sensor, stype = ("cam", "thermal") if kind != "metal" else ("md-1", "metal")
    return Alert(alert_id=new_ulid(), incident_id=new_ulid(), site="t", box="box1", ts=now, kind=kind,  # type: ignore[arg-type]
                 severity="high", state="new", zone=("gate", "Gate"), location=(lat, lon),
                 evidence=(Evidence(sensor, stype, now),), summary=f"Person entered Gate ({kind})")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IncidentStore]:
    s = IncidentStore(tmp_path / "incidents.db")
    s.deliveries.outputs = ("cot",)
    yield s
    s.close()


def _owed(store: IncidentStore) -> int:
    return store.deliveries.backlog("cot").owed


def test_multicast_cot_reaches_a_tak_device_on_loopback_as_xml_and_as_tak_protocol(store: IncidentStore) -> None:
    with MulticastListener() as device:
        for protocol in ("xml", "tak"):
            cfg = CotConfig(transport="udp", host="239.2.3.1", port=device.port, interface="127.0.0.1", ttl=1,
                            protocol=protocol)
            out = CotOutput(store.deliveries, cfg, STYLE).start()
            try:
                alert = _alert()
                store.queue_alert(alert)
                out.wake()
                uid = STYLE.uid(alert.alert_id)
                event = device.wait_for(lambda e, uid=uid: e.uid == uid, 15)[0]
                assert (event.element is None) == (protocol == "tak"), "tak: a protobuf datagram, not XML"
                cot = event.cot
                assert (cot.type, cot.how) == ("b-a-g", "m-i")
                assert (cot.lat, cot.lon, cot.ce) == (pytest.approx(46.55012), pytest.approx(15.65011), 2.5)
                assert cot.sendTime == cot.startTime < cot.staleTime, "time = start < stale"
                assert cot.staleTime - cot.startTime == 600_000
                assert 'type="Geo-fence Breached"' in cot.detail.xmlDetail and "Person entered Gate" in \
                    cot.detail.xmlDetail and cot.detail.contact.callsign == "t-box1"
                assert wait_for(lambda: _owed(store) == 0, 10)
                assert out.report()["state"] == "up"
            finally:
                out.stop()


@needs_taky
def test_cot_over_tls_loses_nothing_when_the_tak_server_is_killed_and_an_ack_cancels(
        store: IncidentStore, tmp_path: Path) -> None:
    server = TakServer(tmp_path / "taky", tls=True).start()
    assert server.ca_path and server.client_cert and server.client_key
    cfg = CotConfig.model_validate({
        "transport": "tls", "host": "127.0.0.1", "port": server.port, "retry_min_s": 0.2, "retry_max_s": 1,
        "confirm_timeout_s": 3,
        "tls": {"ca_file": str(server.ca_path), "cert_file": str(server.client_cert),
                "key_file": str(server.client_key)}})
    before = CotListener(server)
    out = CotOutput(store.deliveries, cfg, STYLE).start()
    committed: list[Alert] = []

    def add(n: int, kind: str = "intrusion") -> None:
        for _ in range(n):
            committed.append(_alert(kind))
            store.queue_alert(committed[-1])
        out.wake()

    try:
        add(5)
        add(2, "metal")
        before.wait_for(lambda e: e.type in ("b-a-g", "b-d"), 15, count=7)
        assert wait_for(lambda: _owed(store) == 0, 10), out.report()
        server.kill()  # mid-run: what the box writes now goes nowhere until it notices
        add(5)
        assert wait_for(lambda: out.report()["state"] != "up", 15), out.report()
        add(5)
        assert _owed(store) >= 5, "alerts wait in the incident log while the server is away"
        server.start()
        after = CotListener(server)
        assert wait_for(lambda: _owed(store) == 0, 30), out.report()
        got = {e.uid for e in before.events() + after.events()}
        missing = [a.alert_id for a in committed if STYLE.uid(a.alert_id) not in got]
        assert missing == [], f"{len(missing)} of {len(committed)} alerts never reached the TAK server's client"
        metal = next(e for e in before.events() if e.type == "b-d").cot
        assert (metal.how, metal.ce) == ("m-c", 10.0)
        # an ack: the alert's acknowledged state is the cancel of its alarm, same uid
        target = committed[-1]
        acked = store.acknowledge(Ack(target.alert_id, "guard-7", time.time(), "seen"))
        assert acked is not None
        out.wake()
        cancel = after.wait_for(lambda e: e.type == "b-a-o-can", 15)[0]
        assert cancel.uid == STYLE.uid(target.alert_id)
        assert 'cancel="true"' in cancel.cot.detail.xmlDetail
        assert cancel.cot.staleTime - cancel.cot.startTime <= 1000, "a cancel is stale at once"
        assert wait_for(lambda: _owed(store) == 0, 10), out.report()
        report = out.report()
        assert report["connects"] >= 2 and report["failures"] >= 1, report
    finally:
        out.stop()
        server.stop()


@needs_taky
def test_a_tak_server_that_refuses_the_box_certificate_leaves_alerts_owed(store: IncidentStore,
                                                                            tmp_path: Path) -> None:
    server = TakServer(tmp_path / "taky", tls=True).start()
    try:
        make_test_pki(tmp_path / "pki")  # another CA: its client certificate means nothing to this server
        cfg = CotConfig.model_validate({
            "transport": "tls", "host": "127.0.0.1", "port": server.port, "retry_min_s": 0.2, "retry_max_s": 1,
            "tls": {"ca_file": str(server.ca_path), "cert_file": str(tmp_path / "pki" / "client.crt"),
                    "key_file": str(tmp_path / "pki" / "client.key")}})
        out = CotOutput(store.deliveries, cfg, STYLE).start()
        try:
            store.queue_alert(_alert())
            out.wake()
            assert wait_for(lambda: out.report()["failures"] >= 2, 15), out.report()
            report = out.report()
            assert report["state"] != "up" and report["backlog"] == 1 and report["last_error"], report
        finally:
            out.stop()
    finally:
        server.stop()


@needs_taky
def test_doctor_says_whether_the_tak_server_answers(tmp_path: Path) -> None:
    server = TakServer(tmp_path / "taky").start()
    try:
        path = tmp_path / "doctor.yaml"
        cot = {"transport": "tcp", "host": "127.0.0.1", "port": server.port}
        path.write_text(yaml.safe_dump({"site": "t", "box": "box1", "state_dir": str(tmp_path / "state"),
                                        "outputs": {"cot": cot}}))
        ok = subprocess.run([EXE, "doctor", "--config", str(path)], capture_output=True, text=True, timeout=60)
        assert re.search(r"^OK   TAK \(cot\): tcp://127\.0\.0\.1:\d+: the TAK server answered a ping", ok.stdout,
                         re.M), ok.stdout
        server.kill()
        down = subprocess.run([EXE, "doctor", "--config", str(path)], capture_output=True, text=True, timeout=60)
        assert down.returncode == 1 and "FAIL TAK (cot): tcp://127.0.0.1:" in down.stdout, down.stdout
    finally:
        server.stop()
