"""The heat-first proposer on its own (no model, no simulator): frames built here pixel by pixel, with a sensor's
noise and a textured ground, and the field's troubles one at a time: drift and a flat-field step, an 8-bit
camera's gain control, a shaking mast, a hot rock, a person who stops, vegetation in the wind, a cloud shadow."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.heat import HeatBlobs, HeatProposer
from sensors.frames import ThermalFrame

H, W = 240, 320
FPS = 10.0
NETD_C = 0.05
PERSON_PX = 12  # the size prior: a person 12 px tall on every row


def ground(seed: int = 1) -> np.ndarray:
    """A textured scene in degrees Celsius: smooth patches, a warm horizon band and sharp-edged stones."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0.0, 1.0, (H // 16, W // 16)).astype(np.float32)
    smooth = np.kron(coarse, np.ones((16, 16), np.float32))
    img = 15.0 + 0.8 * smooth
    img[: H // 4] -= 6.0  # the sky: a strong edge along the horizon
    for _ in range(25):  # stones: edges the mast's shake is measured on
        y, x = int(rng.integers(H // 4 + 4, H - 8)), int(rng.integers(4, W - 8))
        img[y:y + 4, x:x + 5] += float(rng.uniform(1.5, 3.0))
    return img


class Camera:
    """A radiometric camera (0.01 K a count) looking at ``scene``: each frame adds the sensor's noise."""

    def __init__(self, scene: np.ndarray, seed: int = 2) -> None:
        self.scene = scene
        self.rng = np.random.default_rng(seed)
        self.seq = 0

    def frame(self, celsius: np.ndarray) -> ThermalFrame:
        noisy = celsius + self.rng.normal(0.0, NETD_C, celsius.shape)
        counts = np.clip((noisy + 273.15) / 0.01, 0, 65535).astype(np.uint16)
        self.seq += 1
        return ThermalFrame("cam", self.seq, self.seq / FPS, counts, 0.01, -273.15)


def proposer() -> HeatProposer:
    p = HeatProposer()
    p.set_size_prior(np.full(H, float(PERSON_PX)))
    return p


def person(img: np.ndarray, x: int, y: int, warm: float = 6.0) -> tuple[int, int, int, int]:
    """A standing person (4 x 12 px, ``warm`` degrees over the ground) with the foot at (x, y); their box."""
    img[y - PERSON_PX:y, x:x + 4] += warm
    return x, y - PERSON_PX, x + 4, y


def on(blobs: HeatBlobs, box: tuple[int, int, int, int]) -> bool:
    x1, y1, x2, y2 = box
    return any(b[0] < x2 and x1 < b[2] and b[1] < y2 and y1 < b[3] for b in blobs.xyxy)


def run(frames: int, draw, p: HeatProposer | None = None, cam: Camera | None = None,  # type: ignore[no-untyped-def]
        keep_found: bool = False) -> list[tuple[HeatBlobs, tuple | None]]:
    """``frames`` frames of ``draw(i) -> (celsius, truth box or None)`` through a proposer; with ``keep_found``,
    the boxes it found are handed back next frame as live tracks (what the pipeline does)."""
    p = p or proposer()
    cam = cam or Camera(ground())
    out, live = [], None
    for i in range(frames):
        img, truth = draw(i)
        blobs = p.update(cam.frame(img), live if keep_found else None)
        live = blobs.xyxy if len(blobs) else live
        out.append((blobs, truth))
    return out


def test_a_person_walking_in_is_proposed_where_they_are_and_nothing_else() -> None:
    base = ground()

    def draw(i: int) -> tuple[np.ndarray, tuple | None]:
        img = base.copy()
        if i < 30:
            return img, None
        return img, person(img, 20 + (i - 30) // 2, 180)

    out = run(200, draw)
    walking = [(b, t) for b, t in out[35:] if t is not None]
    assert sum(on(b, t) for b, t in walking) >= 0.95 * len(walking)
    others = sum(len(b) - on(b, t) for b, t in out[35:] if t is not None)
    assert others <= 2, others
    first = next(i for i, (b, t) in enumerate(out) if t is not None and on(b, t))
    assert first <= 32  # the frame they appear in, or the next
    box = next(b.xyxy[0] for b, t in out[100:] if len(b))
    assert 10 <= box[3] - box[1] <= 14  # as tall as they are, not the change's halo


def test_drift_and_a_flat_field_step_propose_nothing() -> None:
    base = ground()

    def draw(i: int) -> tuple[np.ndarray, None]:
        return base + 0.02 * i + (1.5 if i >= 150 else 0.0), None  # 0.2 degrees a second, then a 1.5 degree step

    out = run(300, draw)
    assert sum(len(b) for b, _ in out) == 0


def test_an_8bit_cameras_gain_control_steps_propose_nothing() -> None:
    base = ground()
    rng = np.random.default_rng(3)
    p = proposer()
    counts = []
    for i in range(200):
        gain = 9.0 if i < 100 else 12.0  # the camera's AGC widens its span: every grey level moves
        offset = 100.0 if i < 100 else 80.0
        grey = np.clip((base - 15.0) * gain + offset + rng.normal(0.0, 0.6, base.shape), 0, 255).astype(np.uint8)
        counts.append(len(p.update(ThermalFrame("cam", i + 1, i / FPS, grey))))
    assert sum(counts) == 0, counts


def test_a_shaking_mast_proposes_nothing_and_still_finds_the_person() -> None:
    base = ground()
    rng = np.random.default_rng(4)
    shifts = rng.integers(-3, 4, (300, 2))

    def draw(i: int) -> tuple[np.ndarray, tuple | None]:
        img = base.copy()
        truth = person(img, 100 + i // 4, 200) if i >= 150 else None
        dx, dy = (int(v) for v in shifts[i]) if i >= 20 else (0, 0)
        moved = np.roll(np.roll(img, dy, axis=0), dx, axis=1)
        if truth is not None:
            truth = (truth[0] + dx, truth[1] + dy, truth[2] + dx, truth[3] + dy)
        return moved, truth

    out = run(300, draw)
    quiet = sum(len(b) for b, t in out[20:150])
    assert quiet == 0, quiet
    walking = [(b, t) for b, t in out[155:] if t is not None]
    assert sum(on(b, t) for b, t in walking) >= 0.9 * len(walking)


def test_a_hot_rock_there_from_the_first_frame_is_never_proposed() -> None:
    base = ground()
    base[150:162, 200:204] += 12.0  # person-sized, far warmer than a person

    out = run(300, lambda i: (base.copy(), None))
    assert sum(len(b) for b, _ in out) == 0


def test_a_person_who_stops_stays_a_proposal_for_30_s() -> None:
    base = ground()

    def draw(i: int) -> tuple[np.ndarray, tuple]:
        img = base.copy()
        return img, person(img, 40 + min(i, 80) // 2, 200)  # walks in, then stands still from frame 80

    out = run(80 + int(30 * FPS), draw, keep_found=True)
    standing = out[-50:]
    assert all(on(b, t) for b, t in standing)


def test_vegetation_swaying_in_the_wind_is_left_out_and_a_person_beside_it_is_not() -> None:
    base = ground()
    rng = np.random.default_rng(5)

    def draw(i: int) -> tuple[np.ndarray, tuple | None]:
        img = base.copy()
        # a warm bush whose leaves move every frame: each pixel in and out of the change, at random
        img[120:150, 60:100] += rng.choice([0.0, 3.0], size=(30, 40))
        truth = person(img, 200 + (i - 150) // 3, 190) if i >= 150 else None
        return img, truth

    out = run(300, draw)
    bush = (60, 120, 100, 150)
    late = out[100:]
    assert sum(on(b, bush) for b, _ in late) <= 0.1 * len(late)
    walking = [(b, t) for b, t in out[155:] if t is not None]
    assert sum(on(b, t) for b, t in walking) >= 0.9 * len(walking)


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_a_cloud_shadow_or_sunlit_patch_far_bigger_than_a_person_is_no_proposal(sign: float) -> None:
    base = ground()

    def draw(i: int) -> tuple[np.ndarray, None]:
        img = base.copy()
        if i >= 30:
            x = 10 + (i - 30)
            img[100:220, x:x + 150] += sign * 2.5  # 120 px tall where a person is 12
        return img, None

    out = run(200, draw)
    assert sum(len(b) for b, _ in out) == 0
