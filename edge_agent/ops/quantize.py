"""INT8 for the default model: post-training quantization of its OpenVINO export with NNCF, calibrated on
frames of the synthetic thermal scenes and the real photographs the tests use; then FP32 and INT8 measured on
the running CPU (speed with every core busy, and accuracy: the walkers scene and the photographs) and the faster
made the default when its accuracy holds (``precision.json`` beside the exports; ``detector.precision`` can
still name either).

The detection head (its sigmoid and box decoding) stays in floating point, as ultralytics does for its own
INT8 exports: quantizing the box regression costs localisation accuracy for little speed.

Calibration is cheap first: a few frames per scene and NNCF's fast bias correction (seconds). Only where the
measurement then shows INT8 losing accuracy against FP32 is the model quantized again the thorough way (more
frames, full bias correction: minutes on a slow CPU), and measured again."""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detectors.evaluate import Score, match
from detectors.yolo import YoloConfig, YoloDetector
from edge_agent.perception.models import (
    DEFAULT_MODEL,
    PRECISION_FILE,
    ModelRelease,
    chosen_precision,
    export_path,
    int8_path,
)
from sensors.frames import ThermalFrame
from sensors.sim import SIM_OFFSET, SIM_SCALE, ThermalScene

log = logging.getLogger(__name__)

CALIBRATION_SCENES = ("border", "walkers", "crossing", "intrusion", "animals", "quiet")
CALIBRATION_PER_SCENE = {"fast": 8, "full": 24}  # frames of each scene the calibration sees
ACCURACY_TOLERANCE = 0.01  # INT8 may lose at most 1 point of F1 on the walkers and of recall on the photographs
PHOTO_CONFIDENCE = 0.4  # the FP32 detections on a photograph that INT8 must find too


class QuantizeError(RuntimeError):
    """INT8 quantization cannot be done here (NNCF missing, the FP32 export missing)."""


def cpu_flags() -> str:
    """The vector extensions of this CPU that matter for inference, for reports."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "avx_vnni")
    return " ".join(f for f in wanted if f in flags) or "no avx2"


def scene_frames(name: str, step: int, limit: int | None = None) -> list[tuple[np.ndarray, list[Any]]]:
    """Every ``step``-th frame of a synthetic scene as the detector sees it (8-bit white-hot), with its truth."""
    scene = ThermalScene.from_url(f"sim://{name}")
    out = []
    for i in range(0, scene.frame_count, step):
        counts, truth = scene.render(i)
        out.append((ThermalFrame("sim", i, i / scene.params.fps, counts, SIM_SCALE, SIM_OFFSET).gray8(), truth))
        if limit is not None and len(out) >= limit:
            break
    return out


def photographs() -> dict[str, np.ndarray]:
    """The real photographs with people: ultralytics' bus and zidane, scikit-image's astronaut and camera
    (grey, as a thermal camera's 8-bit frame is)."""
    import importlib.util

    import cv2

    # found, not imported: importing ultralytics outside prepare_ultralytics() would write its settings to ~/.config
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or spec.origin is None:
        raise RuntimeError("ultralytics is not installed: run './dev setup'")
    assets = Path(spec.origin).parent / "assets"
    photos = {name: cv2.imread(str(assets / f"{name}.jpg"), cv2.IMREAD_GRAYSCALE) for name in ("bus", "zidane")}
    try:
        from skimage import data

        photos["astronaut"] = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
        photos["camera"] = data.camera()
    except ImportError:  # scikit-image is a test dependency; the ultralytics photographs are always there
        pass
    return {k: v for k, v in photos.items() if v is not None}


def calibration_frames(per_scene: int = CALIBRATION_PER_SCENE["full"]) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    for name in CALIBRATION_SCENES:
        scene = ThermalScene.from_url(f"sim://{name}")
        step = max(1, scene.frame_count // per_scene)
        frames += [g for g, _truth in scene_frames(name, step, per_scene)]
    return frames + list(photographs().values())


def quantize(fp32_dir: Path, out_dir: Path, frames: list[np.ndarray], fast: bool = False) -> Path:
    """Write the INT8 model of ``fp32_dir`` (an OpenVINO export) to ``out_dir``; ``fast``: NNCF's fast bias
    correction (seconds) instead of the full one (minutes on a slow CPU)."""
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise QuantizeError(f"INT8 needs nncf ({exc}); pip install nncf") from exc
    from detectors.ovnative import to_tensor

    xml = fp32_dir / "best.xml"
    if not xml.exists():
        raise QuantizeError(f"no FP32 OpenVINO export at {fp32_dir}; run 'edge-agent model export' first")
    core = ov.Core()
    model = core.read_model(str(xml))
    size = int(model.inputs[0].partial_shape[2].get_length())
    ops = model.get_ordered_ops()
    sigmoids = [op.get_friendly_name() for op in ops if op.get_type_name() == "Sigmoid"]
    head = sigmoids[-1].split("/", 1)[0] if sigmoids else None
    ignored = nncf.IgnoredScope(names=[
        op.get_friendly_name() for op in ops
        if op.get_type_name() == "Sigmoid" or (head and op.get_friendly_name().startswith((f"{head}/", f"{head}.dfl")))
    ])
    dataset = nncf.Dataset(frames, lambda g: to_tensor(g, size)[0])
    quantized = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.MIXED, subset_size=len(frames),
                              ignored_scope=ignored, fast_bias_correction=fast)
    with tempfile.TemporaryDirectory(prefix="edge-agent-int8-", dir=out_dir.parent) as tmp:
        work = Path(tmp) / out_dir.name
        work.mkdir()
        ov.save_model(quantized, str(work / "best.xml"))
        shutil.copyfile(fp32_dir / "metadata.yaml", work / "metadata.yaml")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.move(str(work), out_dir)
    return out_dir


# -- measuring ------------------------------------------------------------------------------------------------


def throughput_ms(detector: YoloDetector, frames: list[np.ndarray], seconds: float = 4.0) -> float:
    """Milliseconds per frame with ``parallel`` threads detecting at once (the box's whole CPU)."""
    detector.load()
    for g in frames[:4]:
        detector.detect(g)
    done = [0] * detector.config.parallel
    stop = time.monotonic() + seconds

    def work(k: int) -> None:
        i = k
        while time.monotonic() < stop:
            detector.detect(frames[i % len(frames)])
            done[k] += 1
            i += detector.config.parallel

    t0 = time.monotonic()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(detector.config.parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (time.monotonic() - t0) * 1000.0 / max(1, sum(done))


def walkers_f1(detector: YoloDetector, frames: list[tuple[np.ndarray, list[Any]]]) -> float:
    """Detection F1 (IoU 0.5) on the walkers scene: people at least half visible; boxes on hidden ones ignored."""
    score = Score()
    for gray, truth in frames:
        dets = detector.detect(gray)
        people = np.array([t.bbox for t in truth if t.label == "person" and t.visible >= 0.5]).reshape(-1, 4)
        hidden = np.array([t.bbox for t in truth if t.label == "person" and t.visible < 0.5]).reshape(-1, 4)
        score.add(people, dets.xyxy[dets.label_id == 0], ignore=hidden)
    p, r = score.precision, score.recall
    return 2 * p * r / (p + r) if p + r else 0.0


def photo_recall(reference: YoloDetector, candidate: YoloDetector, photos: dict[str, np.ndarray]
                 ) -> tuple[float, dict[str, tuple[int, int]]]:
    """Of the people ``reference`` finds (confidence >= PHOTO_CONFIDENCE) in the photographs, the share
    ``candidate`` finds too (IoU 0.5); per photograph (found, of)."""
    found = total = 0
    per: dict[str, tuple[int, int]] = {}
    for name, img in photos.items():
        ref = reference.detect(img)
        want = ref.xyxy[ref.confidence >= PHOTO_CONFIDENCE]
        got = candidate.detect(img).xyxy
        n = len(match(want, got, 0.5))
        per[name] = (n, len(want))
        found, total = found + n, total + len(want)
    return (found / total if total else 1.0), per


@dataclass(frozen=True, slots=True)
class PrecisionChoice:
    imgsz: int
    default: str  # fp32 | int8
    fp32_ms: float
    int8_ms: float
    fp32_walkers_f1: float
    int8_walkers_f1: float
    int8_photo_recall: float
    photos: dict[str, tuple[int, int]]
    cpu: str
    measured: str
    why: str
    calibration: str = "full"  # fast | full: how the INT8 model measured here was calibrated

    @property
    def accuracy_holds(self) -> bool:
        return (self.int8_walkers_f1 >= self.fp32_walkers_f1 - ACCURACY_TOLERANCE
                and self.int8_photo_recall >= 1.0 - ACCURACY_TOLERANCE)


def choose(models_dir: Path, imgsz: int, release: ModelRelease = DEFAULT_MODEL, seconds: float = 4.0,
           record: bool = True, calibration: str = "full") -> PrecisionChoice:
    """Measure FP32 and INT8 at ``imgsz`` here and (``record``) write the default into ``precision.json``."""
    base = YoloConfig(imgsz=imgsz, runtime="openvino", parallel=max(1, min(4, os.cpu_count() or 2)))
    fp32 = YoloDetector(base.model_copy(update={"model": export_path(models_dir, "openvino", imgsz, release)}))
    int8 = YoloDetector(base.model_copy(update={"model": int8_path(models_dir, imgsz, release)}))
    walkers = scene_frames("walkers", 3)
    photos = photographs()
    speed_frames = [g for g, _t in walkers[:16]]
    f_ms, i_ms = throughput_ms(fp32, speed_frames, seconds), throughput_ms(int8, speed_frames, seconds)
    f_f1, i_f1 = walkers_f1(fp32, walkers), walkers_f1(int8, walkers)
    recall, per = photo_recall(fp32, int8, photos)
    holds = i_f1 >= f_f1 - ACCURACY_TOLERANCE and recall >= 1.0 - ACCURACY_TOLERANCE
    if not holds:
        default, why = "fp32", (f"INT8 loses accuracy here (walkers F1 {i_f1:.3f} vs {f_f1:.3f}, photographs' "
                                f"recall {recall:.3f})")
    elif i_ms < f_ms:
        default, why = "int8", f"INT8 is {f_ms / i_ms:.2f}x faster here with the same accuracy"
    else:
        default, why = "fp32", f"INT8 is not faster on this CPU ({i_ms:.1f} vs {f_ms:.1f} ms)"
    choice = PrecisionChoice(imgsz, default, round(f_ms, 2), round(i_ms, 2), round(f_f1, 4), round(i_f1, 4),
                             round(recall, 4), per, cpu_flags(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             why, calibration)
    if not record:
        return choice
    path = export_path(models_dir, "openvino", imgsz, release).parent / PRECISION_FILE
    table = json.loads(path.read_text()) if path.exists() else {}
    table[str(imgsz)] = asdict(choice)
    path.write_text(json.dumps(table, indent=1))
    return choice


def export_int8(models_dir: Path, imgsz: int, release: ModelRelease = DEFAULT_MODEL, force: bool = False,
                calibration: str = "full") -> Path:
    dest = int8_path(models_dir, imgsz, release)
    if dest.exists() and not force:
        return dest
    frames = calibration_frames(CALIBRATION_PER_SCENE[calibration])
    log.info("quantizing the %d model to INT8 (NNCF, %d calibration frames, %s bias correction)", imgsz,
             len(frames), calibration)
    return quantize(export_path(models_dir, "openvino", imgsz, release), dest, frames, fast=calibration == "fast")


def provision_int8(models_dir: Path, imgsz: int, release: ModelRelease = DEFAULT_MODEL, force: bool = False,
                   say: Callable[[str], None] = log.info) -> PrecisionChoice | None:
    """The INT8 model at ``imgsz``, calibrated the fast way, measured against FP32 here, and calibrated again the
    thorough way only where the fast one lost accuracy; the default precision recorded. None when both the model
    and its measurement were already there."""
    dest = int8_path(models_dir, imgsz, release)
    if dest.exists() and not force and chosen_precision(models_dir, imgsz, release) is not None:
        return None
    t0 = time.monotonic()
    export_int8(models_dir, imgsz, release, force=True, calibration="fast")
    say(f"int8 {imgsz}: quantized with fast calibration in {time.monotonic() - t0:.0f} s: {dest}")
    choice = choose(models_dir, imgsz, release, calibration="fast")
    if not choice.accuracy_holds:
        say(f"int8 {imgsz}: fast calibration lost accuracy ({choice.why}); calibrating again with full bias "
            "correction")
        t0 = time.monotonic()
        export_int8(models_dir, imgsz, release, force=True, calibration="full")
        say(f"int8 {imgsz}: quantized with full calibration in {time.monotonic() - t0:.0f} s")
        choice = choose(models_dir, imgsz, release, calibration="full")
    return choice
