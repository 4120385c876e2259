"""What each sensor saw, as the contract's ``Evidence``: the libraries' events (a zone event of a camera's track,
a metal-detector event, a radio event) converted at the edge, so the contract stays free of them."""

from __future__ import annotations

import math
from typing import Any

from edge_agent.contract.alert import Evidence
from geofences.rules import ZoneEvent
from sensors.events import MetalEvent, RadioEvent


def zone_evidence(ev: ZoneEvent, temp_c: float | None = None) -> Evidence:
    f: dict[str, Any] = {"label": ev.label, "confidence": round(min(1.0, max(0.0, ev.confidence)), 3),
                         "track_id": ev.track_id, "kind": ev.kind}
    if ev.bbox is not None:
        f["bbox"] = [round(v, 1) for v in ev.bbox]
    if temp_c is not None:
        f["temp_c"] = round(temp_c, 1)
    if ev.direction:
        f["direction"] = ev.direction
    if ev.dwell_s is not None:
        f["dwell_s"] = round(ev.dwell_s, 1)
    if ev.count is not None:
        f["count"] = ev.count
    for key in ("height_m", "width_m", "speed_mps"):  # what the class rests on (calibrated cameras)
        value = getattr(ev, key)
        if value is not None and math.isfinite(value):
            f[key] = round(value, 2)
    if ev.track_id:  # who decided the class, and how many pixels it had to go on
        f["by"] = ev.by
        if ev.px_tall is not None and math.isfinite(ev.px_tall):
            f["px_tall"] = round(ev.px_tall, 1)
    return Evidence(ev.camera, "thermal", ev.ts, tuple(f.items()), ev.latlon)


def metal_evidence(ev: MetalEvent, location: tuple[float, float] | None) -> Evidence:
    return Evidence(ev.sensor, "metal", ev.ts, (("event", ev.event), ("level", ev.level), ("zone", ev.zone)),
                    location)


def radio_evidence(ev: RadioEvent, location: tuple[float, float] | None) -> Evidence:
    f: dict[str, Any] = {"kind": ev.kind}
    for key in ("freq_hz", "rssi_db", "bearing_deg", "bearing_conf", "radio_id"):
        value = getattr(ev, key)
        if value is not None:
            f[key] = value
    where = (ev.lat, ev.lon) if ev.lat is not None and ev.lon is not None else location
    return Evidence(ev.sensor, "radio", ev.ts, tuple(f.items()), where)
