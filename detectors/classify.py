"""What a track is: person, vehicle, animal or unknown, from what the model says and from physics.

A person model trained on photographs calls a warm dog a person. Through a camera's geo-calibration every
track has a real size and speed on the ground, and those separate people from animals and vehicles far
better than pixels do: people stand 1.2-2.3 m tall and are much taller than wide; a dog or a sheep is under
1.2 m and longer than tall; a cow or a deer seen from the side is as long as it is tall or longer; vehicles
are over 3 m long or 2.4 m high, or faster than anyone runs. A crawling person is low like a dog but long
(about 1.7 m) and slow; seen head-on the two look alike, and then the class is ``unknown`` - never an animal,
so an intruder who crawls does not vanish.

Each frame gives a vote from the last second of measurements (medians, and a speed fitted over the last
seconds of ground positions); the class is the votes' verdict over the last few seconds, and stays
``unknown`` where they disagree. A low object waits for its speed before it votes (``settled`` is False
meanwhile), so a trotting dog is never announced as "unknown" before it is seen to trot.

Far targets are a few pixels tall, below what a detection model sees: their class rests on physics alone (``by``
``physics``), from boxes down to ``min_box_px``. Far out, a pixel down the image is many metres of range (20 m at
300 m from a 5 m mast) while a pixel across is a fraction of a metre, so a speed there is taken across the line of
sight only: never faster than the target really is. Where the model is shown a target big enough for it, its
verdict takes over (``by`` ``model``); a person-only model that keeps not finding a target it is shown says that
target is no person. A box that jumps in size (two animals walking into one blob) does not vote: a flock never
becomes a person taller than any person. What only its heat shows and that never goes anywhere (a branch swaying,
a patch of sun) is ``clutter``: no rule counts it; a target walks in.

Pure: no clock, no I/O; one classifier per camera, fed that camera's confirmed tracks frame by frame.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

Klass = Literal["person", "vehicle", "animal", "unknown", "clutter"]
CLASSES: tuple[Klass, ...] = ("person", "vehicle", "animal", "unknown", "clutter")


@dataclass(frozen=True, slots=True)
class Physics:
    """The defaults: sizes of real people, animals and vehicles, not a site's tuning."""

    person_min_h: float = 1.2  # an upright adult; smaller upright things are children, kneelers or animals
    person_max_h: float = 2.3
    upright_ratio: float = 1.3  # height over width: people stand taller than wide from every side
    quadruped_ratio: float = 0.95  # a four-legged animal from the side is at least about as long as tall
    vehicle_min_w: float = 3.2  # longer than any cow or horse
    vehicle_min_h: float = 2.4  # taller than any person or cow: a truck or a van
    implausible_h: float = 5.5  # nothing on the ground is this tall: a bird near the lens, a bad calibration
    vehicle_speed: float = 9.0  # m/s, faster than people sprint for long
    crawl_max_h: float = 0.75
    crawl_min_w: float = 1.25  # a prone body seen from the side
    crawl_max_speed: float = 1.2
    low_animal_speed: float = 1.3  # a low object faster than this is no crawler
    low_h: float = 0.8  # below this, a track needs its speed before it votes
    window_s: float = 1.0  # the measurements a vote rests on
    speed_window_s: float = 2.0
    min_speed_span_s: float = 0.6  # positions over less time give no speed
    verdict_s: float = 4.0  # votes the class rests on
    recent_s: float = 1.5  # ... of which these alone can make a person (one stepping out from behind a rock)
    min_votes: int = 3
    min_box_px: float = 4.0  # smaller boxes measure too coarsely to vote on size
    merge_jump: float = 1.5  # a box this much taller (or shorter) than the track's usual size: a merge, no vote
    merge_hold_s: float = 5.0  # ... until it is back to its size, or has kept the new one this long
    model_share: float = 0.3  # the model found the target in this share of its recent showings: the model decides
    model_reach_px: float = 16.0  # targets this tall that a person-only model keeps not finding are no person
    model_refutes: float = 0.1  # ... found in fewer than this share of at least ``model_asks`` showings
    model_asks: int = 8
    range_step_m: float = 0.5  # beyond this many metres of range per pixel, speeds are taken across the view only
    static_px: float = 3.0  # a physics-only track that never got this far (or 0.3 of its height) from where it
    static_s: float = 1.5  # ... was first seen, in this long, is clutter
    physics_votes: int = 8  # a class by physics alone settles on this many votes (a model's on min_votes)


@dataclass(frozen=True, slots=True)
class Measurement:
    """One confirmed track in one frame. Sizes and position come through the camera's calibration and are
    None where there is none, or where the box is cut by the frame's edge (``cut``)."""

    ts: float
    model_label: str  # person | vehicle | animal, through the model's class map
    confidence: float
    height_px: float
    height_m: float | None = None
    width_m: float | None = None
    ground_xy: tuple[float, float] | None = None  # metres on the calibration's plane
    cut: bool = False
    airborne: bool = False  # the foot is above the horizon: not standing on the ground
    seen: float | None = None  # the share of its recent showings the model found it in (None: never shown)
    foot_px: tuple[float, float] | None = None  # the box's bottom centre in pixels
    camera_xy: tuple[float, float] | None = None  # the camera over the calibration's plane (for lines of sight)
    range_step_m: float | None = None  # metres of ground range per pixel down the image at the foot


Decider = Literal["model", "physics"]


@dataclass(frozen=True, slots=True)
class Classification:
    label: Klass
    settled: bool  # False while the evidence is still coming in; rules count a track once it is settled
    reason: str  # what the class rests on, e.g. "0.6 m tall, 1.8 m/s"
    height_m: float | None = None
    width_m: float | None = None
    speed_mps: float | None = None
    by: Decider = "physics"  # who decided: the model saw the target, or its calibrated size, shape and speed
    px_tall: float | None = None  # the target's height in pixels lately: how far to trust it

    def describe(self) -> str:
        """``animal, 0.6 m tall, 1.1 m/s`` - what a guard or engineer reads."""
        text = self.label if self.settled else f"{self.label} (deciding)"
        return f"{text}, {self.reason}" if self.reason else text


@dataclass(slots=True)
class _TrackState:
    seen: deque[Measurement] = field(default_factory=lambda: deque(maxlen=400))
    votes: deque[tuple[float, Klass]] = field(default_factory=lambda: deque(maxlen=400))
    life: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))  # every vote, ever
    last: Classification | None = None
    origin: tuple[float, float, float] | None = None  # when and where (foot pixel) it was first seen
    moved: bool = False
    usual_px: float | None = None  # the track's height in pixels, following slow change (walking nearer)
    jumped: float | None = None  # since when its box is merge_jump away from usual_px


class TrackClassifier:
    """Classifies one camera's tracks; ``observe`` each confirmed track every frame, ``forget`` lost ones."""

    def __init__(self, physics: Physics | None = None, calibrated: bool = True) -> None:
        self.physics = physics or Physics()
        self.calibrated = calibrated
        self._tracks: dict[int, _TrackState] = {}

    def observe(self, track_id: int, m: Measurement) -> Classification:
        st = self._tracks.setdefault(track_id, _TrackState())
        st.seen.append(m)
        horizon = m.ts - max(self.physics.speed_window_s, self.physics.window_s)
        while st.seen and st.seen[0].ts < horizon:
            st.seen.popleft()
        by, px = self._decider(st, m.ts)
        if by == "physics" and not self._moved(st, m):
            young = st.origin is None or m.ts - st.origin[0] < self.physics.static_s
            st.last = Classification("unknown" if young else "clutter", not young,
                                     "waiting to see it move" if young else "it never moved: clutter", by=by,
                                     px_tall=px)
            return st.last
        if not self.calibrated:
            label: Klass = m.model_label if m.model_label in CLASSES else "unknown"
            st.last = Classification(label, True, "the model's label: camera not calibrated", by=by, px_tall=px)
            return st.last
        vote, feats = self._vote(st, m.ts)
        if vote is not None:
            st.votes.append((m.ts, vote))
            st.life[vote] += 1
        while st.votes and st.votes[0][0] < m.ts - self.physics.verdict_s:
            st.votes.popleft()
        st.last = replace(self._verdict(st, feats), by=by, px_tall=px)
        return st.last

    def _moved(self, st: _TrackState, m: Measurement) -> bool:
        """Whether the track has ever gone somewhere from where it was first seen (its foot, in pixels)."""
        if st.moved or m.foot_px is None:
            return st.moved or m.foot_px is None
        if st.origin is None:
            st.origin = (m.ts, *m.foot_px)
            return False
        reach = max(self.physics.static_px, 0.3 * m.height_px)
        st.moved = math.hypot(m.foot_px[0] - st.origin[1], m.foot_px[1] - st.origin[2]) >= reach
        return st.moved

    def _decider(self, st: _TrackState, now: float) -> tuple[Decider, float | None]:
        """Who decides the class lately (the model, when it finds the target in enough of its showings), and the
        target's height in pixels (median of the last second)."""
        recent = [m for m in st.seen if m.ts >= now - self.physics.window_s]
        px = float(np.median([m.height_px for m in recent])) if recent else None
        shares = [m.seen for m in recent if m.seen is not None and math.isfinite(m.seen)]
        if shares:  # shown to the model: it decides where it finds the target often enough
            return ("model" if float(np.median(shares)) >= self.physics.model_share else "physics"), px
        # never shown in a crop (a whole-frame detector, a photograph): the model's if it named the target
        named = sum(m.model_label in CLASSES and m.model_label != "unknown" for m in recent)
        return ("model" if named * 2 >= len(recent) else "physics"), px

    def once(self, m: Measurement) -> Classification:
        """The class of something seen once (a still photograph): size only, so a low object that might crawl
        or trot stays unknown."""
        if not self.calibrated:
            return TrackClassifier(self.physics, calibrated=False).observe(0, m)
        feats = _Features.of([m], [m], self.physics)
        vote = self._physics_vote(feats)
        if vote is None or feats.h is None:
            model = _model_vote([m])
            vote = model if model in ("vehicle", "animal") or feats.h is None else "unknown"
        return Classification(vote or "unknown", True, feats.reason(), feats.h, feats.w, None, "model",
                              m.height_px)

    def last(self, track_id: int) -> Classification | None:
        st = self._tracks.get(track_id)
        return st.last if st else None

    def forget(self, track_id: int) -> None:
        self._tracks.pop(track_id, None)

    # -- one frame's vote ------------------------------------------------------------------------------------

    def _vote(self, st: _TrackState, now: float) -> tuple[Klass | None, _Features]:
        p = self.physics
        recent = [m for m in st.seen if m.ts >= now - p.window_s]
        if self._merged(st, now):
            return None, _Features.of(recent, list(st.seen), p)  # the box jumped in size: two things became one
        if st.usual_px is not None:  # sizes of the track's own size only, not those of a merge just over
            recent = [m for m in recent if 1.0 / p.merge_jump < m.height_px / st.usual_px < p.merge_jump]
        feats = _Features.of(recent, list(st.seen), p)
        model = _model_vote(recent)
        physics = self._physics_vote(feats)
        if physics == "person" and (feats.h or 0.0) >= p.person_min_h and _refuted(list(st.seen), p):
            # upright, big enough for the model, shown to it again and again, never found (the model knows
            # people standing; it is weak on people lying or crawling, whom physics alone judges)
            physics = "unknown"
        if physics in (None, "unknown") and model in ("vehicle", "animal"):
            return model, feats  # a model that knows animals and vehicles decides where physics cannot
        if feats.h is None and not feats.airborne:
            # cut by the frame's edge or too small to measure: only a model that knows more than people speaks
            # (a person model says "person" of half a cow coming into view)
            return (model if model in ("vehicle", "animal") else None), feats
        return physics, feats

    def _merged(self, st: _TrackState, now: float) -> bool:
        """Whether the newest box is ``merge_jump`` times taller or shorter than the track's usual size, and has
        been so for less than ``merge_hold_s``: a dog whose blob has run into a standing person's is no 1.9 m
        person for as long as they overlap, and votes again once it is its own size. A size kept that long (a
        crawler who stood up) becomes the usual one."""
        p = self.physics
        newest = st.seen[-1].height_px
        if st.usual_px is None:
            first = [m.height_px for m in st.seen if m.ts >= now - p.window_s]
            if len(first) < 3:
                return False
            st.usual_px = float(np.median(first))
        ratio = newest / max(st.usual_px, 1e-3)
        if 1.0 / p.merge_jump < ratio < p.merge_jump:
            st.usual_px += 0.2 * (newest - st.usual_px)
            st.jumped = None
            return False
        if st.jumped is None:
            st.jumped = now
        if now - st.jumped < p.merge_hold_s:
            return True
        st.usual_px, st.jumped = newest, None
        return False

    def _physics_vote(self, feats: _Features) -> Klass | None:
        p = self.physics
        if feats.airborne:
            return "unknown"
        if feats.h is None or feats.w is None:
            return None
        h, w, v = feats.h, feats.w, feats.speed
        ratio = h / max(w, 1e-3)
        if h > p.implausible_h:
            return "unknown"
        if w >= p.vehicle_min_w or h >= p.vehicle_min_h or (v is not None and v >= p.vehicle_speed):
            return "vehicle"
        if h >= p.person_min_h:
            if h <= p.person_max_h and ratio >= p.upright_ratio:
                return "person"
            return "animal" if ratio < p.quadruped_ratio else "unknown"
        if h >= p.low_h:  # a sheep, a dog with its head up, a kneeling or crouching person
            return "animal" if ratio < p.quadruped_ratio else "unknown"
        # low: a dog, a sheep grazing, or someone crawling
        if v is None:
            return None  # wait for the speed
        if h <= p.crawl_max_h and w >= p.crawl_min_w and v <= p.crawl_max_speed:
            return "person"
        if v >= p.low_animal_speed:
            return "animal"
        return "unknown"

    # -- the verdict over the track's recent life ------------------------------------------------------------

    def _verdict(self, st: _TrackState, feats: _Features) -> Classification:
        p = self.physics
        reason = feats.reason()
        n = len(st.votes)
        physics_only = st.last is None or st.last.by == "physics"
        if n < (p.physics_votes if physics_only else p.min_votes):
            return Classification("unknown", False, reason, feats.h, feats.w, feats.speed)
        counts = {k: 0 for k in CLASSES}
        for _, k in st.votes:
            counts[k] += 1
        share = {k: c / n for k, c in counts.items()}
        # A person seen as one for most of the track's life stays one while a rock hides the legs (the foot
        # point then jumps back, and the size with it) or they crouch.
        life_person = st.life["person"] / max(1, sum(st.life.values()))
        recent = [k for ts, k in st.votes if ts >= st.votes[-1][0] - p.recent_s]
        recent_person = recent.count("person") / len(recent)
        label: Klass = "unknown"
        if (share["person"] >= 0.5 or (recent_person >= 0.6 and len(recent) >= p.min_votes)
                or (life_person >= 0.5 and share["vehicle"] < 0.6)):
            label = "person"
        elif share["vehicle"] >= 0.6:
            label = "vehicle"
        elif (share["animal"] + share["vehicle"] >= 0.7 and share["person"] < 0.15 and recent_person == 0
              and life_person < 0.3):
            # not a person, hardly anything ever said so: an animal (or a vehicle, where those votes lead)
            label = "vehicle" if share["vehicle"] > share["animal"] else "animal"
        return Classification(label, True, reason, feats.h, feats.w, feats.speed)


@dataclass(frozen=True, slots=True)
class _Features:
    h: float | None
    w: float | None
    speed: float | None
    airborne: bool

    @classmethod
    def of(cls, recent: list[Measurement], history: list[Measurement], p: Physics) -> _Features:
        sized = [m for m in recent if m.height_m is not None and m.width_m is not None and not m.cut
                 and m.height_px >= p.min_box_px and math.isfinite(m.height_m) and math.isfinite(m.width_m)]
        h = float(np.median([m.height_m for m in sized])) if sized else None
        w = float(np.median([m.width_m for m in sized])) if sized else None
        airborne = sum(m.airborne for m in recent) > len(recent) / 2
        return cls(h, w, _speed(history, p), airborne)

    def reason(self) -> str:
        if self.airborne:
            return "not on the ground"
        parts = []
        if self.h is not None:
            parts.append(f"{self.h:.1f} m tall")
        if self.w is not None:
            parts.append(f"{self.w:.1f} m wide")
        if self.speed is not None:
            parts.append(f"{self.speed:.1f} m/s")
        return ", ".join(parts)


def _refuted(history: list[Measurement], p: Physics) -> bool:
    """A target the model was shown often enough, big enough for it, and hardly ever found: for a person-only
    model, no person."""
    shown = [m for m in history if m.seen is not None and math.isfinite(m.seen) and m.height_px >= p.model_reach_px]
    return len(shown) >= p.model_asks and float(np.median([m.seen for m in shown])) < p.model_refutes


def _model_vote(recent: list[Measurement]) -> Klass | None:
    """The model's label where it says more than "person" (a COCO-style model with vehicles and animals)."""
    labels = [m.model_label for m in recent if m.model_label in CLASSES and m.model_label != "unknown"]
    if not labels:
        return None
    top = max(set(labels), key=labels.count)
    return top


def _speed(history: list[Measurement], p: Physics) -> float | None:
    """Ground speed (m/s) by a least-squares line through the last positions; None over too short a time. Where a
    pixel down the image is more than ``range_step_m`` of range, only the speed across the line of sight counts
    (the range itself is too coarse there): a lower bound, never a made-up speed."""
    used = [m for m in history
            if m.ground_xy is not None and m.ts >= history[-1].ts - p.speed_window_s and not m.cut
            and all(math.isfinite(c) for c in m.ground_xy)]
    if len(used) < 4 or used[-1].ts - used[0].ts < p.min_speed_span_s:
        return None
    a = np.array([(m.ts, *m.ground_xy) for m in used])  # type: ignore[misc]
    t = a[:, 0] - a[:, 0].mean()
    vx, vy = (t @ (a[:, 1:] - a[:, 1:].mean(axis=0))) / (t @ t)
    newest = used[-1]
    if newest.range_step_m is not None and newest.range_step_m > p.range_step_m and newest.camera_xy is not None:
        rx, ry = a[-1, 1] - newest.camera_xy[0], a[-1, 2] - newest.camera_xy[1]
        norm = math.hypot(rx, ry)
        if norm > 0:
            return float(abs(vx * ry - vy * rx) / norm)  # across the line of sight
    return float(math.hypot(vx, vy))
