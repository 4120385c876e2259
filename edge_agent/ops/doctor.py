"""``edge-agent doctor``: what a field engineer checks before driving away. One line per check, a fix for
every failure, and an exit code (0: all good or warnings only, 1: something fails)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from edge_agent.config.agent import AgentConfig
from edge_agent.config.cameras import CameraConfig, classification_warning
from edge_agent.config.mqtt import MqttConfig
from edge_agent.config.sensors import FixedSensorConfig
from edge_agent.incidents.diskguard import DiskGuard, is_disk_full

OK, WARN, FAIL = "OK", "WARN", "FAIL"
CLOCK_FLOOR = 1_767_225_600  # 2026-01-01: a box that says it is earlier has lost its clock


@dataclass(frozen=True, slots=True)
class Check:
    status: str
    name: str
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        out = [f"{self.status:<4} {self.name}: {self.detail}"]
        if self.fix and self.status != OK:
            out.append(f"     fix: {self.fix}")
        return out


def check_state_dir(config: AgentConfig) -> Iterator[Check]:
    d = config.db_path.parent
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".doctor-", delete=True) as f:
            f.write(b"x" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        if is_disk_full(exc):
            yield Check(FAIL, "state directory", f"the disk of {d} is full: the agent drops snapshots and rejected "
                        "input and holds incidents and alerts in memory until there is room",
                        f"free space on that filesystem (df -h {d}); retention removes the oldest evidence first")
            return
        yield Check(FAIL, "state directory", f"{d} is not writable: {exc.strerror or exc}",
                    "create it and give it to the agent's user (install: sudo systemd/install.sh), or set "
                    "state_dir / incident_log.path in the config to a writable place")
        return
    free_mb = shutil.disk_usage(d).free / 2**20
    need = config.incident_log.retention.min_free_mb
    reserve = DiskGuard(d, int(config.incident_log.reserve_mb * 2**20))
    if reserve.reserve_bytes and not reserve.reserve.exists() and config.db_path.exists():
        yield Check(WARN, "state directory", f"{d}: the {config.incident_log.reserve_mb:.0f} MB disk reserve is "
                    f"given up ({free_mb:.0f} MB free): the disk was full or is nearly full",
                    f"free space on that filesystem (df -h {d}); the agent takes the reserve back by itself")
    if free_mb < need:
        yield Check(WARN, "state directory", f"{d} writable, but only {free_mb:.0f} MB free (retention keeps "
                    f"{need:.0f} MB free by removing the oldest evidence)", "free disk space or lower "
                    "incident_log.retention.min_free_mb")
    else:
        yield Check(OK, "state directory", f"{d} writable, {free_mb / 1024:.1f} GB free")
    if config.db_path.exists():
        from edge_agent.incidents.errors import StoreError
        from edge_agent.incidents.store import IncidentStore

        try:
            store = IncidentStore(config.db_path)
            result = store.integrity()
            version = store.version
            store.close()
        except StoreError as exc:
            yield Check(FAIL, "incident database", str(exc), "move the damaged file aside; the agent starts a new one")
            return
        yield (Check(OK, "incident database", f"{config.db_path} schema v{version}, integrity ok")
               if result == "ok" else Check(FAIL, "incident database", f"integrity check: {result}",
                                            "stop the agent, copy the file for the record, move it aside"))


def check_camera(cam: CameraConfig, timeout_s: float) -> Check:
    from sensors.captures import open_capture, to_frame
    from sensors.errors import SensorError

    name = f"camera {cam.id}"
    try:
        cap = open_capture(cam.spec())
    except SensorError as exc:
        return Check(FAIL, name, f"{cam.source}: {exc}", "check the cable, power and cameras[].source (a /dev/videoN "
                     "that exists, an rtsp:// URL that answers, a file that is there)")
    try:
        deadline = time.monotonic() + timeout_s
        frames, first, reasons = 0, None, []
        while time.monotonic() < deadline and frames < 5:
            ok, raw = cap.read()
            if not ok:
                if getattr(cap, "finite", False):
                    break
                time.sleep(0.05)
                continue
            try:
                frame = to_frame(cam.spec(), frames, time.time(), raw)  # type: ignore[arg-type]
            except ValueError as exc:
                reasons.append(str(exc))
                continue
            frames += 1
            first = first or frame
    finally:
        cap.release()
    if first is None:
        why = f": {reasons[-1]}" if reasons else ""
        return Check(FAIL, name, f"{cam.source} opened but gave no usable frame in {timeout_s:.0f} s{why}",
                     "check pixel_format (gray8 / y16) and that the camera streams")
    h, w = first.image.shape[:2]
    kind = "radiometric" if first.celsius() is not None else "8-bit"
    return Check(OK, name, f"{cam.source}: producing {w}x{h} {kind} frames")


def check_line_sensor(s: FixedSensorConfig, listen_s: float) -> Check:
    from sensors.errors import SensorError
    from sensors.lines import parse_url

    name = f"{s.kind} sensor {s.id}"
    if not s.url:
        return Check(OK, name, "no url: its events arrive through another sensor's feed")
    try:
        scheme, host, port, _opts = parse_url(s.url)
    except SensorError as exc:
        return Check(FAIL, name, str(exc), "fix fixed_sensors[].url")
    if scheme == "serial":
        dev = Path(host)
        if not dev.exists():
            return Check(FAIL, name, f"{dev}: no such device", "plug the detector in; check the adapter shows up "
                         "(ls /dev/serial/by-id) and use that path")
        if not os.access(dev, os.R_OK | os.W_OK):
            return Check(FAIL, name, f"{dev}: no permission", "add the agent's user to the 'dialout' group")
        return Check(OK, name, f"{dev} present and accessible")
    if scheme == "tcp":
        try:
            with socket.create_connection((host, port), timeout=3.0) as conn:
                conn.settimeout(listen_s)
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    data = b""
        except OSError as exc:
            return Check(FAIL, name, f"{host}:{port} unreachable: {exc}", "check the sensor's power, network and "
                         "address")
        return (Check(OK, name, f"{host}:{port} reachable and producing") if data else
                Check(WARN, name, f"{host}:{port} reachable, but no line in {listen_s:.0f} s", "wait for a heartbeat "
                      "or check the sensor's output settings"))
    # udp and tcp-listen: the sensor sends to us; see whether its lines arrive
    kind = socket.SOCK_DGRAM if scheme == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return Check(WARN, name, f"{host}:{port} is in use ({exc.strerror}): the agent is probably running "
                         "and reading it", "stop the agent to test this sensor on its own")
        sock.settimeout(listen_s)
        try:
            if kind == socket.SOCK_DGRAM:
                data, _ = sock.recvfrom(4096)
            else:
                sock.listen(1)
                conn, _ = sock.accept()
                with conn:
                    conn.settimeout(listen_s)
                    data = conn.recv(4096)
        except (TimeoutError, OSError):
            return Check(WARN, name, f"listening on {scheme}://{host}:{port}: no line in {listen_s:.0f} s",
                         "check the sensor sends to this box's address and port")
    return Check(OK, name, f"{scheme}://{host}:{port}: lines arrive ({data[:40]!r})")


def check_model(config: AgentConfig) -> Check:
    from detectors.base import DetectorUnavailable
    from edge_agent.ops.modelfiles import ModelError
    from edge_agent.perception.build import build_detector

    try:
        det = build_detector(config)
        t0 = time.perf_counter()
        det.load()
        load_s = time.perf_counter() - t0
    except (DetectorUnavailable, ModelError, OSError, ValueError) as exc:
        return Check(FAIL, "detector", str(exc), "run 'edge-agent model fetch' and 'edge-agent model export' (or "
                     "set detector.model to a model file on this box)")
    frame = np.zeros((480, 640), np.uint8)
    frame[200:320, 300:340] = 220
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        det.detect(frame)
        times.append((time.perf_counter() - t0) * 1000)
    ms = sorted(times)[1]
    status = OK if ms < 1000 else WARN
    model = config.detector.model
    return Check(status, "detector", f"{'default model' if str(model) == 'default' else Path(model).name} "
                 f"loads in {load_s:.1f} s; {ms:.0f} ms per frame at {config.detector.imgsz} on this box",
                 "use the OpenVINO export at imgsz 320, or enable gating, on a slow box")


def check_broker(cfg: MqttConfig, timeout_s: float = 8.0, broker: tuple[str, int] | None = None,
                 name: str = "broker") -> Check:
    from edge_agent.shared.mqttclient import make_client

    host, port = broker or cfg.brokers[0]
    where = f"{host}:{port}"
    try:
        client = make_client(cfg, f"edge-agent-doctor-{os.getpid()}")
    except (ValueError, OSError) as exc:
        return Check(FAIL, name, f"{where}: {exc}", "check mqtt.password_file and the tls files")
    result: dict[str, object] = {}
    done = threading.Event()

    def on_connect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        result["reason"] = reason
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=10)
    except (OSError, ValueError) as exc:
        tls = " and the TLS files (tls.ca_file, cert_file, key_file)" if cfg.tls else ""
        return Check(FAIL, name, f"{where} unreachable: {exc}",
                     f"check mqtt.host (or hosts), mqtt.port, the network{tls}")
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            return Check(FAIL, name, f"{where}: no answer to CONNECT in {timeout_s:.0f} s",
                         "check the port is the broker's (TLS on 8883, plain on 1883)")
        reason = result["reason"]
        if getattr(reason, "is_failure", False):
            return Check(FAIL, name, f"{where} refused the connection: {reason}",
                         "check mqtt.username and mqtt.password_file (or the box's certificate) against the broker's "
                         "password file / ACL")
    finally:
        client.disconnect()
        client.loop_stop()
    auth = "TLS" + (" with client certificate" if cfg.tls and cfg.tls.cert_file else "") if cfg.tls else "plain TCP"
    user = f" as {cfg.username}" if cfg.username else ""
    return Check(OK, name, f"{where} accepts this box{user} ({auth}, MQTT {cfg.protocol})")


def owed_to(db_path: Path, output: str) -> str:
    """What the incident log still owes an output, in words ('' when there is no log yet)."""
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as conn:
            owed, oldest = conn.execute("SELECT COUNT(*), MIN(o.created) FROM output_queue q JOIN outbox o "
                                        "ON o.seq = q.seq WHERE q.output = ? AND q.sent IS NULL", [output]).fetchone()
    except sqlite3.Error:  # no log yet, or one from before the outputs
        return ""
    if not owed:
        return "; nothing owed"
    return f"; {owed} alert state(s) owed, the oldest {time.time() - oldest:.0f} s old"


def check_outputs(config: AgentConfig, timeout_s: float = 8.0) -> Iterator[Check]:
    """Each output besides MQTT: a TAK server answers a ping (multicast: the socket opens), a SAPIENT fusion node
    accepts this box's registration; with what the incident log still owes it."""
    from edge_agent.outputs import cot_style, node_sheet
    from edge_agent.outputs.base import OutputDown

    cot, sap = config.outputs.cot, config.outputs.sapient
    if cot is not None:
        from edge_agent.outputs import tak

        try:
            yield Check(OK, "TAK (cot)", asyncio.run(tak.probe(cot, cot_style(config).callsign, timeout_s))
                        + owed_to(config.db_path, "cot"))
        except (OutputDown, OSError, TimeoutError) as exc:
            tls = "; the server must trust this box's certificate (tls.cert_file) and its CA be tls.ca_file" \
                if cot.transport == "tls" else ""
            yield Check(FAIL, "TAK (cot)", f"{cot.transport}://{cot.host}:{cot.server_port}: "
                        f"{exc or type(exc).__name__}{owed_to(config.db_path, 'cot')}",
                        f"check outputs.cot.host, port and transport{tls}; a server "
                        "that never answers pings needs confirm: none")
    if sap is not None:
        from edge_agent.outputs import sapient

        try:
            yield Check(OK, "SAPIENT", asyncio.run(sapient.probe(sap, node_sheet(config)))
                        + owed_to(config.db_path, "sapient"))
        except (OutputDown, OSError, TimeoutError) as exc:
            yield Check(FAIL, "SAPIENT", f"{sap.host}:{sap.port}: {exc or type(exc).__name__}"
                        f"{owed_to(config.db_path, 'sapient')}",
                        "check outputs.sapient.host and port, and that the fusion node knows this node id "
                        "(outputs.sapient.node_id)")


def check_clock(run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> Check:
    now = time.time()
    if now < CLOCK_FLOOR:
        return Check(FAIL, "clock", f"the system time is {time.strftime('%Y-%m-%d', time.gmtime(now))}, before this "
                     "agent was built", "set the time (GPS or NTP: timedatectl set-ntp true) before deploying")
    synced = None
    if shutil.which("timedatectl"):
        try:
            out = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True,
                      timeout=5)
            synced = out.stdout.strip() == "yes" if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            synced = None
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    if synced is False:
        return Check(WARN, "clock", f"{stamp}, not synchronised", "enable NTP or GPS time (timedatectl set-ntp true): "
                     "fusion windows and the incident log need the right time")
    return Check(OK, "clock", f"{stamp}" + (", synchronised" if synced else " (synchronisation unknown)"))


def _guard(name: str, check: Callable[[], Check]) -> Check:
    """A check that breaks in a way nobody foresaw is a failed check, not a doctor that stops."""
    try:
        return check()
    except Exception as exc:
        return Check(FAIL, name, f"{type(exc).__name__}: {exc}", "see the message; run with -v for details")


def run_checks(config: AgentConfig, camera_timeout_s: float = 10.0, listen_s: float = 3.0,
               model: bool = True) -> Iterator[Check]:
    yield _guard("clock", check_clock)
    try:
        yield from check_state_dir(config)
    except Exception as exc:
        yield Check(FAIL, "state directory", f"{type(exc).__name__}: {exc}", "see the message")
    for cam in config.cameras:
        if cam.enabled:
            yield _guard(f"camera {cam.id}", partial(check_camera, cam, min(camera_timeout_s, cam.stall_s)))
            warning = classification_warning(cam)
            if warning:
                yield Check(WARN, f"camera {cam.id} classes", warning.split(": ", 1)[1],
                            "survey 4+ ground points in view and add them as cameras[].calibration")
    for s in config.fixed_sensors:
        yield _guard(f"{s.kind} sensor {s.id}", partial(check_line_sensor, s, listen_s))
    if model and any(c.enabled for c in config.cameras):
        yield _guard("detector", lambda: check_model(config))
    yield from check_outputs(config)
    if config.mqtt is not None:
        mq = config.mqtt
        brokers = mq.brokers
        for i, broker in enumerate(brokers, 1):  # with mqtt.hosts, each broker the box may fail over to
            name = "broker" if len(brokers) == 1 else f"broker {i}/{len(brokers)}"
            yield _guard(name, partial(check_broker, mq, broker=broker, name=name))
    else:
        yield Check(WARN, "broker", "no mqtt section: alerts stay in the outbox", "add the command post's broker "
                    "(mqtt.host, credentials, tls)")
