"""The options of a ``sim://NAME?key=value`` source: which scene, and how to render it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from sensors.sim.scenes import SCENARIOS


@dataclass(slots=True)
class SimParams:
    """Options of a ``sim://NAME?key=value`` source."""

    name: str  # a named scene, or the path of a scenario file
    seed: int = 0
    fps: float = 10.0  # the scene's own when not given (``given`` says which options were)
    width: int = 640
    height: int = 480
    frames: int | None = None  # default: the scenario's duration
    loop: bool = False
    realtime: bool = False
    noise_k: float = 0.08  # temporal noise in kelvin; given, it wins over the scene's camera.netd_mk
    realistic: bool = False  # given, it turns the realistic preset on (or off) whatever the scene says
    extra: dict[str, str] = field(default_factory=dict)
    given: frozenset[str] = frozenset()

    @property
    def is_file(self) -> bool:
        return self.name.endswith(SCENARIO_SUFFIXES)

    @classmethod
    def parse(cls, url: str) -> SimParams:
        parts = urlsplit(url)
        name = parts.netloc + parts.path  # sim://dir/file.yaml and sim:///abs/file.yaml name files
        if parts.scheme != "sim" or not name:
            raise ValueError(f"not a synthetic scene URL: {url!r} (expected sim://NAME, e.g. sim://border, or "
                             "sim://path/to/scene.yaml)")
        if name not in SCENARIOS and not name.endswith(SCENARIO_SUFFIXES):
            raise ValueError(f"unknown synthetic scene {name!r} in {url!r}; known: {', '.join(sorted(SCENARIOS))}, "
                             "or a scenario file (.yaml)")
        p = cls(name=name)
        converters: dict[str, Callable[[str], object]] = {
            "seed": int, "fps": float, "width": int, "height": int, "frames": int,
            "loop": _flag, "realtime": _flag, "noise_k": float, "realistic": _flag,
        }
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            conv = converters.get(key)
            if conv is None:
                raise ValueError(f"unknown option {key!r} in {url!r}; known: {', '.join(converters)}")
            try:
                setattr(p, key, conv(value))
            except ValueError as exc:
                raise ValueError(f"bad value {value!r} for {key!r} in {url!r}: {exc}") from exc
            p.given |= {key}
        if p.fps <= 0 or p.width < 64 or p.height < 64:
            raise ValueError(f"{url!r}: fps must be > 0 and the frame at least 64x64")
        return p


SCENARIO_SUFFIXES = (".yaml", ".yml")


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on", ""):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")
