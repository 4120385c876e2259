"""Drawing the synthetic scene's things on a temperature image: people (walking, running, crawling),
animals (dog, sheep, cow, deer, bird), vehicles (car, truck) and occluders, each seen from the side when it
moves across the view and end-on when it moves towards or away from the camera. Sizes are real ones, since
the product's classifier measures them through the geo-calibration:

- person walking or running: 1.75 m x ``size``, shoulders 0.46 m; running leans forward with a longer stride;
  crawling: prone, about 0.45 m high and 1.7 m long;
- dog 0.8 m long, 0.63 m to the back, head ~0.75 m; sheep 1.2 m long, head ~0.95 m; cow 2.3 m long, 1.45 m;
  deer 1.5 m long, head ~1.65 m; bird 0.4 m wingspan;
- car 4.6 m long, 1.55 m high, 1.8 m wide; truck 8 m long, 3.3 m high, 2.5 m wide.

Everything is drawn through a camera's ``project`` and ``px_per_m``, in whatever pixels the camera gives: the
renderer hands each actor a window of the frame at several sub-pixels a pixel and averages it down (``figure``), so
OpenCV's habit of filling every pixel an edge touches costs a fraction of a pixel, not a pixel on every side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from sensors.sim.world import Actor, CameraModel, Occluder


def _pt(cam: CameraModel, x: float, y: float, z: float) -> tuple[float, float]:
    u, v = cam.project(np.array([x]), np.array([y]), np.array([z]))
    return float(u[0]), float(v[0])


def _fill(temp: np.ndarray, mask: np.ndarray | None, pts: Sequence[tuple[float, float]], value: float) -> None:
    arr = np.round(np.array(pts, dtype=np.float64) * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(temp, [arr], float(value), lineType=cv2.LINE_8, shift=4)
    if mask is not None:
        cv2.fillPoly(mask, [arr], 255, lineType=cv2.LINE_8, shift=4)


def _limb(
    temp: np.ndarray, mask: np.ndarray | None, a: tuple[float, float], b: tuple[float, float],
    width_px: float, value: float,
) -> None:
    """A limb as a quadrilateral with rounded ends (a thick line that keeps sub-pixel widths)."""
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    n = math.hypot(dx, dy) or 1.0
    ox, oy = -dy / n * width_px / 2.0, dx / n * width_px / 2.0
    _fill(temp, mask, [(ax + ox, ay + oy), (bx + ox, by + oy), (bx - ox, by - oy), (ax - ox, ay - oy)], value)
    r = max(1, int(round(width_px / 2.0)))
    for cx, cy in (a, b):
        cv2.circle(temp, (int(round(cx)), int(round(cy))), r, float(value), -1)
        if mask is not None:
            cv2.circle(mask, (int(round(cx)), int(round(cy))), r, 255, -1)


def _ellipse(
    temp: np.ndarray, mask: np.ndarray | None, c: tuple[float, float], axes: tuple[float, float], value: float,
    angle: float = 0.0,
) -> None:
    center = (int(round(c[0] * 16)), int(round(c[1] * 16)))
    ax = (max(16, int(round(axes[0] * 16))), max(16, int(round(axes[1] * 16))))
    cv2.ellipse(temp, center, ax, angle, 0, 360, float(value), -1, cv2.LINE_8, 4)
    if mask is not None:
        cv2.ellipse(mask, center, ax, angle, 0, 360, 255, -1, cv2.LINE_8, 4)


def draw_actor(
    temp: np.ndarray, mask: np.ndarray, cam: CameraModel, actor: Actor, x: float, y: float, heading: float,
    walked: float, t: float,
) -> None:
    # Scenario-file actors are drawn end-on when they move towards or away from the camera; the named scenes'
    # actors keep the drawing they were measured with.
    end_on = actor.keep_heading and abs(heading) <= 0.5
    if actor.label == "person":
        if actor.gait == "crawling":
            _draw_crawler(temp, mask, cam, actor, x, y, heading, walked, end_on)
        else:
            _draw_person(temp, mask, cam, actor, x, y, heading, walked, running=actor.gait == "running")
    elif actor.label == "vehicle":
        if end_on:
            _draw_vehicle_end_on(temp, mask, cam, actor, x, y)
        elif actor.kind == "truck":
            _draw_truck(temp, mask, cam, actor, x, y, heading)
        else:
            _draw_vehicle(temp, mask, cam, actor, x, y, heading, walked)
    elif actor.kind == "bird":
        _draw_bird(temp, mask, cam, actor, x, y, t)
    elif end_on:
        _draw_animal_end_on(temp, mask, cam, actor, x, y, walked)
    else:
        _draw_animal(temp, mask, cam, actor, x, y, heading, walked)


def reach_m(actor: Actor) -> tuple[float, float, float, float]:
    """How far an actor's drawing can reach, in metres and with room to spare: the height of the point it is drawn
    around (a bird's altitude, else the ground), how far to either side of it, how far below and how far above. The
    renderer draws each actor into a patch of the frame this big (``figure``); a test holds every drawing to it."""
    k = actor.size
    if actor.label == "person":
        half, up = (1.4, 0.6) if actor.gait == "crawling" else (0.85, 1.85)  # a runner's stride and lean
    elif actor.label == "vehicle":
        half, up = (4.2, 3.4) if actor.kind == "truck" else (2.5, 1.65)
    elif actor.kind == "bird":
        return actor.altitude_m, 0.35 * k, 0.2 * k, 0.2 * k
    else:
        length, leg_h, body_h, big = _animal_body(actor)
        half, up = 0.7 * length + 0.3, leg_h + body_h + (0.5 if big else 0.25)  # the tail, the head held up
    return 0.0, half * k, 0.1 * k, up * k


def _side_view(cam: CameraModel, actor: Actor, x: float, y: float, heading: float
               ) -> tuple[float, Callable[[float, float], tuple[float, float]]]:
    """Pixels per metre at the actor, and its side-view frame: (metres ahead along its heading, metres up) to
    pixels from its foot point, facing the way it moves."""
    s = cam.px_per_m(y) * actor.size
    fu, fv = _pt(cam, x, y, 0.0)
    d = 1.0 if heading >= 0 else -1.0

    def p(dx: float, h: float) -> tuple[float, float]:
        return fu + d * dx * s, fv - h * s

    return s, p


def _draw_person(
    temp: np.ndarray, mask: np.ndarray, cam: CameraModel, actor: Actor, x: float, y: float, heading: float,
    walked: float, running: bool = False,
) -> None:
    s = cam.px_per_m(y) * actor.size
    fu, fv = _pt(cam, x, y, 0.0)
    body = actor.temp_c
    skin = body + 3.5
    clothes = body - 4.5
    legs_t = body - 6.5
    side = abs(heading) > 0.5  # walking across the view: seen from the side
    stride = 1.3 if running else 0.75
    phase = 2 * math.pi * walked / (2 * stride)
    swing = math.sin(phase) * ((0.8 if side else 0.18) if running else (0.5 if side else 0.12))
    lean = 0.25 * float(np.sign(heading)) if running and side else 0.0  # a runner leans into the run

    def p(dx: float, h: float) -> tuple[float, float]:
        if lean and h > 0.92:
            dx += lean * (h - 0.92)
        return fu + dx * s, fv - h * s

    hip_h, knee_h, shoulder_h, neck_h = 0.92, 0.5, 1.43, 1.52
    half_hip = 0.11 if side else 0.13
    # legs: swing forward and back (side view) or alternate width slightly (front view)
    for sign, leg_phase in ((-1.0, swing), (1.0, -swing)):
        hip = p(sign * half_hip * (0.3 if side else 1.0), hip_h)
        if side:
            knee = p(sign * half_hip * 0.3 + leg_phase * 0.45 * np.sign(heading or 1.0), knee_h)
            foot = p(sign * half_hip * 0.3 + leg_phase * 0.75 * np.sign(heading or 1.0), 0.05)
        else:
            knee = p(sign * (half_hip + 0.01), knee_h + leg_phase * 0.1)
            foot = p(sign * (half_hip + 0.02), 0.05 + max(0.0, leg_phase) * 0.25)
        leg_t = legs_t - (1.0 if sign > 0 and side else 0.0)
        _limb(temp, mask, hip, knee, 0.18 * s, leg_t)
        _limb(temp, mask, knee, foot, 0.13 * s, leg_t - 0.5)
    # torso: a tapered trapezoid
    sh_half = 0.16 if side else 0.23
    waist_half = 0.13 if side else 0.17
    _fill(
        temp, mask,
        [p(-waist_half, hip_h - 0.05), p(waist_half, hip_h - 0.05), p(sh_half, shoulder_h), p(-sh_half, shoulder_h)],
        clothes,
    )
    _ellipse(temp, mask, p(0.0, shoulder_h - 0.02), (sh_half * s, 0.06 * s), clothes + 0.5)
    # arms swing opposite to the legs
    for sign, arm_phase in ((-1.0, -swing), (1.0, swing)):
        shoulder = p(sign * (sh_half - 0.03), shoulder_h - 0.04)
        if side:
            elbow = p(sign * 0.02 + arm_phase * 0.25 * np.sign(heading or 1.0), 1.13)
            hand = p(sign * 0.02 + arm_phase * 0.45 * np.sign(heading or 1.0), 0.85)
        else:
            elbow = p(sign * (sh_half + 0.03), 1.13)
            hand = p(sign * (sh_half + 0.02), 0.83 + abs(arm_phase) * 0.1)
        _limb(temp, mask, shoulder, elbow, 0.09 * s, clothes - 0.5)
        _limb(temp, mask, elbow, hand, 0.075 * s, clothes)
        _ellipse(temp, mask, hand, (0.045 * s, 0.05 * s), skin - 1.0)
    # neck and head: the warmest part
    _limb(temp, mask, p(0.0, shoulder_h - 0.02), p(0.0, neck_h + 0.04), 0.1 * s, skin - 1.0)
    _ellipse(temp, mask, p(0.02 * np.sign(heading) if side else 0.0, 1.64), (0.085 * s, 0.115 * s), skin)


def _draw_vehicle(
    temp: np.ndarray, mask: np.ndarray, cam: CameraModel, actor: Actor, x: float, y: float, heading: float,
    walked: float,
) -> None:
    s, p = _side_view(cam, actor, x, y, heading)

    shell = actor.temp_c
    _fill(temp, mask, [p(-2.3, 0.35), p(2.3, 0.35), p(2.3, 1.0), p(1.0, 1.1), p(0.6, 1.55),
                       p(-1.6, 1.55), p(-2.2, 1.1), p(-2.3, 1.0)], shell)
    _fill(temp, mask, [p(0.55, 1.12), p(0.9, 1.12), p(0.55, 1.45), p(-0.2, 1.45), p(-0.2, 1.12)], shell - 12.0)
    _fill(temp, mask, [p(1.0, 0.5), p(2.3, 0.5), p(2.3, 1.0), p(1.0, 1.05)], shell + 35.0)  # engine bay
    for wx in (-1.45, 1.45):
        _ellipse(temp, mask, p(wx, 0.35), (0.36 * s, 0.36 * s), shell + 18.0)
    _ellipse(temp, mask, p(-2.3, 0.3), (0.08 * s, 0.06 * s), shell + 60.0)  # exhaust


def _draw_animal(
    temp: np.ndarray, mask: np.ndarray, cam: CameraModel, actor: Actor, x: float, y: float, heading: float,
    walked: float,
) -> None:
    s, p = _side_view(cam, actor, x, y, heading)
    length, leg_h, body_h, big = _animal_body(actor)

    fur = actor.temp_c
    phase = math.sin(2 * math.pi * walked / (0.9 * length))
    for lx, ph in ((-length * 0.38, phase), (-length * 0.3, -phase), (length * 0.3, -phase), (length * 0.38, phase)):
        _limb(temp, mask, p(lx, leg_h + 0.05), p(lx + ph * 0.12, 0.02), 0.07 * s * (1.4 if big else 1.0), fur - 1.0)
    _ellipse(temp, mask, p(0.0, leg_h + body_h / 2), (length / 2 * s, body_h / 2 * s), fur)
    neck_top = p(length * 0.55, leg_h + body_h + (0.35 if big else 0.12))
    _limb(temp, mask, p(length * 0.4, leg_h + body_h * 0.6), neck_top, 0.12 * s * (1.5 if big else 1.0), fur + 0.5)
    _ellipse(temp, mask, neck_top, (0.14 * s * (1.4 if big else 1.0), 0.09 * s), fur + 2.5)
    _limb(temp, mask, p(-length * 0.5, leg_h + body_h * 0.7), p(-length * 0.7, leg_h + body_h * 0.3),
          0.05 * s, fur - 2.0)


# length, leg height, body height (m); the dog and the deer are the named scenes' own
ANIMAL_BODY: dict[str, tuple[float, float, float]] = {"sheep": (1.2, 0.42, 0.42), "cow": (2.3, 0.75, 0.62)}
ANIMAL_WIDTH = {"dog": 0.28, "sheep": 0.55, "cow": 0.75, "deer": 0.4}  # body width seen end-on


def _animal_body(actor: Actor) -> tuple[float, float, float, bool]:
    """Length, leg height and body height in metres, and whether it is big (a longer neck, thicker legs)."""
    big = actor.kind in ("deer", "cow", "horse")
    length, leg_h, body_h = ANIMAL_BODY.get(actor.kind, (1.5, 0.85, 0.45) if big else (0.8, 0.35, 0.28))
    return length, leg_h, body_h, big


def _draw_crawler(
    temp: np.ndarray, mask: np.ndarray, cam: CameraModel, actor: Actor, x: float, y: float, heading: float,
    walked: float, end_on: bool,
) -> None:
    """Someone on hands and knees: a low body about 1.7 m long, head at the front, limbs moving slowly."""
    s = cam.px_per_m(y) * actor.size
    fu, fv = _pt(cam, x, y, 0.0)
    clothes, skin = actor.temp_c - 4.5, actor.temp_c + 3.5
    phase = math.sin(2 * math.pi * walked / 0.6)
    if end_on:  # head and shoulders towards the camera, the back behind them
        _ellipse(temp, mask, (fu, fv - 0.25 * s), (0.26 * s, 0.13 * s), clothes)
        for sign in (-1.0, 1.0):
            _limb(temp, mask, (fu + sign * 0.18 * s, fv - 0.25 * s),
                  (fu + sign * 0.2 * s, fv - 0.02 * s - max(0.0, sign * phase) * 0.06 * s), 0.09 * s, clothes - 0.5)
        _ellipse(temp, mask, (fu, fv - 0.36 * s), (0.1 * s, 0.1 * s), skin)
        return
    s, p = _side_view(cam, actor, x, y, heading)

    _fill(temp, mask, [p(-0.5, 0.22), p(0.45, 0.25), p(0.45, 0.42), p(-0.5, 0.36)], clothes)  # back
    for k, (hip, ph) in enumerate(((-0.45, phase), (-0.4, -phase))):
        knee = p(hip - 0.35 + 0.08 * ph, 0.06)
        _limb(temp, mask, p(hip, 0.28), knee, 0.13 * s, clothes - 1.5 - k * 0.5)
        _limb(temp, mask, knee, p(hip - 0.75 + 0.05 * ph, 0.05), 0.1 * s, clothes - 2.0)
    for sh, ph in ((0.38, -phase), (0.42, phase)):
        _limb(temp, mask, p(sh, 0.36), p(sh + 0.15 + 0.08 * ph, 0.03), 0.08 * s, clothes - 0.5)
    _ellipse(temp, mask, p(0.62, 0.38), (0.11 * s, 0.1 * s), skin)


def _draw_vehicle_end_on(temp: np.ndarray, mask: np.ndarray, cam: CameraModel, actor: Actor, x: float,
                         y: float) -> None:
    """A car or truck coming head-on (or going away): its width, its height, a warm grille."""
    s = cam.px_per_m(y) * actor.size
    fu, fv = _pt(cam, x, y, 0.0)
    half, height = (1.25, 3.3) if actor.kind == "truck" else (0.9, 1.5)
    shell = actor.temp_c
    _fill(temp, mask, [(fu - half * s, fv - 0.3 * s), (fu + half * s, fv - 0.3 * s),
                       (fu + half * s, fv - height * 0.62 * s), (fu + half * 0.8 * s, fv - height * s),
                       (fu - half * 0.8 * s, fv - height * s), (fu - half * s, fv - height * 0.62 * s)], shell)
    _fill(temp, mask, [(fu - half * 0.7 * s, fv - height * 0.68 * s), (fu + half * 0.7 * s, fv - height * 0.68 * s),
                       (fu + half * 0.65 * s, fv - height * 0.92 * s), (fu - half * 0.65 * s, fv - height * 0.92 * s)],
          shell - 12.0)  # glass reflects the cold sky
    _fill(temp, mask, [(fu - half * 0.6 * s, fv - 0.35 * s), (fu + half * 0.6 * s, fv - 0.35 * s),
                       (fu + half * 0.6 * s, fv - 0.6 * s), (fu - half * 0.6 * s, fv - 0.6 * s)], shell + 35.0)
    for sign in (-1.0, 1.0):
        _fill(temp, mask, [(fu + sign * half * s, fv), (fu + sign * (half - 0.3) * s, fv),
                           (fu + sign * (half - 0.3) * s, fv - 0.4 * s), (fu + sign * half * s, fv - 0.4 * s)],
              shell + 15.0)


def _draw_truck(temp: np.ndarray, mask: np.ndarray, cam: CameraModel, actor: Actor, x: float, y: float,
                heading: float) -> None:
    """A truck from the side: cab in front, a box body 3.3 m high behind, six warm wheels."""
    s, p = _side_view(cam, actor, x, y, heading)

    shell = actor.temp_c
    _fill(temp, mask, [p(-4.0, 0.6), p(1.6, 0.6), p(1.6, 3.3), p(-4.0, 3.3)], shell - 2.0)  # cargo box
    _fill(temp, mask, [p(1.7, 0.5), p(4.0, 0.5), p(4.0, 2.0), p(3.4, 2.9), p(1.7, 2.9)], shell)  # cab
    _fill(temp, mask, [p(2.6, 1.9), p(3.6, 1.9), p(3.2, 2.6), p(2.6, 2.6)], shell - 12.0)
    _fill(temp, mask, [p(3.2, 0.6), p(4.0, 0.6), p(4.0, 1.4), p(3.2, 1.4)], shell + 35.0)  # engine
    for wx in (-3.2, -2.2, 3.0):
        _ellipse(temp, mask, p(wx, 0.5), (0.5 * s, 0.5 * s), shell + 18.0)


def _draw_animal_end_on(temp: np.ndarray, mask: np.ndarray, cam: CameraModel, actor: Actor, x: float, y: float,
                        walked: float) -> None:
    """A four-legged animal coming head-on: a narrow body on two visible pairs of legs, the head above."""
    s = cam.px_per_m(y) * actor.size
    fu, fv = _pt(cam, x, y, 0.0)
    _length, leg_h, body_h, big = _animal_body(actor)
    half = ANIMAL_WIDTH.get(actor.kind, 0.3) / 2.0
    fur = actor.temp_c
    phase = math.sin(2 * math.pi * walked / 0.8)
    for sign in (-1.0, 1.0):
        _limb(temp, mask, (fu + sign * half * 0.7 * s, fv - (leg_h + 0.05) * s),
              (fu + sign * half * 0.7 * s, fv - (0.02 + max(0.0, sign * phase) * 0.08) * s),
              0.07 * s * (1.4 if big else 1.0), fur - 1.0)
    _ellipse(temp, mask, (fu, fv - (leg_h + body_h / 2) * s), (half * s, body_h / 2 * s), fur)
    head_h = leg_h + body_h + (0.35 if big else 0.12)
    _ellipse(temp, mask, (fu, fv - head_h * s), (0.1 * s * (1.4 if big else 1.0), 0.1 * s), fur + 2.5)


def _draw_bird(temp: np.ndarray, mask: np.ndarray, cam: CameraModel, actor: Actor, x: float, y: float,
               t: float) -> None:
    """A bird in flight at ``altitude_m``: a small warm body and flapping wings."""
    s = cam.px_per_m(y) * actor.size
    cu, cv = _pt(cam, x, y, actor.altitude_m)
    flap = math.sin(2 * math.pi * 6.0 * t)
    _ellipse(temp, mask, (cu, cv), (0.12 * s, 0.05 * s), actor.temp_c)
    for sign in (-1.0, 1.0):
        _limb(temp, mask, (cu, cv), (cu + sign * 0.2 * s, cv - flap * 0.1 * s), 0.05 * s, actor.temp_c - 3.0)


def draw_occluder(temp: np.ndarray, mask: np.ndarray | None, cam: CameraModel, occ: Occluder) -> None:
    s = cam.px_per_m(occ.y)
    cu, cv = _pt(cam, occ.x, occ.y, 0.0)
    half = occ.width_m / 2.0
    pts = [
        (cu - half * s, cv + 0.05 * s), (cu - half * 0.9 * s, cv - occ.height_m * 0.6 * s),
        (cu - half * 0.5 * s, cv - occ.height_m * s), (cu + half * 0.4 * s, cv - occ.height_m * 0.95 * s),
        (cu + half * 0.95 * s, cv - occ.height_m * 0.5 * s), (cu + half * s, cv + 0.05 * s),
    ]
    _fill(temp, mask, pts, occ.temp_c)


