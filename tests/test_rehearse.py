"""``edge-agent rehearse``: the truth the scorer reads from a scene's script against a hand count, the scoring
arithmetic on hand-made alerts, and two scenes and the CLI through the real model (imgsz 320)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from edge_agent.config.agent import AgentConfig
from edge_agent.contract.alert import Alert, Evidence
from edge_agent.core.site import Site
from edge_agent.ops.errors import OpsError
from edge_agent.ops.rehearse import Rehearsal, ScenarioRun, pick_camera, rehearse, report_json, report_table, verdict
from edge_agent.ops.scoring import (
    SceneTruth,
    Score,
    TrackSighting,
    TruthEvent,
    confusion,
    match,
    nuisance_cause,
    truth_events,
)
from sensors.sim import ThermalScene
from tests.conftest import run_cli
from tests.scenes import T0, intrusion_config

NIGHT = datetime(2026, 11, 23, 21, 0, tzinfo=UTC).timestamp()  # 22:00 in Vienna: strip-night is on

# Counted by hand from sensors/sim/scenes.py's intrusion script (zone x -2..3, y 16..22; line y 24 from x -9 to 9,
# west to east, so northwards is right_to_left): (place, kind, actor, continuous time s, distance m, direction).
# Person 1 walks east along y 19 from x -6 (6.5 m in 6 s): enters at x -2 at 4/6.5*6 = 3.69 s, dwells 10 s
# (13.69 s), walks north from 20 s at 7.5 m in 6 s: leaves at y 22 at 22.4 s, is on the line at y 24 at 24.0 s
# (crossed at the next frame). Person 3 walks south along x 5 (11 m in 9 s) and crosses y 24 at 36/11 = 3.27 s.
# Person 2 stays west of the zone (x -3.3) and south of the line (y <= 23). The dog is no person.
INTRUSION_DAY = [
    ("fence", "line_crossing", 3, 36 / 11, 24.5, "left_to_right"),
    ("strip", "entry", 1, 48 / 13, 19.1, None),
    ("strip", "loitering", 1, 48 / 13 + 10, 19.0, None),
    ("strip", "exit", 1, 22.4, 22.0, None),
    ("fence", "line_crossing", 1, 24.0, 24.0, "right_to_left"),
]
# at night strip-night (loiter 10, no exit) fires too
INTRUSION_NIGHT = sorted(INTRUSION_DAY + [("strip-night", "entry", 1, 48 / 13, 19.1, None),
                                          ("strip-night", "loitering", 1, 48 / 13 + 10, 19.0, None)],
                         key=lambda e: (e[3], e[0]))
# Which actors could raise an alert no person earns. intrusion: the dog trots into the strip (x 3 at 25 s) and
# through the jitter zone; person 2 walks along the strip's edge; person 1 stands on the jitter zone's edge.
# animals: only the car, which drives along the fence line (the dog and the deer keep north of it).
NUISANCE_CAUSES = {"intrusion": {"dog", "person", "none"}, "animals": {"car", "none"}}


def _truth(url: str, t0: float) -> list[TruthEvent]:
    scene = ThermalScene.from_url(url)
    site = Site.from_config(AgentConfig.model_validate(intrusion_config(scene, Path("unused.pt"))))
    return truth_events(SceneTruth(scene), site.engine(), site.plane, "cam", t0)


def _assert_hand_count(events: list[TruthEvent], expected: list[tuple], fps: float) -> None:
    got = [(e.place, e.kind, e.actor, e.direction) for e in events]
    assert got == [(p, k, a, d) for p, k, a, _, _, d in expected], got
    for e, (_, _, _, t, dist, _) in zip(events, expected, strict=True):
        assert 0.0 <= e.t - t <= 1.0 / fps + 1e-6, f"{e}: truth at {t:.2f} s, the first frame after it is {e.t}"
        assert abs(e.distance_m - dist) <= 0.5, e


@pytest.mark.parametrize("fps", [10.0, 5.0])
def test_the_intrusion_scenes_truth_is_the_hand_count(fps: float) -> None:
    _assert_hand_count(_truth(f"sim://intrusion?fps={fps:g}", T0), INTRUSION_DAY, fps)


def test_truth_follows_the_rules_schedule() -> None:
    _assert_hand_count(_truth("sim://intrusion", NIGHT), INTRUSION_NIGHT, 10.0)


def test_animals_and_vehicles_are_no_truth() -> None:
    assert _truth("sim://animals", T0) == []


# -- the arithmetic, on hand-made truth and alerts ---------------------------------------------------------------


def _alert(t: float, place: str, incident: str, state: str = "new", kind: str = "intrusion",
           bbox: list[float] | None = None, location: tuple[float, float] | None = None) -> Alert:
    fields = (("label", "person"), ("bbox", bbox)) if bbox else (("label", "person"),)
    evidence = (Evidence("cam", "thermal", T0 + t, fields, location),)
    return Alert(f"a{t}", incident, "s", "b", T0 + t, kind, "medium", state, (place, place), location,  # type: ignore[arg-type]
                 evidence, "")


def _event(place: str, kind: str, t: float, distance: float) -> TruthEvent:
    # a 1.75 m person on the default mount (40 degree lens, 640 wide: focal 879 px) stands 1538 / distance px tall
    return TruthEvent(place, kind, 1, "person", t, distance, px_tall=round(1538.0 / distance, 1))  # type: ignore[arg-type]


TRUTH = [_event("strip", "entry", 10.0, 12.0), _event("strip", "loitering", 20.0, 12.0),
         _event("strip", "exit", 25.0, 12.0), _event("fence", "line_crossing", 30.0, 45.0),
         _event("fence", "line_crossing", 100.0, 95.0), _event("strip", "entry", 200.0, 20.0)]
ALERTS = [
    _alert(11.5, "strip", "A"),  # the entry, 1.5 s late; the loitering joins its incident: covered
    _alert(12.0, "strip", "A", state="updated"),  # an update is no new alert: neither a match nor a nuisance
    _alert(29.0, "fence", "B", kind="line_crossing"),  # 1 s before its crossing: still its alert
    _alert(50.0, "jitter", "C"),  # nothing there: nuisance
    _alert(60.0, "fence", "B", state="closed"),
    _alert(112.0, "fence", "D", kind="line_crossing"),  # 12 s after the crossing: too late, and a nuisance
    _alert(203.0, "strip", "E"),
]


def test_matching_each_alert_once_covered_and_missed() -> None:
    outcomes = match(TRUTH, ALERTS, T0)
    got = [(e.place, e.kind, e.t, how, None if d is None else round(d, 6)) for e, how, d in outcomes.events]
    assert got == [("strip", "entry", 10.0, "alerted", 1.5), ("strip", "loitering", 20.0, "covered", None),
                   ("fence", "line_crossing", 30.0, "alerted", -1.0), ("fence", "line_crossing", 100.0, "missed", None),
                   ("strip", "entry", 200.0, "alerted", 3.0)]  # the exit is truth, not scored
    assert [(a.zone[0] if a.zone else None, a.ts - T0) for a in outcomes.nuisance] == [("jitter", 50.0),
                                                                                        ("fence", 112.0)]


def test_one_alert_matches_one_event_the_next_is_covered_then_missed_once_closed() -> None:
    truth = [_event("strip", "entry", 10.0, 5.0), _event("strip", "entry", 11.0, 5.0),
             _event("strip", "entry", 40.0, 5.0)]
    alerts = [_alert(10.5, "strip", "A"), _alert(30.0, "strip", "A", state="closed")]
    assert [how for _, how, _ in match(truth, alerts, T0).events] == ["alerted", "covered", "missed"]


def test_pd_time_to_alert_nuisance_per_hour_and_range() -> None:
    outcomes = match(TRUTH, ALERTS, T0)
    score = Score(360.0 / 3600.0, outcomes.events, tuple(("x", "intrusion", 0.0, "dog") for _ in outcomes.nuisance))
    assert score.pd == pytest.approx(4 / 5)
    assert score.nuisance_per_h == pytest.approx(20.0)  # 2 in 6 minutes
    strip = score.per_place()["strip"]
    assert (strip["truth"], strip["alerted"], strip["covered"], strip["missed"], strip["pd"]) == (3, 2, 1, 0, 1.0)
    assert (strip["time_to_alert_median_s"], strip["time_to_alert_max_s"]) == (2.25, 3.0)
    fence = score.per_place()["fence"]
    assert (fence["truth"], fence["alerted"], fence["missed"], fence["pd"]) == (2, 1, 1, 0.5)
    assert score.per_band() == {"0-30 m": 1.0, "30-60 m": 1.0, "60-90 m": None, "90-120 m": 0.0, "120-150 m": None,
                                "150-200 m": None, "200-300 m": None, "300-400 m": None, "400-600 m": None}
    # the same by pixels on target: the 95 m crossing (16 px) was missed, every nearer event alerted or covered
    assert score.per_px() == {"0-5 px": None, "5-8 px": None, "8-12 px": None, "12-20 px": 0.0, "20-40 px": 1.0,
                              "40+ px": 1.0}
    dog = {"person": 0, "vehicle": 0, "animal": 1, "unknown": 0, "clutter": 0, "missed": 0}
    total = score + Score(0.1, (), (), {"dog": dog})
    assert total.nuisance_per_h == pytest.approx(10.0) and total.pd == score.pd
    run = ScenarioRun("hand", "sim://hand", 3600, 10.0, tuple(TRUTH), tuple(ALERTS), score, 0.0)
    rehearsal = Rehearsal("cam", T0, (run,))
    assert verdict(rehearsal, 0.8, 20.0) == []
    assert verdict(rehearsal, 0.9, 19.0) == ["Pd 0.80 is below --min-pd 0.9",
                                             "20.0 nuisance alerts per hour is above --max-nuisance-per-h 19"]
    assert "Pd 0.80" in report_table(rehearsal)
    assert json.loads(json.dumps(report_json(rehearsal)))["total"]["pd"] == pytest.approx(0.8)


def test_confusion_and_nuisance_cause_read_the_truth_of_the_frame() -> None:
    scene = ThermalScene.from_url("sim://intrusion")
    truth = SceneTruth(scene)
    truth.render(260)  # person 1 walks north, the dog trots through the strip
    boxes = {o.track_id: o.bbox for o in truth.objects[260]}
    sightings = [TrackSighting(260, 7, boxes[1], "person", True), TrackSighting(260, 8, boxes[4], "animal", True),
                 TrackSighting(260, 9, (0.0, 0.0, 5.0, 5.0), "unknown", False)]
    table = confusion(truth, sightings)
    assert table["person"] == {"person": 1, "vehicle": 0, "animal": 0, "unknown": 0, "clutter": 0,
                               "missed": 2}  # 2 and 3 unseen
    assert table["dog"]["animal"] == 1 and table["none"]["unknown"] == 1
    dog = _alert(26.0, "strip", "A", bbox=list(boxes[4]))
    assert nuisance_cause(dog, truth, None, T0) == "dog"
    assert nuisance_cause(_alert(26.0, "strip", "A", bbox=[0.0, 0.0, 4.0, 4.0]), truth, None, T0) == "none"


def test_a_config_without_the_camera_is_refused() -> None:
    bare = AgentConfig.model_validate({"site": "s", "box": "b"})
    with pytest.raises(OpsError, match="box.yaml: the config has no camera"):
        pick_camera(bare, None, "box.yaml")
    config = AgentConfig.model_validate(intrusion_config(ThermalScene.from_url("sim://intrusion"), Path("m.pt")))
    with pytest.raises(OpsError, match="no camera 'north'; the config has cam"):
        pick_camera(config, "north", "box.yaml")


# -- through the real model -----------------------------------------------------------------------------------


def _config(model: Path) -> dict:
    cfg = intrusion_config(ThermalScene.from_url("sim://intrusion"), model)
    cfg["detector"]["imgsz"] = 320
    return cfg


@pytest.mark.slow
def test_two_scenes_through_the_product_against_the_hand_count(default_ov320: Path) -> None:
    config = AgentConfig.model_validate(_config(default_ov320))
    result = rehearse(config, ["sim://intrusion?fps=5", "sim://animals?fps=5"], t0=T0)
    intrusion, animals = result.runs
    _assert_hand_count(list(intrusion.truth), INTRUSION_DAY, 5.0)
    assert animals.truth == ()
    for run, scene in ((intrusion, "intrusion"), (animals, "animals")):
        score = run.score
        scored = [a for a in run.alerts if a.state == "new" and a.kind in ("intrusion", "loitering", "line_crossing")]
        assert len(score.outcomes) == sum(e.scored for e in run.truth)
        assert len(scored) == sum(how == "alerted" for _, how, _ in score.outcomes) + len(score.nuisance)
        assert {cause for *_, cause in score.nuisance} <= NUISANCE_CAUSES[scene], score.nuisance
        rows = score.confusion
        expected_rows = {"intrusion": {"person", "dog"}, "animals": {"car", "deer", "dog"}}[scene]
        assert expected_rows <= set(rows) <= expected_rows | {"none"}, rows
    assert sum(intrusion.score.confusion["person"].values()) >= 3  # every person tracked or missed
    assert intrusion.score.per_place()["strip"]["alerted"] == 1  # person 1's entry, at 320 too
    assert result.total.pd == intrusion.score.pd


@pytest.mark.slow
def test_the_cli_end_to_end(default_ov320: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "box.yaml"
    cfg.write_text(yaml.safe_dump(_config(default_ov320)))
    out = run_cli("rehearse", "-c", str(cfg), "sim://intrusion?fps=5&frames=30", "--json", "--min-pd", "1.01",
                  "--at", "2026-11-23T12:00:00Z")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    truth = [(t["place"], t["kind"], t["actor"]) for t in report["scenarios"][0]["truth"]]
    assert truth == [("fence", "line_crossing", 3), ("strip", "entry", 1)]
    assert "is below --min-pd 1.01" in out.stderr and "sim://intrusion?fps=5&frames=30: done" in out.stderr
    missing = run_cli("rehearse", "-c", str(cfg), "sim://intrusion", str(tmp_path / "nowhere.yaml"))
    assert missing.returncode == 2 and "nowhere.yaml: no such file" in missing.stderr, missing.stderr
    bare = tmp_path / "bare.yaml"
    bare.write_text("site: s\nbox: b\n")
    no_camera = run_cli("rehearse", "-c", str(bare), "sim://intrusion")
    assert no_camera.returncode == 2 and f"{bare}: the config has no camera" in no_camera.stderr
