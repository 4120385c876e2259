"""``edge-agent demo``: the whole agent on the synthetic border scene, with scripted metal-detector and radio
lines sent over UDP into the configured sensor ports, a broker (the configured one, else a private Mosquitto,
else an embedded one), the command post's web page beside it (its URL and a demo account printed; ``--no-web``
leaves it out) and its console printing alerts as they arrive. Ends with a summary."""

from __future__ import annotations

import json
import secrets
import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.commandpost.console import Console
from edge_agent.config.agent import AgentConfig
from edge_agent.config.commandpost import CommandPostConfig, ListenConfig
from edge_agent.config.mqtt import MqttConfig
from edge_agent.contract.alert import Alert
from edge_agent.demo.brokers import LocalBroker, free_port
from edge_agent.demo.script import Line, script_for
from edge_agent.runtime.agent import Agent, install_signals
from sensors.lines import parse_url


@dataclass(slots=True)
class DemoResult:
    alerts: int
    fused: int
    by_kind: dict[tuple[str, str], int]
    latency_ms: list[float]
    db: Path
    broker: str
    rejected: int = 0
    web: str | None = None  # the command post's URL and account
    loads: list[str] = field(default_factory=list)  # each camera's detection load


def _ports(config: AgentConfig) -> AgentConfig:
    """Free UDP ports for the demo's sensors, so two demos (or a running agent) never collide."""
    sensors = []
    for s in config.fixed_sensors:
        if s.url and s.url.startswith("udp://"):
            s = s.model_copy(update={"url": f"udp://127.0.0.1:{free_port()}"})
        sensors.append(s)
    return config.model_copy(update={"fixed_sensors": sensors})


def _send_script(config: AgentConfig, script: list[Line], t0: float, stop: threading.Event) -> None:
    targets = {}
    for s in config.fixed_sensors:
        if s.url:
            _scheme, host, port, _opts = parse_url(s.url)
            targets[s.id] = (host, port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for line in script:
            if stop.wait(max(0.0, t0 + line.at_s - time.time())):
                return
            if line.via in targets:
                sock.sendto(line.text.encode() + b"\n", targets[line.via])


def start_command_post(mqtt: MqttConfig, run_dir: Path, show: Callable[[str], None], port: int = 8080
                       ) -> tuple[Any, str] | None:
    """The command post's page on ``port`` (any free one if taken) with a fresh store in the run's folder and
    one guard account; None (said why) when it cannot start (e.g. Leaflet not installed)."""
    from edge_agent.commandpost.server import CommandPost, CommandPostError
    from edge_agent.commandpost.users import Users

    password = secrets.token_urlsafe(9)
    for listen_port in (port, 0):
        cfg = CommandPostConfig(name="demo", mqtt=mqtt.model_copy(update={"client_id": None}),
                                listen=ListenConfig(port=listen_port), store=run_dir / "commandpost.db")
        try:
            cp = CommandPost(cfg)
            break
        except CommandPostError as exc:
            if listen_port == 0 or "cannot listen" not in str(exc):
                show(f"# command post not started: {exc}")
                return None
    Users(cp.store).add("guard", "guard", password)
    cp.start()
    account = f"{cp.url}  (sign in as guard / {password})"
    show(f"# command post: {account}")
    return cp, account


def run_demo(config: AgentConfig, config_path: Path | None, show: Callable[[str], None],
             duration_s: float | None = None, broker: str = "auto", web: bool = True,
             hold: Callable[[DemoResult], None] | None = None, out: Path | None = None) -> DemoResult:
    """``hold`` gets the result after the scene, while the broker and the command post still run (the CLI
    prints the summary there and, at a terminal, keeps the page up until Enter). The run's incident log, snapshots
    and command post store go to ``out`` (default: a folder per run under the state directory)."""
    show = one_line_at_a_time(show)  # the console prints from paho's thread, the demo from this one
    run_dir = out or config.state_dir / "demo" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    config = _ports(config).model_copy(update={
        "incident_log": config.incident_log.model_copy(update={"path": run_dir / "incidents.db"})})
    local = None
    if config.mqtt is None:
        local = LocalBroker(broker).start()
        config = config.model_copy(update={"mqtt": MqttConfig(host="127.0.0.1", port=local.port,
                                                               health_interval_s=10, escalate_after_s=30)})
    assert config.mqtt is not None
    where = local.kind if local else f"{config.mqtt.host}:{config.mqtt.broker_port} (configured)"
    show(f"# broker: {where}")
    show(f"# incident log: {config.db_path}")
    latencies: list[float] = []

    def on_alert(alert: Alert, received: float) -> None:
        if alert.state == "new":
            latencies.append((received - alert.ts) * 1000.0)

    run_dir.mkdir(parents=True, exist_ok=True)
    cp = start_command_post(config.mqtt, run_dir, show) if web else None
    console = Console(config.mqtt, show, on_alert=on_alert, client_id="demo-command-post")
    console.start()
    console.connected.wait(10)
    agent = Agent(config, config_path)
    install_signals(agent)
    stop_script = threading.Event()
    try:
        show("# loading the detector and starting the sensors ...")
        agent.start()
        t0 = time.time()
        show(f"# {config.site}/{config.box}: {len(agent.cameras)} camera(s), {len(agent.feeds)} line sensor(s); "
             "alerts as the command post sees them:")
        threading.Thread(target=_send_script, args=(config, script_for(config, t0), t0, stop_script),
                         name="demo-script", daemon=True).start()

        def scene_over() -> bool:
            cams = [s for n, s in agent.stages.items() if n.startswith("detect:")]
            return bool(cams) and all(s.finished for s in cams)

        agent.run_forever(duration_s, until=scene_over)
        time.sleep(1.0)
        assert agent.store is not None
        for _ in range(40):  # let the outbox drain before the summary
            if agent.store.backlog()[0] == 0:
                break
            time.sleep(0.1)
    finally:
        stop_script.set()
        agent.stop()
        time.sleep(0.3)
        s = agent.summary
        rejected = sum(f.counters.rejected for f in agent.feeds.values())
        result = DemoResult(sum(s.alerts.values()), s.fused, dict(s.alerts), latencies, config.db_path, where,
                            rejected, cp[1] if cp else None, agent.load_lines())
        try:
            if hold is not None:
                hold(result)
        finally:
            console.stop()
            if cp is not None:
                cp[0].stop()
            if local is not None:
                local.stop()
    return result


def one_line_at_a_time(show: Callable[[str], None]) -> Callable[[str], None]:
    """``show`` for several threads: a line is written whole before another starts (``print`` writes the text and
    its newline separately, so two threads' lines could run into one)."""
    lock = threading.Lock()

    def locked(line: str) -> None:
        with lock:
            show(line)

    return locked


def summary_lines(r: DemoResult) -> list[str]:
    out = ["", "== demo summary =="]
    out.append(f"alerts: {r.alerts} ({r.fused} fused from several sensor kinds)")
    for (kind, sev), n in sorted(r.by_kind.items()):
        out.append(f"  {kind:<14} {sev:<8} {n}")
    if r.latency_ms:
        lat = sorted(r.latency_ms)
        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
        out.append(f"latency, event to command post: p50 {statistics.median(lat):.0f} ms, p99 {p99:.0f} ms "
                   f"({len(lat)} alerts; thermal events include detection)")
    out += r.loads
    out.append(f"rejected input lines: {r.rejected} (kept with their reasons in the incident log)")
    out.append(f"incident log: {r.db}  (snapshots in {r.db.parent / 'snapshots'})")
    out.append(f"review it: edge-agent incidents list --db {r.db}")
    out.append(f"broker: {r.broker}")
    if r.web:
        out.append(f"command post: {r.web}")
    return out


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
