"""Scoring a rehearsal: the truth of a synthetic scene, read from its script, and how the product's alerts measure
up against it. The only module of the product that looks at a simulator's truth; the detector, tracker,
classifier, rules and fusion see only the rendered frames.

Truth events are a person's zone entries, exits and dwells (``loiter_s``) and line crossings, for each zone or
line whose rule would fire for a person at that time (switched on, about people, in its schedule). An alert of a
place matches a truth event of that place from 2 s before to 10 s after it, each alert once. Fusion folds every
event of a place within its window into one incident and one alert, so a truth event with no alert of its own
that happens while its place's alert is up (raised by then, not yet closed) is *covered*: the guard is looking at
it. Exits raise no alert (fusion ends nothing on an exit): they are truth, not scored.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import shapely

from edge_agent.contract.alert import Alert
from geofences.geo import LocalPlane
from geofences.rules import LineRule, RuleEngine, ZoneRule
from geofences.zones import segment_crosses, side_of
from sensors.sim import Actor, ThermalScene, TruthObject

EARLY_S, LATE_S = 2.0, 10.0
SCORED_KINDS = frozenset({"intrusion", "loitering", "line_crossing", "fused"})
BANDS_M = ((0, 30), (30, 60), (60, 90), (90, 120), (120, 150), (150, 200), (200, 300), (300, 400), (400, 600))
BANDS_PX = ((0, 5), (5, 8), (8, 12), (12, 20), (20, 40), (40, 10_000))  # the person's height in pixels
PERSON_M = {"crawling": 0.45}  # how tall a person is on the ground by gait (default 1.75 m x the actor's size)
CLASS_COLUMNS = ("person", "vehicle", "animal", "unknown", "clutter", "missed")
MIN_IOU = 0.3
CAUSE_RADIUS_M = 10.0  # an alert further than this from every actor was raised by nothing in the scene
TruthKind = Literal["entry", "exit", "loitering", "line_crossing", "presence"]
Outcome = Literal["alerted", "covered", "missed"]


@dataclass(frozen=True, slots=True)
class TruthEvent:
    """What a person really did at a place, and how far from the camera."""

    place: str
    kind: TruthKind
    actor: int
    actor_kind: str
    t: float  # seconds into the scene
    distance_m: float
    direction: str | None = None
    px_tall: float | None = None  # how many pixels tall the person stands in the camera's view then

    @property
    def scored(self) -> bool:
        return self.kind != "exit"


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Each scored truth event's outcome and time to alert, and the alerts that matched no truth."""

    events: tuple[tuple[TruthEvent, Outcome, float | None], ...]
    nuisance: tuple[Alert, ...]


@dataclass(frozen=True, slots=True)
class TrackSighting:
    """One confirmed track in one frame, as the product classified it."""

    frame: int
    track_id: int
    bbox: tuple[float, float, float, float]
    label: str
    settled: bool


class SceneTruth:
    """A scene rendered for the product, frame by frame, with its truth kept aside for the scorer."""

    def __init__(self, scene: ThermalScene) -> None:
        self.scene = scene
        self.objects: dict[int, list[TruthObject]] = {}
        self.mast: tuple[float, float] = _mast(scene)

    @property
    def fps(self) -> float:
        return self.scene.params.fps

    def render(self, index: int) -> np.ndarray:
        counts, truth = self.scene.render(index)
        self.objects[index] = truth
        return counts

    def actor(self, actor_id: int) -> Actor | None:
        return next((a for a in self.scene.scenario.actors if a.track_id == actor_id), None)

    def plane_xy(self, plane: LocalPlane, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scene ground metres (mast at 0, 0) onto the site plane, through lat/lon."""
        ll = np.array([self.scene.ground_to_latlon(float(a), float(b), self.mast) for a, b in zip(x, y, strict=True)])
        px, py = plane.to_xy(ll[:, 0], ll[:, 1]) if len(ll) else (np.empty(0), np.empty(0))
        return np.asarray(px, np.float64), np.asarray(py, np.float64)


def _mast(scene: ThermalScene) -> tuple[float, float]:
    """Where the scene's camera stands (the named scenes' origin unless a scenario file says otherwise)."""
    return scene.scenario.mast


def actor_kind(actor: Actor) -> str:
    """A confusion row: a person's gait, an animal's species, a vehicle's type; the label where none is given."""
    if actor.label == "person":
        return f"person {actor.gait}" if actor.gait else "person"
    return actor.kind or actor.label


# -- truth ------------------------------------------------------------------------------------------------------


def truth_events(truth: SceneTruth, engine: RuleEngine, plane: LocalPlane | None, camera: str, t0: float
                 ) -> list[TruthEvent]:
    """Every person's events at every zone and line that would fire for a person then (scene time from ``t0``)."""
    scene = truth.scene
    times = np.arange(scene.frame_count) / truth.fps
    out: list[TruthEvent] = []
    crowds: dict[str, list[_Path]] = {}  # zones with max_count: every person's path through them
    for actor in scene.scenario.actors:
        if actor.label != "person":
            continue
        states = [actor.state(float(t)) for t in times]
        present = np.array([s is not None for s in states])
        gx = np.array([s[0] if s else np.nan for s in states])
        gy = np.array([s[1] if s else np.nan for s in states])
        rules: list[ZoneRule | LineRule] = [*(m.rule for m in engine.zones), *(m.rule for m in engine.lines)]
        for r in rules:
            if not r.filters.about("person") or (r.camera is not None and r.camera != camera):
                continue
            if r.camera is None:
                if plane is None:
                    continue
                x, y = truth.plane_xy(plane, gx, gy)
            else:
                u, v = scene.camera.project(gx, gy, np.zeros_like(gx))
                x, y = np.asarray(u, np.float64), np.asarray(v, np.float64)
            track = _Path(actor, times, present, x, y, np.hypot(gx, gy), t0, _px_tall(scene, actor, gx, gy))
            out += _zone_truth(r, track) if isinstance(r, ZoneRule) else _line_truth(r, track)
            if isinstance(r, ZoneRule) and r.max_count is not None:
                crowds.setdefault(r.id, []).append(track)
    for z in engine.zones:
        if z.rule.id in crowds:
            out += _presence_truth(z.rule, crowds[z.rule.id])
    return sorted(out, key=lambda e: (e.t, e.place, e.actor))


def _presence_truth(rule: ZoneRule, paths: list[_Path]) -> list[TruthEvent]:
    """More people inside at once than the zone's max_count (once per time the count goes over)."""
    inside = np.array([p.present & shapely.contains_xy(rule.polygon, p.x, p.y) for p in paths])
    count = inside.sum(axis=0)
    assert rule.max_count is not None
    over = count > rule.max_count
    out = []
    first = paths[0]
    for i in np.flatnonzero(over & ~np.r_[False, over[:-1]]).tolist():
        if rule.schedule.active(first.t0 + float(first.times[i])):
            near = float(np.mean([p.distance[i] for p, ins in zip(paths, inside[:, i], strict=True) if ins]))
            out.append(TruthEvent(rule.id, "presence", 0, f"{int(count[i])} people", float(first.times[i]),
                                  round(near, 1), None))
    return out


@dataclass(frozen=True, slots=True)
class _Path:
    actor: Actor
    times: np.ndarray
    present: np.ndarray
    x: np.ndarray  # in the rule's space
    y: np.ndarray
    distance: np.ndarray  # from the camera, metres
    t0: float
    px_tall: np.ndarray  # the person's height in the image, pixels

    def event(self, place: str, kind: TruthKind, i: int, direction: str | None = None) -> TruthEvent:
        px = float(self.px_tall[i])
        return TruthEvent(place, kind, self.actor.track_id, actor_kind(self.actor), float(self.times[i]),
                          round(float(self.distance[i]), 1), direction, round(px, 1) if math.isfinite(px) else None)


def _px_tall(scene: ThermalScene, actor: Actor, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """How many pixels tall a person stands (or lies) at each ground point, through the scene's own camera."""
    height = PERSON_M.get(actor.gait, 1.75 * actor.size)
    _, foot = scene.camera.project(gx, gy, np.zeros_like(gx))
    _, head = scene.camera.project(gx, gy, np.full_like(gx, height))
    return np.asarray(foot, np.float64) - np.asarray(head, np.float64)


def _zone_truth(rule: ZoneRule, p: _Path) -> list[TruthEvent]:
    inside = p.present & shapely.contains_xy(rule.polygon, p.x, p.y)  # NaN (not in the scene) is inside nothing
    out, was, entered = [], False, 0.0
    loitered = False
    for i, now in enumerate(inside.tolist()):
        ts = p.t0 + float(p.times[i])
        active = rule.schedule.active(ts)
        if not p.present[i]:
            was = False  # gone from the scene: no exit, and a return is a new entry
            continue
        if now and not was:
            entered, loitered = float(p.times[i]), False
            if rule.entry and active:
                out.append(p.event(rule.id, "entry", i))
        elif was and not now and rule.exit and active:
            out.append(p.event(rule.id, "exit", i))
        if (now and not loitered and rule.loiter_s is not None and float(p.times[i]) - entered >= rule.loiter_s
                - 1e-9):
            loitered = True
            if active:
                out.append(p.event(rule.id, "loitering", i))
        was = now
    return out


def _line_truth(rule: LineRule, p: _Path) -> list[TruthEvent]:
    ok = p.present & np.isfinite(p.x) & np.isfinite(p.y)
    sides = np.zeros(len(p.x), int)
    if ok.any():
        visual = -1.0 if rule.pixel_space else 1.0  # pixel y points down, as LineMachine has it
        sides[ok] = (side_of(rule.line, p.x[ok], p.y[ok]) * visual).astype(int)
    out: list[TruthEvent] = []
    confirmed, anchor = 0, (0.0, 0.0)
    for i in np.flatnonzero(ok).tolist():
        s, here = int(sides[i]), (float(p.x[i]), float(p.y[i]))
        if s == 0:
            continue
        if s != confirmed and confirmed != 0 and segment_crosses(rule.line, *anchor, *here):
            direction = "right_to_left" if s > 0 else "left_to_right"
            if rule.direction in ("both", direction) and rule.schedule.active(p.t0 + float(p.times[i])):
                out.append(p.event(rule.id, "line_crossing", i, direction))
        confirmed, anchor = s, here
    return out


# -- alerts against truth -----------------------------------------------------------------------------------------


def scored_alerts(alerts: Sequence[Alert]) -> list[Alert]:
    """The alerts a guard sees appear: new ones about a zone or line."""
    return [a for a in alerts if a.state == "new" and a.kind in SCORED_KINDS and a.zone is not None]


def match(truth: Sequence[TruthEvent], alerts: Sequence[Alert], t0: float) -> Outcomes:
    """Each scored truth event: alerted (an alert of its own, within -2..+10 s, each alert once), covered (its
    place's alert was up) or missed; the alerts left over are nuisance."""
    raised = scored_alerts(alerts)
    closed = {a.incident_id: a.ts - t0 for a in alerts if a.state == "closed"}
    used: set[int] = set()
    events: list[tuple[TruthEvent, Outcome, float | None]] = []
    for ev in sorted((e for e in truth if e.scored), key=lambda e: e.t):
        best = None
        for k, a in enumerate(raised):  # the earliest unused alert of the place in the window
            if (k not in used and a.zone is not None and a.zone[0] == ev.place
                    and ev.t - EARLY_S <= a.ts - t0 <= ev.t + LATE_S and (best is None or a.ts < raised[best].ts)):
                best = k
        if best is not None:
            used.add(best)
            events.append((ev, "alerted", raised[best].ts - t0 - ev.t))
            continue
        up = any(a.zone is not None and a.zone[0] == ev.place and a.ts - t0 <= ev.t + LATE_S
                 and ev.t <= closed.get(a.incident_id, math.inf) for a in raised)
        events.append((ev, "covered" if up else "missed", None))
    return Outcomes(tuple(events), tuple(a for k, a in enumerate(raised) if k not in used))


def nuisance_cause(alert: Alert, truth: SceneTruth, plane: LocalPlane | None, t0: float) -> str:
    """The actor nearest what raised the alert (its box, else its location): "dog", "car", ... or "none"."""
    thermal = [e for e in alert.evidence if e.type == "thermal"]
    at = thermal[-1] if thermal else None
    ts = at.ts if at is not None else alert.ts
    frame = int(round((ts - t0) * truth.fps))
    bbox = dict(at.fields).get("bbox") if at is not None else None
    if bbox is not None:
        ious = [(iou(tuple(bbox), o.bbox), o.track_id) for o in truth.objects.get(frame, [])]
        best = max(ious, default=(0.0, 0))
        if best[0] > 0:
            actor = truth.actor(best[1])
            return actor_kind(actor) if actor is not None else "none"
    location = alert.location or (at.location if at is not None else None)
    if location is None or plane is None:
        return "none"
    ax, ay = plane.to_xy(location[0], location[1])
    near: list[tuple[float, str]] = []
    for actor in truth.scene.scenario.actors:
        s = actor.state(ts - t0)
        if s is not None:
            x, y = truth.plane_xy(plane, np.array([s[0]]), np.array([s[1]]))
            near.append((math.hypot(float(x[0]) - float(ax), float(y[0]) - float(ay)), actor_kind(actor)))
    d, kind = min(near, default=(math.inf, "none"))
    return kind if d <= CAUSE_RADIUS_M else "none"


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@dataclass(frozen=True, slots=True)
class TrackClasses:
    """One track over its life: the actor it covered most (IoU > MIN_IOU), and its settled class per frame."""

    track_id: int
    actor_id: int | None
    actor_kind: str  # "none" for a track on nothing
    settled: dict[str, int]  # class -> frames settled as that class

    @property
    def label(self) -> str:
        """The class the track settled on over its life (majority of its settled frames)."""
        return max(self.settled, key=lambda k: self.settled[k]) if self.settled else "unknown"


def track_classes(truth: SceneTruth, sightings: Sequence[TrackSighting]) -> list[TrackClasses]:
    by_track: dict[int, list[TrackSighting]] = defaultdict(list)
    for s in sightings:
        by_track[s.track_id].append(s)
    out = []
    for tid, seen in by_track.items():
        actors: Counter[int] = Counter()
        for s in seen:
            best = max(((iou(s.bbox, o.bbox), o.track_id) for o in truth.objects.get(s.frame, [])), default=(0.0, 0))
            if best[0] > MIN_IOU:
                actors[best[1]] += 1
        actor = truth.actor(actors.most_common(1)[0][0]) if actors else None
        out.append(TrackClasses(tid, actor.track_id if actor else None, actor_kind(actor) if actor else "none",
                                dict(Counter(s.label for s in seen if s.settled))))
    return out


def confusion(truth: SceneTruth, sightings: Sequence[TrackSighting]) -> dict[str, dict[str, int]]:
    """Rows: actor kinds; columns: the class each track covering that actor settled on over its life (majority of
    its settled frames), or ``missed`` for an actor no track ever covered. A track on nothing is a ``none`` row."""
    rows: dict[str, dict[str, int]] = {}

    def count(row: str, col: str) -> None:
        rows.setdefault(row, dict.fromkeys(CLASS_COLUMNS, 0))[col] += 1

    tracks = track_classes(truth, sightings)
    for t in tracks:
        count(t.actor_kind, t.label if t.label in CLASS_COLUMNS else "unknown")
    covered = {t.actor_id for t in tracks}
    for actor in truth.scene.scenario.actors:
        if actor.track_id not in covered:
            count(actor_kind(actor), "missed")
    return rows


# -- scores -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Score:
    """Outcomes of one scenario, or of several summed: Pd per place and range band, time to alert, nuisance."""

    hours: float
    outcomes: tuple[tuple[TruthEvent, Outcome, float | None], ...]
    nuisance: tuple[tuple[str, str, float, str], ...]  # (place, alert kind, seconds into the scene, cause)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)

    def __add__(self, other: Score) -> Score:
        table = {r: dict(c) for r, c in self.confusion.items()}
        for row, cols in other.confusion.items():
            mine = table.setdefault(row, dict.fromkeys(CLASS_COLUMNS, 0))
            for col, n in cols.items():
                mine[col] += n
        return Score(self.hours + other.hours, self.outcomes + other.outcomes, self.nuisance + other.nuisance, table)

    @property
    def pd(self) -> float | None:
        return pd(self.outcomes)

    @property
    def nuisance_per_h(self) -> float:
        return len(self.nuisance) / self.hours if self.hours > 0 else 0.0

    def per_place(self) -> dict[str, dict[str, object]]:
        places: dict[str, list[tuple[TruthEvent, Outcome, float | None]]] = defaultdict(list)
        for o in self.outcomes:
            places[o[0].place].append(o)
        for place, *_ in self.nuisance:
            places.setdefault(place, [])
        return {p: summary(os, sum(1 for n in self.nuisance if n[0] == p), self.hours)
                for p, os in sorted(places.items())}

    def per_band(self) -> dict[str, float | None]:
        return {f"{lo}-{hi} m": pd([o for o in self.outcomes if lo <= o[0].distance_m < hi]) for lo, hi in BANDS_M}

    def per_px(self) -> dict[str, float | None]:
        """Pd by the person's height in pixels when it happened: what the camera had to go on."""
        def label(lo: int, hi: int) -> str:
            return f"{lo}+ px" if hi >= 10_000 else f"{lo}-{hi} px"

        return {label(lo, hi): pd([o for o in self.outcomes if o[0].px_tall is not None and lo <= o[0].px_tall < hi])
                for lo, hi in BANDS_PX}


def pd(outcomes: Sequence[tuple[TruthEvent, Outcome, float | None]]) -> float | None:
    """Detected (alerted or covered) over truth; None with no truth."""
    return sum(o[1] != "missed" for o in outcomes) / len(outcomes) if outcomes else None


def summary(outcomes: Sequence[tuple[TruthEvent, Outcome, float | None]], nuisance: int, hours: float
            ) -> dict[str, object]:
    delays = [o[2] for o in outcomes if o[2] is not None]
    states = Counter(o[1] for o in outcomes)
    return {"truth": len(outcomes), "alerted": states["alerted"], "covered": states["covered"],
            "missed": states["missed"], "pd": pd(outcomes),
            "time_to_alert_median_s": round(statistics.median(delays), 2) if delays else None,
            "time_to_alert_max_s": round(max(delays), 2) if delays else None,
            "nuisance": nuisance, "nuisance_per_h": round(nuisance / hours, 1) if hours > 0 else 0.0}
