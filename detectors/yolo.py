"""The ultralytics backend: any YOLO ``.pt``, ``.onnx`` or OpenVINO model folder. The only module that
imports ultralytics, and only when a model is loaded."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from detectors.base import Detector, DetectorUnavailable, class_lookup, register
from detectors.offline import prepare_ultralytics
from detectors.ovnative import OpenVinoYolo
from detectors.types import Detections


class YoloConfig(BaseModel):
    """An ultralytics YOLO model and how to run it."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["ultralytics"] = Field("ultralytics", description="Detector backend.")
    model: Path = Field(
        Path("default"),
        description="A .pt or .onnx file or an OpenVINO model folder; 'default' is the provisioned person "
        "model, exported to OpenVINO at imgsz when that export exists.",
    )
    imgsz: int = Field(640, ge=64, le=1920, description="Network input size in pixels (multiple of 32).")
    confidence: float = Field(
        0.15, ge=0.01, le=1.0,
        description="Minimum detection confidence; weak detections only continue tracks "
        "(tracker.high_confidence starts them).",
    )
    iou: float = Field(0.5, ge=0.05, le=0.95, description="IoU for non-maximum suppression.")
    threads: int = Field(2, ge=1, le=64, description="CPU threads for inference.")
    runtime: Literal["auto", "openvino", "ultralytics"] = Field(
        "auto", description="Who runs an OpenVINO model folder: the OpenVINO runtime directly (auto: less "
        "overhead per frame, frames of several cameras in parallel) or ultralytics. Other formats: ultralytics.")
    precision: Literal["auto", "fp32", "int8"] = Field(
        "auto", description="For model 'default': fp32, int8 (the NNCF-quantized export), or auto: what 'model "
        "export' measured as faster on this CPU with the same accuracy.")
    tiles: bool = Field(False, description="Also run the model on full-resolution tiles of imgsz where the frame "
                        "is larger than imgsz (small far targets); one more inference per tile.")
    parallel: int = Field(2, ge=1, le=16, description="Frames inferred at once (OpenVINO streams), shared by "
                          "all cameras; on a 2-core box 2.")
    lone_latency: bool = Field(True, description="OpenVINO runtime: a frame inferred while no other is runs on "
                               "all threads (a second compilation for latency) instead of one stream's share.")
    class_map: dict[str, str] | None = Field(
        None,
        description="Model class name -> person|vehicle|animal; unmapped classes are dropped. "
        "Default: the fall model's Normal/Fall -> person, or the COCO map.",
    )
    refine_boxes: bool = Field(
        True, description="Tighten boxes to the warm silhouette (thermal frames) so foot points are exact."
    )

    @field_validator("imgsz")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"imgsz must be a multiple of 32, got {v}")
        return v


@register("ultralytics")
class YoloDetector(Detector):
    name = "ultralytics"

    def __init__(self, config: YoloConfig, model_path: Path | None = None) -> None:
        self.config = config
        self.model_path = Path(model_path or config.model)
        self._model: Any = None
        self._lookup: np.ndarray | None = None
        self._native: OpenVinoYolo | None = None  # an OpenVINO folder run without ultralytics
        self._lock = threading.Lock()

    @property
    def backend(self) -> str:
        p = self.model_path
        if p.is_dir() or p.name.endswith("_openvino_model"):
            return "openvino"
        return p.suffix.lstrip(".") or "unknown"

    @property
    def runtime(self) -> str:
        """Who runs the model: ``openvino`` (directly) or ``ultralytics``."""
        return "openvino" if self.backend == "openvino" and self.config.runtime != "ultralytics" else "ultralytics"

    def load(self) -> None:
        if self._model is not None or self._native is not None:
            return
        p = self.model_path
        if not p.exists():
            raise DetectorUnavailable(
                f"model {p} does not exist; run 'edge-agent model fetch' (and 'edge-agent model export') "
                "or set detector.model to a .pt, .onnx or OpenVINO folder"
            )
        if p.is_dir() and not list(p.glob("*.xml")):
            raise DetectorUnavailable(f"model folder {p} has no OpenVINO .xml file; export it again")
        if p.is_file() and p.suffix not in (".pt", ".onnx"):
            raise DetectorUnavailable(
                f"model {p}: unsupported format {p.suffix!r}; use .pt, .onnx or an OpenVINO folder"
            )
        if self.runtime == "openvino":
            native = OpenVinoYolo(p, threads=self.config.threads, parallel=self.config.parallel,
                                  lone_latency=self.config.lone_latency)
            try:
                self._lookup = class_lookup(native.names, self.config.class_map)
            except ValueError as exc:
                raise DetectorUnavailable(f"model {p}: {exc}") from exc
            self._native = native
            return
        prepare_ultralytics()
        os.environ.setdefault("OMP_NUM_THREADS", str(self.config.threads))
        try:
            import torch
            from ultralytics import YOLO

            torch.set_num_threads(self.config.threads)
            model = YOLO(str(p), task="detect")
        except Exception as exc:  # ultralytics raises many kinds for a bad file
            raise DetectorUnavailable(f"model {p} cannot be loaded: {exc}") from exc
        try:
            self._lookup = class_lookup(model.names, self.config.class_map)
        except ValueError as exc:
            raise DetectorUnavailable(f"model {p}: {exc}") from exc
        self._model = model

    def inference_modes(self) -> dict[str, int] | None:
        """OpenVINO runtime with ``lone_latency``: inferences run alone (all threads) and beside others."""
        n = self._native
        if n is None or n.latency_compiled is None:
            return None
        return {"alone": n.lone, "beside_others": n.shared}

    def detect(self, gray8: np.ndarray) -> Detections:
        self.load()
        assert self._lookup is not None
        if gray8.ndim != 2 or gray8.dtype != np.uint8:
            raise ValueError(f"detector input must be 2-D uint8, got {gray8.dtype} {gray8.shape}")
        if self._native is not None:  # thread-safe: one infer request per calling thread
            xyxy, conf, cls = self._native.predict(gray8, self.config.confidence, self.config.iou)
            if len(xyxy) == 0:
                return Detections.empty()
        else:
            bgr = np.repeat(gray8[:, :, None], 3, axis=2)
            with self._lock:
                result = self._model.predict(
                    bgr, imgsz=self.config.imgsz, conf=self.config.confidence, iou=self.config.iou,
                    verbose=False, device="cpu",
                )[0]
            boxes = result.boxes
            if boxes is None or len(boxes) == 0:
                return Detections.empty()
            xyxy = boxes.xyxy.cpu().numpy().astype(np.float32)
            conf = boxes.conf.cpu().numpy().astype(np.float32)
            cls = boxes.cls.cpu().numpy().astype(np.int64)
        label = np.where(cls < len(self._lookup), self._lookup[np.clip(cls, 0, len(self._lookup) - 1)], -1)
        keep = label >= 0
        return Detections(xyxy[keep], conf[keep], label[keep])
