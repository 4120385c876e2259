"""The named scenes of ``sim://NAME``: the demo's border strip, walkers, a crossing, a quiet scene, animals and the
intrusion script the zone tests count by hand."""

from __future__ import annotations

from collections.abc import Callable

from sensors.sim.world import Actor, Occluder, Scenario


def _border() -> Scenario:
    """The demo strip: walkers (two of them crossing, one behind a rock), a vehicle and a dog by the fence."""
    return Scenario(
        name="border",
        duration_s=60.0,
        actors=(
            Actor(1, "person", ((0.0, -9.0, 30.0), (20.0, 3.0, 14.0), (32.0, 3.0, 14.0), (50.0, 8.0, 11.0)), 29.0),
            Actor(2, "person", ((2.0, 10.0, 20.0), (24.0, -8.0, 20.5)), 30.5, size=1.05),
            Actor(3, "person", ((3.0, -10.0, 20.6), (25.0, 9.0, 19.5)), 29.5, size=0.95),
            Actor(4, "person", ((8.0, 6.0, 34.0), (38.0, -3.0, 34.5)), 30.0),
            Actor(5, "vehicle", ((30.0, -28.0, 24.0), (52.0, 26.0, 24.0)), 14.0, kind="car"),
            Actor(6, "animal", ((0.0, 8.0, 40.0), (30.0, -2.0, 40.0), (60.0, 7.0, 40.5)), 26.0, kind="dog"),
        ),
        occluders=(Occluder(-1.0, 33.0, 2.4, 0.9),),
    )


def _walkers() -> Scenario:
    """Three people in the open at walking pace: two pass each other twice at different depths (the near
    one hides part of the far one), a third walks slowly towards the camera through their paths."""
    return Scenario(
        name="walkers",
        duration_s=30.0,
        actors=(
            Actor(1, "person", ((0.0, -4.5, 15.0), (8.0, 4.5, 15.0), (9.0, 4.5, 15.2), (17.0, -4.5, 15.4),
                                (18.0, -4.5, 15.4), (26.0, 4.5, 15.5), (30.0, 4.5, 15.5)), 30.0),
            Actor(2, "person", ((0.0, 5.5, 19.5), (10.0, -5.5, 19.2), (11.0, -5.5, 19.2), (21.0, 5.5, 19.5),
                                (30.0, -2.0, 19.8)), 29.0, size=1.05),
            Actor(3, "person", ((0.0, -4.0, 30.0), (30.0, 3.0, 13.0)), 31.0, size=0.95),
        ),
    )


def _crossing() -> Scenario:
    """Two people walk towards each other on the same line and pass."""
    return Scenario(
        name="crossing",
        duration_s=24.0,
        actors=(
            Actor(1, "person", ((0.0, -9.0, 20.0), (24.0, 9.0, 20.0)), 30.0),
            Actor(2, "person", ((0.0, 9.0, 21.0), (24.0, -9.0, 21.0)), 31.0, size=1.05),
        ),
    )


def _quiet() -> Scenario:
    """Nothing moves: only the ground, the fence and the sensor's noise."""
    return Scenario(name="quiet", duration_s=60.0, actors=())


def _animals() -> Scenario:
    """A dog and a deer by the fence and a car on the track: nothing here is a person."""
    return Scenario(
        name="animals",
        duration_s=30.0,
        actors=(
            Actor(1, "animal", ((0.0, -6.0, 38.0), (30.0, 6.0, 39.0)), 26.0, kind="dog"),
            Actor(2, "animal", ((0.0, 9.0, 30.0), (30.0, -4.0, 31.0)), 27.0, kind="deer"),
            Actor(3, "vehicle", ((0.0, -26.0, 24.0), (30.0, 22.0, 24.0)), 14.0, kind="car"),
        ),
    )


def _intrusion() -> Scenario:
    """Zone rules on the ground (metres; the tests put a zone at x -2..3, y 16..22 and a line at y 24):
    1 walks in from the west, stands 16 s, then walks north over the line; 2 walks along the outside of the
    zone's west edge; 3 walks south over the line east of the zone; a dog trots into the zone at the end."""
    return Scenario(
        name="intrusion",
        duration_s=30.0,
        actors=(
            Actor(1, "person", ((0.0, -6.0, 19.0), (6.0, 0.5, 19.0), (20.0, 0.5, 19.0), (26.0, 0.5, 26.5),
                                (30.0, 0.5, 26.5)), 30.0),
            Actor(2, "person", ((0.0, -3.3, 14.0), (14.0, -3.3, 23.0), (30.0, -3.3, 23.0)), 29.5, size=0.95),
            Actor(3, "person", ((0.0, 5.0, 28.0), (9.0, 5.0, 17.0), (30.0, 5.0, 17.0)), 30.5, size=1.05),
            Actor(4, "animal", ((20.0, 7.0, 17.5), (30.0, -1.0, 17.0)), 26.0, kind="dog"),
        ),
    )


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "intrusion": _intrusion,
    "border": _border,
    "walkers": _walkers,
    "crossing": _crossing,
    "quiet": _quiet,
    "animals": _animals,
}
