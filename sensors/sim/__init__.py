"""The synthetic thermal camera (``sim://NAME`` or ``sim://path/scene.yaml``): a world of actors on scripted paths
(``world``), drawn at their real sizes (``draw``), from named scenes (``scenes``) or scenario files (``files``),
rendered as 16-bit radiometric frames with their ground truth (``render``) and read like any camera
(``capture``). As hard as the field when asked (``preset: realistic`` or ``?realistic=1``, ``presets``): the
sensor's noise, drift, blur, 8-bit gain control and H.264 (``sensor``, ``stream``), and clutter that is no target
(``clutter``). Only a ``sim://`` source imports it: the camera reader finds it through its scheme registry."""

from sensors.sim.files import ScenarioError, load_scenario
from sensors.sim.params import SimParams
from sensors.sim.render import ThermalScene
from sensors.sim.scenes import SCENARIOS
from sensors.sim.world import (
    COUNTS_PER_K,
    EARTH_M_PER_DEG,
    H264,
    KELVIN,
    SIM_OFFSET,
    SIM_ORIGIN,
    SIM_SCALE,
    Actor,
    CameraModel,
    CloudShadows,
    Clutter,
    ClutterThing,
    Label,
    Occluder,
    Scatter,
    Scenario,
    Sensor,
    TruthObject,
    Weather,
)

__all__ = ["COUNTS_PER_K", "EARTH_M_PER_DEG", "H264", "KELVIN", "SCENARIOS", "SIM_OFFSET", "SIM_ORIGIN", "SIM_SCALE",
           "Actor", "CameraModel", "CloudShadows", "Clutter", "ClutterThing", "Label", "Occluder", "Scatter",
           "Scenario", "ScenarioError", "Sensor", "SimParams", "ThermalScene", "TruthObject", "Weather",
           "load_scenario"]
