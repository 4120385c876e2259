"""The YAML configuration: examples pass, every problem is reported at once with file, line and key."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from edge_agent.config import AgentConfig, ConfigError, json_schema, load_config, parse_config
from tests.conftest import ROOT, run_cli

EXAMPLES = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_config_loads_and_matches_the_schema(path: Path) -> None:
    config = load_config(path)
    assert config.site and config.box and config.cameras
    jsonschema.Draft202012Validator(json_schema()).validate(yaml.safe_load(path.read_text()))


def test_schema_is_valid_draft_2020_12() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "cameras" in schema["properties"]


BAD = """\
site: bad site
box: box-1
detector:
  imgsz: 333
  confidence: 2
cameras:
  - id: cam/1
    source: sim://border
  - id: cam-2
    sourc: /dev/video0
    stall_s: -5
"""


def test_every_problem_reported_at_once_with_line_and_key_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BAD, "box.yaml")
    problems = err.value.problems
    assert len(problems) == 7, problems
    text = "\n".join(problems)
    assert "box.yaml:1: site: 'bad site' is not a valid id" in text
    assert "box.yaml:4: detector.imgsz: imgsz must be a multiple of 32" in text
    assert "box.yaml:5: detector.confidence:" in text
    assert "box.yaml:7: cameras[0].id: 'cam/1' is not a valid id" in text
    assert "box.yaml:10: cameras[1].sourc: unknown key" in text
    assert "cameras[1].source: Field required" in text
    assert "box.yaml:11: cameras[1].stall_s: Input should be greater than 0" in text


def test_duplicate_camera_ids() -> None:
    text = "site: s\nbox: b\ncameras:\n  - {id: a, source: sim://quiet}\n  - {id: a, source: sim://border}\n"
    with pytest.raises(ConfigError, match=r"dup.yaml:5: cameras\[1\].id: id .a. is used twice in cameras"):
        parse_config(text, "dup.yaml")


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"x\.yaml:4: not valid YAML"):
        parse_config("site: s\nbox: b\ncameras: [\n  - id\n", "x.yaml")


def test_empty_and_non_mapping_files() -> None:
    with pytest.raises(ConfigError, match="the file is empty"):
        parse_config("", "e.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config("- a\n- b\n", "l.yaml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    f = tmp_path / "cfg" / "box.yaml"
    f.write_text("site: s\nbox: b\nstate_dir: state\ndetector: {model: m/x.onnx}\n"
                 "cameras: [{id: c, source: rec/day1.mkv}, {id: d, source: 'rtsp://10.0.0.2/x'}]\n")
    config = load_config(f)
    assert config.state_dir == tmp_path / "cfg" / "state"
    assert config.detector.model == tmp_path / "cfg" / "m" / "x.onnx"
    assert config.cameras[0].source == str(tmp_path / "cfg" / "rec" / "day1.mkv")
    assert config.cameras[1].source == "rtsp://10.0.0.2/x"


def test_defaults_follow_the_contract() -> None:
    config = AgentConfig.model_validate({"site": "s", "box": "b", "cameras": [{"id": "c", "source": "sim://x"}]})
    cam = config.cameras[0]
    assert (cam.stall_s, cam.backoff_min_s, cam.backoff_max_s) == (20.0, 1.0, 30.0)
    assert (cam.scale, cam.offset) == (0.01, -273.15)
    assert config.detector.threads == 2


def test_check_config_cli(tmp_path: Path) -> None:
    ok = run_cli("check-config", str(EXAMPLES[0]))
    assert ok.returncode == 0 and ": OK:" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    res = run_cli("check-config", str(bad))
    assert res.returncode == 2
    assert "7 problems" in res.stderr and f"{bad}:7: cameras[0].id" in res.stderr


def test_config_schema_cli(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    res = run_cli("config", "schema", "-o", str(out))
    assert res.returncode == 0
    import json

    assert json.loads(out.read_text())["title"] == "edge-agent configuration"


ZONES_BAD = """\
site: s
box: b
cameras:
  - id: cam-1
    source: sim://intrusion
zones:
  - id: bow-tie
    camera: cam-1
    polygon: [[0, 0], [10, 10], [10, 0], [0, 10]]
  - id: two-points
    camera: cam-1
    polygon: [[0, 0], [10, 10]]
  - id: ghost
    camera: cam-9
    polygon: [[0, 0], [10, 0], [10, 10]]
  - id: "north zone!"
    camera: cam-1
    polygon: [[0, 0], [10, 0], [10, 10]]
lines:
  - id: fence
    space: geo
    points: [[46.55, 15.64], [46.55, 15.66]]
"""


def test_zone_problems_are_rejected_with_key_path_and_reason() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(ZONES_BAD, "z.yaml")
    text = "\n".join(err.value.problems)
    assert "z.yaml:7: zones[0]: polygon: the polygon is not simple: Self-intersection" in text
    assert "z.yaml:10: zones[1]: polygon: a zone needs at least 3 distinct points" in text
    assert "z.yaml:16: zones[3].id: 'north zone!' is not a valid id" in text
    # cross-checks run once each section is valid on its own
    fixed = ZONES_BAD.replace("[[0, 0], [10, 10], [10, 0], [0, 10]]", "[[0, 0], [10, 0], [0, 10]]").replace(
        "[[0, 0], [10, 10]]", "[[0, 0], [10, 10], [0, 10]]").replace('"north zone!"', "north-zone")
    with pytest.raises(ConfigError) as err:
        parse_config(fixed, "z.yaml")
    text = "\n".join(err.value.problems)
    assert "z.yaml:14: zones[2].camera: unknown camera 'cam-9'; cameras: cam-1" in text
    assert "z.yaml:21: lines[0].space: a geo rule needs at least one geo-calibrated camera" in text


def test_calibration_needs_four_spread_points() -> None:
    text = ("site: s\nbox: b\ncameras:\n  - id: c\n    source: sim://border\n    calibration:\n      points:\n"
            + "".join(f"        - {{pixel: [{i * 10}, {i * 10}], latlon: [46.55{i}, 15.65{i}]}}\n" for i in range(4)))
    with pytest.raises(ConfigError, match=r"cameras\[0\].calibration: .*collinear"):
        parse_config(text, "cal.yaml")
    with pytest.raises(ConfigError, match=r"cameras\[0\].calibration.points: List should have at least 4"):
        parse_config(text.rsplit("        - ", 1)[0], "cal.yaml")


def test_check_config_reports_calibration_error() -> None:
    res = run_cli("check-config", str(ROOT / "configs" / "demo.yaml"))
    assert res.returncode == 0, res.stderr
    assert "calibration sim-border: 5 ground points, reprojection error rms" in res.stdout


def test_fusion_and_sensor_feed_problems() -> None:
    text = """\
site: s
box: b
zones:
  - {id: gate, camera: c, polygon: [[0, 0], [10, 0], [10, 10]]}
cameras:
  - {id: c, source: sim://intrusion}
fixed_sensors:
  - {id: md-1, kind: metal, latlon: [46.55, 15.65], url: "carrier-pigeon://loft"}
  - {id: rf-1, kind: radio, latlon: [46.55, 15.65], url: "udp://0.0.0.0:5005"}
fusion:
  - {id: f1, place: ridge, metal: [rf-1]}
"""
    with pytest.raises(ConfigError) as err:
        parse_config(text, "f.yaml")
    assert "f.yaml:8: fixed_sensors[0]: url: carrier-pigeon://loft: unknown transport" in "\n".join(err.value.problems)
    with pytest.raises(ConfigError) as err:
        parse_config(text.replace("carrier-pigeon://loft", "tcp://10.0.0.9:4001"), "f.yaml")
    problems = "\n".join(err.value.problems)
    assert "f.yaml:11: fusion[0].place: unknown zone or line 'ridge'" in problems
    assert "fusion[0].metal[0]: 'rf-1' is not a metal sensor in fixed_sensors" in problems
