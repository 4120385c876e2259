"""The health payload (``.../health``): each sensor's state and rate, detector times, each camera's detection
load (does it keep up: frames captured, detected, gated, dropped, how old a frame is when its detection is
done), the shared detector, queue depths, the outbox backlog and each other output's, the disk, and every stage."""

from __future__ import annotations

import time
from typing import Any

from detectors.engine import SharedEngine
from edge_agent import __version__
from edge_agent.contract.ids import iso_ms
from edge_agent.core.stage import Core
from edge_agent.outputs.base import OutputRunner
from edge_agent.perception.stage import CameraLoad
from edge_agent.runtime.stages import Stages


def health_payload(core: Core, stages: Stages, detect_ms: dict[str, float], started: float,
                   loads: dict[str, CameraLoad] | None = None, engine: SharedEngine | None = None,
                   outputs: list[OutputRunner] | None = None, broker: dict[str, Any] | None = None) -> dict[str, Any]:
    """``loads``: each camera's detection load (``cameras`` in the payload: captured, detected, gated, dropped,
    frame age and detector time percentiles, detections per second); ``engine``: the shared detector's;
    ``outputs``: Cursor on Target and SAPIENT (state, backlog, oldest owed, counters, last error); ``broker``:
    which broker of ``mqtt.hosts`` the box is on and how often it moved."""
    now = time.time()
    backlog, oldest = core.store.backlog(now)
    sensors: dict[str, Any] = {}
    for cam_id, cam in core.cameras.items():
        c = cam.counters
        sensors[cam_id] = {"kind": "camera", "state": "ended" if cam.ended else cam.state,
                           "rate_hz": round(c.fps, 2), "frames_bad": c.frames_bad}
    for feed in core.feeds.values():
        sensors[feed.sensor_id] = {"kind": feed.kind, "state": core.sensors.state_of(feed.sensor_id) or "ok",
                                   "lines": feed.reader.counters.lines, "dropped": feed.reader.counters.dropped,
                                   "events": feed.counters.events,
                                   "rejected": feed.counters.rejected, "seq_gaps": feed.counters.seq_gaps}
    disk = core.writer.disk
    free = disk.free_bytes()
    d = disk.counters
    stage_states = stages.states()
    return {
        "ts": iso_ms(now), "version": __version__, "uptime_s": round(now - started, 1),
        "state": "ok" if all(v == "ok" for v in stage_states.values()) and not core.fusion.faulty and not disk.full
        else "degraded",
        "sensors": sensors,
        "detector_ms": {k: round(v, 1) for k, v in detect_ms.items()},
        "queues": {"core": core.queue.qsize(), "core_max": core.queue.maxsize,
                   "core_errors": core.summary.core_errors},
        "outbox": {"backlog": backlog, "oldest_s": round(oldest, 1)},
        "disk_free_mb": round(free / 2**20, 1) if free is not None else None,
        "disk": {"full": disk.full, "reserve_held": disk.reserve.exists(),
                 "unwritten": len(core.writer.unwritten), "dropped_snapshots": d.dropped_snapshots,
                 "dropped_rejects": d.dropped_rejects, "lost": d.unwritten_lost},
        "stages": stage_states,
        "ledger_head": core.store.ledger_head(),
        "cameras": camera_loads(core, loads or {}),
        "engine": engine_report(engine) if engine is not None else None,
        "outputs": {out.name: out.report(now) for out in outputs or ()},
        "mqtt": broker,
    }


def camera_loads(core: Core, loads: dict[str, CameraLoad]) -> dict[str, Any]:
    mono = time.monotonic()
    return {cam_id: load.report(core.cameras[cam_id].counters.frames_read, core.cameras[cam_id].counters.frames_dropped,
                                mono)
            for cam_id, load in loads.items() if cam_id in core.cameras}


def engine_report(engine: SharedEngine) -> dict[str, Any]:
    c = engine.counters
    return {"workers": engine.workers, "served": c.served, "errors": c.errors,
            "whole_frames": c.whole, "crops": c.crops, "mosaics": c.mosaics, "shared_mosaics": c.shared_mosaics,
            "frames": engine.detector.inference_modes(),
            "wait_ms_mean": round(c.wait_ms_total / c.served, 1) if c.served else None,
            "wait_ms_max": round(c.max_wait_ms, 1),
            "by_priority": {name: c.by_priority.get(p, 0) for p, name in ((2, "tracking"), (1, "motion"),
                                                                          (0, "keepalive"))}}
