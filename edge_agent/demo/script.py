"""The demo's scripted sensor lines: metal-detector sentences (heartbeats, alarms) and radio events, timed
against the synthetic border scene so that some of them corroborate what the camera sees."""

from __future__ import annotations

import json
from dataclasses import dataclass

from edge_agent.config.agent import AgentConfig
from edge_agent.contract.ids import iso_ms
from sensors.events import nmea_checksum


@dataclass(frozen=True, slots=True)
class Line:
    at_s: float  # seconds after the agent started
    via: str  # the fixed sensor whose port it is sent to
    text: str


def pmdet(sensor: str, seq: int, event: str, level: int, zone: int) -> str:
    body = f"PMDET,{sensor},{seq},{event},{level},{zone}"
    return f"${body}*{nmea_checksum(body.encode()):02X}"


def script_for(config: AgentConfig, t0: float, length_s: float = 70.0) -> list[Line]:
    ids = {s.id for s in config.fixed_sensors if s.url}
    lines: list[Line] = []
    seqs: dict[str, int] = {}

    def metal(at: float, sensor: str, event: str, level: int, zone: int) -> None:
        if sensor in ids:
            seqs[sensor] = seqs.get(sensor, 0) + 1
            lines.append(Line(at, sensor, pmdet(sensor, seqs[sensor], event, level, zone)))

    def radio(at: float, sensor: str, **fields: object) -> None:
        if sensor in ids:
            lines.append(Line(at, sensor, json.dumps({"sensor": sensor, "ts": iso_ms(t0 + at), **fields})))

    for i in range(int(length_s // 5) + 1):  # detectors say they are alive every 5 s
        metal(i * 5.0 + 0.2, "md-gate", "HB", 0, 1)
        metal(i * 5.0 + 0.4, "md-fence", "HB", 0, 2)
    # people walk through the patrol strip from about 9 s: the gate detector and a handheld radio agree
    metal(12.0, "md-gate", "ALARM", 78, 1)
    radio(14.0, "rx-east", kind="rf_detect", freq_hz=446_006_250, rssi_db=-61.5, radio_id="PMR-7")
    radio(15.0, "rx-east", kind="bearing", bearing_deg=271.0, bearing_conf=0.8, freq_hz=446_006_250)
    # a malformed sentence: counted, kept with its reason, never stops anything
    if "md-gate" in ids:
        lines.append(Line(20.0, "md-gate", "$PMDET,md-gate,99,ALARM,50,1*00"))
    # something metal at the fence with nobody on camera: a metal-only incident
    metal(40.0, "md-fence", "ALARM", 64, 2)
    return sorted(lines, key=lambda ln: ln.at_s)
