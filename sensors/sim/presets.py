"""The ``realistic`` preset: the sensor and the clutter a camera on a real mast sees, so that a detector tuned on
the simulator meets the field's noise, blur, gain control, compression and nuisances before it meets the field.
A scene turns it on with ``preset: realistic`` (or a URL with ``?realistic=1``); the keys a scene sets itself win.
"""

from __future__ import annotations

from dataclasses import fields, replace

from sensors.sim.world import H264, CloudShadows, Clutter, Conditions, Scatter, Scenario, Sensor

# An uncooled 640x480 core with an f/1.1 lens as it streams: the noise of the data sheet at a real scene's
# temperature, a residual pattern that grows by tens of mK a minute until the shutter corrects it every two
# minutes, a slightly soft lens, the camera's own 8-bit gain control and a 1 Mbit/s H.264 stream, key frame
# every 2 s at 10 fps.
REALISTIC_SENSOR = Sensor(netd_mk=80.0, fpn_mk=40.0, fpn_drift_mk_per_min=30.0, ffc_interval_s=120.0, blur_px=1.1,
                          output="gray8", h264=H264(bitrate_kbps=1000.0, gop=20))
# Open rough ground: a dozen rocks, some bare patches, bushes and grass in a moderate breeze, scattered clouds.
REALISTIC_CLUTTER = Clutter(
    wind_mps=4.0, wind_toward_deg=75.0,
    hot_rocks=Scatter(count=12, size_m=(0.4, 1.6)),
    ground_patches=Scatter(count=8, size_m=(2.0, 10.0)),
    vegetation=Scatter(count=25, size_m=(0.4, 1.8)),
    cloud_shadows=CloudShadows(coverage=0.3, size_m=150.0),
)

# How strong the sun is under each condition: it heats rocks and bare ground, and only it makes cloud shadows.
SUN: dict[Conditions, float] = {"night": 0.0, "cold": 0.4, "day": 0.7, "hot": 1.0}


def sensor_and_clutter(scenario: Scenario, realistic: bool | None = None) -> tuple[Sensor, Clutter]:
    """The sensor and the clutter a scene renders with: its own keys over the preset where one is on (``realistic``
    from a URL wins over the scene's ``preset``; None: the scene decides)."""
    on = scenario.preset == "realistic" if realistic is None else realistic
    if not on:
        return scenario.sensor, scenario.clutter
    own = scenario.explicit
    keys = {f.name: getattr(scenario.sensor, f.name) for f in fields(Sensor) if f"camera.{f.name}" in own}
    if keys.get("output", "gray8") != "gray8" and "h264" not in keys:
        keys["h264"] = None  # the preset's stream is 8-bit: a scene that keeps Y16 keeps it raw
    sensor = replace(REALISTIC_SENSOR, **keys)
    clutter = replace(REALISTIC_CLUTTER, **{f.name: getattr(scenario.clutter, f.name) for f in fields(Clutter)
                                            if f"clutter.{f.name}" in own})
    return sensor, clutter


def warmer_k(kind: str, sun: float) -> tuple[float, float]:
    """How much warmer than the ground a kind of clutter is by default, for the sun (0 night .. 1 hot afternoon):
    on a hot afternoon (44 C ground) rocks are 52-59 C and bare patches 49-54 C, warmer than a person (36 C)."""
    if kind == "hot rock":
        return 2.0 + 6.0 * sun, 5.0 + 10.0 * sun
    if kind == "ground patch":
        return 1.0 + 4.0 * sun, 2.0 + 8.0 * sun
    return 1.0 + 2.0 * sun, 2.0 + 4.0 * sun  # vegetation: leaves in the sun, or holding the day's heat at night


def cooling_k(sun: float) -> float:
    """How much cooler the ground gets in a cloud's shadow by default."""
    return 4.0 * sun
