"""FP32 against INT8 for the default model on this CPU, as ``edge-agent model export`` decides between them:
milliseconds per frame with every core busy (``parallel`` threads through the OpenVINO runtime), detection F1
on the walkers scene (people at least half visible, IoU 0.5), and the share of the people FP32 finds in the
real photographs (bus, zidane, astronaut, camera) that INT8 finds too. Needs ``model export`` to have made the
INT8 models; records nothing (``model export`` does).

    .venv/bin/python benchmarks/bench_int8.py [--sizes 320 640] [--seconds 8]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("EDGE_AGENT_HOME", str(ROOT / ".state"))

from edge_agent.ops.quantize import choose, cpu_flags  # noqa: E402
from edge_agent.paths import default_state_dir  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    print(f"CPU: {os.cpu_count()} cores, {cpu_flags()}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'size':>4} {'FP32 ms':>8} {'INT8 ms':>8} {'speed-up':>8} {'F1 FP32':>8} {'F1 INT8':>8} "
          f"{'photos':>7}  default")
    for size in args.sizes:
        c = choose(default_state_dir() / "models", size, seconds=args.seconds, record=False)
        print(f"{size:>4} {c.fp32_ms:>8.1f} {c.int8_ms:>8.1f} {c.fp32_ms / c.int8_ms:>7.2f}x {c.fp32_walkers_f1:>8.3f} "
              f"{c.int8_walkers_f1:>8.3f} {c.int8_photo_recall:>7.3f}  {c.default}: {c.why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
