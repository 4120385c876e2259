"""Point-in-zone throughput: the vectorised test the rules use (prepared geometry + shapely.contains_xy)
against a per-point Python loop over the same points and zones, in one run.

    .venv/bin/python benchmarks/bench_zones.py [--points N] [--zones K]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from shapely.geometry import Point, Polygon

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geofences.zones import ZoneIndex


def zones(k: int, rng: np.random.Generator) -> list[Polygon]:
    """K irregular 12-gons scattered over a 640x480 view."""
    out = []
    for _ in range(k):
        cx, cy, r = rng.uniform(80, 560), rng.uniform(80, 400), rng.uniform(30, 90)
        ang = np.sort(rng.uniform(0, 2 * np.pi, 12))
        rad = r * rng.uniform(0.6, 1.0, 12)
        out.append(Polygon(np.c_[cx + rad * np.cos(ang), cy + rad * np.sin(ang)]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--loop-points", type=int, default=20_000, help="points for the (slow) per-point loop")
    ap.add_argument("--zones", type=int, default=8)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    polys = zones(args.zones, rng)
    index = ZoneIndex()
    for i, p in enumerate(polys):
        index.add(f"z{i}", p)
    x, y = rng.uniform(0, 640, args.points), rng.uniform(0, 480, args.points)

    t0 = time.perf_counter()
    fast = index.contains(x, y)
    fast_s = time.perf_counter() - t0

    n = args.loop_points
    t0 = time.perf_counter()
    slow = np.array([[p.contains(Point(px, py)) for p in polys] for px, py in zip(x[:n], y[:n], strict=True)])
    slow_s = time.perf_counter() - t0
    assert np.array_equal(slow, fast[:n]), "the two methods disagree"

    fast_rate = args.points / fast_s
    slow_rate = n / slow_s
    print(f"point-in-zone, {args.zones} zones of 12 vertices, points tested against every zone")
    print(f"  vectorised (prepared, contains_xy): {fast_rate:>12,.0f} points/s ({args.points:,} points)")
    print(f"  per-point Python loop:              {slow_rate:>12,.0f} points/s ({n:,} points)")
    print(f"  ratio: {fast_rate / slow_rate:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
