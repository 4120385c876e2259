"""The core stage on typed messages, with a real incident log: a snapshot shows the frame of its event, frames
in flight are bounded per camera, fusion's results are written in order, and sensor health has one owner."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.types import Detections
from edge_agent.config.agent import AgentConfig
from edge_agent.contract.alert import Alert
from edge_agent.core.messages import CoreQueue, FrameBudget, FrameTracks, SensorEvent
from edge_agent.core.stage import Core
from edge_agent.incidents.diskguard import DiskGuard
from edge_agent.incidents.store import IncidentStore
from edge_agent.incidents.writer import IncidentLogWriter
from geofences.rules import TrackPoint
from sensors.events import MetalEvent
from sensors.frames import ThermalFrame

T0 = 1_795_435_200.0


def sequential_ids() -> Iterator[str]:
    for i in count():
        yield f"01J{i:023d}"


@pytest.fixture
def core(tmp_path: Path) -> Iterator[tuple[Core, list[Alert]]]:
    config = AgentConfig.model_validate({
        "site": "t", "box": "b", "state_dir": str(tmp_path / "state"),
        "zones": [{"id": "yard", "camera": "cam", "polygon": [[0, 0], [320, 0], [320, 240], [0, 240]],
                   "filters": {"min_frames": 1, "min_age_s": 0}}],  # the first frame with a person alerts
        "fixed_sensors": [{"id": "md-1", "kind": "metal", "latlon": [46.55, 15.65], "hb_timeout_s": 30}],
    })
    config.db_path.parent.mkdir(parents=True)
    store = IncidentStore(config.db_path)
    alerts: list[Alert] = []
    queue = CoreQueue(threading.Event())
    c = Core(config, "border/t/b", queue, FrameBudget(), IncidentLogWriter(store, DiskGuard(config.db_path.parent, 0)),
             {}, {}, lambda a: alerts.append(a) if a is not None else None)
    ids = sequential_ids()
    c.fusion.new_id = lambda _ts: next(ids)  # deterministic ids
    yield c, alerts
    store.close()


def frame(seq: int, level: int) -> ThermalFrame:
    return ThermalFrame("cam", seq, T0 + seq, np.full((240, 320), level, np.uint8))


def seen(ts: float, track_id: int | None, view: ThermalFrame | None) -> FrameTracks:
    """A frame of camera ``cam`` as its detection stage hands it to the core: one person (``track_id``) or none."""
    if track_id is None:
        return FrameTracks("cam", ts, (), Detections.empty(), (), view)
    box = (100.0, 60.0, 140.0, 200.0)
    point = TrackPoint("cam", track_id, "person", 0.9, ts, box, 120.0, 200.0)  # an uncalibrated camera's person
    dets = Detections(np.array([box], np.float32), np.array([0.9], np.float32), np.array([0]), np.array([track_id]))
    return FrameTracks("cam", ts, (point,), dets, (), view)


def test_the_snapshot_shows_the_frame_of_its_event_not_a_newer_one(core: tuple[Core, list[Alert]]) -> None:
    c, alerts = core
    budget = c.budget
    assert budget.take("cam") and budget.take("cam")
    event = seen(T0 + 1, 7, frame(1, 200))  # a bright frame: the person enters
    newer = seen(T0 + 2, 7, frame(2, 10))  # already queued behind it: a dark one
    c.handle_one(event)
    c.handle_one(newer)
    (alert,) = alerts
    assert alert.kind == "intrusion" and alert.alert_id == "01J" + "0" * 22 + "1"  # the engine's ids
    assert alert.snapshot == f"border/t/b/snapshots/{alert.alert_id}"
    row = c.store.db.execute("SELECT snapshot FROM incidents WHERE alert_id = ?", [alert.alert_id]).fetchone()
    jpeg = (c.config.db_path.parent / row[0]).read_bytes()
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert img[5:40, 200:300].mean() > 150  # drawn on the event's frame, not on the newer dark one
    assert [budget.take("cam") for _ in range(budget.limit + 1)] == [True] * budget.limit + [False]  # given back


def test_frames_in_flight_are_bounded_per_camera() -> None:
    budget = FrameBudget(limit=3)
    assert [budget.take("a") for _ in range(5)] == [True, True, True, False, False]
    assert budget.take("b")  # another camera has its own budget
    budget.give_back("a")
    assert budget.take("a") and not budget.take("a")


def test_a_message_without_its_frame_gives_no_snapshot_of_another_moment(core: tuple[Core, list[Alert]]) -> None:
    c, alerts = core
    c.handle_one(seen(T0 + 1, None, frame(1, 200)))
    c.handle_one(seen(T0 + 2, 3, None))  # its frame stayed behind (budget spent)
    (alert,) = alerts
    assert alert.kind == "intrusion" and alert.snapshot is None


def test_detector_health_is_decided_once_and_fusion_builds_the_alerts(core: tuple[Core, list[Alert]]) -> None:
    c, alerts = core

    def metal(event: str, t: float) -> SensorEvent:
        return SensorEvent(MetalEvent("md-1", int(t - T0), event, 100 if event == "TAMPER" else 0, 1, t, t))

    c.handle_one(metal("TAMPER", T0))
    c.handle_one(metal("TAMPER", T0 + 1))  # the same episode
    c.handle_one(metal("HB", T0 + 2))  # within the hold time (the detector's 30 s heartbeat timeout): still faulty
    assert c.sensors.state_of("md-1") == "faulty" and c.fusion.faulty.keys() == {"md-1"}
    c.handle_one(metal("HB", T0 + 40))  # held long enough: back
    assert [(a.kind, a.severity, a.state) for a in alerts] == [("sensor_fault", "high", "new"),
                                                                 ("sensor_fault", "high", "closed")]
    assert c.sensors.state_of("md-1") == "ok" and not c.fusion.faulty
    states = c.store.db.execute("SELECT state FROM sensor_health WHERE sensor = 'md-1' ORDER BY rowid").fetchall()
    assert [s for (s,) in states][-2:] == ["faulty", "ok"]


def test_an_ack_is_never_a_reason_for_the_mqtt_thread_to_wait_long(tmp_path: Path) -> None:
    """The core queue is full: the ack hand-off gives up after its timeout (the publisher keeps the ack as
    rejected input) instead of blocking paho's network thread until the broker drops the box."""
    import time

    from edge_agent.contract.acks import Ack
    from edge_agent.core.messages import AckReceived
    from edge_agent.runtime.agent import Agent
    from edge_agent.runtime.errors import CoreBusy

    agent = Agent(AgentConfig.model_validate({"site": "s", "box": "b", "state_dir": str(tmp_path)}))
    agent.queue = CoreQueue(agent.stop_event, maxsize=1)
    ack = Ack("01M84YFHTYKRAMXT3QFKTG4R83", "sgt", 1_795_435_200.0)
    agent._ack_arrived(ack)  # room for one
    t0 = time.monotonic()
    with pytest.raises(CoreBusy, match="ack of 01M84YFHTYKRAMXT3QFKTG4R83 not taken"):
        agent._ack_arrived(ack)
    assert time.monotonic() - t0 < 5.0
    assert isinstance(agent.queue.get(0.1), AckReceived)
