"""Scenario files (sim://FILE.yaml): what they describe is what is rendered, bad files say where they are bad,
and the named scenes did not change."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from sensors.sim import SCENARIOS, SIM_OFFSET, SIM_SCALE, ScenarioError, ThermalScene, load_scenario
from tests.conftest import ROOT

SUITE = ROOT / "benchmarks" / "scenarios"


def scene(tmp_path: Path, text: str, query: str = "") -> ThermalScene:
    f = tmp_path / "scene.yaml"
    f.write_text(text)
    return ThermalScene.from_url(f"sim://{f}{query}")


def box_of(s: ThermalScene, t: float, actor: int = 1) -> tuple[float, float, float, float]:
    _, truth = s.render(int(round(t * s.params.fps)))
    return next(o.bbox for o in truth if o.track_id == actor)


def test_every_file_of_the_suite_loads_and_renders() -> None:
    files = sorted(p for p in SUITE.glob("*.yaml") if p.name != "site.yaml")
    assert len(files) >= 20
    kinds = set()
    for f in files:
        s = ThermalScene.from_url(f"sim://{f.relative_to(ROOT)}")  # relative to the working directory
        counts, _ = s.render(s.frame_count // 2)
        assert counts.dtype == np.uint16 and counts.shape == (480, 640)
        kinds |= {a.gait or a.kind for a in s.scenario.actors}
    assert kinds >= {"walking", "running", "crawling", "dog", "sheep", "cow", "deer", "bird", "car", "truck"}


@pytest.mark.parametrize(("text", "where"), [
    ("duration_s: 10\nactors: [{kind: person, waypoints: [[0, 20], [5, 20]], colour: red}]",
     "actors[0].colour: Extra inputs are not permitted"),
    ("duration_s: 10\nactors: [{kind: person, waypoints: [[0, 20], [5, 20, 3]]}]", "actors[0].waypoints[1]"),
    ("duration_s: 10\nactors: [{kind: person, speed_mps: -1, waypoints: [[0, 20], [5, 20]]}]",
     "actors[0].speed_mps: Input should be greater than 0"),
    ("duration_s: 10\nactors: [{kind: unicorn, waypoints: [[0, 20], [5, 20]]}]", "actors[0].kind"),
    ("duration_s: 10\nweather: {fog: 3}", "weather.fog: Extra inputs are not permitted"),
    ("actors: []", "duration_s: Field required"),
    ("- just\n- a list", "expected a mapping"),
    ("duration_s: [", "not YAML"),
])
def test_a_bad_file_says_which_key_is_wrong(tmp_path: Path, text: str, where: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(f)
    assert str(f) in str(err.value) and where in str(err.value), str(err.value)


def test_a_missing_or_huge_file_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the scenario file"):
        ThermalScene.from_url(f"sim://{tmp_path}/nowhere.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("duration_s: 10\n" + "# padding\n" * 200_000)
    with pytest.raises(ScenarioError, match="at most 1000000"):
        load_scenario(big)


def test_a_latlon_waypoint_lands_where_the_mast_says(tmp_path: Path) -> None:
    s = scene(tmp_path, "duration_s: 10\ncamera: {latlon: [47.0, 16.0]}\n"
                        "actors: [{kind: person, waypoints: [{latlon: [47.000225, 16.0]}, [10, 25]]}]")
    x, y, *_ = s.scenario.actors[0].state(0.0)
    assert (x, y) == pytest.approx((0.0, 25.0), abs=0.05)
    assert s.ground_to_latlon(0.0, 25.0) == pytest.approx((47.000225, 16.0), abs=1e-6)
    _, truth = s.render(0)
    u, v = s.camera.project(np.array([x]), np.array([y]), np.array([0.0]))
    assert truth[0].foot_px == pytest.approx((u[0], v[0]))  # drawn where the ground point projects


def test_sizes_are_real(tmp_path: Path) -> None:
    s = scene(tmp_path, """duration_s: 10
actors:
  - {kind: person, waypoints: [[-3, 20], [3, 20]]}
  - {kind: person, gait: crawling, waypoints: [[-3, 20.2], [3, 20.2]]}
  - {kind: dog, waypoints: [[-3, 30], [3, 30]]}
  - {kind: cow, waypoints: [[-3, 30.2], [3, 30.2]]}
  - {kind: car, waypoints: [[-6, 40], [6, 40]]}
  - {kind: car, waypoints: [[2, 60], [2, 45]]}
""")
    _, truth = s.render(5)
    by = {o.track_id: o.full_bbox for o in truth}
    h = {k: b[3] - b[1] for k, b in by.items()}
    w = {k: b[2] - b[0] for k, b in by.items()}
    assert 0.2 < h[2] / h[1] < 0.32  # someone crawling is a quarter as tall as someone walking
    assert w[2] > 2 * w[1]  # and long, seen from the side
    assert h[4] > 1.8 * h[3] and w[4] > 2.2 * w[3]  # a cow beside a dog
    px_per_m_40, px_per_m_50 = s.camera.px_per_m(40.0), s.camera.px_per_m(50.0)
    assert w[5] / px_per_m_40 > 4.0  # a car from the side: 4.6 m long
    assert w[6] / px_per_m_50 < 2.2  # the same car coming head-on: 1.8 m wide


def test_fog_fades_far_things_more_than_near_ones(tmp_path: Path) -> None:
    people = ("actors: [{kind: person, waypoints: [{xy: [0, 15], wait_s: 5}]}, "
              "{kind: person, waypoints: [{xy: [3, 60], wait_s: 5}]}]")
    clear = scene(tmp_path, f"duration_s: 5\n{people}")
    foggy = scene(tmp_path, f"duration_s: 5\nweather: {{fog_visibility_m: 50}}\n{people}")

    def contrast(s: ThermalScene) -> list[float]:
        counts, truth = s.render(10)
        temps = counts * SIM_SCALE + SIM_OFFSET
        out = []
        for o in sorted(truth, key=lambda o: o.track_id):
            x1, y1, x2, y2 = (int(v) for v in o.bbox)
            out.append(float(np.percentile(temps[y1:y2, x1:x2], 95) - np.median(temps[y2:y2 + 5, x1:x2])))
        return out

    (near_clear, far_clear), (near_fog, far_fog) = contrast(clear), contrast(foggy)
    assert near_fog < near_clear and far_fog < far_clear
    assert far_fog / far_clear < 0.5 * near_fog / near_clear  # fog takes more of the far one


def test_a_shaking_mast_moves_the_picture_and_the_truth(tmp_path: Path) -> None:
    walker = "actors: [{kind: person, waypoints: [{xy: [0, 20], wait_s: 5}]}]"  # standing still
    still = scene(tmp_path, f"duration_s: 5\n{walker}", "?noise_k=0")
    shaky = scene(tmp_path, f"duration_s: 5\nweather: {{shake_px: 5}}\n{walker}", "?noise_k=0")
    a, b = still.render(3)[0].astype(int), still.render(4)[0].astype(int)
    assert np.abs(a - b).mean() < 1  # only the fixed pattern: the ground does not move
    (c, tc), (d, td) = shaky.render(3), shaky.render(4)
    assert np.abs(c.astype(int) - d.astype(int)).mean() > 5
    assert tc[0].bbox != td[0].bbox  # the person stands still; the picture moved


def test_groups_start_times_and_waits(tmp_path: Path) -> None:
    s = scene(tmp_path, """duration_s: 30
actors:
  - {kind: person, count: 3, spacing_m: 1.5, start_s: 4, waypoints: [[-5, 25], [5, 25]]}
  - {kind: car, waypoints: [[-20, 40], {xy: [0, 40], wait_s: 10}, [20, 40]]}
""")
    assert [len(s.render(i)[1]) for i in (20, 60)] == [1, 4]  # the group appears at 4 s
    ys = sorted(a.state(5.0)[1] for a in s.scenario.actors[:3])
    assert ys == pytest.approx([23.5, 25.0, 26.5])  # side by side across the way they walk
    car = s.scenario.actors[3]
    assert car.state(2.5 + 0.1)[0] == pytest.approx(0.0) and car.state(12.4)[0] == pytest.approx(0.0)
    assert car.state(14.0)[0] > 0  # it drives on after ten seconds
    assert car.state(8.0)[2] == pytest.approx(1.0)  # and keeps facing east while it waits


def test_the_url_options_still_apply(tmp_path: Path) -> None:
    text = "duration_s: 10\nfps: 5\ncamera: {resolution: [320, 240]}"
    assert scene(tmp_path, text).frame_count == 50
    s = scene(tmp_path, text, "?fps=10&width=640&height=480")
    assert s.frame_count == 100 and s.render(0)[0].shape == (480, 640)


# sha256 prefixes of frames of every named scene, taken before scenario files came in: they must not change,
# since other tests measure the real detector on them
NAMED = {"animals": "7a6b27b9c0d59ddf", "border": "705f0508bbbc2d9f", "crossing": "1ab24a034d4432cb",
         "intrusion": "75f4b66b4979e4e2", "quiet": "b3ab69fb40c0acc2", "walkers": "e9534113b41f2026"}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_named_scenes_render_as_before(name: str) -> None:
    s = ThermalScene.from_url(f"sim://{name}?seed=2")
    h = hashlib.sha256()
    for i in range(0, s.frame_count, max(1, s.frame_count // 12)):
        counts, truth = s.render(i)
        h.update(counts.tobytes())
        h.update(repr([(t.track_id, t.bbox, t.full_bbox, t.foot_px, t.visible) for t in truth]).encode())
    assert h.hexdigest()[:16] == NAMED[name]
