"""Thermal cameras: where frames come from, how their pixels read as temperatures, when a silent camera is
reopened (defaults from the sensors library's ``CameraSpec``), and the ground control points that place
tracks on the map."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from edge_agent.config.fields import ID_RULE, Flag, Ident, LatLon, Point, Real, Strict, library_default
from geofences.geo import GeoCalibration, GroundControlPoint
from sensors.captures import CameraSpec


def _spec(name: str) -> Any:
    """A camera setting's default, as the sensors library gives it."""
    return library_default(CameraSpec, name)


class GroundPointConfig(Strict):
    """One ground control point: a spot in the image and where it is on the earth."""

    pixel: Point = Field(description="[x, y] in the camera image.")
    latlon: LatLon = Field(description="[lat, lon] (WGS84) of that spot on the ground.")


class CalibrationConfig(Strict):
    """Ground control points: spots visible in the image whose lat/lon was measured (GPS, map)."""

    points: list[GroundPointConfig] = Field(min_length=4, max_length=100,
                                            description="Four or more, spread over the ground.")
    anchor: Literal["bottom_center", "center"] = Field(
        "bottom_center", description="The point of a box placed on the map: its foot (bottom centre) or centre."
    )

    def calibration(self) -> GeoCalibration:
        return GeoCalibration([GroundControlPoint(p.pixel[0], p.pixel[1], p.latlon[0], p.latlon[1])
                               for p in self.points])

    @model_validator(mode="after")
    def _fits(self) -> CalibrationConfig:
        self.calibration()  # collinear or out-of-range points raise ValueError here
        return self


class CameraConfig(Strict):
    """A thermal camera: a video file, an image folder, rtsp:// URL, V4L2 device or sim://NAME scene."""

    id: Ident = Field(description=f"Camera id ({ID_RULE}).")
    source: str = Field(min_length=1, description="Video file, image folder, rtsp:// URL, /dev/videoN or sim://NAME.")
    name: str | None = Field(None, description="A name guards recognise, e.g. 'North fence'.")
    enabled: Flag = Field(True, description="false: the camera is configured but not opened.")
    pixel_format: Literal["auto", "gray8", "y16"] = Field(
        _spec("pixel_format"),
        description="gray8: AGC already applied; y16: 16-bit radiometric counts; auto: by frame depth.",
    )
    scale: Real = Field(_spec("scale"), gt=0, description="Degrees per count for y16 frames (TLinear 0.01 K/count).")
    offset: Real = Field(_spec("offset"), description="Degrees Celsius at count 0 for y16 frames.")
    polarity: Literal["white_hot", "black_hot"] = Field(
        _spec("polarity"), description="gray8 frames only: black_hot cameras show warm objects dark."
    )
    stall_s: Real = Field(_spec("stall_s"), gt=0, description="No frame for this long: camera offline, reopen it.")
    backoff_min_s: Real = Field(_spec("backoff_min_s"), gt=0,
                                description="First reopen delay; doubles after each failure.")
    backoff_max_s: Real = Field(_spec("backoff_max_s"), gt=0, description="Longest reopen delay.")
    loop: Flag = Field(_spec("loop"), description="Start files and scenes again at their end (demos).")
    calibration: CalibrationConfig | None = Field(None, description="Geo-calibration: places tracks on the map.")

    @model_validator(mode="after")
    def _backoff_order(self) -> CameraConfig:
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError(f"backoff_max_s ({self.backoff_max_s}) is below backoff_min_s ({self.backoff_min_s})")
        return self

    def spec(self, pace: Literal["live", "every"] = "live") -> CameraSpec:
        """The sensors library's camera settings for this camera."""
        return CameraSpec(
            camera_id=self.id, source=self.source, pixel_format=self.pixel_format, scale=self.scale,
            offset=self.offset, polarity=self.polarity, stall_s=self.stall_s, backoff_min_s=self.backoff_min_s,
            backoff_max_s=self.backoff_max_s, pace=pace, loop=self.loop,
        )


def classification_warning(cam: CameraConfig) -> str | None:
    """What a field engineer must hear about a camera that cannot tell animals from people."""
    if cam.calibration is not None:
        return None
    return (f"camera {cam.id} has no geo-calibration: it cannot tell animals from people (a warm dog the person "
            "model calls a person counts as one); add cameras[].calibration points (README: geo-calibration)")
