"""Scenario files (sim://FILE.yaml): what they describe is what is rendered, bad files say where they are bad,
and the named scenes did not change."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

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
    files = sorted(p for p in SUITE.glob("*.yaml") if not p.name.endswith("site.yaml"))
    assert len(files) >= 20
    kinds, realistic = set(), 0
    for f in files:
        s = ThermalScene.from_url(f"sim://{f.relative_to(ROOT)}")  # relative to the working directory
        counts, _ = s.render(s.frame_count // 2)
        assert counts.dtype == (np.uint8 if s.sensor.output == "gray8" else np.uint16) and counts.shape == (480, 640)
        kinds |= {a.gait or a.kind for a in s.scenario.actors}
        realistic += s.scenario.preset == "realistic"
    assert kinds >= {"walking", "running", "crawling", "dog", "sheep", "cow", "deer", "bird", "car", "truck"}
    assert realistic >= 20  # the far-sight scenes and the realistic- variants


def test_the_far_scenes_are_in_view_of_their_site_and_as_small_as_their_files_say() -> None:
    site = yaml.safe_load((SUITE / "far-site.yaml").read_text())
    points = site["cameras"][0]["calibration"]["points"]
    for f in sorted(SUITE.glob("far-people-*.yaml")):
        s = ThermalScene.from_url(f"sim://{f}?realistic=0&fps=2")
        assert (s.camera.height_m, s.camera.tilt_deg) == (10.0, 3.0), f.name
        for p in points:  # the site's calibration is this mount's own projection
            lat, lon = p["latlon"]
            u, v = s.camera.project(*(np.array([c]) for c in (*s.scenario.xy_of(lat, lon), 0.0)))
            assert (u[0], v[0]) == pytest.approx(p["pixel"], abs=0.05), (f.name, p)  # latlon has 7 decimals
        metres = int(f.stem.split("-")[-1].removesuffix("m"))
        seen = [o for i in range(s.frame_count) for o in s.render(i)[1]]
        assert seen and all(80 <= o.ground_xy[1] <= 600 and -4 <= o.ground_xy[0] <= 4 for o in seen
                            if o.foot_px[0] == pytest.approx(320, abs=1)), f.name  # crosses the corridor
        if "crawl" not in f.name and "run" not in f.name and "group" not in f.name:
            tall = f"{1.75 * s.camera.px_per_m(metres):.1f} px tall"
            assert tall in f.read_text(), (f.name, tall)


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


# sha256 prefixes of frames of every named scene: they must not change by accident, since other tests measure the
# real detector on them. Taken before scenario files came in; taken again (all but quiet) when actors came to be drawn
# super-sampled (sensors/sim/figure.py): edge pixels partly warm, boxes up to 2 px smaller, without the rim of a
# pixel that drawing straight into the frame added on every side.
NAMED = {"animals": "e46c8fdd1a3ab1a3", "border": "d21dbba7e6662faf", "crossing": "403baf7f91f14292",
         "intrusion": "e8207ab682aa1b7f", "quiet": "b3ab69fb40c0acc2", "walkers": "63b015d869ad45ab"}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_named_scenes_render_as_before(name: str) -> None:
    s = ThermalScene.from_url(f"sim://{name}?seed=2")
    h = hashlib.sha256()
    for i in range(0, s.frame_count, max(1, s.frame_count // 12)):
        counts, truth = s.render(i)
        h.update(counts.tobytes())
        h.update(repr([(t.track_id, t.bbox, t.full_bbox, t.foot_px, t.visible) for t in truth]).encode())
    assert h.hexdigest()[:16] == NAMED[name]


# -- the field's faults and clutter (camera keys, clutter, the realistic preset) -------------------------------------

QUIET = "duration_s: 20\nfence: false\n"  # nothing but ground (and sky above the horizon)


def celsius(counts: np.ndarray) -> np.ndarray:
    return counts.astype(np.float64) * SIM_SCALE + SIM_OFFSET


def ground(s: ThermalScene, i: int) -> np.ndarray:
    """The near ground of frame i (the bottom third), in degrees C."""
    return celsius(s.render(i)[0])[320:]


@pytest.mark.parametrize("netd", [80, 300])
def test_netd_is_the_frame_to_frame_noise_on_still_ground(tmp_path: Path, netd: int) -> None:
    s = scene(tmp_path, QUIET + f"camera: {{netd_mk: {netd}, fpn_mk: 0}}")
    frames = np.stack([ground(s, i) for i in range(6)])
    assert frames.std(axis=0, ddof=1).mean() == pytest.approx(netd / 1000, rel=0.15)


def test_the_fixed_pattern_is_the_same_every_frame_and_as_big_as_asked(tmp_path: Path) -> None:
    clean = scene(tmp_path, QUIET + "camera: {netd_mk: 0, fpn_mk: 0}")
    patterned = scene(tmp_path, QUIET + "camera: {netd_mk: 0, fpn_mk: 200}")
    a, b = ground(patterned, 0) - ground(clean, 0), ground(patterned, 7) - ground(clean, 7)
    assert np.array_equal(a, b)  # fixed: it does not change from frame to frame
    assert a.std() == pytest.approx(0.2, rel=0.1)


def test_the_pattern_drifts_until_the_flat_field_correction_resets_it(tmp_path: Path) -> None:
    s = scene(tmp_path, QUIET + "camera: {netd_mk: 0, fpn_mk: 0, fpn_drift_mk_per_min: 3000, ffc_interval_s: 10}")
    first = ground(s, 0)
    drift = [float(np.std(ground(s, i) - first)) for i in (20, 50, 99, 100)]  # 10 fps: 2 s, 5 s, 9.9 s, 10 s
    assert 0.02 < drift[0] < drift[1] < drift[2] < 0.6  # 3 K/min at most, growing since the last correction
    assert drift[3] < 0.005  # the shutter closed at 10 s: the drift starts again from nothing
    again = ThermalScene.from_url(f"sim://{tmp_path / 'scene.yaml'}")
    assert np.array_equal(ground(again, 50), ground(s, 50))  # a function of time, not of the frames before


def test_blur_softens_edges(tmp_path: Path) -> None:
    walker = "actors: [{kind: person, waypoints: [{xy: [0, 15], wait_s: 5}]}]"

    def edges(blur: float) -> float:
        counts, truth = scene(tmp_path, f"duration_s: 5\ncamera: {{blur_px: {blur}, netd_mk: 0}}\n{walker}").render(3)
        x1, y1, x2, y2 = (int(v) for v in truth[0].bbox)
        patch = celsius(counts)[y1 - 3:y2 + 3, x1 - 3:x2 + 3]
        return float(np.abs(np.diff(patch, axis=1)).max())

    assert edges(0) > edges(0.8) > edges(2.5)


def test_a_hot_rock_on_a_hot_afternoon_is_warmer_than_a_person_and_never_changes(tmp_path: Path) -> None:
    s = scene(tmp_path, "duration_s: 5\nconditions: hot\ncamera: {netd_mk: 0}\n"
                        "clutter: {hot_rocks: {at: [[0, 20]], size_m: [1.2, 1.2]}}\n"
                        "actors: [{kind: person, waypoints: [[-4, 25], [4, 25]]}]")
    (rock,) = s.clutter
    assert rock.kind == "hot rock" and rock.temp_c > 45 > s.scenario.actors[0].temp_c
    x1, y1, x2, y2 = (int(v) for v in rock.bbox)
    cx, cy = (x1 + x2) // 2, (y1 + 2 * y2) // 3
    seen = [celsius(s.render(i)[0])[cy - 2:cy + 3, cx - 4:cx + 5] for i in (0, 20, 45)]
    assert all(np.median(p) > 45 for p in seen)
    assert np.array_equal(seen[0], seen[1]) and np.array_equal(seen[0], seen[2])
    for i in (0, 20, 45):  # it is no target: the truth holds only the person
        assert [o.track_id for o in s.render(i)[1]] == [1]
    assert s.clutter_in(rock.bbox, 0) == ("hot rock",)


def test_ground_patches_are_flat_warm_and_still(tmp_path: Path) -> None:
    s = scene(tmp_path, QUIET + "conditions: hot\ncamera: {netd_mk: 0, fpn_mk: 0}\n"
                                "clutter: {ground_patches: {at: [[0, 20]], size_m: [6, 6]}}")
    bare = scene(tmp_path, QUIET + "conditions: hot\ncamera: {netd_mk: 0, fpn_mk: 0}")
    (patch,) = s.clutter
    assert patch.kind == "ground patch" and patch.height_m == 0 and patch.temp_c > 45
    warmer = celsius(s.render(0)[0]) - celsius(bare.render(0)[0])
    x1, y1, x2, y2 = (int(v) for v in patch.bbox)
    assert warmer[(y1 + y2) // 2, (x1 + x2) // 2] > 4 and warmer[:y1 - 10].max() == 0
    assert np.array_equal(s.render(0)[0], s.render(30)[0])


def test_vegetation_sways_in_the_wind_and_bare_ground_stays_still(tmp_path: Path) -> None:
    s = scene(tmp_path, QUIET + "camera: {netd_mk: 0}\n"
                                "clutter: {wind_mps: 8, vegetation: {at: [[0, 15]], size_m: [1.5, 1.5]}}")
    (bush,) = s.clutter
    x1, y1, x2, y2 = (int(v) for v in bush.bbox)
    frames = [celsius(s.render(i)[0]) for i in range(0, 12, 3)]
    moved = max(float(np.abs(f[y1:y2, x1:x2] - frames[0][y1:y2, x1:x2]).max()) for f in frames[1:])
    assert moved > 1.0
    assert all(np.array_equal(f[y2 + 20:], frames[0][y2 + 20:]) for f in frames[1:])  # the ground below it
    calm = scene(tmp_path, QUIET + "camera: {netd_mk: 0}\n"
                                   "clutter: {wind_mps: 0, vegetation: {at: [[0, 15]], size_m: [1.5, 1.5]}}")
    assert np.array_equal(calm.render(0)[0], calm.render(9)[0])  # no wind, nothing moves


def test_cloud_shadows_cool_the_ground_and_drift_with_the_wind(tmp_path: Path) -> None:
    s = scene(tmp_path, QUIET + "camera: {netd_mk: 0, fpn_mk: 0}\n"
                                "clutter: {wind_mps: 2, wind_toward_deg: 90, "
                                "cloud_shadows: {coverage: 0.5, size_m: 20, cooling_k: 3}}")
    clear = scene(tmp_path, QUIET + "camera: {netd_mk: 0, fpn_mk: 0}")
    shade = s.cloud_shade_k(0)
    assert shade is not None and 2.0 < shade.max() <= 3.0 and shade.min() == 0.0
    cooler = celsius(clear.render(0)[0]) - celsius(s.render(0)[0])
    assert np.abs(cooler - shade)[300:].mean() < 0.1  # the frame is cooler where the shade is
    # 2 m/s east for 2 s: 4 m, seen on the row 60 m out as a shift of 4 m times its pixels per metre
    row = int(round(s.camera.project(np.array([0.0]), np.array([60.0]), np.array([0.0]))[1][0]))
    before, after = s.cloud_shade_k(0)[row], s.cloud_shade_k(20)[row]
    shifts = range(-120, 121)
    best = min(shifts, key=lambda d: float(np.mean((np.roll(before, d)[130:-130] - after[130:-130]) ** 2)))
    assert best == pytest.approx(4.0 * s.camera.px_per_m(60.0), rel=0.15)
    assert s.clutter == () and s.render(0)[1] == []  # shadows are listed by cloud_shade_k, never in the truth


def test_gray8_is_the_cameras_own_gain_control_which_jumps_when_something_hot_enters(tmp_path: Path) -> None:
    s = scene(tmp_path, "duration_s: 10\ncamera: {output: gray8}\n"
                        "actors: [{kind: car, start_s: 3, waypoints: [[-30, 22], [30, 22]]}]")
    before, after = s.render(10)[0], s.render(60)[0]
    assert before.dtype == np.uint8 and before.shape == (480, 640)
    assert s.render(60)[1]  # the car is in view
    near = (slice(400, 480), slice(0, 640))
    assert float(before[near].mean()) - float(after[near].mean()) > 20  # the same ground, darker: the gain fell
    steady = s.render(14)[0]  # no car yet: the gain holds still (its limits move in steps)
    assert abs(float(before[near].mean()) - float(steady[near].mean())) < 1


def test_h264_is_close_to_the_raw_frame_and_the_same_in_any_order(tmp_path: Path) -> None:
    text = ("duration_s: 5\ncamera: {output: gray8, h264: {bitrate_kbps: 300, gop: 8}}\n"
            "actors: [{kind: person, waypoints: [[-5, 20], [5, 20]]}]")
    raw = scene(tmp_path, text.replace(", h264: {bitrate_kbps: 300, gop: 8}", ""))
    coded = scene(tmp_path, text)
    in_order = [coded.render(i)[0] for i in range(12)]
    for i in (3, 11):
        a, b = in_order[i].astype(int), raw.render(i)[0].astype(int)
        assert not np.array_equal(a, b) and np.abs(a - b).mean() < 3
    again = scene(tmp_path, text)
    assert np.array_equal(again.render(11)[0], in_order[11])  # out of order: encoded again from its key frame
    assert np.array_equal(again.render(5)[0], in_order[5])
    assert again.render(5)[1] == raw.render(5)[1]  # compression leaves the truth alone


def test_the_realistic_preset_renders_deterministically_and_keys_win_over_it(tmp_path: Path) -> None:
    text = "duration_s: 5\npreset: realistic\nactors: [{kind: person, waypoints: [[-5, 20], [5, 20]]}]"
    a, b = scene(tmp_path, text, "?seed=3"), scene(tmp_path, text, "?seed=3")
    frames = [a.render(i) for i in range(3)]
    assert all(np.array_equal(f[0], b.render(i)[0]) and f[1] == b.render(i)[1] for i, f in enumerate(frames))
    assert frames[0][0].dtype == np.uint8
    assert not np.array_equal(scene(tmp_path, text, "?seed=4").render(2)[0], frames[2][0])
    kinds = {c.kind for c in a.clutter}
    assert kinds == {"hot rock", "ground patch", "vegetation"} and a.cloud_shade_k(0) is not None
    own = scene(tmp_path, text + "\ncamera: {output: y16, netd_mk: 40}\nclutter: {vegetation: null}")
    assert own.render(0)[0].dtype == np.uint16 and own.sensor.h264 is None and own.sensor.netd_mk == 40
    assert own.sensor.fpn_drift_mk_per_min > 0  # the keys it did not set are the preset's
    assert "vegetation" not in {c.kind for c in own.clutter}
    off = scene(tmp_path, text, "?realistic=0")
    assert off.render(0)[0].dtype == np.uint16 and off.clutter == ()


def test_clutter_leaves_the_truth_alone(tmp_path: Path) -> None:
    walker = "actors: [{kind: person, waypoints: [[-6, 20], [6, 20]]}]"
    plain = scene(tmp_path, f"duration_s: 10\n{walker}")
    cluttered = scene(tmp_path, f"duration_s: 10\n{walker}\nclutter: {{hot_rocks: {{at: [[-3, 40], [4, 12]]}}, "
                                "vegetation: {at: [[0, 30]]}, ground_patches: {at: [[0, 20]]}}")
    for i in (0, 40, 80):
        assert plain.render(i)[1] == cluttered.render(i)[1]
    hidden = scene(tmp_path, f"duration_s: 10\n{walker}\nclutter: {{hot_rocks: {{at: [[0, 19.5]], size_m: [3, 3]}}}}")
    _, truth = hidden.render(43)  # the walker passes behind the rock at 4.3 s
    assert truth[0].visible < 0.9 and truth[0].full_bbox == plain.render(43)[1][0].full_bbox


@pytest.mark.parametrize(("text", "where"), [
    ("duration_s: 10\ncamera: {netd_mk: -5}", "camera.netd_mk: Input should be greater than or equal to 0"),
    ("duration_s: 10\ncamera: {output: rgb}", "camera.output: Input should be 'y16' or 'gray8'"),
    ("duration_s: 10\ncamera: {h264: {gop: 10}}", "camera.h264: H.264 carries 8-bit video"),
    ("duration_s: 10\ncamera: {output: gray8, h264: {gop: 0}}", "camera.h264.gop: Input should be greater"),
    ("duration_s: 10\nclutter: {hot_rocks: {size_m: [2, 1]}}", "clutter.hot_rocks: Value error, size_m is [low, high]"),
    ("duration_s: 10\nclutter: {vegetation: {count: many}}", "clutter.vegetation.count: Input should be a valid int"),
    ("duration_s: 10\nclutter: {fog: 1}", "clutter.fog: Extra inputs are not permitted"),
    ("duration_s: 10\nclutter: {cloud_shadows: {coverage: 2}}", "clutter.cloud_shadows.coverage: Input should be less"),
    ("duration_s: 10\npreset: lovely", "preset: Input should be 'realistic'"),
])
def test_a_bad_field_key_says_where(tmp_path: Path, text: str, where: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(f)
    assert str(f) in str(err.value) and where in str(err.value), str(err.value)
