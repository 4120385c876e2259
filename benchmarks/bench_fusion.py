"""Sustained sensor events per second through parse -> geofence -> fusion, and the p99 time from a line
received to the incident updated, in one run.

The stream mixes metal-detector sentences (alarms, heartbeats, clears), radio JSON lines (bearings,
positions, detections) and thermal track updates that go through the zone rules, over a site with
several geographic zones, detectors and receivers; incidents open, join, alert and close as they would.

    .venv/bin/python benchmarks/bench_fusion.py [--events 30000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_agent.config.agent import AgentConfig
from edge_agent.contract.alert import Alert
from edge_agent.core.fusion import FusionResult
from edge_agent.core.sensorstate import HEALTH_EVENTS, SensorStates
from edge_agent.core.site import Site
from geofences.geo import destination
from geofences.rules import TrackPoint
from sensors.events import MetalEvent, RadioEvent, nmea_checksum
from sensors.feeds import SensorFeed

ORIGIN = (46.55, 15.65)
ZONES, DETECTORS, RECEIVERS = 8, 20, 4


def square(lat: float, lon: float, half_m: float) -> list[list[float]]:
    n = destination(lat, lon, 0, half_m)[0] - lat
    e = destination(lat, lon, 90, half_m)[1] - lon
    return [[lat - n, lon - e], [lat - n, lon + e], [lat + n, lon + e], [lat + n, lon - e]]


def site_config() -> dict:
    zones, sensors, fusion = [], [], []
    for z in range(ZONES):
        lat, lon = destination(*ORIGIN, 45 * z, 300 + 40 * z)
        zones.append({"id": f"z{z}", "space": "geo", "polygon": square(lat, lon, 25)})
        fusion.append({"id": f"f{z}", "place": f"z{z}", "metal": [f"md{z}"], "radius_m": 40, "window_s": 30,
                       "quiet_s": 60, "cooldown_s": 120})
    for d in range(DETECTORS):
        lat, lon = destination(*ORIGIN, 45 * (d % ZONES), 300 + 40 * (d % ZONES) + (d // ZONES) * 5)
        sensors.append({"id": f"md{d}", "kind": "metal", "latlon": [lat, lon]})
    for r in range(RECEIVERS):
        sensors.append({"id": f"rf{r}", "kind": "radio", "latlon": list(destination(*ORIGIN, 90 * r, 1500))})
    cal = [{"pixel": [u, v], "latlon": list(destination(*ORIGIN, b, d))}
           for (u, v), (b, d) in zip([(40, 470), (600, 470), (80, 250), (560, 250), (320, 330)],
                                     [(300, 20), (60, 20), (330, 60), (30, 60), (0, 35)], strict=True)]
    return {"site": "bench", "box": "bench", "zones": zones, "fixed_sensors": sensors, "fusion": fusion,
            "cameras": [{"id": "cam", "source": "sim://quiet", "calibration": {"points": cal}}]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=30_000)
    args = ap.parse_args()
    config = AgentConfig.model_validate(site_config())
    site = Site.from_config(config)
    alerts: list[Alert] = []
    fusion = site.fusion_engine()
    states = SensorStates(config)
    rules = site.engine()

    def take(result: FusionResult) -> None:
        alerts.extend(result.alerts)

    def event(ev: MetalEvent | RadioEvent) -> None:  # as the agent's core routes them
        if isinstance(ev, RadioEvent):
            take(fusion.on_radio(ev))
        elif ev.event in HEALTH_EVENTS:
            change = states.on_metal(ev)
            if change is not None:
                take(change.fused(fusion))
        else:
            take(fusion.on_metal(ev))

    metal = SensorFeed("md", "metal", "udp://127.0.0.1:0", event, accept=frozenset(f"md{d}" for d in range(DETECTORS)))
    radio = SensorFeed("rf", "radio", "udp://127.0.0.1:0", event, accept=frozenset(f"rf{r}" for r in range(RECEIVERS)))
    rng = random.Random(0)
    seq = [0] * DETECTORS
    t = 1_795_435_200.0
    lines: list[tuple[str, object]] = []
    for _ in range(args.events):
        r = rng.random()
        if r < 0.6:
            d = rng.randrange(DETECTORS)
            seq[d] += 1
            ev = rng.choices(["HB", "ALARM", "CLEAR"], [6, 3, 1])[0]
            body = f"PMDET,md{d},{seq[d]},{ev},{rng.randrange(101)},{d % ZONES}".encode()
            lines.append(("metal", b"$" + body + b"*%02X" % nmea_checksum(body)))
        elif r < 0.9:
            kind = rng.choice(["bearing", "position", "rf_detect"])
            obj: dict[str, object] = {"sensor": f"rf{rng.randrange(RECEIVERS)}", "kind": kind, "freq_hz": 446e6}
            if kind == "bearing":
                obj["bearing_deg"] = rng.uniform(0, 360)
            if kind == "position":
                obj["lat"], obj["lon"] = destination(*ORIGIN, rng.uniform(0, 360), rng.uniform(0, 800))
            lines.append(("radio", obj))
        else:
            lines.append(("track", (rng.randrange(50), rng.uniform(0, 640), rng.uniform(250, 479))))
    latencies = []
    start = time.perf_counter()
    for kind, payload in lines:
        t += 0.01  # 100 events per second of sensor time: incidents open, join and close
        t0 = time.perf_counter()
        if kind == "metal":
            metal.handle(payload, t)  # type: ignore[arg-type]
        elif kind == "radio":
            obj = dict(payload)  # type: ignore[call-overload]
            obj["ts"] = int(t * 1000)
            radio.handle(json.dumps(obj).encode(), t)
        else:
            track, u, v = payload  # type: ignore[misc]
            px = TrackPoint("cam", track, "person", 0.8, t, (u - 10, v - 60, u + 10, v), u, v, 10.0)
            cal = site.calibrations["cam"]
            lat, lon = cal.pixel_to_latlon(u, v)
            x, y = site.plane.to_xy(lat, lon)  # type: ignore[union-attr]
            geo = TrackPoint("cam", track, "person", 0.8, t, px.bbox, float(x), float(y), 10.0,
                             (float(lat), float(lon)))
            for zev in rules.update("cam", t, [px], [geo]):
                take(fusion.on_zone_event(zev))
        take(fusion.tick(t))
        latencies.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    print(f"{args.events:,} events (60% metal, 30% radio, 10% thermal track updates), {ZONES} zones, "
          f"{DETECTORS} detectors, {RECEIVERS} receivers")
    print(f"  sustained: {args.events / total:,.0f} events/s (parse -> geofence -> fusion, one thread)")
    print(f"  line received -> incident updated: median {statistics.median(latencies) * 1e6:.0f} us, "
          f"p99 {p99 * 1e6:.0f} us")
    print(f"  alerts {len(alerts):,}, rejected lines {metal.counters.rejected + radio.counters.rejected}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
