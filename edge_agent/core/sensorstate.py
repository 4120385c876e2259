"""The one owner of every sensor's health state: cameras (their reader's state), metal detectors (TAMPER,
FAULT, heartbeats) and silent feeds all come here, and only here is it decided that a sensor failed or is
back. A fault counts at once; a recovery only after the sensor's own hold time in the fault, so one sensor
cannot flap faster than its hysteresis; fault alerts per sensor and hour are bounded. Fusion builds the
alerts (``FusionEngine.sensor_fault``/``sensor_ok``) for the changes this module reports."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from edge_agent.config.agent import AgentConfig
from edge_agent.core.fusion import FusionEngine, FusionResult
from sensors.events import MetalEvent

log = logging.getLogger(__name__)

FAULT_HOLD_MIN_S = 10.0  # a sensor back from a fault must stay well this long before it counts as back
FAULT_ALERTS_PER_H = 6  # sensor_fault alerts per sensor per hour; more state changes are logged, not alerted
HEALTH_EVENTS = ("TAMPER", "FAULT", "HB")  # metal events about the detector itself, not about the ground
FAILED = ("offline", "faulty")
WELL = ("online", "ok")


@dataclass(slots=True)
class SensorState:
    """The one record of a sensor's health state: what it is, since when, and its recent fault alerts."""

    state: str
    since: float
    hold_s: float
    fault_alerts: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StateChange:
    """A sensor changed state (the incident log records it); ``alert`` says what fusion is to alert."""

    sensor: str
    state: str
    detail: str
    ts: float
    alert: Literal["fault", "back"] | None = None
    event: MetalEvent | None = None  # the detector's own report of the fault, if it made one

    def fused(self, fusion: FusionEngine) -> FusionResult:
        """The alerts fusion gives for this change: a fault alert, the fault's alert closed, or none."""
        if self.alert == "fault":
            reason = f"{self.sensor} {self.state}: {self.detail}" if self.detail else f"{self.sensor} {self.state}"
            return fusion.sensor_fault(self.sensor, reason, self.ts, self.event)
        if self.alert == "back":
            return fusion.sensor_ok(self.sensor, self.ts)
        return FusionResult()


def hold_of(config: AgentConfig, sensor: str) -> float:
    """A sensor's own hysteresis: its heartbeat timeout (metal), its stall time (camera), at least 10 s."""
    for s in config.fixed_sensors:
        if s.id == sensor:
            return max(FAULT_HOLD_MIN_S, s.hb_timeout_s)
    for c in config.cameras:
        if c.id == sensor:
            return max(FAULT_HOLD_MIN_S, c.stall_s)
    return FAULT_HOLD_MIN_S


class SensorStates:
    """Every sensor's state, decided here alone; see the module docstring."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config  # for the hold times; replaced on a reload
        self._known: dict[str, SensorState] = {}

    def state_of(self, sensor: str) -> str | None:
        known = self._known.get(sensor)
        return known.state if known is not None else None

    def on_metal(self, ev: MetalEvent) -> StateChange | None:
        """A detector's report about itself (one of ``HEALTH_EVENTS``): TAMPER and FAULT are faults, a heartbeat
        ends one."""
        if ev.event in ("TAMPER", "FAULT"):
            return self.observe(ev.sensor, "faulty", f"the detector reports {ev.event}", ev.received, ev)
        if ev.event == "HB" and self.state_of(ev.sensor) == "faulty":
            return self.observe(ev.sensor, "ok", "heartbeat back", ev.received)
        return None

    def observe(self, sensor: str, state: str, detail: str, now: float,
                ev: MetalEvent | None = None) -> StateChange | None:
        """A sensor's state as seen now; the change it makes, if it makes one."""
        known = self._known.get(sensor)
        if known is None:
            self._known[sensor] = known = SensorState("ok", now, hold_of(self.config, sensor))
            if state in (*WELL, "starting"):
                known.state = state
                return None
        elif state == known.state or (state in WELL and known.state in (*WELL, "starting")):
            known.state = state
            return None
        failed = state in FAILED
        recovered = known.state in FAILED and state in WELL
        if recovered and now - known.since < known.hold_s:
            return None  # not yet: it must stay well for its hold time first (asked again on the next turn)
        before, known.state, known.since = known.state, state, now
        if recovered:
            log.info("sensor %s is back (%s)", sensor, state)
            return StateChange(sensor, state, detail, now, "back")
        if not failed:
            return StateChange(sensor, state, detail, now)
        log.error("sensor %s is %s: %s", sensor, state, detail)
        if before in FAILED:
            return StateChange(sensor, state, detail, now)  # one fault episode, one alert
        known.fault_alerts = [t for t in known.fault_alerts if now - t < 3600.0]
        if len(known.fault_alerts) >= FAULT_ALERTS_PER_H:
            log.warning("sensor %s: %d fault alerts in the last hour; this one is logged, not alerted",
                        sensor, len(known.fault_alerts))
            return StateChange(sensor, state, detail, now)
        known.fault_alerts.append(now)
        return StateChange(sensor, state, detail, now, "fault", ev)
