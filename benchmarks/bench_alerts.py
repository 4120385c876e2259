"""The scenario suite through the real chain (detector, tracker, classifier, rules, fusion), scored against each
scene's truth by `edge-agent rehearse`: Pd per range band, nuisance alerts per hour, time to alert, class
confusion, and the issue's goals (Pd >= 0.99 for people within 60 m, no nuisance alert on the animal-only and
vehicle-only scenarios, median time to alert <= 1.5 s). One run; prints the CPU it ran on.

    .venv/bin/python benchmarks/bench_alerts.py [--imgsz 640] [--only 'people-*'] [--json out.json]

Scenario files are named by what is in them: people-*, animals-*, vehicles-*, mixed-*, weather-*; realistic-*
are some of them under the realistic preset (the field's noise, gain control, H.264 and clutter). far-* are the
far-sight scenes (80-600 m, realistic) on their own mount and site, far-site.yaml; the others use site.yaml.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_broker_crash import cpu_line  # noqa: E402
from edge_agent.config.agent import load_config  # noqa: E402
from edge_agent.ops.rehearse import Rehearsal, ScenarioRun, rehearse, report_json  # noqa: E402
from edge_agent.ops.scoring import CLASS_COLUMNS, Score, pd  # noqa: E402
from edge_agent.perception.build import build_detector  # noqa: E402

SUITE = ROOT / "benchmarks" / "scenarios"
NOON = 1795435200.0  # 2026-11-23 12:00 UTC: no schedule in the suite's site, a fixed time keeps runs alike


def delays(score: Score) -> list[float]:
    return [o[2] for o in score.outcomes if o[2] is not None]


def row(run: ScenarioRun) -> str:
    s = run.score
    d = delays(s)
    med = f"{statistics.median(d):.2f}" if d else "-"
    p = "-" if s.pd is None else f"{s.pd:.2f}"
    causes = ",".join(sorted({n[3] for n in s.nuisance})) or "-"
    return (f"{Path(run.name).stem:<28} {len(s.outcomes):>5} {p:>5} {med:>7} {len(s.nuisance):>8} "
            f"{s.nuisance_per_h:>8.1f}  {causes}")


def goals(r: Rehearsal) -> list[tuple[str, bool, str]]:
    total = r.total
    near = [o for o in total.outcomes if o[0].distance_m < 60]
    near_pd = pd(near)
    quiet = [run for run in r.runs if Path(run.name).stem.startswith(("animals-", "vehicles-"))]
    nuisance = sum(len(run.score.nuisance) for run in quiet)
    d = delays(total)
    med = statistics.median(d) if d else None
    return [
        ("Pd >= 0.99 for people within 60 m", near_pd is not None and near_pd >= 0.99,
         f"{near_pd:.3f} over {len(near)} events" if near_pd is not None else "no event"),
        ("0 nuisance alerts on animal-only and vehicle-only scenarios", nuisance == 0 and bool(quiet),
         f"{nuisance} over {len(quiet)} scenarios"),
        ("median time to alert <= 1.5 s", med is not None and med <= 1.5,
         f"{med:.2f} s over {len(d)} alerts" if med is not None else "no alert"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--only", default="*", help="glob of scenario file names (default: all)")
    ap.add_argument("--json", type=Path, help="write the whole rehearsal as JSON here")
    args = ap.parse_args()
    files = sorted(p for p in SUITE.glob(f"{args.only}.yaml") if not p.name.endswith("site.yaml"))
    if not files:
        print(f"no scenario matches {args.only!r} in {SUITE}", file=sys.stderr)
        return 2
    began = time.monotonic()
    parts, detector = [], None
    for site in sorted({site_of(f) for f in files}):  # one detector for both sites: the same model and size
        config = load_config(SUITE / site)
        config = config.model_copy(update={"detector": config.detector.model_copy(update={"imgsz": args.imgsz})})
        if detector is None:
            detector = build_detector(config)
            detector.load()
        parts.append(rehearse(config, [str(f) for f in files if site_of(f) == site], t0=NOON, detector=detector,
                              progress=lambda m: print(m, file=sys.stderr, flush=True)))
    r = Rehearsal("+".join(p.camera for p in parts), NOON, tuple(run for p in parts for run in p.runs))
    print(cpu_line())
    print(f"scenario suite: {len(files)} scenarios, detector at {args.imgsz}, {time.monotonic() - began:.0f} s")
    print(f"{'scenario':<28} {'truth':>5} {'Pd':>5} {'alert s':>7} {'nuisance':>8} {'per h':>8}  cause")
    for run in r.runs:
        print(row(run))
    total = r.total
    d = delays(total)
    print(f"\ntotal: {len(total.outcomes)} truth events, Pd {total.pd:.3f}, " if total.pd is not None else "\ntotal: ",
          end="")
    print(f"{len(total.nuisance)} nuisance alerts in {total.hours * 60:.1f} min ({total.nuisance_per_h:.1f} per hour), "
          f"time to alert median {statistics.median(d):.2f} s, p90 {sorted(d)[int(0.9 * (len(d) - 1))]:.2f} s"
          if d else "no alert")
    counts = {band: sum(1 for o in total.outcomes if band_of(o[0].distance_m) == band) for band in total.per_band()}
    print("Pd by distance from the camera: " + ", ".join(
        f"{band} {'-' if p is None else f'{p:.2f}'} ({counts[band]})" for band, p in total.per_band().items()))
    print("class of tracks (majority over each track's life):")
    print(f"  {'actor':<18}" + "".join(f"{c:>9}" for c in CLASS_COLUMNS))
    for actor, cols in sorted(total.confusion.items()):
        print(f"  {actor:<18}" + "".join(f"{cols.get(c, 0):>9}" for c in CLASS_COLUMNS))
    print("goals:")
    for name, ok, detail in goals(r):
        print(f"  {'MET ' if ok else 'MISS'} {name}: {detail}")
    if args.json:
        args.json.write_text(json.dumps(report_json(r), indent=1))
    return 0


def site_of(scenario: Path) -> str:
    """The site file a scenario is rehearsed on: its mount's calibration and zones."""
    return "far-site.yaml" if scenario.name.startswith("far-") else "site.yaml"


def band_of(distance: float) -> str:
    lo = int(distance // 30) * 30
    return f"{lo}-{lo + 30} m"


if __name__ == "__main__":
    sys.exit(main())
