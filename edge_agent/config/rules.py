"""Rules of a site: zones and lines (pixel or geographic) with their filters and schedules, and the fusion
rules that say which sensors corroborate each other at a place. Where the box's policy is the geofences
library's own default, the default is taken from the library (``Filters``, ``ZoneRule``, ``LineRule``,
``Window``); stricter box defaults (confidence, track age, margin, cooldown) are set here."""

from __future__ import annotations

from typing import Annotated, Literal, cast

from pydantic import Field, StringConstraints, ValidationInfo, field_validator, model_validator

from edge_agent.config.fields import (
    ID_RULE,
    MAX_RULES,
    Flag,
    Ident,
    Point,
    Real,
    Strict,
    Whole,
    geo_points,
    library_default,
)
from geofences.rules import DAYS, Filters, LineRule, Window, ZoneRule
from geofences.zones import GeometryError, make_line, make_polygon

Label = Literal["person", "vehicle", "animal"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
HHMM = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class WindowConfig(Strict):
    """Hours on some days when a rule is active."""

    start: HHMM = Field(description="Local time HH:MM the rule becomes active.")
    end: HHMM = Field(description="Local time HH:MM it stops; before start means over midnight.")
    days: list[Day] = Field(default_factory=lambda: cast("list[Day]", list(DAYS)),
                            description="Days the window starts on (mon ... sun); default every day.")


class ScheduleConfig(Strict):
    """When a rule is active: windows in a timezone."""

    timezone: str = Field(library_default(Window, "tz"),
                          description="IANA timezone of the windows, e.g. Europe/Vienna.")
    windows: list[WindowConfig] = Field(min_length=1, max_length=100, description="When the rule is active.")

    @model_validator(mode="after")
    def _known_zone(self) -> ScheduleConfig:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}; use an IANA name like Europe/Vienna") from None
        return self


class FilterConfig(Strict):
    """Which tracks a rule counts, and the hysteresis at its edge."""

    labels: list[Label] = Field(default_factory=lambda: sorted(library_default(Filters, "labels")),
                                description="Which classes of object the rule is about (person, vehicle, animal: "
                                "the class each track is given through the camera's geo-calibration).")
    unknown: Literal["lower", "same", "ignore"] = Field(
        library_default(Filters, "unknown"),
        description="What a track whose class cannot be told (a crawling person and a dog look alike) does to "
        "a rule about people: alert one severity lower, alert like a person, or nothing.")
    min_confidence: Real = Field(
        0.2, ge=0, le=1,
        description="Tracks whose best detection of the last 3 s is weaker count as nowhere (a track starts only "
        "on a detection of tracker.high_confidence, 0.25 by default).")
    min_height_px: Real = Field(library_default(Filters, "min_height_px"), ge=0,
                                description="Smaller boxes count as nowhere.")
    min_height_m: Real = Field(
        library_default(Filters, "min_height_m"), ge=0,
        description="Objects less tall than this (metres, estimated through the camera's geo-calibration) "
        "count as nowhere; e.g. 1.0 keeps dogs a person-only model mistakes for people out of a zone.",
    )
    min_age_s: Real = Field(0.5, ge=0, description="Tracks younger than this fire nothing.")
    min_frames: Whole = Field(library_default(Filters, "min_frames"), ge=1,
                              description="Frames in a row on the new side before it counts (inertia).")
    margin: Real | None = Field(
        None, ge=0, description="Hysteresis band around the edge: pixels for pixel zones (default 6), metres for "
        "geographic ones (default 0.3).",
    )


class ZoneConfig(Strict):
    """A polygon: pixel [x, y] points of one camera, or [lat, lon] points on the map (space: geo)."""

    id: Ident = Field(description=f"Zone id ({ID_RULE}).")
    name: str | None = Field(None, description="A name guards recognise, e.g. 'Patrol strip'.")
    space: Literal["pixel", "geo"] = Field("pixel", description="pixel: [x, y] of one camera; geo: [lat, lon].")
    camera: Ident | None = Field(None, description="The camera of a pixel zone (geo zones: every calibrated one).")
    polygon: list[Point] = Field(description="[x, y] pixels (space: pixel) or [lat, lon] points (space: geo); "
                                 "three or more, not crossing themselves.")
    entry: Flag = Field(library_default(ZoneRule, "entry"), description="An event when a track enters (intrusion).")
    exit: Flag = Field(library_default(ZoneRule, "exit"), description="An event when a track leaves.")
    loiter_s: Real | None = Field(library_default(ZoneRule, "loiter_s"), gt=0,
                                  description="An event when a track stays this long.")
    max_count: Whole | None = Field(library_default(ZoneRule, "max_count"), ge=0,
                                    description="An event when more tracks than this are inside.")
    filters: FilterConfig = Field(default_factory=FilterConfig,
                                  description="Which tracks count, and the hysteresis at the edge.")
    schedule: ScheduleConfig | None = Field(None, description="Active hours; none: always.")
    cooldown_s: Real = Field(60.0, ge=0, description="At most one event of a kind per track in this time.")

    @field_validator("polygon")
    @classmethod
    def _on_earth(cls, points: list[Point], info: ValidationInfo) -> list[Point]:
        return geo_points(points, info)

    @model_validator(mode="after")
    def _geometry(self) -> ZoneConfig:
        try:
            make_polygon(self.polygon, self.space)
        except GeometryError as exc:
            raise ValueError(f"polygon: {exc}") from None
        if self.space == "pixel" and self.camera is None:
            raise ValueError("a pixel zone needs its camera")
        return self


class LineConfig(Strict):
    """A polyline to cross: pixel [x, y] points of one camera, or [lat, lon] points (space: geo)."""

    id: Ident = Field(description=f"Line id ({ID_RULE}).")
    name: str | None = Field(None, description="A name guards recognise, e.g. 'Border fence'.")
    space: Literal["pixel", "geo"] = Field("pixel", description="pixel: [x, y] of one camera; geo: [lat, lon].")
    camera: Ident | None = Field(None, description="The camera of a pixel line.")
    points: list[Point] = Field(description="[x, y] pixels (space: pixel) or [lat, lon] points (space: geo); "
                                "two or more, not crossing themselves.")
    direction: Literal["left_to_right", "right_to_left", "both"] = Field(
        library_default(LineRule, "direction"),
        description="Which crossings count, as seen on the screen (or map, north up) looking from the "
        "first point towards the last.",
    )
    filters: FilterConfig = Field(default_factory=FilterConfig,
                                  description="Which tracks count, and how far from the line a side begins.")
    schedule: ScheduleConfig | None = Field(None, description="Active hours; none: always.")
    cooldown_s: Real = Field(60.0, ge=0, description="At most one crossing event per track in this time.")

    @field_validator("points")
    @classmethod
    def _on_earth(cls, points: list[Point], info: ValidationInfo) -> list[Point]:
        return geo_points(points, info)

    @model_validator(mode="after")
    def _geometry(self) -> LineConfig:
        try:
            make_line(self.points, self.space)
        except GeometryError as exc:
            raise ValueError(f"points: {exc}") from None
        if self.space == "pixel" and self.camera is None:
            raise ValueError("a pixel line needs its camera")
        return self


class FusionConfig(Strict):
    """Which sensors corroborate each other at a place (a zone or a line)."""

    id: Ident = Field(description=f"Rule id ({ID_RULE}).")
    place: Ident = Field(description="Zone or line id the incidents belong to.")
    metal: list[Ident] = Field(default_factory=list, max_length=MAX_RULES,
                               description="Metal detectors of this place.")
    radio: list[Ident] = Field(default_factory=list, max_length=MAX_RULES,
                               description="Receivers whose bare detections count here.")
    radius_m: Real = Field(50.0, ge=0, description="Metal detectors and radio positions this close count too.")
    window_s: Real = Field(30.0, gt=0, description="Events this close in time join one incident.")
    severity: Literal["info", "low", "medium", "high", "critical"] = Field(
        "medium", description="Severity of one sensor kind; each further kind raises it one step."
    )
    quiet_s: Real = Field(120.0, gt=0, description="An incident closes after this long without new evidence.")
    cooldown_s: Real = Field(300.0, ge=0, description="No second alert for the same thing within this time.")
