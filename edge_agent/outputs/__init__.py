"""Outputs besides MQTT, each fed from the outbox with its own delivery state: Cursor on Target to TAK
(``tak``, events built in ``cot``) and a SAPIENT edge node (``sapient``, messages in ``sapient_messages``).
``build_outputs`` makes the configured ones for the agent."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from edge_agent.config.agent import AgentConfig
from edge_agent.contract.acks import Ack
from edge_agent.incidents.deliveries import Deliveries
from edge_agent.outputs.base import OutputRunner
from edge_agent.outputs.cot import CotStyle
from edge_agent.outputs.sapient_messages import NodeSheet, node_id_of

log = logging.getLogger(__name__)

MIN_ERROR_M = 1.0  # no place is known better than this, however well a camera fits its ground points


def location_errors(config: AgentConfig, fixed_error_m: float) -> dict[str, float]:
    """Each sensor's circular error in metres: a calibrated camera's is its ground points' RMS misfit (at least
    ``MIN_ERROR_M``); a fixed sensor's is ``fixed_error_m`` (its place was surveyed, its reach is not)."""
    errors = {s.id: fixed_error_m for s in config.fixed_sensors}
    for cam in config.cameras:
        if cam.calibration is not None:
            errors[cam.id] = max(MIN_ERROR_M, round(cam.calibration.calibration().rms_error_m, 1))
    return errors


def cot_style(config: AgentConfig) -> CotStyle:
    """How this box's CoT events look (``outputs.cot`` must be set)."""
    cot = config.outputs.cot
    assert cot is not None
    return CotStyle(callsign=cot.callsign or f"{config.site}-{config.box}",
                    uid_prefix=f"edge-agent.{config.site}.{config.box}", stale_s=cot.stale_s,
                    snapshot_url=config.outputs.snapshot_url,
                    errors_m=location_errors(config, config.outputs.fixed_sensor_error_m),
                    default_error_m=config.outputs.fixed_sensor_error_m)


def node_sheet(config: AgentConfig) -> NodeSheet:
    """What this box registers as with a SAPIENT fusion node (``outputs.sapient`` must be set)."""
    sap = config.outputs.sapient
    assert sap is not None
    kinds = [s.kind for s in config.fixed_sensors]
    return NodeSheet(node_id=sap.node_id or node_id_of(config.site, config.box),
                     name=sap.name or f"edge-agent {config.site}/{config.box}", short_name=config.box,
                     cameras=sum(c.enabled for c in config.cameras), metal=kinds.count("metal"),
                     radio=kinds.count("radio"), status_interval_s=sap.status_interval_s)


def build_outputs(config: AgentConfig, deliveries: Deliveries, on_ack: Callable[[Ack], None] | None,
                  faults: Callable[[], Sequence[str]] = tuple) -> list[OutputRunner]:
    """The configured outputs, not started; ``deliveries`` is told their names (alert states are queued for
    them from now on) and forgets what it owed to outputs no longer configured."""
    outs: list[OutputRunner] = []
    deliveries.outputs = config.outputs.names()
    dropped = deliveries.forget_others()
    if dropped:
        log.warning("%d alert state(s) owed to outputs no longer configured are dropped", dropped)
    if config.outputs.cot is not None:
        from edge_agent.outputs.tak import CotOutput

        outs.append(CotOutput(deliveries, config.outputs.cot, cot_style(config)))
    if config.outputs.sapient is not None:
        from edge_agent.outputs.sapient import SapientOutput

        outs.append(SapientOutput(deliveries, config.outputs.sapient, node_sheet(config), on_ack,
                                  location_errors(config, config.outputs.fixed_sensor_error_m), faults,
                                  config.outputs.snapshot_url))
    return outs
