"""Zone and line rules as pure state machines over (track updates, time): no I/O, no clock of their own.

Nuisance alarms are what make guards stop trusting a system, so every rule is deliberate:

- hysteresis: a track enters when its anchor is inside the zone shrunk by ``margin`` and leaves when it is
  outside the zone grown by ``margin``; walking along an edge or a box jittering across it changes nothing;
- inertia: the anchor must be on the new side for ``min_frames`` frames in a row, and the track must be at
  least ``min_age_s`` old;
- a crossing is a foot that moved, not a box that changed: a track that reaches the new side with a height
  other than its usual one on the old side (legs hidden behind a bank, its box merged with an animal's) has not
  crossed until it is its own size again there, or has stayed there ``SIZE_HOLD_S``;
- filters: label, minimum confidence and minimum box height; a track that fails them counts as nowhere;
- schedules: a rule outside its active hours updates its state but says nothing;
- cooldown: one event of a kind per zone and track per ``cooldown_s``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon

from geofences.zones import segment_crosses, side_of

EventKind = Literal["entry", "exit", "loitering", "line_crossing", "presence"]
Direction = Literal["left_to_right", "right_to_left", "both"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class TrackPoint:
    """One confirmed track in one frame, as the rules see it. ``x, y`` is the anchor in the rule's space
    (pixels, or metres on the site plane for geographic rules); NaN where it cannot be placed."""

    camera: str
    track_id: int
    label: str
    confidence: float
    ts: float
    bbox: tuple[float, float, float, float]
    x: float
    y: float
    age_s: float = math.inf
    latlon: tuple[float, float] | None = None
    height_m: float | None = None  # real height estimated through the geo-calibration, when there is one
    settled: bool = True  # the label is a verdict, not a class still being decided
    width_m: float | None = None
    speed_mps: float | None = None
    reason: str = ""  # what the label rests on, e.g. "0.6 m tall, 1.8 m/s"
    by: str = "model"  # who decided the label: "model" (a detector saw it) or "physics" (its calibrated size/speed)
    px_tall: float | None = None  # its height in pixels lately

    @property
    def height_px(self) -> float:
        return self.bbox[3] - self.bbox[1]


@dataclass(frozen=True, slots=True)
class ZoneEvent:
    kind: EventKind
    rule_id: str  # the zone or line id
    camera: str
    track_id: int  # 0 for presence events (the zone, not one track)
    label: str
    ts: float
    confidence: float
    bbox: tuple[float, float, float, float] | None
    latlon: tuple[float, float] | None
    since_ts: float  # when the condition began: first frame inside, start of the crossing, ...
    direction: str | None = None
    dwell_s: float | None = None
    count: int | None = None
    track_ids: tuple[int, ...] = ()
    height_m: float | None = None
    width_m: float | None = None
    speed_mps: float | None = None
    reason: str = ""
    by: str = "model"
    px_tall: float | None = None


UnknownPolicy = Literal["lower", "same", "ignore"]


@dataclass(frozen=True, slots=True)
class Filters:
    """Which tracks a rule counts. ``unknown`` says what a track whose class cannot be told (a crawling person
    and a dog can look alike) does to a rule about people: alert one severity lower (``lower``), like a
    person (``same``), or nothing (``ignore``)."""

    labels: frozenset[str] = frozenset({"person"})
    unknown: UnknownPolicy = "lower"
    min_confidence: float = 0.0
    min_height_px: float = 0.0
    min_height_m: float = 0.0
    min_age_s: float = 0.0
    min_frames: int = 3
    margin: float = 0.0  # pixels or metres, in the rule's space

    def admits(self, p: TrackPoint) -> bool:
        return (p.settled and self.about(p.label) and p.confidence >= self.min_confidence
                and p.height_px >= self.min_height_px
                and (self.min_height_m <= 0 or (p.height_m is not None and p.height_m >= self.min_height_m))
                and not (math.isnan(p.x) or math.isnan(p.y)))

    def about(self, label: str) -> bool:
        """Whether tracks of a class count: the rule's labels, and unknown ones where it is about people."""
        return label in self.labels or (label == "unknown" and "person" in self.labels and self.unknown != "ignore")


@dataclass(frozen=True, slots=True)
class Window:
    """Active hours on some days, in a timezone; ``end`` before ``start`` runs over midnight."""

    start: time
    end: time
    days: frozenset[str] = frozenset(DAYS)
    tz: str = "UTC"

    def active(self, ts: float) -> bool:
        local = datetime.fromtimestamp(ts, ZoneInfo(self.tz))
        t, day = local.time(), DAYS[local.weekday()]
        if self.start <= self.end:
            return day in self.days and self.start <= t < self.end
        if t >= self.start:
            return day in self.days
        yesterday = DAYS[(local.weekday() - 1) % 7]  # the early hours belong to the night that began yesterday
        return yesterday in self.days and t < self.end


@dataclass(frozen=True, slots=True)
class Schedule:
    windows: tuple[Window, ...] = ()  # empty: always active

    def active(self, ts: float) -> bool:
        return not self.windows or any(w.active(ts) for w in self.windows)


@dataclass(frozen=True, slots=True)
class ZoneRule:
    id: str
    camera: str | None  # None: a geographic zone, seen by every calibrated camera
    polygon: Polygon  # in the rule's space
    entry: bool = True
    exit: bool = False
    loiter_s: float | None = None
    max_count: int | None = None
    filters: Filters = field(default_factory=Filters)
    schedule: Schedule = field(default_factory=Schedule)
    cooldown_s: float = 30.0


@dataclass(frozen=True, slots=True)
class LineRule:
    id: str
    camera: str | None
    line: LineString
    direction: Direction = "both"
    pixel_space: bool = True  # image y grows downwards: "left" is as seen on the screen
    filters: Filters = field(default_factory=Filters)
    schedule: Schedule = field(default_factory=Schedule)
    cooldown_s: float = 30.0


@dataclass(slots=True)
class _Presence:
    inside: bool = False
    in_run: int = 0
    out_run: int = 0
    run_start: float = 0.0
    entered_ts: float = 0.0
    loitered: bool = False
    last_seen: float = 0.0
    label: str = ""
    confidence: float = 0.0


@dataclass(slots=True)
class _Side:
    confirmed: int = 0
    run_side: int = 0
    run: int = 0
    run_start: float = 0.0
    anchor: tuple[float, float] | None = None  # the last point on the confirmed side
    sizes: deque[tuple[float, float | None, float]] = field(default_factory=deque)  # ts, metres, px on that side
    last_seen: float = 0.0


SIZE_JUMP = 1.25  # a height this many times its usual one on the old side (or 1/this) is no foot that moved
SIZE_S = 5.0  # the usual height: the median over the track's points on the old side this long, in metres ...
SIZE_PX_S = 1.0  # ... or this long in pixels (they change as it walks nearer)
SIZE_HOLD_S = 3.0  # ... unless the track keeps the new height on the new side this long


def _same_size(sizes: deque[tuple[float, float | None, float]], p: TrackPoint) -> bool:
    """Whether ``p`` is as tall as the track usually was on its old side (in metres where it is placed: walking
    nearer does not change them; else in pixels, which change slowly)."""
    if not sizes:
        return True
    metres = [m for _, m, _ in sizes if m is not None and m > 0]
    if p.height_m is not None and p.height_m > 0 and len(metres) == len(sizes):
        ratio = p.height_m / float(np.median(metres))
    else:
        recent = [px for t, _, px in sizes if t >= sizes[-1][0] - SIZE_PX_S]
        ratio = (p.bbox[3] - p.bbox[1]) / max(float(np.median(recent)), 1e-6)
    return 1.0 / SIZE_JUMP <= ratio <= SIZE_JUMP


def _measures(p: TrackPoint) -> dict[str, Any]:
    return {"height_m": p.height_m, "width_m": p.width_m, "speed_mps": p.speed_mps, "reason": p.reason, "by": p.by,
            "px_tall": p.px_tall}


def _forget_stale(tracks: dict[tuple[str, int], Any], last_fired: dict[Any, float], ts: float, max_age_s: float,
                  cooldown_s: float) -> None:
    """Drop tracks unseen for ``max_age_s`` and cooldown entries older than ``cooldown_s`` (every machine)."""
    for key in [k for k, st in tracks.items() if ts - st.last_seen > max_age_s]:
        del tracks[key]
    for fired in [k for k, last in last_fired.items() if ts - last > cooldown_s]:
        del last_fired[fired]


class ZoneMachine:
    """Entry, exit, loitering and presence count for one zone."""

    def __init__(self, rule: ZoneRule) -> None:
        self.rule = rule
        m = rule.filters.margin
        self.inner = rule.polygon.buffer(-m) if m > 0 else rule.polygon
        self.outer = rule.polygon.buffer(m) if m > 0 else rule.polygon
        shapely.prepare(self.inner)
        shapely.prepare(self.outer)
        self.tracks: dict[tuple[str, int], _Presence] = {}
        self.last_fired: dict[tuple[str, int, str], float] = {}
        self.over_count = False

    def _fire(self, kind: EventKind, key: tuple[str, int], ts: float) -> bool:
        last = self.last_fired.get((*key, kind))
        if last is not None and ts - last < self.rule.cooldown_s:
            return False
        self.last_fired[(*key, kind)] = ts
        return self.rule.schedule.active(ts)

    def update(self, ts: float, points: Sequence[TrackPoint]) -> list[ZoneEvent]:
        f = self.rule.filters
        pts = [p for p in points if f.admits(p)]
        events: list[ZoneEvent] = []
        if pts:
            xs = np.array([p.x for p in pts])
            ys = np.array([p.y for p in pts])
            ins = shapely.contains_xy(self.inner, xs, ys)
            outs = ~shapely.contains_xy(self.outer, xs, ys)
        for i, p in enumerate(pts):
            key = (p.camera, p.track_id)
            st = self.tracks.setdefault(key, _Presence())
            st.last_seen, st.label, st.confidence = ts, p.label, p.confidence
            if ins[i]:
                if st.in_run == 0:
                    st.run_start = ts
                st.in_run += 1
                st.out_run = 0
            elif outs[i]:
                st.out_run += 1
                st.in_run = 0
            # between the inner and outer edge: neither run grows, neither resets the state
            if not st.inside and st.in_run >= f.min_frames and p.age_s >= f.min_age_s:
                st.inside, st.entered_ts, st.loitered = True, st.run_start, False
                if self.rule.entry and self._fire("entry", key, ts):
                    events.append(self._event("entry", p, ts, st.entered_ts))
            elif st.inside and st.out_run >= f.min_frames:
                st.inside = False
                if self.rule.exit and self._fire("exit", key, ts):
                    events.append(self._event("exit", p, ts, st.entered_ts, dwell=ts - st.entered_ts))
            if (st.inside and not st.loitered and self.rule.loiter_s is not None
                    and ts - st.entered_ts >= self.rule.loiter_s):
                st.loitered = True
                if self._fire("loitering", key, ts):
                    events.append(self._event("loitering", p, ts, st.entered_ts, dwell=ts - st.entered_ts))
        if self.rule.max_count is not None:
            inside = [k for k, st in self.tracks.items() if st.inside]
            if len(inside) > self.rule.max_count and not self.over_count:
                self.over_count = True
                if self.rule.schedule.active(ts):
                    states = [self.tracks[k] for k in inside]
                    labels = sorted({st.label for st in states})
                    # the crowd's label: theirs when they agree, else what any of them may be
                    label = labels[0] if len(labels) == 1 else ("person" if "person" in labels else "unknown")
                    events.append(ZoneEvent("presence", self.rule.id, inside[0][0], 0, label, ts,
                                            min(st.confidence for st in states), None, None,
                                            min(st.entered_ts for st in states), count=len(inside),
                                            track_ids=tuple(sorted(k[1] for k in inside))))
            elif len(inside) <= self.rule.max_count:
                self.over_count = False
        return events

    def forget(self, camera: str, track_id: int) -> None:
        self.tracks.pop((camera, track_id), None)

    def expire(self, ts: float, max_age_s: float) -> None:
        _forget_stale(self.tracks, self.last_fired, ts, max_age_s, self.rule.cooldown_s)

    def _event(self, kind: EventKind, p: TrackPoint, ts: float, since: float, dwell: float | None = None) -> ZoneEvent:
        return ZoneEvent(kind, self.rule.id, p.camera, p.track_id, p.label, ts, p.confidence, p.bbox, p.latlon, since,
                         dwell_s=dwell, **_measures(p))


class LineMachine:
    """Line crossing with a direction for one polyline."""

    def __init__(self, rule: LineRule) -> None:
        self.rule = rule
        self.tracks: dict[tuple[str, int], _Side] = {}
        self.last_fired: dict[tuple[str, int], float] = {}
        self._visual = -1.0 if rule.pixel_space else 1.0  # flip: pixel y points down

    def update(self, ts: float, points: Sequence[TrackPoint]) -> list[ZoneEvent]:
        f = self.rule.filters
        pts = [p for p in points if f.admits(p)]
        if not pts:
            return []
        xs = np.array([p.x for p in pts])
        ys = np.array([p.y for p in pts])
        sides = side_of(self.rule.line, xs, ys) * self._visual
        if f.margin > 0:
            near = shapely.dwithin(self.rule.line, shapely.points(xs, ys), f.margin)
            sides = np.where(near, 0.0, sides)
        events: list[ZoneEvent] = []
        for p, s in zip(pts, sides.astype(int).tolist(), strict=True):
            key = (p.camera, p.track_id)
            st = self.tracks.setdefault(key, _Side())
            st.last_seen = ts
            if s == 0:
                continue  # on the line, inside the margin: undecided
            if s == st.run_side:
                st.run += 1
            else:
                st.run_side, st.run, st.run_start = s, 1, ts
            if s == st.confirmed:
                st.anchor = (p.x, p.y)
                st.sizes.append((ts, p.height_m, p.bbox[3] - p.bbox[1]))
                while st.sizes[0][0] < ts - SIZE_S:
                    st.sizes.popleft()
                continue
            if st.run < f.min_frames or p.age_s < f.min_age_s:
                continue
            if st.confirmed != 0 and not _same_size(st.sizes, p) and ts - st.run_start < SIZE_HOLD_S:
                continue  # its box changed, not (yet) its place
            previous, start = st.confirmed, st.anchor
            st.confirmed, st.anchor = s, (p.x, p.y)
            st.sizes.clear()
            if previous == 0 or start is None:
                continue  # first sighting: no crossing yet
            if not segment_crosses(self.rule.line, start[0], start[1], p.x, p.y):
                continue  # went around an end of the line
            direction = "right_to_left" if s > 0 else "left_to_right"
            if self.rule.direction not in ("both", direction):
                continue
            last = self.last_fired.get(key)
            if last is not None and ts - last < self.rule.cooldown_s:
                continue
            self.last_fired[key] = ts
            if self.rule.schedule.active(ts):
                events.append(ZoneEvent("line_crossing", self.rule.id, p.camera, p.track_id, p.label, ts,
                                        p.confidence, p.bbox, p.latlon, st.run_start, direction=direction,
                                        **_measures(p)))
        return events

    def forget(self, camera: str, track_id: int) -> None:
        self.tracks.pop((camera, track_id), None)

    def expire(self, ts: float, max_age_s: float) -> None:
        _forget_stale(self.tracks, self.last_fired, ts, max_age_s, self.rule.cooldown_s)


class RuleEngine:
    """Every zone and line of a site. Feed it each camera's tracks frame by frame; it returns zone events.

    A track unseen for ``track_timeout_s`` is forgotten (its state, not its cooldowns).
    """

    def __init__(self, zones: Iterable[ZoneRule] = (), lines: Iterable[LineRule] = (),
                 track_timeout_s: float = 10.0) -> None:
        self.zones = [ZoneMachine(z) for z in zones]
        self.lines = [LineMachine(ln) for ln in lines]
        self.machines: list[ZoneMachine | LineMachine] = [*self.zones, *self.lines]
        self.track_timeout_s = track_timeout_s
        self._expired_at = -math.inf

    def update(self, camera: str, ts: float, pixel_points: Sequence[TrackPoint],
               geo_points: Sequence[TrackPoint] = ()) -> list[ZoneEvent]:
        """One frame of one camera: its confirmed tracks with anchors in pixels and, when the camera is
        calibrated, on the site plane (metres)."""
        events: list[ZoneEvent] = []
        for m in self.machines:
            rule_camera = m.rule.camera
            if rule_camera is None:
                events += m.update(ts, geo_points)
            elif rule_camera == camera:
                events += m.update(ts, pixel_points)
        if ts - self._expired_at >= 1.0:  # forgetting stale tracks once a second is plenty
            self._expired_at = ts
            for m in self.machines:
                m.expire(ts, self.track_timeout_s)
        return events

    def forget(self, camera: str, track_id: int) -> None:
        for m in self.machines:
            m.forget(camera, track_id)
