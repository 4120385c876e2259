"""Value types the configuration models share: ids, numbers that refuse booleans, flags that refuse strings,
[lat, lon] pairs on the earth, the base of every model (unknown keys refused, values frozen), and the defaults
of the libraries a model configures (taken from the library, so the two cannot drift apart)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictBool,
    StringConstraints,
    ValidationInfo,
)

Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
ID_RULE = "letters, digits, '_' and '-', 1 to 64 characters"
MAX_RULES = 500  # zones, lines, fusion rules, fixed sensors: start-up and check-config stay well under 5 s
MAX_CAMERAS = 64


def _not_a_boolean(value: Any) -> Any:
    # pydantic's lax mode reads true as 1: 'scale: true' must be a mistake, not a scale of 1
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


Real = Annotated[float, BeforeValidator(_not_a_boolean), AllowInfNan(False)]
Whole = Annotated[int, BeforeValidator(_not_a_boolean)]
Flag = StrictBool  # 'loop: "yes"' (quoted) is a string, not a yes
Point = tuple[Real, Real]


def latitude(value: float) -> float:
    if not -90 <= value <= 90:
        raise ValueError(f"latitude must be within [-90, 90] degrees, got {value:g}")
    return value


def longitude(value: float) -> float:
    if not -180 <= value <= 180:
        raise ValueError(f"longitude must be within [-180, 180] degrees, got {value:g}")
    return value


LatLon = tuple[Annotated[Real, AfterValidator(latitude)], Annotated[Real, AfterValidator(longitude)]]


def geo_points(points: list[Point], info: ValidationInfo) -> list[Point]:
    """[lat, lon] points of geographic zones and lines must be on the earth (pixel points can be anything)."""
    if info.data.get("space") == "geo":
        for i, (lat, lon) in enumerate(points):
            try:
                latitude(lat)
                longitude(lon)
            except ValueError as exc:
                raise ValueError(f"point {i + 1} [{lat:g}, {lon:g}]: {exc}") from None
    return points


class Strict(BaseModel):
    """The base of every config model: an unknown (misspelt) key is an error, and a loaded config is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def library_default(owner: Callable[..., object], name: str) -> Any:
    """The default a library gives ``name``: the field of a dataclass, else the parameter of a constructor or
    function. A config model that mirrors a library takes its defaults from here."""
    if dataclasses.is_dataclass(owner):
        for f in dataclasses.fields(owner):
            if f.name == name and f.default is not dataclasses.MISSING:
                return f.default
            if f.name == name and f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    else:
        parameter = inspect.signature(owner).parameters.get(name)
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            return parameter.default
    raise TypeError(f"{getattr(owner, '__qualname__', owner)} gives {name!r} no default")
