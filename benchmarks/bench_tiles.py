"""What full-resolution tiles buy for small far targets, and what they cost: the default person model on the
scenario suite (and the named scenes sim://border and sim://walkers), with ``detector.tiles`` off and on.

Two cases, each a frame twice the network's input: the 320 model on 640x480 frames and the 640 model on
1280x960 frames (the scenes rendered at that size through the URL's width/height: same lens, same ground, twice
the pixels on target). Every ``--step``-th frame of each scene goes through the plain detector and through
``TiledDetector`` (detectors/tiles.py) on the same 8-bit frame. Boxes are scored as the agent tracks them,
tightened to the warm silhouette (detectors/refine.py, ``detector.refine_boxes`` on by default; not in the ms),
and as the detector drew them ("raw" lines). Scored per ground range band (distance of a
person's feet from the mast, ``hypot(x, y)`` of its ``ground_xy``): recall of people at least half visible (IoU
0.5, one box per person); precision, with a false box placed in a band by the ground under its bottom centre;
boxes on people less than half visible count neither way. "Duplicates" are unmatched boxes lying mostly (half of
their area or more) on a person another box already found: a merge that let one person through twice. Detector
ms per frame are single-threaded (one OpenVINO thread, one stream); frames per second are over a sample of the
frames, by that detector in one thread and by two Python threads sharing one detector set up as the agent's
default on a 2-core box (``threads: 2``, ``parallel: 2``).

    .venv/bin/python benchmarks/bench_tiles.py [--step 10] [--precision fp32|int8] [--case 320 640]
        [--only 'people-*'] [--throughput-frames 24] [--json out.json]

Person truth: ``label == "person"`` and ``visible >= 0.5`` (the scorer of detectors/evaluate.py). Takes about
half an hour at ``--step 10`` on a 2-core machine; ms are only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_broker_crash import cpu_line  # noqa: E402
from detectors.base import Detector  # noqa: E402
from detectors.evaluate import match  # noqa: E402
from detectors.offline import prepare_ultralytics  # noqa: E402
from detectors.refine import refine_boxes  # noqa: E402
from detectors.tiles import TiledDetector  # noqa: E402
from detectors.types import LABELS, Detections, box_iou  # noqa: E402
from detectors.yolo import YoloConfig, YoloDetector  # noqa: E402
from edge_agent.paths import default_state_dir  # noqa: E402
from edge_agent.perception import models  # noqa: E402
from sensors.frames import ThermalFrame  # noqa: E402
from sensors.sim import SIM_OFFSET, SIM_SCALE, CameraModel, ThermalScene, TruthObject  # noqa: E402

SUITE = ROOT / "benchmarks" / "scenarios"
NAMED = ("sim://border", "sim://walkers")
CASES = {320: (640, 480), 640: (1280, 960)}  # network input -> frame size, twice the input
BANDS = ((0.0, 30.0), (30.0, 60.0), (60.0, 100.0), (100.0, 200.0))
MIN_VISIBLE = 0.5
IOU = 0.5
PERSON = LABELS.index("person")
MODES = ("off", "on")
RAW = {mode: f"{mode} raw" for mode in MODES}  # the same passes scored on the detector's own boxes
LOADS: dict[int, list[float]] = {}  # 1-minute load average after each scene, per case: the host is shared


@dataclass(slots=True)
class BandCount:
    truth: int = 0
    tp: int = 0
    fp: int = 0

    @property
    def recall(self) -> float | None:
        return self.tp / self.truth if self.truth else None

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None


@dataclass(slots=True)
class Tally:
    """One mode (tiles off or on) of one case over all scored frames."""

    bands: dict[str, BandCount] = field(default_factory=lambda: {band_name(b): BandCount() for b in BANDS})
    total: BandCount = field(default_factory=BandCount)
    ms: list[float] = field(default_factory=list)
    duplicates: int = 0
    fps_1: float | None = None
    fps_2: float | None = None

    def farthest(self, min_recall: float = 0.5) -> str:
        """The farthest band whose recall is at least ``min_recall`` ("-" where none is)."""
        ok = [name for name, c in self.bands.items() if c.recall is not None and c.recall >= min_recall]
        return ok[-1] if ok else "-"


def band_name(band: tuple[float, float]) -> str:
    return f"{band[0]:.0f}-{band[1]:.0f} m"


def band_of(distance_m: float) -> str | None:
    for band in BANDS:
        if band[0] <= distance_m < band[1]:
            return band_name(band)
    return None  # beyond the last band or above the horizon: counted in the total only


def scene_urls(only: str) -> list[str]:
    files = sorted(p for p in SUITE.glob(f"{only}.yaml") if not p.name.endswith("site.yaml"))
    named = [u for u in NAMED if Path(u.removeprefix("sim://")).match(only)]
    return [f"sim://{p}" for p in files] + named


def scene_at(url: str, width: int, height: int) -> ThermalScene:
    return ThermalScene.from_url(f"{url}?width={width}&height={height}")


def gray_of(scene: ThermalScene, index: int) -> tuple[np.ndarray, list[TruthObject]]:
    counts, truths = scene.render(index)
    frame = ThermalFrame("bench", index, index / scene.params.fps, counts, SIM_SCALE, SIM_OFFSET)
    return frame.gray8(), truths


def score(tally: Tally, truths: list[TruthObject], found: Detections, camera: CameraModel) -> None:
    """One frame into ``tally``: true positives and misses by the person's band, false boxes by their feet."""
    people = [t for t in truths if t.label == "person"]
    seen = [t for t in people if t.visible >= MIN_VISIBLE]
    hidden = np.array([t.bbox for t in people if t.visible < MIN_VISIBLE], dtype=np.float64).reshape(-1, 4)
    boxes = found.xyxy[found.label_id == PERSON].astype(np.float64)
    truth_xyxy = np.array([t.bbox for t in seen], dtype=np.float64).reshape(-1, 4)
    pairs = match(truth_xyxy, boxes, IOU)
    hit = {i for i, _ in pairs}
    for i, t in enumerate(seen):
        band = band_of(math.hypot(*t.ground_xy))
        for count in [tally.total] + ([tally.bands[band]] if band else []):
            count.truth += 1
            count.tp += i in hit
    unmatched = np.setdiff1d(np.arange(len(boxes)), [j for _, j in pairs])
    if len(unmatched) and len(hidden):
        unmatched = unmatched[box_iou(boxes[unmatched], hidden).max(axis=1) < IOU]
    if not len(unmatched):
        return
    found_truth = truth_xyxy[sorted(hit)]
    tally.duplicates += int(mostly_on(boxes[unmatched], found_truth).sum())
    u, v = (boxes[unmatched, 0] + boxes[unmatched, 2]) / 2.0, boxes[unmatched, 3]
    gx, gy = camera.ground_at(u, v)
    for x, y in zip(gx.tolist(), gy.tolist(), strict=True):
        band = band_of(math.hypot(x, y)) if math.isfinite(y) and y > 0 else None
        if band is not None:
            tally.bands[band].fp += 1
        tally.total.fp += 1


def mostly_on(boxes: np.ndarray, people: np.ndarray, share: float = 0.5) -> np.ndarray:
    """For each box, whether at least ``share`` of its area lies on one of ``people`` (xyxy)."""
    if not len(boxes) or not len(people):
        return np.zeros(len(boxes), dtype=bool)
    x1 = np.maximum(boxes[:, None, 0], people[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], people[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], people[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], people[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
    return np.asarray((inter / area[:, None] >= share).any(axis=1), dtype=bool)


def timed(detector: Detector, gray: np.ndarray) -> tuple[Detections, float]:
    t0 = time.perf_counter()
    found = detector.detect(gray)
    return found, (time.perf_counter() - t0) * 1000.0


def frames_per_s(detector: Detector, frames: list[np.ndarray], threads: int) -> float:
    """Frames per second of ``threads`` Python threads taking frames from one list through one detector."""
    lock, todo = threading.Lock(), list(range(len(frames)))

    def work() -> None:
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            detector.detect(frames[i])

    workers = [threading.Thread(target=work, name=f"bench-tiles-{k}") for k in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(frames) / (time.perf_counter() - t0)


def keep_for_throughput(kept: list[np.ndarray], gray: np.ndarray, seen: int, size: int,
                        rng: np.random.Generator) -> None:
    """Reservoir sampling: ``kept`` stays a uniform sample of ``size`` of the ``seen`` frames so far."""
    if len(kept) < size:
        kept.append(gray)
        return
    slot = int(rng.integers(0, seen))
    if slot < size:
        kept[slot] = gray


def model_path(imgsz: int, precision: str) -> Path:
    mdir = default_state_dir() / "models"
    path = models.int8_path(mdir, imgsz) if precision == "int8" else models.export_path(mdir, "openvino", imgsz)
    if not path.exists():
        raise SystemExit(f"{path} is missing: run ./dev setup (fetches and exports the default model)")
    return path


def detectors_for(path: Path, imgsz: int, threads: int, parallel: int) -> dict[str, Detector]:
    """Tiles off (the plain detector) and on (it wrapped the way build_detector wraps it), one model."""
    plain = YoloDetector(YoloConfig(model=path, imgsz=imgsz, threads=threads, parallel=parallel))
    plain.load()
    plain.warmup()
    return {"off": plain, "on": TiledDetector(plain, imgsz, plain.config.iou)}


def run_case(imgsz: int, precision: str, urls: list[str], step: int, sample: int,
             progress: bool = True) -> tuple[dict[str, Tally], int, int]:
    """Every ``step``-th frame of each scene through both modes; returns the tallies, frames and scenes."""
    width, height = CASES[imgsz]
    path = model_path(imgsz, precision)
    dets = detectors_for(path, imgsz, threads=1, parallel=1)
    tallies = {key: Tally() for key in (*MODES, *RAW.values())}
    kept: list[np.ndarray] = []
    frames, rng = 0, np.random.default_rng(0)
    loads = LOADS.setdefault(imgsz, [])
    for url in urls:
        scene = scene_at(url, width, height)
        began, indices = time.monotonic(), range(0, scene.frame_count, step)
        for index in indices:
            gray, truths = gray_of(scene, index)
            for mode in MODES:  # the same frame through both, one after the other: a busy host hits both alike
                found, ms = timed(dets[mode], gray)
                tallies[mode].ms.append(ms)
                score(tallies[mode], truths, refine_boxes(gray, found), scene.camera)
                score(tallies[RAW[mode]], truths, found, scene.camera)
            frames += 1
            keep_for_throughput(kept, gray, frames, sample, rng)
        loads.append(os.getloadavg()[0])
        if progress:
            print(f"  {imgsz}: {Path(url).name} {len(indices)} frames, "
                  f"{time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    for mode, det in dets.items():
        tallies[mode].fps_1 = frames_per_s(det, kept, 1)
    two = detectors_for(path, imgsz, threads=2, parallel=2)  # the agent's default on a 2-core box
    for mode, det in two.items():
        tallies[mode].fps_2 = frames_per_s(det, kept, 2)
    return tallies, frames, len(urls)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def band_rows(off: Tally, on: Tally) -> list[str]:
    rows = []
    for name, a, b in [*((n, off.bands[n], on.bands[n]) for n in off.bands), ("all", off.total, on.total)]:
        rows.append(f"  {name:<12} {a.truth:>6} {fmt(a.recall):>10} {fmt(b.recall):>6} {fmt(a.precision):>13} "
                    f"{fmt(b.precision):>6} {a.fp:>9} {b.fp:>5}")
    return rows


def table(imgsz: int, precision: str, tallies: dict[str, Tally], frames: int, scenes: int, step: int) -> str:
    w, h = CASES[imgsz]
    off, on = tallies["off"], tallies["on"]
    raw_off, raw_on = tallies[RAW["off"]], tallies[RAW["on"]]
    loads = LOADS.get(imgsz) or [float("nan")]
    head = (f"  {'range':<12} {'people':>6} {'recall off':>10} {'on':>6} {'precision off':>13} {'on':>6} "
            f"{'false off':>9} {'on':>5}")
    ms_off, ms_on = statistics.median(off.ms), statistics.median(on.ms)
    return "\n".join([
        f"imgsz {imgsz} {precision}, {w}x{h} frames, one frame in {step} of {scenes} scenes ({frames} frames), "
        f"tiles off -> on; load average {min(loads):.1f}-{max(loads):.1f}",
        "  boxes refined to the warm silhouette (as the agent tracks them):", head, *band_rows(off, on),
        "  boxes as the detector drew them (raw):", head, *band_rows(raw_off, raw_on),
        f"  farthest band with recall >= 0.5:       {off.farthest():>10} -> {on.farthest()} "
        f"(raw {raw_off.farthest()} -> {raw_on.farthest()})",
        f"  duplicates (unmatched, on a found one): {off.duplicates:>10} -> {on.duplicates} "
        f"(raw {raw_off.duplicates} -> {raw_on.duplicates})",
        f"  detector ms/frame, 1 thread, median:    {ms_off:>10.1f} -> {ms_on:.1f} ({ms_on / ms_off:.1f}x)",
        f"  detector ms/frame, 1 thread, p90:       {pct(off.ms, 90):>10.1f} -> {pct(on.ms, 90):.1f}",
        f"  frames/s, 1 thread / 2 threads:         {fmt(off.fps_1, '.1f'):>4} / {fmt(off.fps_2, '.1f'):<4} -> "
        f"{fmt(on.fps_1, '.1f')} / {fmt(on.fps_2, '.1f')}",
    ])


def tally_json(t: Tally) -> dict[str, object]:
    out: dict[str, object] = {
        "bands": {k: {**asdict(c), "recall": c.recall, "precision": c.precision} for k, c in t.bands.items()},
        "total": {**asdict(t.total), "recall": t.total.recall, "precision": t.total.precision},
        "farthest": t.farthest(), "duplicates": t.duplicates,
    }
    if t.ms:
        out |= {"ms_median": statistics.median(t.ms), "ms_p90": pct(t.ms, 90), "fps_1_thread": t.fps_1,
                "fps_2_threads": t.fps_2}
    return out


def report_json(results: dict[int, tuple[dict[str, Tally], int, int]]) -> dict[str, object]:
    return {str(imgsz): {"frames": frames, "scenes": scenes, "load_avg": LOADS.get(imgsz),
                         **{key: tally_json(t) for key, t in tallies.items()}}
            for imgsz, (tallies, frames, scenes) in results.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--step", type=int, default=10, help="score every Nth frame of each scene (default 10)")
    ap.add_argument("--precision", choices=("fp32", "int8"), default="fp32", help="which OpenVINO export")
    ap.add_argument("--case", type=int, nargs="+", choices=sorted(CASES), default=sorted(CASES),
                    help="network sizes to run (320: 640x480 frames, 640: 1280x960 frames)")
    ap.add_argument("--only", default="*", help="glob of scene names (suite file stems, border, walkers)")
    ap.add_argument("--throughput-frames", type=int, default=24, help="frames in the 1- and 2-thread throughput")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if args.step < 1:
        ap.error(f"--step must be at least 1, got {args.step}")
    prepare_ultralytics(default_state_dir() / "ultralytics")
    urls = scene_urls(args.only)
    if not urls:
        print(f"no scene matches {args.only!r} in {SUITE} or {', '.join(NAMED)}", file=sys.stderr)
        return 2
    began = time.monotonic()
    results = {imgsz: run_case(imgsz, args.precision, urls, args.step, args.throughput_frames)
               for imgsz in args.case}
    print(cpu_line())
    print(f"{time.monotonic() - began:.0f} s; person truth: visible >= {MIN_VISIBLE}, IoU {IOU}; ms single-threaded, "
          f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for imgsz, (tallies, frames, scenes) in results.items():
        print()
        print(table(imgsz, args.precision, tallies, frames, scenes, args.step))
    if args.json:
        args.json.write_text(json.dumps(report_json(results), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
