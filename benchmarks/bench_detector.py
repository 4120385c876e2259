"""Detector speed and gating savings, compared within one run (machines are noisy: read the ratios).

1. ms per frame of the default exported backend (OpenVINO) against ultralytics ``.pt`` predict on the same
   weights, at 320 and 640, on the same thermal frame (and ONNX Runtime for reference).
2. CPU seconds per frame of the whole detection chain on a quiet scene, with and without motion/heat gating.

    ./dev bench            # or: .venv/bin/python benchmarks/bench_detector.py [--repeat N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.gating import MotionHeatGate  # noqa: E402
from detectors.offline import prepare_ultralytics  # noqa: E402
from detectors.pipeline import TrackingPipeline  # noqa: E402
from detectors.tracking import Tracker  # noqa: E402
from detectors.yolo import YoloConfig, YoloDetector  # noqa: E402
from edge_agent.paths import default_state_dir  # noqa: E402
from edge_agent.perception import models  # noqa: E402
from sensors.frames import ThermalFrame  # noqa: E402
from sensors.sim import SIM_OFFSET, SIM_SCALE, ThermalScene  # noqa: E402


def frame_of(url: str, index: int) -> ThermalFrame:
    scene = ThermalScene.from_url(url)
    counts, _ = scene.render(index)
    return ThermalFrame("bench", index, index / scene.params.fps, counts, SIM_SCALE, SIM_OFFSET)


def ms_per_frame(model: Path, imgsz: int, gray, repeat: int) -> float:
    det = YoloDetector(YoloConfig(model=model, imgsz=imgsz, threads=2))
    for _ in range(2):
        det.detect(gray)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        det.detect(gray)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def cpu_per_frame(model: Path, imgsz: int, gated: bool, frames: int) -> tuple[float, int]:
    det = YoloDetector(YoloConfig(model=model, imgsz=imgsz, threads=2))
    det.warmup()
    pipe = TrackingPipeline(det, Tracker(), MotionHeatGate() if gated else None)
    scene = ThermalScene.from_url(f"sim://quiet?frames={frames}")
    rendered = []
    for i in range(frames):  # render first: only the detection chain is measured
        counts, _ = scene.render(i)
        rendered.append(ThermalFrame("quiet", i, i / scene.params.fps, counts, SIM_SCALE, SIM_OFFSET))
    c0 = time.process_time()
    for f in rendered:
        pipe.process(f)
    return (time.process_time() - c0) / frames, pipe.counters.detected


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=10, help="timed runs per backend and size")
    ap.add_argument("--quiet-frames", type=int, default=300, help="frames of sim://quiet with gating")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    prepare_ultralytics(default_state_dir() / "ultralytics")
    mdir = default_state_dir() / "models"
    pt = models.weights_path(mdir)
    if not pt.exists():
        print(f"{pt} missing: run ./dev setup", file=sys.stderr)
        return 1
    gray = frame_of("sim://border", 150).gray8()
    out: dict[str, float] = {}
    print(f"detector ms/frame, median of {args.repeat}, 2 threads, one 640x480 thermal frame")
    print(f"{'size':>5} {'openvino':>10} {'onnxrt':>10} {'.pt':>10} {'pt/openvino':>12}")
    for size in models.EXPORT_SIZES:
        ov = ms_per_frame(models.export_path(mdir, "openvino", size), size, gray, args.repeat)
        onnx_path = models.export_path(mdir, "onnx", size)
        ort = ms_per_frame(onnx_path, size, gray, args.repeat) if onnx_path.exists() else float("nan")
        tp = ms_per_frame(pt, size, gray, args.repeat)
        out |= {f"openvino_{size}_ms": ov, f"onnx_{size}_ms": ort, f"pt_{size}_ms": tp, f"speedup_{size}": tp / ov}
        print(f"{size:>5} {ov:>10.1f} {ort:>10.1f} {tp:>10.1f} {tp / ov:>11.2f}x")

    ov640 = models.export_path(mdir, "openvino", 640)
    n_plain = max(20, args.quiet_frames // 10)
    gated, gated_runs = cpu_per_frame(ov640, 640, True, args.quiet_frames)
    plain, _ = cpu_per_frame(ov640, 640, False, n_plain)
    out |= {"cpu_s_per_frame_gated": gated, "cpu_s_per_frame_ungated": plain, "gating_saving": plain / gated}
    print("\nquiet scene, whole chain, CPU seconds per frame (OpenVINO 640, 10 fps scene)")
    print(f"  without gating: {plain:.4f} s ({n_plain} frames, detector on each)")
    print(f"  with gating:    {gated:.4f} s ({args.quiet_frames} frames, detector on {gated_runs})")
    print(f"  gating uses {plain / gated:.1f}x less CPU")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
