"""Scenario files: a synthetic scene described in YAML (``sim://path/scene.yaml``), for rehearsing a site.

```yaml
name: crawler-30m                # default: the file's stem
duration_s: 30
fps: 10                          # default 10; a URL's fps= wins
preset: realistic                # what a camera on a real mast sees (below); the keys a file sets win over it
camera:                          # the mount; every key optional (defaults: 5 m, 8 deg, 40 deg lens, 640x480)
  height_m: 5.0
  tilt_deg: 8.0
  hfov_deg: 40.0
  resolution: [640, 480]
  latlon: [46.55, 15.65]         # the mast (ground x 0, y 0); the camera looks north
  netd_mk: 80                    # temporal noise, mK one sigma (a URL's noise_k=, in K, wins)
  fpn_mk: 48                     # fixed-pattern noise left by calibration, mK; default 0.6 of netd_mk
  fpn_drift_mk_per_min: 30       # the pattern drifts as the core warms (default 0: it never does) ...
  ffc_interval_s: 120            # ... until the shutter's flat-field correction resets it (default 180 s)
  blur_px: 1.1                   # the optics' blur, Gaussian sigma in pixels (default 0.8; 0: none)
  output: gray8                  # y16 (default): 16-bit counts, 0.01 K each | gray8: the camera's own 8-bit
                                 # gain control, which jumps when something hot enters or leaves the view
  h264: {bitrate_kbps: 1000, gop: 20}   # gray8 frames through a real H.264 encode and decode (default: none)
conditions: day                  # day | night | cold | hot: the air's and the ground's temperature, and the sun
ambient_c: 8                     # overrides of the conditions
ground_c: 10
horizon_m: 400                   # the flat ground ends here and the sky begins (default 400 m)
clutter:                         # warm or moving things that are no target; none by default, never in the truth
  wind_mps: 4                    # sways vegetation, drives cloud shadows (default 3)
  wind_toward_deg: 90            # compass bearing the wind blows to: 0 away from the camera, 90 east (default)
  hot_rocks:                     # sun-heated rocks: they stand (and hide what is behind them) and never move
    count: 12                    # default 10, placed at random for the seed; or at: [[x, y], ...] from the mast
    size_m: [0.4, 1.6]           # width, drawn between the two; a rock is 0.35-0.75 of it high
    warmer_k: [8, 15]            # above the ground's mean; default by the sun: night 2-5, day 6.2-12, hot 8-15
    range_m: [15, 300]           # how far out; default the nearest ground in view to 600 m (or horizon_m)
  ground_patches: {count: 8, size_m: [2, 10]}      # bare sun-heated soil, flat; the same keys as hot_rocks,
                                 # warmer_k night 1-2, day 3.8-7.6, hot 5-10 (size_m default [2, 10])
  vegetation: {count: 25, size_m: [0.4, 1.8]}      # bushes and grass tufts swaying in the wind and gusts;
                                 # warmer_k night 1-2, day 2.4-4.8, hot 3-6 (size_m default [0.4, 1.8])
  cloud_shadows: {coverage: 0.3, size_m: 150, cooling_k: 4}   # cooler ground drifting with the wind; cooling_k
                                 # default by the sun: night 0 (no shadows), day 2.8, hot 4
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

``preset: realistic`` (or ``?realistic=1`` on any ``sim://`` URL, named scenes too) sets the camera keys as above
(netd 80 mK, fpn 40 mK drifting 30 mK/min, FFC every 120 s, blur 1.1 px, gray8, H.264 1000 kbit/s GOP 20) and the
clutter as above (wind 4 m/s towards 75 deg, 12 rocks, 8 patches, 25 bushes, 30 % cloud cover, sizes and warmth
their defaults); a camera key or a clutter key the file sets replaces the preset's (``vegetation: null`` takes the
preset's bushes away; ``h264`` goes with ``gray8``: a file that keeps ``output: y16`` under the preset gets no
H.264), and ``?realistic=0`` turns a file's preset off. Through H.264 a frame depends on the frames before it in
its GOP; the clutter's placing depends on the URL's seed, like the ground's texture.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sensors.sim.world import (
    H264,
    SIM_ORIGIN,
    Actor,
    CameraModel,
    CloudShadows,
    Clutter,
    Label,
    Occluder,
    Scatter,
    Scenario,
    Sensor,
    Weather,
)

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


class _H264(_Strict):
    bitrate_kbps: Number = Field(1000.0, ge=20, le=100_000)
    gop: int = Field(20, ge=1, le=600)


class _Camera(_Strict):
    height_m: Number = Field(5.0, gt=0.5, le=100)
    tilt_deg: Number = Field(8.0, ge=-10, le=80)
    hfov_deg: Number = Field(40.0, gt=2, lt=170)
    resolution: tuple[Annotated[int, Field(ge=64, le=4096)], Annotated[int, Field(ge=64, le=4096)]] = (640, 480)
    latlon: XY = SIM_ORIGIN
    netd_mk: Number = Field(80.0, ge=0, le=2000)
    fpn_mk: Number | None = Field(None, ge=0, le=5000)
    fpn_drift_mk_per_min: Number = Field(0.0, ge=0, le=5000)
    ffc_interval_s: Number = Field(180.0, ge=1, le=3600)
    blur_px: Number = Field(0.8, ge=0, le=10)
    output: Literal["y16", "gray8"] = "y16"
    h264: _H264 | None = None


SENSOR_KEYS = ("netd_mk", "fpn_mk", "fpn_drift_mk_per_min", "ffc_interval_s", "blur_px", "output", "h264")
Span = tuple[Number, Number]


class _Scatter(_Strict):
    count: int = Field(10, ge=0, le=500)
    at: list[XY] | None = Field(None, max_length=500)
    size_m: Span = (0.5, 1.5)
    warmer_k: Span | None = None
    range_m: Span | None = None

    @model_validator(mode="after")
    def _ordered(self) -> _Scatter:
        for key in ("size_m", "warmer_k", "range_m"):
            span = getattr(self, key)
            if span is not None and not span[0] <= span[1]:
                raise ValueError(f"{key} is [low, high] with low <= high, got {list(span)}")
        if not 0 < self.size_m[0] <= 50 or (self.range_m is not None and self.range_m[0] <= 1):
            raise ValueError(f"sizes are 0-50 m and range_m starts beyond 1 m, got size_m {list(self.size_m)}")
        return self


class _Rocks(_Scatter):
    size_m: Span = (0.4, 1.6)


class _Patches(_Scatter):
    size_m: Span = (2.0, 10.0)


class _Vegetation(_Scatter):
    size_m: Span = (0.4, 1.8)


class _Clouds(_Strict):
    coverage: Number = Field(0.3, ge=0, le=1)
    size_m: Number = Field(150.0, ge=10, le=5000)
    cooling_k: Number | None = Field(None, ge=0, le=30)


class _Clutter(_Strict):
    wind_mps: Number = Field(3.0, ge=0, le=40)
    wind_toward_deg: Number = Field(90.0, ge=-360, le=360)
    hot_rocks: _Rocks | None = None
    ground_patches: _Patches | None = None
    vegetation: _Vegetation | None = None
    cloud_shadows: _Clouds | None = None


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
    horizon_m: Number = Field(400.0, ge=50, le=20_000)
    preset: Literal["realistic"] | None = None
    clutter: _Clutter = Field(default_factory=_Clutter)
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
    sensor, clutter, explicit = _sensor_and_clutter(spec, path)
    scenario = Scenario(name=spec.name or path.stem, duration_s=spec.duration_s, actors=(), ambient_c=air,
                        fence_y=spec.fence_y, track_y=spec.track_y, ground_c=ground, camera=camera,
                        mast=spec.camera.latlon, weather=Weather(**spec.weather.model_dump()), fence=spec.fence,
                        fps=spec.fps, conditions=spec.conditions, horizon_m=spec.horizon_m, sensor=sensor,
                        clutter=clutter, preset=spec.preset, explicit=explicit)
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


def _sensor_and_clutter(spec: _File, path: Path) -> tuple[Sensor, Clutter, frozenset[str]]:
    """The file's own camera and clutter keys (what it sets wins over a preset, so the set keys are kept too)."""
    cam, cl = spec.camera, spec.clutter
    set_keys = {f"camera.{k}" for k in SENSOR_KEYS if k in cam.model_fields_set}
    set_keys |= {f"clutter.{k}" for k in cl.model_fields_set}
    output = cam.output
    if cam.h264 is not None and output != "gray8":
        if "camera.output" in set_keys or spec.preset is None:
            raise ScenarioError(f"{path}: camera.h264: H.264 carries 8-bit video; set camera.output: gray8")
        output = "gray8"  # the preset's output, which the stream needs
    h264 = H264(cam.h264.bitrate_kbps, cam.h264.gop) if cam.h264 is not None else None
    sensor = Sensor(netd_mk=cam.netd_mk, fpn_mk=cam.fpn_mk, fpn_drift_mk_per_min=cam.fpn_drift_mk_per_min,
                    ffc_interval_s=cam.ffc_interval_s, blur_px=cam.blur_px, output=output, h264=h264)

    def scatter(s: _Scatter | None) -> Scatter | None:
        if s is None:
            return None
        return Scatter(count=len(s.at) if s.at is not None else s.count, size_m=s.size_m, warmer_k=s.warmer_k,
                       range_m=s.range_m, at=tuple(s.at or ()))

    clouds = cl.cloud_shadows
    clutter = Clutter(wind_mps=cl.wind_mps, wind_toward_deg=cl.wind_toward_deg, hot_rocks=scatter(cl.hot_rocks),
                      ground_patches=scatter(cl.ground_patches), vegetation=scatter(cl.vegetation),
                      cloud_shadows=None if clouds is None else CloudShadows(clouds.coverage, clouds.size_m,
                                                                             clouds.cooling_k))
    return sensor, clutter, frozenset(set_keys)


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
