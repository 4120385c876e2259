"""The YAML configuration: examples pass, every problem is reported at once with file, line and key."""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path

import jsonschema
import pytest
import yaml

from edge_agent.config.agent import AgentConfig, json_schema, load_config, parse_config
from edge_agent.config.reader import MAX_BYTES
from edge_agent.paths import ConfigError
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


# Hostile and mistaken configs (issue 12): found by fuzzing check-config and run with mutated files.

HEAD = "site: s\nbox: b\ncameras:\n  - {id: c, source: sim://quiet}\n"


def problems_of(text: str, source: str = "h.yaml") -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(text, source)
    return err.value.problems


def alias_bomb(depth: int) -> str:
    """'Billion laughs': each level is nine aliases of the one before."""
    levels = ["lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, depth + 1)]
    return "site: s\nbox: b\n" + "\n".join(levels) + "\n"


@pytest.mark.parametrize("depth", [6, 9])
def test_an_alias_bomb_is_refused_at_once_and_with_little_memory(depth: int) -> None:
    tracemalloc.start()
    try:
        problems = problems_of(alias_bomb(depth), "bomb.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert problems == ["bomb.yaml:8: lol5: expands to more than 100,000 values (aliases included); a config needs "
                        "far fewer"]
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB to refuse it"


def test_many_aliases_and_an_alias_loop_are_refused() -> None:
    many = "site: s\nbox: b\nx: &x 1\nmany: [" + ", ".join(["*x"] * 101) + "]\n"
    assert problems_of(many) == ["h.yaml:4: many[100]: more than 100 aliases (*name); a config needs few, if any"]
    assert problems_of("site: s\nbox: b\nloop: &l [a, *l]\n") == [
        "h.yaml:3: loop[1]: alias *l is used inside its own anchor (a loop)"]
    # a few aliases are fine: the data is built once from the composed tree
    config = parse_config("site: s\nbox: b\ncameras:\n  - &cam {id: a, source: sim://quiet}\n"
                          "zones:\n  - {id: z, camera: a, polygon: &square [[0, 0], [9, 0], [9, 9], [0, 9]]}\n"
                          "  - {id: y, camera: a, polygon: *square}\n")
    assert config.zones[0].polygon == config.zones[1].polygon


def test_a_file_over_4_mib_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    huge = "site: s\nbox: b\n" + "#" * MAX_BYTES
    assert problems_of(huge, "huge.yaml") == [f"huge.yaml: {len(huge):,} bytes is more than a config may be "
                                              f"({MAX_BYTES:,}); is this the right file?"]
    f = tmp_path / "huge.yaml"
    f.write_text(huge)
    for path in (f, Path("/dev/zero")):  # a device that never ends is read no further than the cap
        with pytest.raises(ConfigError, match="more than 4,194,304 bytes, more than a config may be"):
            load_config(path)


@pytest.mark.parametrize("text", [
    "site: " + "[" * 1000 + "]" * 1000 + "\n",
    "site: s\nbox: b\nx:\n" + "".join(" " * (i + 1) + "a:\n" for i in range(1000)) + " " * 1001 + "1\n",
], ids=["flow", "block"])
def test_nesting_a_thousand_deep_is_refused_with_its_line(text: str) -> None:
    (problem,) = problems_of(text, "deep.yaml")
    assert re.fullmatch(r"deep\.yaml:\d+: (site\[0\]|x\.a)[.a\[\]0]*: nested deeper than 64 levels; a config needs "
                        r"fewer than 10", problem), problem


def test_a_duplicate_key_at_any_level_names_both_lines() -> None:
    text = HEAD.replace("sim://quiet}", "sim://quiet}\n  - id: d\n    source: sim://border\n    source: sim://quiet")
    problems = problems_of(text + "zones: []\nbox: b2\nzones: [{id: bad id}]\n", "dup.yaml")
    assert problems[:3] == [
        "dup.yaml:7: cameras[1].source: key 'source' is given twice (lines 6 and 7); the second would silently "
        "replace the first: keep one",
        "dup.yaml:9: box: key 'box' is given twice (lines 2 and 9); the second would silently replace the first: "
        "keep one",
        "dup.yaml:10: zones: key 'zones' is given twice (lines 8 and 10); the second would silently replace the "
        "first: keep one",
    ]
    assert "dup.yaml:10: zones[0].id: 'bad id' is not a valid id" in problems[3]  # every problem at once


@pytest.mark.parametrize(("section", "expected"), [
    ("fixed_sensors:\n  - {id: m, kind: metal, latlon: [91, 181], url: 'udp://0.0.0.0:5005'}\n",
     ["h.yaml:6: fixed_sensors[0].latlon[0]: latitude must be within [-90, 90] degrees, got 91",
      "h.yaml:6: fixed_sensors[0].latlon[1]: longitude must be within [-180, 180] degrees, got 181"]),
    ("zones:\n  - {id: z, space: geo, polygon: [[46.5, 15.6], [-90.5, 15.7], [46.6, 15.7]]}\n",
     ["h.yaml:6: zones[0].polygon: point 2 [-90.5, 15.7]: latitude must be within [-90, 90] degrees, got -90.5"]),
    ("lines:\n  - {id: l, space: geo, points: [[46.5, 180.25], [46.5, 15.6]]}\n",
     ["h.yaml:6: lines[0].points: point 1 [46.5, 180.25]: longitude must be within [-180, 180] degrees, got 180.25"]),
], ids=["fixed-sensor", "geo-zone", "geo-line"])
def test_latitude_and_longitude_are_on_the_earth(section: str, expected: list[str]) -> None:
    assert problems_of(HEAD + section) == expected


def test_a_ground_point_off_the_earth() -> None:
    text = HEAD.replace("sim://quiet}", "sim://quiet, calibration: {points: [{pixel: [0, 400], latlon: [46.5, 15.1]}, "
                        "{pixel: [600, 400], latlon: [46.5, 15.2]}, {pixel: [100, 200], latlon: [46.6, 15.1]}, "
                        "{pixel: [500, 200], latlon: [46.6, 195]}]}}")
    assert problems_of(text) == ["h.yaml:4: cameras[0].calibration.points[3].latlon[1]: longitude must be within "
                                 "[-180, 180] degrees, got 195"]


@pytest.mark.parametrize(("change", "expected"), [
    ("cameras:\n  - {id: c, source: sim://quiet, scale: true}\n",
     "h.yaml:4: cameras[0].scale: expected a number, got the boolean true"),
    ("cameras:\n  - {id: c, source: sim://quiet, loop: \"yes\"}\n",
     "h.yaml:4: cameras[0].loop: Input should be a valid boolean, got 'yes'"),
    ("cameras:\n  - {id: c, source: sim://quiet, stall_s: .nan}\n",
     "h.yaml:4: cameras[0].stall_s: Input should be greater than 0, got nan"),
    ("cameras:\n  - {id: c, source: sim://quiet, offset: .inf}\n",
     "h.yaml:4: cameras[0].offset: Input should be a finite number, got inf"),
    ("tracker: {min_hits: true}\n", "h.yaml:3: tracker.min_hits: expected a number, got the boolean true"),
    ("zones:\n  - {id: z, camera: c, entry: \"no\", polygon: [[0, 0], [9, 0], [9, 9]]}\n",
     "h.yaml:4: zones[0].entry: Input should be a valid boolean, got 'no'"),
    ("mqtt: {host: h, port: false}\n", "h.yaml:3: mqtt.port: expected a number, got the boolean false"),
], ids=["number-true", "bool-string", "nan", "inf", "int-true", "entry-string", "port-false"])
def test_numbers_refuse_booleans_and_flags_refuse_strings(change: str, expected: str) -> None:
    text = "site: s\nbox: b\n" + change + ("" if change.startswith("cameras") else HEAD.split("box: b\n")[1])
    assert problems_of(text) == [expected]


def test_plain_yaml_flags_and_numbers_still_load() -> None:
    config = parse_config("site: s\nbox: b\ncameras:\n  - {id: c, source: sim://quiet, loop: yes, enabled: off, "
                          "scale: 1e-2, stall_s: 5}\n")
    cam = config.cameras[0]
    assert (cam.loop, cam.enabled, cam.scale, cam.stall_s) == (True, False, 0.01, 5.0)


def many_rules(n: int, keep: tuple[str, ...] = ("zones", "lines", "fixed_sensors", "fusion")) -> str:
    """A box with n geo zones, each with a line, a metal detector on its own port and a fusion rule."""
    out = [HEAD.replace("sim://quiet}", "sim://quiet, calibration: {points: [{pixel: [0, 400], latlon: [46.5, 15.1]}, "
                        "{pixel: [600, 400], latlon: [46.5, 15.2]}, {pixel: [100, 200], latlon: [46.6, 15.1]}, "
                        "{pixel: [500, 200], latlon: [46.6, 15.2]}]}}")]
    sections: dict[str, list[str]] = {"zones": [], "lines": [], "fixed_sensors": [], "fusion": []}
    for i in range(n):
        lat, lon = 46.5 + i // 50 * 0.001, 15.1 + i % 50 * 0.001
        sections["zones"].append(f"  - {{id: z{i}, space: geo, polygon: [[{lat}, {lon}], [{lat}, {lon + 0.0005}], "
                                 f"[{lat + 0.0005}, {lon + 0.0005}], [{lat + 0.0005}, {lon}]]}}\n")
        sections["lines"].append(f"  - {{id: l{i}, space: geo, points: [[{lat + 0.0008}, {lon}], "
                                 f"[{lat + 0.0008}, {lon + 0.0005}]]}}\n")
        sections["fixed_sensors"].append(f"  - {{id: md{i}, kind: metal, latlon: [{lat}, {lon}], "
                                         f"url: 'udp://0.0.0.0:{20000 + i}'}}\n")
        sections["fusion"].append(f"  - {{id: f{i}, place: z{i}, metal: [md{i}]}}\n")
    return "".join(out + [f"{key}:\n" + "".join(items) for key, items in sections.items() if key in keep])


def test_3000_zones_are_refused_and_the_biggest_box_allowed_starts_fast() -> None:
    from edge_agent.core.site import Site

    assert problems_of(many_rules(3000, keep=("zones",))) == ["h.yaml:6: zones: at most 500 zones per box, got 3000"]
    (problem,) = problems_of(many_rules(3000))  # the whole box is refused early, by its size
    assert re.fullmatch(r"h\.yaml:\d+: fixed_sensors\[\d+\]\.\w+: more than 100,000 values; a config needs far "
                        r"fewer", problem), problem
    t0 = time.process_time()  # CPU time: other work on a shared host does not count
    config = parse_config(many_rules(500))
    site = Site.from_config(config)
    site.engine()
    site.fusion_engine(lambda alert: None)
    assert len(config.zones) == len(config.fusion) == 500
    assert time.process_time() - t0 < 5.0  # 3000 zones used to hang start-up; this takes about 1 s


@pytest.mark.parametrize(("urls", "expected"), [
    (["udp://0.0.0.0:5005", "udp://127.0.0.1:5005"], "h.yaml:7: fixed_sensors[1].url: fixed sensor 's1' and fixed "
     "sensor 's0' both use udp port 5005 (127.0.0.1 and 0.0.0.0); give each its own, or send one sensor's lines "
     "through the other's feed (via)"),
    (["tcp-listen://10.0.0.2:4001", "tcp-listen://10.0.0.2:4001"], "both use tcp port 4001 (10.0.0.2 and 10.0.0.2)"),
    (["serial:///dev/ttyUSB0?baud=4800", "serial:///dev/ttyUSB0?baud=9600"],
     "fixed sensor 's1' and fixed sensor 's0' both use serial device /dev/ttyUSB0"),
    (["udp://0.0.0.0:5005", "tcp-listen://0.0.0.0:5005"], None),  # one port number, two protocols
    (["udp://10.0.0.2:5005", "udp://10.0.0.3:5005"], None),  # two addresses of the box
    (["tcp://10.0.0.9:4001", "tcp://10.0.0.9:4001"], None),  # two clients of one server
    (["udp://127.0.0.1:0", "udp://127.0.0.1:0"], None),  # port 0: each gets a free one
], ids=["udp-wildcard", "tcp-listen", "serial", "udp-and-tcp", "two-addresses", "clients", "port-0"])
def test_two_sensors_on_one_listening_port(urls: list[str], expected: str | None) -> None:
    text = HEAD + "fixed_sensors:\n" + "".join(
        f"  - {{id: s{i}, kind: radio, latlon: [46.5, 15.6], url: '{url}'}}\n" for i, url in enumerate(urls))
    if expected is None:
        assert len(parse_config(text).fixed_sensors) == 2
    else:
        assert expected in "\n".join(problems_of(text))


def test_a_camera_stream_and_a_sensor_on_one_port() -> None:
    text = HEAD.replace("sim://quiet", "udp://0.0.0.0:5600") + (
        "fixed_sensors:\n  - {id: rf, kind: radio, latlon: [46.5, 15.6], url: 'udp://127.0.0.1:5600'}\n")
    assert problems_of(text) == ["h.yaml:4: cameras[0].source: camera 'c' and fixed sensor 'rf' both use udp port 5600 "
                                 "(0.0.0.0 and 127.0.0.1); give each its own, or send one sensor's lines through the "
                                 "other's feed (via)"]
    assert parse_config(text.replace("udp://0.0.0.0:5600", "rtsp://10.0.0.5:5600/x"))  # a client: no port held


def test_the_mqtt_password_file_is_checked_when_the_config_loads(tmp_path: Path) -> None:
    f = tmp_path / "box.yaml"
    (tmp_path / "secrets").mkdir()

    def load(password_file: str) -> AgentConfig:
        f.write_text(HEAD + f"mqtt: {{host: cp.local, username: box1, password_file: {password_file}}}\n")
        return load_config(f)

    for name, content, reason in (("absent", None, f"no such file {tmp_path}/secrets/absent"),
                                  ("empty", "", f"{tmp_path}/secrets/empty has an empty first line"),
                                  ("blank", "\nhorse\n", f"{tmp_path}/secrets/blank has an empty first line")):
        if content is not None:
            (tmp_path / "secrets" / name).write_text(content)
        with pytest.raises(ConfigError) as err:
            load(f"secrets/{name}")
        assert err.value.problems == [f"{f}:5: mqtt.password_file: {reason}; expected a readable file whose first "
                                      "line is the password"]
    with pytest.raises(ConfigError, match=r"mqtt\.password_file: .*/secrets is not a regular file"):
        load("secrets")
    (tmp_path / "secrets" / "pw").write_text("right-horse-battery\n")
    config = load("secrets/pw")  # relative to the config file
    assert config.mqtt is not None and config.mqtt.secret() == "right-horse-battery"
    assert "right-horse-battery" not in str(config.mqtt.password_file)


def test_a_serial_url_with_a_bad_baud_rate_is_a_config_error() -> None:
    text = HEAD + "fixed_sensors:\n  - {id: md, kind: metal, latlon: [46.5, 15.6], url: 'serial:///dev/ttyUSB0?baud=fast'}\n"
    (problem,) = problems_of(text)
    assert problem.startswith("h.yaml:6: fixed_sensors[0]: url: serial:///dev/ttyUSB0?baud=fast: "), problem
    assert "fast" in problem.split(": url: ", 1)[1].split("baud=fast", 1)[1]


VIA = """\
fixed_sensors:
  - {id: bus, kind: metal, latlon: [46.5, 15.6], url: "serial:///dev/ttyUSB0?baud=9600"}
  - {id: md-2, kind: metal, latlon: [46.5, 15.61], via: bus}
  - {id: md-3, kind: metal, latlon: [46.5, 15.62], via: bus}
  - {id: rf-1, kind: radio, latlon: [46.5, 15.63], url: "udp://0.0.0.0:5005"}
"""


def test_a_sensor_heard_through_another_sensors_feed() -> None:
    config = parse_config(HEAD + VIA)
    assert config.accepted_ids("bus") == {"bus", "md-2", "md-3"}
    assert config.accepted_ids("rf-1") == {"rf-1"}
    assert config.fixed_sensors[1].via == "bus" and config.fixed_sensors[1].url is None


def test_via_must_name_a_feed_of_the_same_kind_and_a_sensor_needs_url_or_via() -> None:
    text = HEAD + VIA + """\
  - {id: silent, kind: metal, latlon: [46.5, 15.6]}
  - {id: rf-2, kind: radio, latlon: [46.5, 15.6], via: bus}
  - {id: md-4, kind: metal, latlon: [46.5, 15.6], via: md-2}
  - {id: md-5, kind: metal, latlon: [46.5, 15.6], via: nowhere}
"""
    assert problems_of(text) == [
        "h.yaml:10: fixed_sensors[4]: sensor 'silent' would never be heard: give url (its own feed) or via (the "
        "sensor whose feed carries its events)",
        "h.yaml:11: fixed_sensors[5].via: 'bus' is a metal sensor; expected a radio sensor (a feed reads one kind "
        "of line)",
        "h.yaml:12: fixed_sensors[6].via: 'md-2' has no url of its own; expected a sensor with a feed (via does not "
        "chain)",
        "h.yaml:13: fixed_sensors[7].via: unknown fixed sensor 'nowhere'; expected the id of a metal sensor with a url",
    ]
    both = HEAD + VIA.replace("via: bus}", "via: bus, url: 'udp://0.0.0.0:5006'}", 1)
    assert problems_of(both) == ["h.yaml:7: fixed_sensors[1]: give url or via, not both (url 'udp://0.0.0.0:5006', "
                                 "via 'bus')"]


CLI_CASES = {
    "alias-bomb": (alias_bomb(6), "bomb.yaml:8: lol5: expands to more than 100,000 values"),
    "deep": ("site: " + "[" * 1000 + "]" * 1000 + "\n", "nested deeper than 64 levels"),
    "duplicate-key": (HEAD + "zones: []\nzones: []\n", ":6: zones: key 'zones' is given twice (lines 5 and 6)"),
    "latlon": (HEAD + VIA.replace("[46.5, 15.6]", "[91, 181]"), "fixed_sensors[0].latlon[0]: latitude must be within"),
    "boolean": (HEAD.replace("quiet}", "quiet, scale: true, loop: \"yes\"}"), "cameras[0].scale: expected a number"),
    "3000-zones": (many_rules(3000, keep=("zones",)), ":6: zones: at most 500 zones per box, got 3000"),
    "shared-port": (HEAD + VIA.replace("5005", "5006") + "  - {id: rf-2, kind: radio, latlon: [46.5, 15.6], "
                    "url: 'udp://127.0.0.1:5006'}\n", "both use udp port 5006"),
    "password-file": (HEAD + "mqtt: {host: h, password_file: /nonexistent/pw}\n",
                      ":5: mqtt.password_file: no such file /nonexistent/pw"),
    "baud": (HEAD + VIA.replace("baud=9600", "baud=fast"), ":6: fixed_sensors[0]: url: serial:///dev/ttyUSB0"),
    "never-heard": (HEAD + VIA.replace(", via: bus}", "}", 1), ":7: fixed_sensors[1]: sensor 'md-2' would never"),
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_check_config_cli_refuses_hostile_and_mistaken_configs(tmp_path: Path, case: str) -> None:
    text, expected = CLI_CASES[case]
    f = tmp_path / ("bomb.yaml" if case == "alias-bomb" else "box.yaml")
    f.write_text(text)
    res = run_cli("check-config", str(f), timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert expected in res.stderr and "Traceback" not in res.stderr, res.stderr


def _config_models() -> list[type]:
    from pydantic import BaseModel

    from edge_agent.config import agent, cameras, detection, incidents, mqtt, rules, sensors

    return [value for module in (agent, cameras, detection, incidents, mqtt, rules, sensors)
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == module.__name__]


def test_every_field_is_described() -> None:
    models = _config_models()
    assert len(models) >= 15
    undescribed = [f"{m.__name__}.{name}" for m in models for name, f in m.model_fields.items() if not f.description]
    assert undescribed == []


def test_library_defaults_come_from_the_library() -> None:
    """A config model that mirrors a library's settings has the library's defaults, so the two cannot drift."""
    import dataclasses

    from detectors.gating import MotionHeatGate
    from detectors.tracking import Tracker
    from edge_agent.config.cameras import CameraConfig
    from edge_agent.config.detection import GatingConfig, TrackerConfig
    from edge_agent.config.fields import library_default
    from edge_agent.config.rules import FilterConfig, LineConfig, ScheduleConfig, WindowConfig, ZoneConfig
    from edge_agent.config.sensors import FixedSensorConfig
    from geofences.rules import Filters, LineRule, Window, ZoneRule
    from sensors.captures import CameraSpec
    from sensors.feeds import SensorFeed

    mirrors: list[tuple[type, object, list[str]]] = [
        (TrackerConfig, Tracker, list(TrackerConfig.model_fields)),
        (GatingConfig, MotionHeatGate, [n for n in GatingConfig.model_fields if n != "enabled"]),
        (CameraConfig, CameraSpec, [f.name for f in dataclasses.fields(CameraSpec)
                                    if f.name in CameraConfig.model_fields and f.name not in ("source",)]),
        (FixedSensorConfig, SensorFeed, ["hb_timeout_s", "max_skew_s"]),
        (FilterConfig, Filters, ["min_height_px", "min_height_m", "min_frames"]),
        (ZoneConfig, ZoneRule, ["entry", "exit", "loiter_s", "max_count"]),
        (LineConfig, LineRule, ["direction"]),
    ]
    for model, library, names in mirrors:
        assert names
        for name in names:
            assert model.model_fields[name].default == library_default(library, name), f"{model.__name__}.{name}"
    assert FilterConfig().labels == sorted(Filters().labels)
    assert ScheduleConfig.model_fields["timezone"].default == library_default(Window, "tz")
    assert set(WindowConfig(start="00:00", end="01:00").days) == library_default(Window, "days")
    # the box's own policy, stricter than the library's neutral defaults (kept on purpose)
    box_policy = {(FilterConfig, "min_confidence"): (0.2, Filters().min_confidence),
                  (FilterConfig, "min_age_s"): (0.5, Filters().min_age_s),
                  (ZoneConfig, "cooldown_s"): (60.0, library_default(ZoneRule, "cooldown_s")),
                  (LineConfig, "cooldown_s"): (60.0, library_default(LineRule, "cooldown_s"))}
    for (model, name), (ours, library_value) in box_policy.items():
        assert model.model_fields[name].default == ours != library_value
