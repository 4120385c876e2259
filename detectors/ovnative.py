"""A YOLO model exported to OpenVINO, run by the OpenVINO runtime directly: letterbox, inference, box decoding
and non-maximum suppression here, without ultralytics or torch in the loop (a fraction of their per-frame
overhead, and no torch in memory).

Thread-safe: each calling thread gets its own infer request, so several cameras' frames run in parallel (the
model is compiled for ``parallel`` streams, each with its share of the threads); OpenVINO releases the GIL while
it infers. A frame that arrives while no other is being inferred runs instead on a second compilation made for
latency (one stream with all ``threads``): with one camera, or between bursts, a lone frame would otherwise use
one stream's share of the cores (on a 2-core AVX2 host, 640 INT8: 266 ms alone on a stream, 126 ms on both
cores; two frames at once: 146 / 134 ms each).

The same pre- and post-processing as ultralytics (letterbox with grey 114 padding, centre placed; class-aware
NMS; boxes scaled back and clipped), so both find the same boxes."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from detectors.base import DetectorUnavailable

PAD_VALUE = 114
MAX_DET = 300
MAX_WH = 7680.0  # class offset for class-aware NMS in one call, as ultralytics does


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a frame was placed in the network input: scale and padding."""

    gain: float
    pad_x: float
    pad_y: float


def letterbox(img: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Scale ``img`` (H x W x 3 uint8) to fit ``size`` x ``size`` keeping its aspect, centred on grey 114."""
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    dw, dh = (size - nw) / 2.0, (size - nh) / 2.0
    if (w, h) != (nw, nh):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    out = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return out, Letterbox(r, left, top)


def to_tensor(gray8: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """A grey frame as the network's 1 x 3 x size x size float input in [0, 1] (grey repeated as RGB)."""
    boxed, lb = letterbox(gray8, size)
    if boxed.ndim == 2:
        boxed = boxed[:, :, None]
    chw = np.ascontiguousarray(np.broadcast_to(boxed.transpose(2, 0, 1), (3, size, size)), dtype=np.float32)
    chw *= 1.0 / 255.0
    return chw[None], lb


def decode(raw: np.ndarray, lb: Letterbox, frame_wh: tuple[int, int], conf: float, iou: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YOLO (v8 and later) output ``1 x (4 + classes) x anchors`` to boxes (xyxy in frame pixels), confidences and
    class indices: the best class per anchor, above ``conf``, class-aware NMS at ``iou``, at most ``MAX_DET``."""
    pred = raw[0]
    scores = pred[4:]
    cls = scores.argmax(axis=0)
    best = scores[cls, np.arange(scores.shape[1])]
    keep = best > conf
    if not keep.any():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    cx, cy, bw, bh = pred[0, keep], pred[1, keep], pred[2, keep], pred[3, keep]
    best, cls = best[keep], cls[keep]
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    offset = cls[:, None].astype(np.float32) * MAX_WH
    shifted = xyxy + offset
    rects = np.concatenate([shifted[:, :2], shifted[:, 2:] - shifted[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxes(rects.tolist(), best.tolist(), float(conf), float(iou), top_k=MAX_DET)
    idx = np.asarray(kept, dtype=np.int64).reshape(-1)[:MAX_DET]
    xyxy, best, cls = xyxy[idx], best[idx], cls[idx]
    xyxy[:, [0, 2]] -= lb.pad_x
    xyxy[:, [1, 3]] -= lb.pad_y
    xyxy /= lb.gain
    w, h = frame_wh
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
    return xyxy.astype(np.float32), best.astype(np.float32), cls.astype(np.int64)


class OpenVinoYolo:
    """An exported YOLO OpenVINO folder (``best.xml``, ``metadata.yaml``), compiled once for CPU."""

    def __init__(self, folder: Path, threads: int = 2, parallel: int = 2, precision: str | None = None,
                 lone_latency: bool = True) -> None:
        xml = next(iter(sorted(folder.glob("*.xml"))), None)
        if xml is None:
            raise DetectorUnavailable(f"model folder {folder} has no OpenVINO .xml file; export it again")
        meta_path = folder / "metadata.yaml"
        meta: dict[str, Any] = yaml.safe_load(meta_path.read_text()) if meta_path.exists() else {}
        self.names: dict[int, str] = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
        import openvino as ov

        core = ov.Core()
        try:
            model = core.read_model(str(xml))
        except RuntimeError as exc:
            raise DetectorUnavailable(f"model {xml} cannot be read: {exc}") from exc
        shape = model.inputs[0].partial_shape
        if shape.is_dynamic or len(shape) != 4:
            raise DetectorUnavailable(f"model {xml}: expected a static 1x3xSxS input, got {shape}")
        self.size = int(shape[2].get_length())
        if not self.names:
            nc = int(model.outputs[0].partial_shape[1].get_length()) - 4
            self.names = {i: str(i) for i in range(nc)}
        props: dict[str, Any] = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": max(1, parallel),
                                 "INFERENCE_NUM_THREADS": max(1, threads)}
        if precision:
            props["INFERENCE_PRECISION_HINT"] = precision
        self.compiled = core.compile_model(model, "CPU", props)
        self.latency_compiled: Any = None
        if lone_latency and parallel > 1 and threads > 1:
            lat = {**props, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
            self.latency_compiled = core.compile_model(model, "CPU", lat)
        self.parallel = max(1, parallel)
        self._local = threading.local()
        self._count_lock = threading.Lock()
        self._inflight = 0
        self.lone = 0  # frames that ran alone on the latency compilation
        self.shared = 0  # frames that ran beside others on a throughput stream

    def _request(self, alone: bool) -> Any:
        key = "lone" if alone else "shared"
        req = getattr(self._local, key, None)
        if req is None:
            compiled = self.latency_compiled if alone else self.compiled
            req = compiled.create_infer_request()
            setattr(self._local, key, req)
        return req

    def predict(self, gray8: np.ndarray, conf: float, iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, confidences and model class indices for one 8-bit frame (grey, or BGR)."""
        x, lb = to_tensor(gray8, self.size)
        with self._count_lock:
            alone = self.latency_compiled is not None and self._inflight == 0
            self._inflight += 1
            if alone:
                self.lone += 1
            else:
                self.shared += 1
        try:
            req = self._request(alone)
            req.infer({0: x})
            raw = req.get_output_tensor(0).data
        finally:
            with self._count_lock:
                self._inflight -= 1
        h, w = gray8.shape[:2]
        return decode(raw, lb, (w, h), conf, iou)
