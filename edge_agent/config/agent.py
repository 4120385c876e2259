"""The agent's one YAML configuration file: the whole box (``AgentConfig``) and the checks between its
sections, loading with every problem reported at once (file, line, key path, reason), and the JSON Schema for
editors. Each section's model lives in the module of its area: cameras, detection, rules, sensors, mqtt,
incidents."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from detectors.yolo import YoloConfig
from edge_agent.config.cameras import CameraConfig
from edge_agent.config.detection import GatingConfig, HeatConfig, TrackerConfig, VerifyConfig
from edge_agent.config.fields import ID_RULE, MAX_CAMERAS, MAX_RULES, Ident, Strict
from edge_agent.config.incidents import IncidentLogConfig
from edge_agent.config.mqtt import MqttConfig
from edge_agent.config.outputs import OutputsConfig
from edge_agent.config.reader import MAX_BYTES, KeyPath, YamlRefused, read_yaml
from edge_agent.config.rules import FusionConfig, LineConfig, ZoneConfig
from edge_agent.config.sensors import FixedSensorConfig, shared_ports, unheard_sensors
from edge_agent.paths import ConfigError, default_state_dir

__all__ = ["AgentConfig", "json_schema", "load_config", "parse_config", "parse_model", "read_config_text"]

M = TypeVar("M", bound=Strict)


class AgentConfig(Strict):
    """The whole edge box."""

    site: Ident = Field(description=f"Site id ({ID_RULE}).")
    box: Ident = Field(description=f"This edge box's id ({ID_RULE}).")
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="Models, incident database and snapshots live here (default $EDGE_AGENT_HOME or "
        "~/.local/share/edge-agent; /var/lib/edge-agent under systemd).",
    )
    detector: YoloConfig = Field(default_factory=YoloConfig,
                                 description="The detection model and how to run it.")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig,
                                   description="How detections become tracks with ids.")
    heat: HeatConfig = Field(default_factory=HeatConfig,
                             description="Heat-first proposals: where the model looks.")
    verify: VerifyConfig = Field(default_factory=VerifyConfig,
                                 description="What the model is shown: crops at the scale it needs, a sweep.")
    gating: GatingConfig = Field(default_factory=GatingConfig,
                                 description="Without heat proposals: when the detector may skip a quiet frame.")
    cameras: list[CameraConfig] = Field(default_factory=list, max_length=MAX_CAMERAS,
                                        description=f"Thermal cameras (at most {MAX_CAMERAS}).")
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=MAX_RULES,
                                    description=f"Zones and their rules (at most {MAX_RULES} per box).")
    lines: list[LineConfig] = Field(default_factory=list, max_length=MAX_RULES,
                                    description=f"Lines to cross (at most {MAX_RULES} per box).")
    fixed_sensors: list[FixedSensorConfig] = Field(default_factory=list, max_length=MAX_RULES,
                                                   description=f"Sensors at known places (at most {MAX_RULES}).")
    fusion: list[FusionConfig] = Field(default_factory=list, max_length=MAX_RULES,
                                       description=f"Correlation rules (at most {MAX_RULES} per box).")
    mqtt: MqttConfig | None = Field(None, description="The command post's broker; none: alerts stay in the outbox.")
    outputs: OutputsConfig = Field(default_factory=OutputsConfig,
                                   description="Cursor on Target (TAK) and SAPIENT, fed from the outbox too.")
    incident_log: IncidentLogConfig = Field(default_factory=IncidentLogConfig,
                                            description="The SQLite incident log, snapshots and retention.")

    @field_validator("cameras", "zones", "lines", "fixed_sensors", "fusion", mode="before")
    @classmethod
    def _not_too_many(cls, items: Any, info: ValidationInfo) -> Any:
        # before validation: 3,000 zones are refused without building 3,000 polygons first
        limit = MAX_CAMERAS if info.field_name == "cameras" else MAX_RULES
        if isinstance(items, list) and len(items) > limit:
            raise ValueError(f"at most {limit} {info.field_name} per box, got {len(items)}")
        return items

    def cross_check(self) -> list[tuple[KeyPath, str]]:
        """Problems between sections: duplicate ids, rules for unknown or uncalibrated cameras, unknown or
        mismatched sensors, sensors nobody would hear, and feeds that would share a port."""
        problems: list[tuple[KeyPath, str]] = []
        for section in ("cameras", "zones", "lines", "fixed_sensors", "fusion"):
            seen: set[str] = set()
            for i, item in enumerate(getattr(self, section)):
                if item.id in seen:
                    problems.append(((section, i, "id"), f"id {item.id!r} is used twice in {section}"))
                seen.add(item.id)
        cams = {c.id: c for c in self.cameras}
        calibrated = [c.id for c in self.cameras if c.calibration is not None]
        for section in ("zones", "lines"):
            for i, item in enumerate(getattr(self, section)):
                if item.space == "pixel" and item.camera not in cams:
                    problems.append(((section, i, "camera"), f"unknown camera {item.camera!r}; cameras: "
                                     f"{', '.join(cams) or 'none configured'}"))
                if item.space == "geo" and not calibrated and not self.fixed_sensors:
                    problems.append(((section, i, "space"), "a geo rule needs at least one geo-calibrated camera "
                                     "(cameras[].calibration) or fixed sensors to place there"))
        places = {z.id for z in self.zones} | {ln.id for ln in self.lines}
        kinds = {s.id: s.kind for s in self.fixed_sensors}
        for i, rule in enumerate(self.fusion):
            if rule.place not in places:
                problems.append((("fusion", i, "place"), f"unknown zone or line {rule.place!r}"))
            for key in ("metal", "radio"):
                for j, sensor in enumerate(getattr(rule, key)):
                    if kinds.get(sensor) != key:
                        problems.append((("fusion", i, key, j), f"{sensor!r} is not a {key} sensor in fixed_sensors"))
        return (problems + unheard_sensors(self.fixed_sensors)
                + shared_ports(self.fixed_sensors, [(c.id, c.source) for c in self.cameras]))

    def accepted_ids(self, sensor_id: str) -> frozenset[str]:
        """Sensor ids the feed of ``sensor_id`` takes events from: its own and those that name it in via."""
        return frozenset({sensor_id, *(s.id for s in self.fixed_sensors if s.via == sensor_id)})

    @property
    def models_dir(self) -> Path:
        return self.state_dir / "models"

    @property
    def db_path(self) -> Path:
        return self.incident_log.path or self.state_dir / "incidents.db"


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _line_for(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _shown(value: Any) -> str:
    """A value as the config file spells it, short."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    if isinstance(value, list):
        return "a list"
    return "a mapping" if isinstance(value, dict) else type(value).__name__


def _message(err: Any) -> str:
    """A pydantic error as a reason: what was expected, and what the file gives."""
    if err["type"] == "string_pattern_mismatch":
        return f"{err['input']!r} is not a valid id: use {ID_RULE}"
    if err["type"] == "extra_forbidden":
        return "unknown key (misspelt? see 'edge-agent config schema')"
    if err["type"] == "too_long":
        return f"at most {err['ctx']['max_length']} items, got {err['ctx']['actual_length']}"
    msg: str = err["msg"]
    if msg.startswith("Value error, ") or err["type"] == "missing":
        return msg.removeprefix("Value error, ")  # our own reasons give the actual value already
    if " got " in msg or isinstance(err["input"], (list, dict)):
        return msg
    return f"{msg}, got {_shown(err['input'])}"


def parse_model(text: str, source: str, model: type[M]) -> tuple[M, dict[KeyPath, int], list[str]]:
    """Validate YAML text against ``model``; raise ConfigError with every problem found, each as
    ``FILE:LINE: key.path: reason``. Returns the model, the line of each key path (for later checks) and the
    problems that did not stop validation (a key given twice), for the caller to report with its own."""
    try:
        doc = read_yaml(text)
    except YamlRefused as exc:
        where = f"{source}:{exc.problem.line}" if exc.problem.line else source
        path = f" {_dotted(exc.problem.path)}:" if exc.problem.path else ""
        raise ConfigError(source, [f"{where}:{path} {exc.problem.reason}"]) from exc
    data, lines = doc.data, doc.lines
    if data is None:
        raise ConfigError(source, [f"{source}: the file is empty; start from an example in configs/"])
    if not isinstance(data, dict):
        raise ConfigError(source, [f"{source}:1: the top level must be a mapping of keys, got {type(data).__name__}"])
    problems = [problem_at(source, lines, d.path, d.reason, d.line) for d in doc.duplicates]
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            problems.append(problem_at(source, lines, loc, _message(err)))
        raise ConfigError(source, problems) from exc
    return config, lines, problems


def problem_at(source: str, lines: dict[KeyPath, int], loc: KeyPath, reason: str, line: int | None = None) -> str:
    """``FILE:LINE: key.path: reason``, the line of the nearest key the file has."""
    line = line or _line_for(lines, loc)
    return f"{source}{f':{line}' if line else ''}: {_dotted(loc)}: {reason}"


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None) -> AgentConfig:
    """Validate YAML text; raise ConfigError with every problem found. Relative paths (models, files,
    state_dir) are taken relative to ``base_dir``."""
    config, lines, problems = parse_model(text, source, AgentConfig)
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    problems += [problem_at(source, lines, loc, msg) for loc, msg in config.cross_check() + _file_problems(config)]
    if problems:
        raise ConfigError(source, problems)
    return config


def _file_problems(config: AgentConfig) -> list[tuple[KeyPath, str]]:
    """Files the agent reads later that can be checked now: a missing password file must not wait for run."""
    path = config.mqtt.password_file if config.mqtt is not None else None
    if path is None:
        return []
    loc = ("mqtt", "password_file")
    expected = "expected a readable file whose first line is the password"
    if not path.exists():
        return [(loc, f"no such file {path}; {expected}")]
    if not path.is_file():
        return [(loc, f"{path} is not a regular file; {expected}")]
    try:
        with path.open(encoding="utf-8") as f:
            first = f.readline(4096).rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        return [(loc, f"cannot read {path}: {exc}; {expected}")]
    if not first:
        return [(loc, f"{path} has an empty first line; {expected}")]
    return []


def _resolve_paths(config: AgentConfig, base: Path) -> AgentConfig:
    """The config with its relative paths (state, model, camera files, database, password, TLS) made absolute."""
    updates: dict[str, Any] = {}
    if not config.state_dir.is_absolute():
        updates["state_dir"] = (base / config.state_dir).resolve()
    model = config.detector.model
    if str(model) != "default" and not model.is_absolute():
        updates["detector"] = config.detector.model_copy(update={"model": (base / model).resolve()})
    cams = []
    for cam in config.cameras:
        src = cam.source
        if "://" not in src and not src.startswith("/dev/") and not Path(src).is_absolute():
            cam = cam.model_copy(update={"source": str((base / src).resolve())})
        cams.append(cam)
    updates["cameras"] = cams
    if config.incident_log.path is not None and not config.incident_log.path.is_absolute():
        updates["incident_log"] = config.incident_log.model_copy(
            update={"path": (base / config.incident_log.path).resolve()})
    if config.mqtt is not None:
        mq = config.mqtt
        mupd: dict[str, Any] = {}
        if mq.password_file is not None and not mq.password_file.is_absolute():
            mupd["password_file"] = (base / mq.password_file).resolve()
        if mq.tls is not None:
            tupd = {k: (base / v).resolve() for k in ("ca_file", "cert_file", "key_file")
                    if (v := getattr(mq.tls, k)) is not None and not v.is_absolute()}
            mupd["tls"] = mq.tls.model_copy(update=tupd)
        updates["mqtt"] = mq.model_copy(update=mupd)
    return config.model_copy(update=updates)


def read_config_text(path: Path) -> str:
    """A config file's text, refusing what cannot be one (missing, unreadable, huge, not UTF-8)."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)  # a device or a huge file must not be read whole
    except FileNotFoundError as exc:
        raise ConfigError(path, [f"{path}: no such file; give the path of a YAML config (examples in configs/)"]
                          ) from exc
    except OSError as exc:
        raise ConfigError(path, [f"{path}: cannot be read: {exc}"]) from exc
    if len(raw) > MAX_BYTES:
        raise ConfigError(path, [f"{path}: more than {MAX_BYTES:,} bytes, more than a config may be; is this the "
                                 "right file?"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"{path}: cannot be read: not UTF-8 text: {exc}"]) from exc


def load_config(path: Path | str) -> AgentConfig:
    """Read and validate a config file; relative paths in it are taken relative to its folder."""
    p = Path(path)
    return parse_config(read_config_text(p), str(p), base_dir=p.resolve().parent)


def json_schema() -> dict[str, Any]:
    """The configuration's JSON Schema (draft 2020-12), for editors and ``edge-agent config schema``."""
    schema = AgentConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://edge-agent.local/schema/config.json"
    schema["title"] = "edge-agent configuration"
    return schema
