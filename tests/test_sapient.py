"""Issue 23's SAPIENT acceptance: a running ``edge-agent run`` is a BSI Flex 335 v2.0 edge node of the tests' own
fusion node (``benchmarks.sapient_fusion``, written from the standard: mandatory fields from the protos' options,
UUID v4 and ULID formats, Dstl's timestamp window, registration first). Every message the box sends passes;
the fusion node's alert acks acknowledge the incidents; killing and restarting the fusion node mid-run loses
no alert."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.sapient_fusion import FusionNode
from edge_agent.contract.alert import Alert, Evidence
from edge_agent.contract.ids import new_ulid
from edge_agent.demo.script import pmdet
from edge_agent.incidents.store import IncidentStore
from tests.agents.alarm_box import every_alarm_box, log_rows, metal_alert_ids
from tests.agents.udp_pacer import UdpPacer
from tests.brokers import ROOT, free_port, wait_for

pytestmark = pytest.mark.integration
EXE = str(Path(sys.executable).with_name("edge-agent"))
BATCH = 10


def _config(tmp_path: Path, fusion_port: int, udp: int) -> Path:
    return every_alarm_box(tmp_path, udp, outputs={"sapient": {
        "host": "127.0.0.1", "port": fusion_port, "status_interval_s": 1, "retry_min_s": 0.2, "retry_max_s": 1,
        "resend_window_s": 5}})


def _received_alerts(node: FusionNode) -> dict[str, set[str]]:
    """alert_id -> the statuses the fusion node got for it."""
    out: dict[str, set[str]] = {}
    for rec in node.received("alert"):
        alert = rec["msg"]["alert"]
        out.setdefault(alert["alert_id"], set()).add(alert.get("status", ""))
    return out


def test_the_box_is_a_sapient_edge_node_that_loses_no_alert_when_the_fusion_node_dies(tmp_path: Path) -> None:
    fusion_port, udp = free_port(), free_port()
    node = FusionNode(fusion_port, tmp_path / "fusion.jsonl", ack_alerts=True).start()
    config = _config(tmp_path, fusion_port, udp)
    db = tmp_path / "state" / "incidents.db"
    log = (tmp_path / "agent.log").open("a")
    agent = subprocess.Popen([EXE, "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT)
    pacer = UdpPacer(udp)
    sent = 0

    def said() -> str:
        return f"agent's log:\n{(tmp_path / 'agent.log').read_text()[-3000:]}\nfusion node saw: " \
               f"{[(r.get('type') or r.get('sent') or 'closed') for r in node.records()][-40:]}"

    def alarms(n: int) -> None:
        nonlocal sent
        for _ in range(n):
            sent += 1
            pacer.send(pmdet("md-1", sent, "ALARM", 80, 1).encode() + b"\n")
        assert wait_for(lambda: len(metal_alert_ids(db)) == sent, 60), \
            f"{len(metal_alert_ids(db))} alerts after {sent}\n{said()}"

    try:
        assert pacer.wait_bound(30), said()
        assert wait_for(lambda: node.received("status_report"), 30), said()
        alarms(BATCH)
        assert wait_for(lambda: set(_received_alerts(node)) >= metal_alert_ids(db), 30), said()
        node.kill()  # mid-run: alerts keep coming while it is away
        alarms(BATCH)
        node.start()
        alarms(BATCH)
        committed = metal_alert_ids(db)
        assert wait_for(lambda: set(_received_alerts(node)) >= committed, 60), \
            f"missing at the fusion node: {sorted(committed - set(_received_alerts(node)))}\n{said()}"
        # the fusion node's alert acks are acks: every incident acknowledged, each ack by the fusion node, and
        # the acknowledged state goes back to the fusion node as an ACKNOWLEDGE alert
        assert wait_for(lambda: len(log_rows(db, "SELECT 1 FROM alerts WHERE kind = 'metal' AND acked = 1")) == sent,
                        60), said()
        by = {r[0] for r in log_rows(db, "SELECT DISTINCT by FROM acks")}
        assert by == {"sapient:5b0c3f1e-7d2a-4c8e-9f41-2a6d8b3c9e70"}, by
        assert wait_for(lambda: all("ALERT_STATUS_ACKNOWLEDGE" in s for s in _received_alerts(node).values()), 60), \
            said()
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(20)
        log.close()
    node.wait_for(lambda recs: any(r.get("msg") and r["msg"].get("status_report", {}).get("system") ==
                                   "SYSTEM_GOODBYE" for r in recs), 10)
    node.stop()
    assert agent.returncode == 0, said()

    records = node.records()
    problems = [(r.get("type"), v) for r, v in node.violations()]
    assert problems == [], problems[:10]
    # registration first on every connection: the box registered again after the restart
    by_conn: dict[tuple[int, int], list[str]] = {}
    for r in records:
        if r.get("type"):
            by_conn.setdefault((r["pid"], r["conn"]), []).append(r["type"])
    assert len(by_conn) >= 2, by_conn.keys()
    assert all(types[0] == "registration" for types in by_conn.values()), by_conn
    reg = node.received("registration")[0]["msg"]
    assert reg["registration"]["icd_version"] == "BSI Flex 335 v2.0"
    assert {d["node_type"] for d in reg["registration"]["node_definition"]} == {"NODE_TYPE_PROXIMITY_SENSOR"}
    # an alert as the box sends it: its own ULID, priority from severity, the summary, the sensor's place
    first = next(r["msg"]["alert"] for r in node.received("alert"))
    assert first["priority"] == "DISCRETE_PRIORITY_HIGH" and first["alert_type"] == "ALERT_TYPE_WARNING"
    assert first["location"]["coordinate_system"] == "LOCATION_COORDINATE_SYSTEM_LAT_LNG_DEG_M"
    assert first["location"]["y"] == pytest.approx(46.5501) and first["location"]["x"] == pytest.approx(15.6501)
    assert "md-1" in first["description"] or "Metal" in first["description"], first
    statuses = [r for r in node.received("status_report")]
    assert len(statuses) >= 3, "a status report every second while connected"


def _doctor(tmp_path: Path, outputs: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "doctor.yaml"
    path.write_text(yaml.safe_dump({"site": "t", "box": "box1", "state_dir": str(tmp_path / "state"),
                                    "outputs": outputs}))
    return subprocess.run([EXE, "doctor", "--config", str(path)], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_doctor_says_whether_the_fusion_node_accepts_the_registration(tmp_path: Path) -> None:
    port = free_port()
    sapient = {"sapient": {"host": "127.0.0.1", "port": port, "registration_timeout_s": 5}}
    (tmp_path / "state").mkdir()
    store = IncidentStore(tmp_path / "state" / "incidents.db")  # what a box that ran with the output left owed
    store.deliveries.outputs = ("sapient",)
    for _ in range(2):
        now = time.time()
        store.queue_alert(Alert(new_ulid(), new_ulid(), "t", "box1", now, "metal", "high", "new", None, None,
                                (Evidence("md-1", "metal", now),), "Metal"))
    store.close()
    down = _doctor(tmp_path, sapient)
    assert "FAIL SAPIENT: 127.0.0.1:" in down.stdout and "fix: check outputs.sapient.host" in down.stdout, down.stdout
    assert "; 2 alert state(s) owed, the oldest" in down.stdout, down.stdout
    with FusionNode(port, tmp_path / "refusing.jsonl", reject_registration=True):
        refused = _doctor(tmp_path, sapient)
    assert "the fusion node refused the registration: rejected by test fusion node" in refused.stdout, refused.stdout
    with FusionNode(port, tmp_path / "fusion.jsonl") as node:
        ok = _doctor(tmp_path, sapient)
        assert "OK   SAPIENT: 127.0.0.1:" in ok.stdout and "accepted by fusion node 5b0c3f1e" in ok.stdout, ok.stdout
        node.wait_for(lambda recs: any(r.get("type") == "status_report" for r in recs), 10)
        assert node.violations() == []


def test_what_a_fusion_node_sends_is_untrusted(tmp_path: Path) -> None:
    """Garbage, tasks, acks of alerts nobody raised and a frame announcing 4 GB: the node answers what it can,
    hands acks on for the core to judge, drops the connection on the oversized frame and registers again."""
    import socket
    import struct
    import threading

    from sapient_msg.bsi_flex_335_v2_0 import alert_ack_pb2, task_pb2

    from benchmarks.sapient_fusion import FUSION_NODE_ID, frame, now_timestamp, read_frame
    from benchmarks.sapient_fusion import SapientMessage as Msg
    from edge_agent.config.outputs import SapientConfig
    from edge_agent.outputs.sapient import SapientOutput
    from edge_agent.outputs.sapient_messages import NodeSheet, node_id_of

    server = socket.create_server(("127.0.0.1", 0))
    got: list[list[str]] = []

    def fusion_node() -> None:
        for round_ in range(2):
            conn, _ = server.accept()
            with conn:
                seen: list[str] = []
                got.append(seen)
                first = read_frame(conn)
                seen.append(first.WhichOneof("content") if first else "nothing")
                ack = Msg(node_id=FUSION_NODE_ID)
                ack.registration_ack.acceptance = True
                conn.sendall(frame(now_timestamp(ack)))
                conn.sendall(struct.pack("<I", 5) + b"hello")  # not a SapientMessage
                task = Msg(node_id=FUSION_NODE_ID)
                task.task.CopyFrom(task_pb2.Task(task_id="01J00000000000000000000000",
                                                 control=task_pb2.Task.CONTROL_START))
                conn.sendall(frame(now_timestamp(task)))
                bogus = Msg(node_id=FUSION_NODE_ID)
                bogus.alert_ack.CopyFrom(alert_ack_pb2.AlertAck(
                    alert_id="x" * 300, alert_ack_status=alert_ack_pb2.AlertAck.ALERT_ACK_STATUS_ACCEPTED))
                conn.sendall(frame(now_timestamp(bogus)))
                conn.settimeout(10)
                while (msg := _read_or_none(conn)) is not None:
                    seen.append(msg.WhichOneof("content") or "")
                    if msg.WhichOneof("content") == "task_ack":
                        assert msg.task_ack.task_status == msg.task_ack.TASK_STATUS_REJECTED
                        if round_ == 0:
                            conn.sendall(struct.pack("<I", 2**32 - 1))  # 4 GB announced: the node must hang up
                        else:
                            return

    def _read_or_none(conn: socket.socket) -> Msg | None:
        try:
            return read_frame(conn)
        except OSError:  # the node hung up (a reset: it left our frame unread)
            return None

    thread = threading.Thread(target=fusion_node, daemon=True)
    thread.start()
    store = IncidentStore(tmp_path / "incidents.db")
    acks: list[Any] = []
    cfg = SapientConfig(host="127.0.0.1", port=server.getsockname()[1], retry_min_s=0.1, retry_max_s=0.2)
    sheet = NodeSheet(node_id_of("t", "box1"), "n", "n", 0, 1, 0, 10)
    out = SapientOutput(store.deliveries, cfg, sheet, acks.append, {}).start()
    try:
        thread.join(30)
        assert not thread.is_alive(), got
        assert [seen[0] for seen in got] == ["registration", "registration"], "it registered again"
        assert all("task_ack" in seen for seen in got), got
        assert len(acks) >= 1 and acks[0].alert_id == "x" * 300 and acks[0].by == f"sapient:{FUSION_NODE_ID}"
        assert out.report()["failures"] >= 1
    finally:
        out.stop()
        store.close()
        server.close()


def test_health_shows_each_output_state_and_backlog(tmp_path: Path) -> None:
    from edge_agent.config.agent import load_config
    from edge_agent.runtime.agent import Agent

    fusion_port, udp = free_port(), free_port()
    node = FusionNode(fusion_port, tmp_path / "fusion.jsonl", ack_alerts=False).start()
    agent = Agent(load_config(_config(tmp_path, fusion_port, udp)))
    agent.start()
    try:
        def sapient() -> dict[str, Any]:
            return dict(agent.health()["outputs"]["sapient"])

        assert wait_for(lambda: sapient()["state"] == "up" and sapient()["registered"], 20), sapient()
        node.kill()
        assert wait_for(lambda: sapient()["state"] != "up", 20), sapient()
        UdpPacer(udp).send(pmdet("md-1", 1, "ALARM", 80, 1).encode() + b"\n")
        assert wait_for(lambda: sapient()["backlog"] == 1, 20), sapient()
        report = sapient()
        assert report["last_error"] and report["failures"] >= 1 and report["oldest_s"] >= 0, report
        assert agent.health()["stages"]["output:sapient"] == "ok", "a peer away is not a dead stage"
        node.start()
        assert wait_for(lambda: sapient()["backlog"] == 0 and sapient()["sent"] == 1, 20), sapient()
    finally:
        agent.stop()
        node.stop()
