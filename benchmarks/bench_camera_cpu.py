"""CPU per camera: what one camera's frames cost the box's perception (heat proposals, crops and the model, the
tracker), quiet and busy, looking where the heat is against the whole frame behind the gate (the box before).

Each scene's frames are rendered first, so the simulator's own cost is not counted; then the same frames go
through each path's pipeline, and the process's CPU time over it (all threads: OpenVINO's too) is divided by the
frames. Prints CPU milliseconds a frame and the share of one core a camera takes at 5 and at 10 frames a second.
One run; prints the CPU it ran on.

    .venv/bin/python benchmarks/bench_camera_cpu.py [--frames 150]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("EDGE_AGENT_HOME", str(ROOT / ".state"))

from benchmarks.bench_broker_crash import cpu_line  # noqa: E402
from edge_agent.config.agent import AgentConfig, load_config  # noqa: E402
from edge_agent.perception.build import build_detector, build_pipeline  # noqa: E402
from edge_agent.perception.geometry import CameraGeometry  # noqa: E402
from sensors.captures import to_frame  # noqa: E402
from sensors.frames import ThermalFrame  # noqa: E402
from sensors.sim import ThermalScene  # noqa: E402

SUITE = ROOT / "benchmarks" / "scenarios"
# (what it is, site, scene): quiet cameras first
SCENES = [
    ("quiet, clean", "demo", "sim://quiet"),
    ("quiet, realistic (noise, drift, gain control, H.264)", "far", "sim://quiet?realistic=1"),
    ("hot rocks, nothing moves (realistic)", "far", f"sim://{SUITE / 'far-clutter-hot-rocks.yaml'}"),
    ("vegetation in the wind (realistic)", "far", f"sim://{SUITE / 'far-clutter-vegetation-wind.yaml'}"),
    ("one far walker, 200 m (realistic)", "far", f"sim://{SUITE / 'far-people-200m.yaml'}"),
    ("busy: the demo's border strip", "demo", "sim://border"),
    ("busy: three walkers, 15-30 m", "demo", "sim://walkers"),
]
SITES = {"demo": ROOT / "configs" / "demo.yaml", "far": SUITE / "far-site.yaml"}


def frames_of(config: AgentConfig, url: str, n: int) -> list[ThermalFrame]:
    scene = ThermalScene.from_url(url)
    spec = config.cameras[0].spec(pace="every")
    return [to_frame(spec, i, i / scene.params.fps, scene.render(i)[0]) for i in range(min(n, scene.frame_count))]


def cpu_ms_per_frame(config: AgentConfig, detector: object, frames: list[ThermalFrame], heat: bool) -> float:
    config = config.model_copy(update={"heat": config.heat.model_copy(update={"enabled": heat})})
    pipeline = build_pipeline(config, detector, CameraGeometry.of(config.cameras[0]))  # type: ignore[arg-type]
    c0 = time.process_time()
    for frame in frames:
        pipeline.process(frame)
    return (time.process_time() - c0) * 1000.0 / len(frames)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=150)
    args = ap.parse_args()
    configs = {k: load_config(v) for k, v in SITES.items()}
    detector = build_detector(configs["far"])
    detector.load()
    detector.warmup()
    print(cpu_line())
    print(f"{'camera':<54} {'whole frame':>12} {'heat first':>11} {'ratio':>6}   % of a core at 5 / 10 fps, heat first")
    for what, site, url in SCENES:
        frames = frames_of(configs[site], url, args.frames)
        whole = cpu_ms_per_frame(configs[site], detector, frames, heat=False)
        heat = cpu_ms_per_frame(configs[site], detector, frames, heat=True)
        print(f"{what:<54} {whole:>9.1f} ms {heat:>8.1f} ms {whole / heat:>5.1f}x   {heat * 5 / 10:>5.1f} % / "
              f"{heat * 10 / 10:>5.1f} %", flush=True)
    print(f"(CPU milliseconds a frame, all threads, {args.frames} frames each, frames rendered beforehand)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
