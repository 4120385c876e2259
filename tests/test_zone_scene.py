"""Acceptance of the rules on a synthetic scene with ground truth, through the real detector and tracker:
each scripted entry, loiter and crossing gives exactly one event within 1 s of the truth; walking along a
zone edge, jitter of a standing person's box across an edge, a dog in a person-only zone and a person
outside the schedule give none."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import Point, Polygon

from sensors.sim import SCENARIOS, ThermalScene
from tests.scenes import LINE_Y, T0, ZONE_M

# the module's expensive fixtures are computed once, on one worker (./dev test runs --dist loadgroup)
pytestmark = pytest.mark.xdist_group("intrusion_run")


def truth_time(actor_id: int, inside: object, step: float = 0.01) -> list[float]:
    """Times at which an actor's ground point changes from outside to inside ``inside(x, y)``."""
    actor = next(a for a in SCENARIOS["intrusion"]().actors if a.track_id == actor_id)
    times, prev = [], None
    for t in np.arange(0.0, 30.0, step):
        s = actor.state(float(t))
        if s is None:
            continue
        now = bool(inside(s[0], s[1]))  # type: ignore[operator]
        if prev is False and now:
            times.append(float(t))
        prev = now
    return times


@pytest.mark.slow
def test_each_scripted_event_once_within_a_second(intrusion_run: tuple[list, ThermalScene]) -> None:
    events, _ = intrusion_run
    zone = Polygon(ZONE_M)
    entry = truth_time(1, lambda x, y: zone.contains(Point(x, y)))
    out = truth_time(1, lambda x, y: not zone.contains(Point(x, y)))
    north = truth_time(1, lambda x, y: y > LINE_Y)
    south = truth_time(3, lambda x, y: y < LINE_Y)
    assert len(entry) == len(out) == len(north) == len(south) == 1
    expected = [
        ("entry", "strip", entry[0], None),
        ("loitering", "strip", entry[0] + 10.0, None),
        ("exit", "strip", out[0], None),
        ("line_crossing", "fence", south[0], "left_to_right"),  # southwards: west-to-east line, map north up
        ("line_crossing", "fence", north[0], "right_to_left"),
    ]
    got = sorted(((e.kind, e.rule_id, e.ts - T0, e.direction) for e in events), key=lambda e: e[2])
    assert len(got) == len(expected), got
    for kind, rule, t, direction in expected:
        match = [g for g in got if g[0] == kind and g[1] == rule and g[3] == direction]
        assert len(match) == 1, (kind, rule, got)
        assert abs(match[0][2] - t) <= 1.0, f"{kind} {rule} at {match[0][2]:.2f} s, truth {t:.2f} s"


@pytest.mark.slow
def test_nuisances_give_nothing(intrusion_run: tuple[list, ThermalScene]) -> None:
    events, _ = intrusion_run
    assert [e for e in events if e.rule_id in ("jitter", "strip-night")] == []
    assert all(e.label == "person" for e in events)  # the dog crossed the strip
    assert {e.track_id for e in events if e.rule_id == "strip"} == {next(e.track_id for e in events
                                                                        if e.kind == "entry")}  # not walker 2
