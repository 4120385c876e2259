"""Issue 23 end to end: ``edge-agent run`` on the intrusion scenario (the real model, tracker and rules) with both
command-and-control outputs on. A TAK client of a real TAK server (taky) gets the geofence-breach alarms,
parsed by takproto; the tests' SAPIENT fusion node gets a valid registration, detection reports of the tracks
with stable object ids and the alerts, and acknowledges them; each ack comes back to TAK as the alarm's cancel."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.sapient_fusion import FusionNode
from benchmarks.takserver import CotListener, TakServer, have_taky
from sensors.sim import ThermalScene
from tests.brokers import ROOT, free_port
from tests.scenes import intrusion_config

pytestmark = [pytest.mark.integration, pytest.mark.model,
              pytest.mark.skipif(not have_taky(), reason="taky's venv is missing: run ./dev setup")]
EXE = str(Path(sys.executable).with_name("edge-agent"))


def test_the_intrusion_scenario_reaches_tak_and_sapient_and_acks_cancel_the_alarms(tmp_path: Path,
                                                                                   default_ov640: Path) -> None:
    scene = ThermalScene.from_url("sim://intrusion")
    cfg: dict[str, Any] = intrusion_config(scene, default_ov640)
    tak = TakServer(tmp_path / "taky").start()
    fusion = FusionNode(free_port(), tmp_path / "fusion.jsonl", ack_alerts=True).start()
    cfg |= {"site": "t", "box": "box1", "state_dir": str(tmp_path / "state"),
            "outputs": {"cot": {"transport": "tcp", "host": "127.0.0.1", "port": tak.port, "stale_s": 300},
                        "sapient": {"host": "127.0.0.1", "port": fusion.port, "status_interval_s": 2}}}
    path = tmp_path / "box.yaml"
    path.write_text(yaml.safe_dump(cfg))
    client = CotListener(tak)
    log = (tmp_path / "agent.log").open("a")
    agent = subprocess.Popen([EXE, "run", "--config", str(path)], stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT)

    def said() -> str:
        return f"agent's log:\n{(tmp_path / 'agent.log').read_text()[-3000:]}"

    try:
        alarms = client.wait_for(lambda e: e.type == "b-a-g", 180)
        cancels = client.wait_for(lambda e: e.type == "b-a-o-can", 60)
        fusion.wait_for(lambda recs: sum(r.get("type") == "detection_report" for r in recs) >= 5, 60)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        log.close()
        client.close()
        tak.stop()
    fusion.stop()
    assert agent.returncode == 0, said()

    # TAK: a geofence breach at the zone, the box's uid scheme, time = start < stale, the emergency and remarks
    first = alarms[0].cot
    assert first.uid.startswith("edge-agent.t.box1.") and first.how == "m-i"
    lat0, lon0 = scene.ground_to_latlon(0.5, 19.0)
    assert abs(first.lat - lat0) < 2e-4 and abs(first.lon - lon0) < 2e-4, (first.lat, first.lon)
    assert 0 < first.ce < 50, "circular error from the camera's calibration"
    assert first.sendTime == first.startTime < first.staleTime and first.staleTime - first.startTime == 300_000
    assert 'type="Geo-fence Breached"' in first.detail.xmlDetail and "<remarks" in first.detail.xmlDetail
    assert first.detail.contact.callsign == "t-box1"
    # an ack (here the fusion node's) cancels the alarm of the same uid
    assert {e.uid for e in cancels} <= {e.uid for e in alarms}

    # SAPIENT: every message valid, registration first, detection reports placed in lat/lon with stable ids
    assert fusion.violations() == [], fusion.violations()[:5]
    types = [r["type"] for r in fusion.records() if r.get("type")]
    assert types[0] == "registration" and "alert" in types, types[:10]
    assert {d["node_type"] for d in fusion.received("registration")[0]["msg"]["registration"]["node_definition"]} \
        == {"NODE_TYPE_CAMERA"}
    reports = [r["msg"]["detection_report"] for r in fusion.received("detection_report")]
    by_track: dict[str, set[str]] = {}
    for rep in reports:
        track = next(i["value"] for i in rep["track_info"] if i["type"] == "track")
        by_track.setdefault(track, set()).add(rep["object_id"])
        assert rep["location"]["coordinate_system"] == "LOCATION_COORDINATE_SYSTEM_LAT_LNG_DEG_M"
    assert all(len(ids) == 1 for ids in by_track.values()), "one object id per track"
    assert len({i for ids in by_track.values() for i in ids}) == len(by_track), "a different id for each track"
    assert any(c["type"] == "Human" for rep in reports for c in rep["classification"])
    assert len({r["report_id"] for r in reports}) == len(reports)
