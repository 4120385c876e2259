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

Pure: no clock, no I/O; one classifier per camera, fed that camera's confirmed tracks frame by frame.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Klass = Literal["person", "vehicle", "animal", "unknown"]
CLASSES: tuple[Klass, ...] = ("person", "vehicle", "animal", "unknown")


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
    min_box_px: float = 8.0  # smaller boxes measure too coarsely to vote on size


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


@dataclass(frozen=True, slots=True)
class Classification:
    label: Klass
    settled: bool  # False while the evidence is still coming in; rules count a track once it is settled
    reason: str  # what the class rests on, e.g. "0.6 m tall, 1.8 m/s"
    height_m: float | None = None
    width_m: float | None = None
    speed_mps: float | None = None

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
        if not self.calibrated:
            label: Klass = m.model_label if m.model_label in CLASSES else "unknown"
            st.last = Classification(label, True, "the model's label: camera not calibrated")
            return st.last
        vote, feats = self._vote(st, m.ts)
        if vote is not None:
            st.votes.append((m.ts, vote))
            st.life[vote] += 1
        while st.votes and st.votes[0][0] < m.ts - self.physics.verdict_s:
            st.votes.popleft()
        st.last = self._verdict(st, feats)
        return st.last

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
        return Classification(vote or "unknown", True, feats.reason(), feats.h, feats.w, None)

    def last(self, track_id: int) -> Classification | None:
        st = self._tracks.get(track_id)
        return st.last if st else None

    def forget(self, track_id: int) -> None:
        self._tracks.pop(track_id, None)

    # -- one frame's vote ------------------------------------------------------------------------------------

    def _vote(self, st: _TrackState, now: float) -> tuple[Klass | None, _Features]:
        recent = [m for m in st.seen if m.ts >= now - self.physics.window_s]
        feats = _Features.of(recent, list(st.seen), self.physics)
        model = _model_vote(recent)
        physics = self._physics_vote(feats)
        if physics in (None, "unknown") and model in ("vehicle", "animal"):
            return model, feats  # a model that knows animals and vehicles decides where physics cannot
        if feats.h is None and not feats.airborne:
            # cut by the frame's edge or too small to measure: only a model that knows more than people speaks
            # (a person model says "person" of half a cow coming into view)
            return (model if model in ("vehicle", "animal") else None), feats
        return physics, feats

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
        if n < p.min_votes:
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


def _model_vote(recent: list[Measurement]) -> Klass | None:
    """The model's label where it says more than "person" (a COCO-style model with vehicles and animals)."""
    labels = [m.model_label for m in recent if m.model_label in CLASSES]
    if not labels:
        return None
    top = max(set(labels), key=labels.count)
    return top


def _speed(history: list[Measurement], p: Physics) -> float | None:
    """Ground speed (m/s) by a least-squares line through the last positions; None over too short a time."""
    pts = [(m.ts, *m.ground_xy) for m in history
           if m.ground_xy is not None and m.ts >= history[-1].ts - p.speed_window_s and not m.cut
           and all(math.isfinite(c) for c in m.ground_xy)]
    if len(pts) < 4 or pts[-1][0] - pts[0][0] < p.min_speed_span_s:
        return None
    a = np.array(pts)
    t = a[:, 0] - a[:, 0].mean()
    vx, vy = (t @ (a[:, 1:] - a[:, 1:].mean(axis=0))) / (t @ t)
    return float(math.hypot(vx, vy))
