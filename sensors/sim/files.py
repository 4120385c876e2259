"""Scenario files: a synthetic scene described in YAML (``sim://path/scene.yaml``), for rehearsing a site.

```yaml
name: crawler-30m                # default: the file's stem
duration_s: 30
fps: 10                          # default 10; a URL's fps= wins
camera:                          # the mount; every key optional (defaults: 5 m, 8 deg, 40 deg lens, 640x480)
  height_m: 5.0
  tilt_deg: 8.0
  hfov_deg: 40.0
  resolution: [640, 480]
  latlon: [46.55, 15.65]         # the mast (ground x 0, y 0); the camera looks north
conditions: day                  # day | night | cold | hot: the air's and the ground's temperature
ambient_c: 8                     # overrides of the preset
ground_c: 10
weather: {fog_visibility_m: 80, rain: 0.5, shimmer_px: 1.5, shake_px: 4}   # every key optional, default off
fence: true                      # the fence line at fence_y (default 42 m out); track_y: the warm dirt track
occluders: [{x: -1, y: 33, width_m: 2.4, height_m: 0.9}]
actors:
  - kind: person                 # person | dog | sheep | cow | deer | bird | car | truck
    gait: walking                # people: walking | running | crawling
    count: 3                     # a group, side by side, spacing_m apart across the way they go
    spacing_m: 1.0
    start_s: 2.0                 # when it appears
    speed_mps: 1.4               # default by kind and gait
    waypoints:                   # [x east, y north] metres from the mast, or {latlon: [lat, lon]}; wait_s pauses
      - [-20, 40]
      - {xy: [0, 40], wait_s: 5}
      - {latlon: [46.5504, 15.6502]}
    temp_c: 30                   # surface temperature; default by kind and conditions
    size: 1.0
    altitude_m: 3                # birds
```

A car that stops and lets someone out is two actors: a car whose path waits, and a person whose ``start_s`` is
the stop and whose first waypoint is beside the car. Errors name the file and the key: ``actors[2].waypoints[1]``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sensors.sim.world import SIM_ORIGIN, Actor, CameraModel, Label, Occluder, Scenario, Weather

MAX_FILE_BYTES = 1_000_000
MAX_ACTORS = 200
Kind = Literal["person", "dog", "sheep", "cow", "deer", "bird", "car", "truck"]
LABEL_OF: dict[str, Label] = {"person": "person", "car": "vehicle", "truck": "vehicle"}
CONDITIONS: dict[str, tuple[float, float]] = {  # (air, ground) in degrees C
    "day": (8.0, 8.0), "night": (2.0, 0.0), "cold": (-8.0, -10.0), "hot": (33.0, 44.0),
}
SPEED = {"walking": 1.4, "running": 3.5, "crawling": 0.4, "dog": 1.5, "sheep": 0.8, "cow": 1.0, "deer": 1.4,
         "bird": 6.0, "car": 8.0, "truck": 6.0}
# surface temperature on a mild day (8 C air); it follows the air a quarter as much
SURFACE = {"person": 30.0, "dog": 26.0, "sheep": 18.0, "cow": 28.0, "deer": 27.0, "bird": 20.0, "car": 14.0,
           "truck": 16.0}


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Number = Annotated[float, Field(allow_inf_nan=False)]
XY = tuple[Number, Number]


class _At(_Strict):
    xy: XY | None = None
    latlon: XY | None = None
    wait_s: Number = Field(0.0, ge=0, le=3600)


class _Camera(_Strict):
    height_m: Number = Field(5.0, gt=0.5, le=100)
    tilt_deg: Number = Field(8.0, ge=-10, le=80)
    hfov_deg: Number = Field(40.0, gt=2, lt=170)
    resolution: tuple[Annotated[int, Field(ge=64, le=4096)], Annotated[int, Field(ge=64, le=4096)]] = (640, 480)
    latlon: XY = SIM_ORIGIN


class _Weather(_Strict):
    fog_visibility_m: Number | None = Field(None, gt=0)
    rain: Number = Field(0.0, ge=0, le=1)
    shimmer_px: Number = Field(0.0, ge=0, le=20)
    shake_px: Number = Field(0.0, ge=0, le=50)


class _Occluder(_Strict):
    x: Number
    y: Number = Field(gt=1)
    width_m: Number = Field(gt=0, le=50)
    height_m: Number = Field(gt=0, le=20)
    temp_c: Number | None = None


class _Actor(_Strict):
    kind: Kind
    gait: Literal["walking", "running", "crawling"] | None = None
    count: int = Field(1, ge=1, le=50)
    spacing_m: Number = Field(1.0, gt=0, le=20)
    start_s: Number = Field(0.0, ge=0)
    speed_mps: Number | None = Field(None, gt=0, le=60)
    waypoints: list[XY | _At] = Field(min_length=1, max_length=500)
    temp_c: Number | None = Field(None, ge=-40, le=200)
    size: Number = Field(1.0, gt=0.2, le=3)
    altitude_m: Number = Field(0.0, ge=0, le=200)


class _File(_Strict):
    name: str | None = Field(None, max_length=200)
    duration_s: Number = Field(gt=0, le=3600)
    fps: Number | None = Field(None, gt=0, le=120)
    camera: _Camera = Field(default_factory=_Camera)
    conditions: Literal["day", "night", "cold", "hot"] = "day"
    ambient_c: Number | None = Field(None, ge=-50, le=60)
    ground_c: Number | None = Field(None, ge=-50, le=80)
    weather: _Weather = Field(default_factory=_Weather)
    fence: bool = True
    fence_y: Number = Field(42.0, gt=1)
    track_y: Number = Field(24.0, gt=1)
    occluders: list[_Occluder] = Field(default_factory=list, max_length=200)
    actors: list[_Actor] = Field(default_factory=list, max_length=MAX_ACTORS)


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file; ScenarioError names the file, the key and what is wrong."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ScenarioError(f"{p}: {size} bytes; a scenario file may have at most {MAX_FILE_BYTES}")
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read the scenario file: {exc.strerror or exc}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{p}: not YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ScenarioError(f"{p}: expected a mapping of scenario keys, got {type(data).__name__}")
    try:
        spec = _File.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ScenarioError(f"{p}: {_where(first['loc'])}: {first['msg']} (got {first.get('input')!r})") from None
    return _scenario(spec, p)


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("tuple[float, float]", "_At", "function-after[...]") or "[" in str(part):
            continue  # pydantic's name of a union member, not a key
        else:
            out += f".{part}" if out else str(part)
    return out or "(top)"


def _scenario(spec: _File, path: Path) -> Scenario:
    air, ground = CONDITIONS[spec.conditions]
    air = spec.ambient_c if spec.ambient_c is not None else air
    ground = spec.ground_c if spec.ground_c is not None else (ground if spec.ambient_c is None else air)
    w, h = spec.camera.resolution
    camera = CameraModel(width=w, height=h, hfov_deg=spec.camera.hfov_deg, height_m=spec.camera.height_m,
                         tilt_deg=spec.camera.tilt_deg)
    scenario = Scenario(name=spec.name or path.stem, duration_s=spec.duration_s, actors=(), ambient_c=air,
                        fence_y=spec.fence_y, track_y=spec.track_y, ground_c=ground, camera=camera,
                        mast=spec.camera.latlon, weather=Weather(**spec.weather.model_dump()), fence=spec.fence,
                        fps=spec.fps)
    actors: list[Actor] = []
    for i, a in enumerate(spec.actors):
        points = [_xy(scenario, wp) for wp in a.waypoints]
        waits = [wp.wait_s if isinstance(wp, _At) else 0.0 for wp in a.waypoints]
        if len(points) == 1 and not waits[0]:
            raise ScenarioError(f"{path}: actors[{i}].waypoints: one waypoint needs a wait_s (how long it stands)")
        for k in range(a.count):
            offset = (k - (a.count - 1) / 2.0) * a.spacing_m
            actors.append(_actor(len(actors) + 1, a, _beside(points, offset), waits, a.start_s + 0.15 * k, air))
    return Scenario(**{**{f: getattr(scenario, f) for f in scenario.__slots__}, "actors": tuple(actors),
                       "occluders": tuple(Occluder(o.x, o.y, o.width_m, o.height_m,
                                                   o.temp_c if o.temp_c is not None else air - 2.0)
                                          for o in spec.occluders)})


def _xy(scenario: Scenario, wp: XY | _At) -> tuple[float, float]:
    if not isinstance(wp, _At):
        return float(wp[0]), float(wp[1])
    if (wp.xy is None) == (wp.latlon is None):
        raise ScenarioError("a waypoint has either xy or latlon")
    if wp.xy is not None:
        return float(wp.xy[0]), float(wp.xy[1])
    assert wp.latlon is not None
    return scenario.xy_of(float(wp.latlon[0]), float(wp.latlon[1]))


def _beside(points: list[tuple[float, float]], offset: float) -> list[tuple[float, float]]:
    """The path moved ``offset`` metres to the side of the way it first goes (a group walks abreast)."""
    if not offset or len(points) < 2:
        return points
    (x0, y0), (x1, y1) = points[0], points[1]
    n = math.hypot(x1 - x0, y1 - y0) or 1.0
    ox, oy = -(y1 - y0) / n * offset, (x1 - x0) / n * offset
    return [(x + ox, y + oy) for x, y in points]


def _actor(track_id: int, a: _Actor, points: list[tuple[float, float]], waits: list[float], start: float,
           air: float) -> Actor:
    gait = (a.gait or "walking") if a.kind == "person" else ""
    speed = a.speed_mps or SPEED[gait or a.kind]
    t, keys = start, [(start, *points[0])]
    if waits[0]:
        t += waits[0]
        keys.append((t, *points[0]))
    for (x0, y0), (x1, y1), wait in zip(points, points[1:], waits[1:], strict=False):
        t += math.hypot(x1 - x0, y1 - y0) / speed
        keys.append((t, x1, y1))
        if wait:
            t += wait
            keys.append((t, x1, y1))
    base = SURFACE[a.kind]
    temp = a.temp_c if a.temp_c is not None else (
        air + 6.0 if a.kind in ("car", "truck") else base + 0.25 * (air - 8.0))
    return Actor(track_id, LABEL_OF.get(a.kind, "animal"), tuple(keys), temp, a.size,
                 kind="" if a.kind == "person" else a.kind, gait=gait, altitude_m=a.altitude_m, keep_heading=True)
