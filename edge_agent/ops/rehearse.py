"""``edge-agent rehearse``: a site's rules scored against synthetic scenes before the box goes on a mast.

Each scenario replaces the camera's source and runs, frame by frame with no drops, through the chain the agent
uses (detector, tracker, classification, zone and line rules, fusion); frame i is at ``t0 + i / fps``, so
schedules apply. ``scoring`` holds the truth and compares the alerts with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

from detectors.base import Detector
from edge_agent.config.agent import AgentConfig
from edge_agent.config.cameras import CameraConfig
from edge_agent.contract.alert import Alert
from edge_agent.contract.ids import ParseError, iso_ms, parse_time
from edge_agent.core.site import Site
from edge_agent.ops.errors import OpsError
from edge_agent.ops.scoring import (
    CLASS_COLUMNS,
    SceneTruth,
    Score,
    TrackClasses,
    TrackSighting,
    TruthEvent,
    confusion,
    match,
    nuisance_cause,
    track_classes,
    truth_events,
)
from edge_agent.perception.build import build_detector, build_pipeline
from edge_agent.perception.geometry import CameraGeometry
from edge_agent.perception.tracks import CameraPerception
from sensors.captures import to_frame
from sensors.sim import SCENARIOS, ThermalScene

SCENE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class ScenarioRun:
    """One scenario through the product: its truth, every alert raised, and the score."""

    name: str  # as given on the command line
    url: str
    frames: int
    fps: float
    truth: tuple[TruthEvent, ...]
    alerts: tuple[Alert, ...]
    score: Score
    wall_s: float
    tracks: tuple[TrackClasses, ...] = ()  # each track's classes over its life, and the actor it covered


@dataclass(frozen=True, slots=True)
class Rehearsal:
    camera: str
    t0: float
    runs: tuple[ScenarioRun, ...]

    @property
    def total(self) -> Score:
        return reduce(lambda a, b: a + b, (r.score for r in self.runs), Score(0.0, (), ()))


def parse_at(text: str | None) -> float:
    """``--at``: an RFC 3339 time (the scene's first frame); now when not given."""
    if text is None:
        return time.time()
    try:
        return parse_time(text)
    except ParseError as exc:
        raise OpsError(f"--at {text!r}: {exc}") from exc


def scenario_url(arg: str) -> str:
    """A ``sim://`` URL for a scenario argument: a URL, a named scene or a scenario file."""
    if arg.startswith("sim://"):
        return arg
    if arg in SCENARIOS:
        return f"sim://{arg}"
    if arg.endswith(SCENE_SUFFIXES):
        path = Path(arg)
        if not path.is_file():
            raise OpsError(f"scenario {arg}: no such file")
        return f"sim://{path.resolve()}"
    raise OpsError(f"scenario {arg}: not a sim:// URL, a scene name (known: {', '.join(sorted(SCENARIOS))}) or a "
                   f"scenario file ({' or '.join(SCENE_SUFFIXES)})")


def pick_camera(config: AgentConfig, camera: str | None, where: str) -> CameraConfig:
    if not config.cameras:
        raise OpsError(f"{where}: the config has no camera to rehearse; add one under cameras:")
    if camera is None:
        if len(config.cameras) > 1:
            raise OpsError(f"{where}: {len(config.cameras)} cameras ({', '.join(c.id for c in config.cameras)}); "
                           "choose one with --camera")
        return config.cameras[0]
    for cam in config.cameras:
        if cam.id == camera:
            return cam
    raise OpsError(f"{where}: no camera {camera!r}; the config has {', '.join(c.id for c in config.cameras)}")


def rehearse(config: AgentConfig, scenarios: Sequence[str], camera: str | None = None, t0: float | None = None,
             progress: Callable[[str], None] = lambda _: None, where: str = "config",
             detector: Detector | None = None) -> Rehearsal:
    """Run every scenario through the product on the chosen camera and score it; ``where`` names the config in
    messages. Bad scenarios are found before the model loads."""
    cam = pick_camera(config, camera, where)
    urls = [scenario_url(s) for s in scenarios]
    scenes = []
    for name, url in zip(scenarios, urls, strict=True):
        try:
            scenes.append(ThermalScene.from_url(url))
        except (ValueError, OSError) as exc:
            raise OpsError(f"scenario {name}: {exc}") from exc
    start = time.time() if t0 is None else t0
    if detector is None:
        detector = build_detector(config)
        detector.load()
    runs = []
    for name, url, scene in zip(scenarios, urls, scenes, strict=True):
        progress(f"# {name}: {scene.frame_count} frames at {scene.params.fps:g} fps on camera {cam.id} ...")
        run = _run(config, cam, detector, name, url, scene, start)
        progress(f"# {name}: done in {run.wall_s:.0f} s, {len(run.truth)} truth events, "
                 f"{sum(a.state == 'new' for a in run.alerts)} new alerts")
        runs.append(run)
    return Rehearsal(cam.id, start, tuple(runs))


def _run(config: AgentConfig, cam: CameraConfig, detector: Detector, name: str, url: str, scene: ThermalScene,
         t0: float) -> ScenarioRun:
    began = time.monotonic()
    truth = SceneTruth(scene)
    site = Site.from_config(config)
    geometry = CameraGeometry.of(cam)
    pipeline, perception = build_pipeline(config, detector, geometry), CameraPerception(geometry)
    rules, fusion = site.engine(), site.fusion_engine()
    spec = cam.spec(pace="every")
    fps = scene.params.fps
    alerts: list[Alert] = []
    sightings: list[TrackSighting] = []
    for i in range(scene.frame_count):
        ts = t0 + i / fps
        try:
            frame = to_frame(spec, i, ts, truth.render(i))
        except ValueError as exc:
            raise OpsError(f"scenario {name}, camera {cam.id}, frame {i}: {exc}") from exc
        result = pipeline.process(frame)
        seen = perception.frame(ts, result.tracks, (frame.shape[1], frame.shape[0]))
        for k, tid in enumerate(int(t) for t in result.tracks.track_id):
            x1, y1, x2, y2 = (float(v) for v in result.tracks.xyxy[k])
            sightings.append(TrackSighting(i, tid, (x1, y1, x2, y2), seen.classes[tid].label,
                                           seen.classes[tid].settled))
        for zev in rules.update(cam.id, ts, *site.rule_inputs(seen.points, perception.geometry.calibrated)):
            alerts += fusion.on_zone_event(zev).alerts
        for ev in result.events:
            if ev.kind == "lost":
                perception.lost(ev.track_id)
                rules.forget(cam.id, ev.track_id)
        alerts += fusion.tick(ts).alerts
    events = truth_events(truth, rules, site.plane, cam.id, t0)
    outcomes = match(events, alerts, t0)
    nuisance = tuple((a.zone[0] if a.zone else "", a.kind, round(a.ts - t0, 2),
                      nuisance_cause(a, truth, site.plane, t0)) for a in outcomes.nuisance)
    score = Score(scene.frame_count / fps / 3600.0, outcomes.events, nuisance, confusion(truth, sightings))
    return ScenarioRun(name, url, scene.frame_count, fps, tuple(events), tuple(alerts), score,
                       time.monotonic() - began, tuple(track_classes(truth, sightings)))


# -- verdict and reports ------------------------------------------------------------------------------------------


def verdict(r: Rehearsal, min_pd: float | None, max_nuisance_per_h: float | None) -> list[str]:
    """What falls short of the thresholds (empty: the site passes)."""
    total, problems = r.total, []
    if min_pd is not None:
        if total.pd is None:
            problems.append(f"no truth event in the scenarios: Pd cannot be checked against --min-pd {min_pd:g}")
        elif total.pd < min_pd:
            problems.append(f"Pd {total.pd:.2f} is below --min-pd {min_pd:g}")
    if max_nuisance_per_h is not None and total.nuisance_per_h > max_nuisance_per_h:
        problems.append(f"{total.nuisance_per_h:.1f} nuisance alerts per hour is above --max-nuisance-per-h "
                        f"{max_nuisance_per_h:g}")
    return problems


def _score_json(s: Score) -> dict[str, Any]:
    return {"pd": s.pd, "nuisance": len(s.nuisance), "nuisance_per_h": round(s.nuisance_per_h, 1),
            "rules": s.per_place(), "range_pd": s.per_band(), "pixels_pd": s.per_px(), "confusion": s.confusion,
            "nuisance_alerts": [{"place": p, "kind": k, "t_s": t, "cause": c} for p, k, t, c in s.nuisance]}


def report_json(r: Rehearsal) -> dict[str, Any]:
    scenarios = []
    for run in r.runs:
        outcome = {(o[0].place, o[0].kind, o[0].actor, o[0].t): (o[1], o[2]) for o in run.score.outcomes}
        truth = [{"place": e.place, "kind": e.kind, "actor": e.actor, "actor_kind": e.actor_kind, "t_s": e.t,
                  "distance_m": e.distance_m, "px_tall": e.px_tall, "direction": e.direction,
                  "outcome": outcome.get((e.place, e.kind, e.actor, e.t), ("not scored", None))[0],
                  "time_to_alert_s": outcome.get((e.place, e.kind, e.actor, e.t), ("", None))[1]}
                 for e in run.truth]
        alerts = [{"t_s": round(a.ts - r.t0, 2), "state": a.state, "kind": a.kind, "severity": a.severity,
                   "place": a.zone[0] if a.zone else None, "summary": a.summary} for a in run.alerts]
        scenarios.append({"scenario": run.name, "source": run.url, "frames": run.frames, "fps": run.fps,
                          "duration_s": round(run.frames / run.fps, 2), "truth": truth, "alerts": alerts,
                          **_score_json(run.score)})
    return {"camera": r.camera, "t0": iso_ms(r.t0), "scenarios": scenarios, "total": _score_json(r.total)}


def _num(v: object, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def _score_lines(s: Score) -> list[str]:
    lines = [f"  {'rule':<16} {'truth':>5} {'alerted':>7} {'covered':>7} {'missed':>6} {'Pd':>5} "
             f"{'alert after s (median/max)':>26} {'nuisance':>8} {'per h':>7}"]
    for place, row in s.per_place().items():
        delay = f"{_num(row['time_to_alert_median_s'])}/{_num(row['time_to_alert_max_s'])}"
        lines.append(f"  {place:<16} {row['truth']:>5} {row['alerted']:>7} {row['covered']:>7} {row['missed']:>6} "
                     f"{_num(row['pd']):>5} {delay:>26} {row['nuisance']:>8} {_num(row['nuisance_per_h'], '.1f'):>7}")
    lines.append(f"  all: Pd {_num(s.pd)}, {len(s.nuisance)} nuisance alerts ({s.nuisance_per_h:.1f} per hour)")
    for place, kind, t, cause in s.nuisance:
        lines.append(f"    nuisance {kind} at {place} {t:.1f} s: cause {cause}")
    lines.append("  range  " + "  ".join(f"{band} {_num(p)}" for band, p in s.per_band().items()))
    lines.append("  pixels " + "  ".join(f"{band} {_num(p)}" for band, p in s.per_px().items()))
    if s.confusion:
        lines.append(f"  {'class of tracks':<18}" + "".join(f"{c:>9}" for c in CLASS_COLUMNS))
        for actor, cols in sorted(s.confusion.items()):
            lines.append(f"  {actor:<18}" + "".join(f"{cols.get(c, 0):>9}" for c in CLASS_COLUMNS))
    return lines


def report_table(r: Rehearsal) -> str:
    out = []
    for run in r.runs:
        out.append(f"{run.name} ({run.url}): {run.frames} frames, {run.frames / run.fps:.0f} s, camera {r.camera}")
        outcome = {(o[0].place, o[0].kind, o[0].actor, o[0].t): o for o in run.score.outcomes}
        for e in run.truth:
            o = outcome.get((e.place, e.kind, e.actor, e.t))
            how = "not scored" if o is None else (f"alerted after {o[2]:+.1f} s" if o[2] is not None else o[1])
            direction = f" {e.direction}" if e.direction else ""
            px = f" ({e.px_tall:.0f} px)" if e.px_tall is not None else ""
            out.append(f"  {e.t:6.1f} s  {e.place:<16} {e.kind}{direction} by {e.actor_kind} #{e.actor} at "
                       f"{e.distance_m:.0f} m{px}: {how}")
        out += _score_lines(run.score)
        out.append("")
    out.append(f"total over {len(r.runs)} scenario(s):")
    out += _score_lines(r.total)
    return "\n".join(out)
