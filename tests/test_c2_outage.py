"""Issue 23's outage figures: a running ``edge-agent run`` raises metal alerts while its TAK server (taky, over
TCP with ping-confirmed delivery) and its SAPIENT fusion node are each SIGKILLed twice mid-run and brought back,
and the agent itself is SIGKILLed and restarted while the fusion node is away. Every alert the box committed
reaches each peer; only repeats of the same alert come twice.

    python -m tests.test_c2_outage [--alerts N]     prints the figures (committed vs received by each peer)
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks.sapient_fusion import FusionNode
from benchmarks.takserver import CotListener, TakServer, have_taky
from edge_agent.demo.script import pmdet
from tests.agents.alarm_box import every_alarm_box, metal_alert_ids
from tests.agents.udp_pacer import UdpPacer
from tests.brokers import ROOT, free_port, wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not have_taky(), reason="taky's venv is missing: run ./dev setup")]
EXE = str(Path(sys.executable).with_name("edge-agent"))
UID_PREFIX = "edge-agent.t.box1."


@dataclass
class C2Outage:
    committed: set[str] = field(default_factory=set)
    tak: dict[str, int] = field(default_factory=dict)  # alert id -> times a TAK client got its alarm (not cancels)
    sapient: dict[str, int] = field(default_factory=dict)  # alert id -> times the fusion node got it ACTIVE
    violations: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        def peer(name: str, got: dict[str, int]) -> str:
            missing = len(self.committed - set(got))
            repeats = sum(n - 1 for n in got.values())
            return f"{name:<8} received {len(set(got) & self.committed):4d} of {len(self.committed)} " \
                   f"(missing {missing}, repeats {repeats})"
        return [*self.events, f"committed {len(self.committed)} alerts in {self.seconds:.1f} s",
                peer("TAK", self.tak), peer("SAPIENT", self.sapient),
                f"SAPIENT messages failing the standard's checks: {len(self.violations)}"]


def _config(tmp_path: Path, udp: int, tak_port: int, fusion_port: int) -> Path:
    return every_alarm_box(tmp_path, udp, outputs={
        "cot": {"transport": "tcp", "host": "127.0.0.1", "port": tak_port, "retry_min_s": 0.2, "retry_max_s": 1,
                "confirm_timeout_s": 3},
        "sapient": {"host": "127.0.0.1", "port": fusion_port, "retry_min_s": 0.2, "retry_max_s": 1}})


def run_c2_outage(tmp_path: Path, alerts: int = 120) -> C2Outage:
    """``alerts`` metal alerts in seven batches; between them the TAK server and the fusion node each die twice, and
    the agent once while the fusion node is away."""
    udp = free_port()
    tak = TakServer(tmp_path / "taky").start()
    fusion = FusionNode(free_port(), tmp_path / "fusion.jsonl", ack_alerts=False).start()
    clients = [CotListener(tak)]
    db = tmp_path / "state" / "incidents.db"
    log = (tmp_path / "agent.log").open("a")
    config = _config(tmp_path, udp, tak.port, fusion.port)
    pacer = UdpPacer(udp)

    def start_agent() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([EXE, "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log,
                                cwd=ROOT)
        assert pacer.wait_bound(30), (tmp_path / "agent.log").read_text()[-3000:]
        return proc

    agent = start_agent()
    run = C2Outage()
    t0 = time.monotonic()
    sent = 0
    per_batch = max(1, alerts // 7)

    def note(what: str) -> None:
        run.events.append(f"{time.monotonic() - t0:5.1f} s {sent:4d} alarms: {what}")

    def batch() -> None:
        nonlocal sent
        for _ in range(per_batch):
            sent += 1
            pacer.send(pmdet("md-1", sent, "ALARM", 80, 1).encode() + b"\n")
            time.sleep(0.01)
        assert wait_for(lambda: len(metal_alert_ids(db)) == sent, 60), \
            f"{len(metal_alert_ids(db))} alerts after {sent} alarms"

    def tak_back() -> None:
        tak.start()
        clients.append(CotListener(tak))  # a TAK device reconnects: what it missed comes from the box's backlog

    try:
        batch()
        tak.kill()
        note("TAK server SIGKILL")
        batch()
        fusion.kill()
        note("fusion node SIGKILL")
        batch()
        tak_back()
        note("TAK server back")
        batch()
        fusion.start()
        tak.kill()
        note("fusion node back, TAK server SIGKILL again")
        batch()
        fusion.kill()
        tak_back()
        note("fusion node SIGKILL again, TAK server back")
        batch()
        agent.send_signal(signal.SIGKILL)  # a power cut with alerts owed to the fusion node: only the log has them
        agent.wait(10)
        agent = start_agent()
        note("agent SIGKILL with a backlog for SAPIENT, restarted")
        batch()
        fusion.start()
        note("fusion node back")
        run.committed = metal_alert_ids(db)

        def counted() -> bool:
            run.tak = {}
            for client in clients:
                for event in client.events():
                    alarm = event.type == "b-d" and event.cot.staleTime - event.cot.startTime > 1000  # not a cancel
                    if alarm and event.uid and event.uid.startswith(UID_PREFIX):
                        key = event.uid.removeprefix(UID_PREFIX)
                        run.tak[key] = run.tak.get(key, 0) + 1
            run.sapient = {}
            for rec in fusion.received("alert"):
                alert = rec["msg"]["alert"]
                if alert.get("status") == "ALERT_STATUS_ACTIVE":
                    run.sapient[alert["alert_id"]] = run.sapient.get(alert["alert_id"], 0) + 1
            return run.committed <= set(run.tak) and run.committed <= set(run.sapient)

        wait_for(counted, 60)
        run.seconds = time.monotonic() - t0
        note("both peers caught up" if counted() else "gave up waiting")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        log.close()
        for client in clients:
            client.close()
        tak.stop()
        fusion.stop()
    run.violations = [v for _, v in fusion.violations()]
    return run


def test_each_peer_gets_every_alert_through_two_outages_each(tmp_path: Path) -> None:
    run = run_c2_outage(tmp_path, alerts=70)
    report = "\n".join(run.lines())
    assert len(run.committed) == 70, report
    assert run.committed - set(run.tak) == set(), report
    assert run.committed - set(run.sapient) == set(), report
    assert run.violations == [], report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("\n".join(run_c2_outage(Path(tmp), args.alerts).lines()))
