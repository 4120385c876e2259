"""Offline always: loading, running and exporting a model opens no connection beyond loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("offline_probe.py")


def _probe(mode: str, models_dir: Path, work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env["YOLO_CONFIG_DIR"] = str(work / "ultralytics-config")  # a fresh config dir: nothing cached yet
    proc = subprocess.run([sys.executable, str(PROBE), mode, str(models_dir), str(work)], capture_output=True,
                          text=True, timeout=600, env=env, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_guard_refuses_and_records_an_outside_connection(tmp_path: Path, models_dir: Path) -> None:
    out = _probe("control", models_dir, tmp_path)
    assert out["attempts"] == ["resolve '192.0.2.1'"]  # refused before any packet could leave


@pytest.mark.slow
def test_load_predict_export_and_plot_never_touch_the_network(
    tmp_path: Path, models_dir: Path, default_pt: Path, default_ov320: Path
) -> None:
    out = _probe("model", models_dir, tmp_path)
    assert out["attempts"] == [], out["attempts"]
    assert out["done"]["export onnx"] and out["done"]["export openvino"] and out["done"]["plot"]
    assert set(out["done"]) >= {"detect best.pt", "detect best_320_openvino_model"}
    font = tmp_path / "ultralytics-config" / "Ultralytics" / "Arial.ttf"
    assert font.exists(), "the local font was not put in place"
