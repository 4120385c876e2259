"""The synthetic thermal scene: deterministic, plausible temperatures, truthful boxes, the hard cases."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from sensors.frames import ThermalFrame
from sensors.sim import SCENARIOS, SIM_OFFSET, SIM_SCALE, CameraModel, SimParams, ThermalScene
from sensors.sim.capture import SimCapture
from sensors.sim.draw import draw_actor, reach_m
from sensors.sim.world import Actor


def _celsius(counts: np.ndarray) -> np.ndarray:
    return counts.astype(np.float64) * SIM_SCALE + SIM_OFFSET


def test_same_seed_same_frames_other_seed_other_noise() -> None:
    a, ta = ThermalScene.from_url("sim://border?seed=3").render(120)
    b, tb = ThermalScene.from_url("sim://border?seed=3").render(120)
    c, _ = ThermalScene.from_url("sim://border?seed=4").render(120)
    assert np.array_equal(a, b) and ta == tb
    assert not np.array_equal(a, c)
    assert a.dtype == np.uint16 and a.shape == (480, 640)


def test_people_are_warm_on_cool_ground() -> None:
    counts, truth = ThermalScene.from_url("sim://walkers").render(100)
    temps = _celsius(counts)
    ground = np.median(temps)
    assert 0 < ground < 15
    for t in truth:
        x1, y1, x2, y2 = (int(v) for v in t.bbox)
        patch = temps[y1:y2, x1:x2]
        assert 28 < np.percentile(patch, 98) < 37, t  # skin and face
        assert np.percentile(patch, 98) - ground > 15


def test_truth_boxes_fit_the_warm_pixels() -> None:
    counts, truth = ThermalScene.from_url("sim://crossing").render(60)
    warm = _celsius(counts) > 14
    for t in truth:
        x1, y1, x2, y2 = (int(round(v)) for v in t.bbox)
        inside = warm[y1:y2, x1:x2].mean()
        ring = warm[max(0, y1 - 6):y2 + 6, max(0, x1 - 6):x2 + 6].sum() - warm[y1:y2, x1:x2].sum()
        assert inside > 0.3 and ring < 0.05 * warm[y1:y2, x1:x2].sum(), t


def test_hard_cases_are_in_the_border_scene() -> None:
    scene = ThermalScene.from_url("sim://border")
    labels, partly_hidden, min_gap = set(), False, np.inf
    for i in range(0, scene.frame_count, 5):
        _, truth = scene.render(i)
        labels |= {t.label for t in truth}
        partly_hidden |= any(t.label == "person" and 0.05 < t.visible < 0.9 and 0 < t.foot_px[0] < 640 for t in truth)
        people = [t for t in truth if t.label == "person" and t.visible > 0.3]
        for a in people:
            for b in people:
                if a.track_id < b.track_id and abs(a.ground_xy[1] - b.ground_xy[1]) < 3:
                    min_gap = min(min_gap, abs(a.foot_px[0] - b.foot_px[0]))
        if any(t.label == "animal" and t.ground_xy[1] > 38 for t in truth):
            labels.add("animal-by-fence")
    assert {"person", "vehicle", "animal", "animal-by-fence"} <= labels
    assert partly_hidden, "nobody is partly hidden"
    assert min_gap < 10, "no two people cross"  # sampled every 5th frame


def test_ground_truth_ids_and_frame_for_the_detector() -> None:
    scene = ThermalScene.from_url("sim://walkers?frames=300")
    assert scene.frame_count == 300
    _, truth = scene.render(150)
    assert len({t.track_id for t in truth}) == len(truth) >= 3
    frame = ThermalFrame("s", 150, 15.0, scene.render(150)[0], SIM_SCALE, SIM_OFFSET)
    assert frame.gray8().dtype == np.uint8


@pytest.mark.parametrize("url, message", [
    ("sim://mars", "unknown synthetic scene 'mars'"),
    ("sim://border?fps=abc", "bad value 'abc' for 'fps'"),
    ("sim://border?colour=red", "unknown option 'colour'"),
    ("file://border", "not a synthetic scene URL"),
    ("sim://border?realistic=maybe", "bad value 'maybe' for 'realistic'"),
])
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimParams.parse(url)


def test_every_scenario_renders() -> None:
    for name in SCENARIOS:
        counts, _ = ThermalScene.from_url(f"sim://{name}?width=160&height=120").render(10)
        assert counts.shape == (120, 160)


@pytest.mark.parametrize("name", ["border", "crossing", "intrusion"])
def test_a_camera_that_skips_the_truth_gets_the_same_frames(name: str) -> None:
    scene = ThermalScene.from_url(f"sim://{name}?fps=5&seed=2")
    seen = 0
    for i in range(0, scene.frame_count, 7):
        counts, truth = scene.render(i)
        fast, none = scene.render(i, truth=False)
        assert none == [] and np.array_equal(counts, fast), i
        for t in truth:  # the visible part lies inside the whole figure
            assert t.full_bbox[0] <= t.bbox[0] < t.bbox[2] <= t.full_bbox[2], t
            assert t.full_bbox[1] <= t.bbox[1] < t.bbox[3] <= t.full_bbox[3], t
            assert 0.0 < t.visible <= 1.0
        seen += len(truth)
    assert seen > 0


def test_realistic_on_a_named_scene_is_as_hard_as_the_field_and_the_same_for_a_seed() -> None:
    scene = ThermalScene.from_url("sim://walkers?realistic=1&seed=2")
    again = ThermalScene.from_url("sim://walkers?realistic=1&seed=2")
    plain = ThermalScene.from_url("sim://walkers?seed=2")
    camera = ThermalScene.from_url("sim://walkers?realistic=1&seed=2")  # skips the truth, and its masks
    for i in (0, 1, 2, 150):
        (image, truth), (same, same_truth) = scene.render(i), again.render(i)
        assert image.dtype == np.uint8 and np.array_equal(image, same) and truth == same_truth
        assert np.array_equal(camera.render(i, truth=False)[0], image)
        # clutter never enters the truth: the same people, the same figures (a rock may hide part of one)
        assert [(t.track_id, t.full_bbox) for t in truth] == [(t.track_id, t.full_bbox) for t in plain.render(i)[1]]
    assert {c.kind for c in scene.clutter} == {"hot rock", "ground patch", "vegetation"}
    assert scene.sensor.output == "gray8" and scene.sensor.h264 is not None
    noisy = ThermalScene.from_url("sim://quiet?realistic=1&noise_k=0.3")
    assert noisy.sensor.netd_mk == pytest.approx(300.0)  # the URL's noise wins over the preset's


def test_a_realistic_camera_streams_8_bit_frames_in_order() -> None:
    capture = SimCapture("sim://crossing?realistic=1&frames=25", loop=False)
    scene = ThermalScene.from_url("sim://crossing?realistic=1&frames=25")
    for i in range(25):
        ok, image = capture.read()
        assert ok and image is not None and image.dtype == np.uint8
        if i in (0, 21, 24):  # the same frames as rendered on their own (from the GOP's key frame)
            assert np.array_equal(image, scene.render(i)[0])
    assert capture.read() == (False, None)


# -- small figures drawn as a camera integrates them (sensors/sim/figure.py) -----------------------------------------


def test_a_window_of_the_camera_is_its_frame_at_a_finer_scale() -> None:
    cam = CameraModel(height_m=10.0, tilt_deg=3.0)
    x, y, z = np.array([-3.0, 0.0, 2.5]), np.array([40.0, 300.0, 120.0]), np.array([0.0, 1.75, 0.3])
    u, v = cam.project(x, y, z)
    win = cam.window(300, 200, 8)
    wu, wv = win.project(x, y, z)
    # frame pixel c (centred on c, spanning c - 0.5 .. c + 0.5) is the window's sub-pixels 8 (c - 300) + 0..7
    assert wu == pytest.approx((u - 300 + 0.5) * 8 - 0.5) and wv == pytest.approx((v - 200 + 0.5) * 8 - 0.5)
    assert win.px_per_m(300.0) == pytest.approx(8 * cam.px_per_m(300.0))
    gx, gy = win.ground_at(wu[:1], wv[:1])  # a ground point comes back from the window's sub-pixels
    assert (gx[0], gy[0]) == pytest.approx((-3.0, 40.0))
    assert not cam.is_window and win.is_window
    with pytest.raises(ValueError, match="this is one already"):
        win.window(0, 0, 4)


def test_every_drawing_stays_within_the_reach_the_renderer_draws_it_in() -> None:
    # near and big (a 0.3 mm pixel), so a pixel of OpenCV's rounding is nothing; every kind, gait, view and phase
    cam = CameraModel(width=1600, height=1200, height_m=1.0, tilt_deg=0.0)
    ppm = cam.px_per_m(10.0)
    kinds = [("person", "", gait) for gait in ("walking", "running", "crawling")]
    kinds += [("animal", kind, "") for kind in ("dog", "sheep", "cow", "deer", "bird", "fox")]
    kinds += [("vehicle", kind, "") for kind in ("car", "truck")]
    for (label, kind, gait), end_on, heading in itertools.product(kinds, (False, True), (1.0, -1.0, 0.2)):
        actor = Actor(1, label, ((0.0, 0.0, 10.0), (1.0, 0.0, 10.0)), kind=kind, gait=gait, keep_heading=end_on,
                      size=1.2, altitude_m=2.0 if kind == "bird" else 0.0)
        z, half, below, above = reach_m(actor)
        u, v = cam.project(np.array([0.0]), np.array([10.0]), np.array([z]))
        for walked in np.linspace(0.0, 2.6, 14):
            temp = np.zeros((cam.height, cam.width), np.float32)
            mask = np.zeros((cam.height, cam.width), np.uint8)
            draw_actor(temp, mask, cam, actor, 0.0, 10.0, heading, float(walked), float(walked) / 2.6)
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            reach = (u[0] - half * ppm, v[0] - above * ppm, u[0] + half * ppm, v[0] + below * ppm)
            drawn = (cols[0] - 1, rows[0] - 1, cols[-1] + 1, rows[-1] + 1)
            assert reach[0] <= drawn[0] and reach[1] <= drawn[1], (label, kind, gait, end_on, heading, walked)
            assert drawn[2] <= reach[2] and drawn[3] <= reach[3], (label, kind, gait, end_on, heading, walked)


FAR_MOUNT = "camera: {height_m: 10, tilt_deg: 3, blur_px: 0, netd_mk: 0, fpn_mk: 0}\nhorizon_m: 3000\nfence: false\n"
NEAR_MOUNT = "camera: {blur_px: 0, netd_mk: 0, fpn_mk: 0}\nfence: false\n"  # the named scenes' 5 m mast


def _walker(tmp_path: Path, metres: float, rock_m: float = 0.0, walker: bool = True) -> ThermalScene:
    """The walker of far-people-<metres>m.yaml (or one 20 m out on the near mount), with no blur and no noise,
    perhaps half a metre behind a rock ``rock_m`` high, or just the ground and the rock without them."""
    text = f"duration_s: 24\n{FAR_MOUNT if metres > 50 else NEAR_MOUNT}"
    if rock_m:
        text += f"occluders: [{{x: 0, y: {metres - 0.5}, width_m: 4, height_m: {rock_m}}}]\n"
    if walker:
        text += f"actors: [{{kind: person, waypoints: [[-15, {metres}], [15, {metres}]]}}]\n"
    f = tmp_path / f"{metres}-{rock_m}-{walker}.yaml"
    f.write_text(text)
    return ThermalScene.from_url(f"sim://{f}")


def _contrast(scene: ThermalScene, empty: ThermalScene, i: int) -> np.ndarray:
    """How much warmer than the bare ground the figure makes each pixel of frame ``i`` (a noiseless render)."""
    return _celsius(scene.render(i)[0]) - _celsius(empty.render(i)[0])


@pytest.mark.parametrize("metres", [100, 200, 300, 400, 500])
def test_a_far_person_is_as_tall_and_narrow_as_a_camera_sees_them(tmp_path: Path, metres: int) -> None:
    scene, empty = _walker(tmp_path, metres), _walker(tmp_path, metres, walker=False)
    px_per_m = scene.camera.px_per_m(metres)
    tall = 1.75 * px_per_m  # 879 px * 1.75 m / R on the far-sight mount: 15.3 px at 100 m, 3.1 px at 500 m
    rows_seen = []
    for i in range(40, 200, 16):  # along the walk, in every phase of the stride
        (truth,) = scene.render(i)[1]
        x1, y1, x2, y2 = (int(v) for v in truth.bbox)
        assert abs((y2 - y1) - tall) <= 1.0, (i, truth.bbox, tall)  # the true extent, rounded to whole pixels
        assert x2 - x1 <= 0.9 * px_per_m + 1.5, (i, truth.bbox)  # shoulders 0.46 m, feet up to 0.9 m apart
        warm = _contrast(scene, empty, i)
        assert warm[:y1 - 1].max() < 0.05 * warm.max() and warm[y2 + 1:].max() < 0.05 * warm.max()  # no halo
        seen = warm > warm.max() / 2
        rows_seen.append(np.count_nonzero(seen.any(axis=1)))
        assert np.count_nonzero(seen.any(axis=0)) <= 0.9 * px_per_m + 1.5, i
        if metres == 300:  # drawn with primitives at least a pixel wide, it was 5 px wide (shoulders: 1.3 px)
            assert x2 - x1 <= 3 and np.count_nonzero(seen.any(axis=0)) <= 3, (i, truth.bbox)
    # above half the peak contrast: never taller than the person, and about as tall; shorter by a row or two where
    # the feet's row is partly covered and the legs, thinner than a pixel and cooler than the head, warm their
    # pixels by less than half as much (as on a real camera)
    assert max(rows_seen) <= tall + 0.5 and np.mean(rows_seen) >= tall - 1.5 and min(rows_seen) >= tall - 3.0, (
        rows_seen, tall)


def test_a_near_person_looks_as_before() -> None:
    scene = ThermalScene.from_url("sim://benchmarks/scenarios/people-walk-20m.yaml?noise_k=0")
    counts, (truth,) = scene.render(100)
    # drawn straight into the frame it was 77 x 32 px, (390, 258, 422, 335), 1123 pixels warmer than 15 C
    assert np.allclose(truth.bbox, (390, 258, 422, 335), atol=1.0), truth.bbox
    assert abs((truth.bbox[3] - truth.bbox[1]) - 1.77 * scene.camera.px_per_m(20.0)) <= 1.0  # head to heels
    temps = _celsius(counts)
    assert 1123 * 0.85 < np.count_nonzero(temps > 15) <= 1123  # the rim it gained on every side is gone
    x1, y1, x2, y2 = (int(v) for v in truth.bbox)
    assert 31 < np.percentile(temps[y1:y2, x1:x2], 99.5) < 34  # the face


@pytest.mark.parametrize(("metres", "tolerance"), [(20, 0.04), (300, 0.2)])
def test_a_person_half_behind_a_rock_is_half_visible(tmp_path: Path, metres: int, tolerance: float) -> None:
    walker, empty = _walker(tmp_path, metres), _walker(tmp_path, metres, walker=False)
    hidden, rock = _walker(tmp_path, metres, rock_m=0.9), _walker(tmp_path, metres, rock_m=0.9, walker=False)
    i = 107  # 10.7 s at 1.4 m/s: the walker is at x = 0, behind the middle of the rock (4 m wide)
    (full,), (part,) = walker.render(i)[1], hidden.render(i)[1]
    assert part.full_bbox == full.full_bbox and part.visible < 0.9
    # the figure's pixels in the open (warmed by half their share or more), and the first row the rock hides
    warm = _contrast(walker, empty, i)
    figure = warm > 0.25 * warm.max()
    top = int(np.flatnonzero((np.abs(_contrast(rock, empty, i)) > 0.1)[:, figure.any(axis=0)].any(axis=1))[0])
    expected = np.count_nonzero(figure[:top]) / np.count_nonzero(figure)
    assert part.visible == pytest.approx(expected, abs=tolerance), (part, expected)
    assert part.bbox[1] == full.bbox[1] and abs(part.bbox[3] - top) <= 1.0  # the head and body above it
