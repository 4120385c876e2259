"""The agent's one YAML configuration file: pydantic models, loading with every problem reported at once
(file, line, key path, reason), and the JSON Schema for editors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from detectors.yolo import YoloConfig
from edge_agent.config.fields import ID_RULE, MAX_CAMERAS, MAX_RULES, Flag, Ident, LatLon, Point, Real, Strict, Whole
from edge_agent.config.reader import MAX_BYTES, KeyPath, YamlRefused, read_yaml
from edge_agent.config.rules import FilterConfig, FusionConfig, LineConfig, ScheduleConfig, WindowConfig, ZoneConfig
from edge_agent.config.sensors import FixedSensorConfig, shared_ports, unheard_sensors
from edge_agent.paths import ConfigError, default_state_dir
from geofences.geo import GeoCalibration, GroundControlPoint
from sensors.thermal import CameraSpec

__all__ = [
    "AgentConfig", "CalibrationConfig", "CameraConfig", "ConfigError", "FilterConfig", "FixedSensorConfig",
    "FusionConfig", "GatingConfig", "IncidentLogConfig", "LineConfig", "MqttConfig", "RetentionConfig",
    "ScheduleConfig", "TlsConfig", "TrackerConfig", "WindowConfig", "ZoneConfig", "default_state_dir", "json_schema",
    "load_config", "parse_config",
]

class GroundPointConfig(Strict):
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
        "auto", description="gray8: AGC already applied; y16: 16-bit radiometric counts; auto: by frame depth."
    )
    scale: Real = Field(0.01, gt=0, description="Degrees per count for y16 frames (TLinear 0.01 K/count).")
    offset: Real = Field(-273.15, description="Degrees Celsius at count 0 for y16 frames.")
    polarity: Literal["white_hot", "black_hot"] = Field(
        "white_hot", description="gray8 frames only: black_hot cameras show warm objects dark."
    )
    stall_s: Real = Field(20.0, gt=0, description="No frame for this long: camera offline, reopen it.")
    backoff_min_s: Real = Field(1.0, gt=0, description="First reopen delay; doubles after each failure.")
    backoff_max_s: Real = Field(30.0, gt=0, description="Longest reopen delay.")
    loop: Flag = Field(False, description="Start files and scenes again at their end (demos).")
    calibration: CalibrationConfig | None = Field(None, description="Geo-calibration: places tracks on the map.")

    @model_validator(mode="after")
    def _backoff_order(self) -> CameraConfig:
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError(f"backoff_max_s ({self.backoff_max_s}) is below backoff_min_s ({self.backoff_min_s})")
        return self

    def spec(self, pace: Literal["live", "every"] = "live") -> CameraSpec:
        return CameraSpec(
            camera_id=self.id, source=self.source, pixel_format=self.pixel_format, scale=self.scale,
            offset=self.offset, polarity=self.polarity, stall_s=self.stall_s, backoff_min_s=self.backoff_min_s,
            backoff_max_s=self.backoff_max_s, pace=pace, loop=self.loop,
        )


class TrackerConfig(Strict):
    high_confidence: Real = Field(0.25, ge=0.0, le=1.0, description="Detections above this start tracks.")
    match_iou: Real = Field(0.2, gt=0.0, lt=1.0, description="Least overlap of a detection with a track.")
    min_hits: Whole = Field(3, ge=1, le=30, description="Detections before a track is confirmed and gets an id.")
    max_age_s: Real = Field(2.0, gt=0, description="A track unseen this long is lost.")
    coast_s: Real = Field(0.5, ge=0, description="A confirmed track missed this long is still reported, "
                           "at its predicted place.")


class GatingConfig(Strict):
    enabled: Flag = Field(True, description="Skip the detector on frames without motion, new heat or tracks.")
    motion_delta_c: Real = Field(1.5, gt=0, description="Temperature change (°C) that counts as motion.")
    motion_delta_gray: Real = Field(14.0, gt=0, description="Grey-level change that counts as motion (8-bit).")
    min_changed: Real = Field(0.0004, gt=0, lt=1, description="Fraction of pixels that must change.")
    heat_delta_c: Real = Field(6.0, gt=0, description="Spot this much above the scene median: detect.")
    keepalive_s: Real = Field(10.0, gt=0, description="Detect at least this often, even when quiet.")


class TlsConfig(Strict):
    """TLS to the broker: the CA that signed the broker's certificate, and this box's own (mutual TLS)."""

    ca_file: Path = Field(description="PEM file of the CA that signed the broker's certificate.")
    cert_file: Path | None = Field(None, description="This box's client certificate (PEM), for mutual TLS.")
    key_file: Path | None = Field(None, description="Its private key (PEM).")
    insecure: Flag = Field(False, description="Skip the broker hostname check (test benches only).")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS needs both)")
        return self


class MqttConfig(Strict):
    """The command post's broker and how alerts are delivered to it."""

    host: str = Field(min_length=1, description="Broker host name or address.")
    port: Whole | None = Field(None, ge=1, le=65535, description="Default 1883, or 8883 with tls.")
    prefix: Ident = Field("border", description="First topic level: {prefix}/{site}/{box}/...")
    protocol: Literal["3.1.1", "5"] = Field("3.1.1", description="MQTT protocol version.")
    client_id: Ident | None = Field(None, description="Default edge-agent-{site}-{box}.")
    username: str | None = Field(None, description="Broker user name (with mutual TLS: the certificate's CN).")
    password: str | None = Field(None, description="Prefer password_file: a config file is often shared.")
    password_file: Path | None = Field(None, description="A file whose first line is the password; it must exist "
                                       "and be readable when the config is loaded.")
    tls: TlsConfig | None = Field(None, description="TLS to the broker; none: plain TCP.")
    keepalive_s: Whole = Field(30, ge=5, le=3600, description="Seconds between MQTT pings while idle.")
    reconnect_min_s: Real = Field(1.0, gt=0, description="First reconnect delay; doubles after each failure.")
    reconnect_max_s: Real = Field(30.0, gt=0, description="Longest reconnect delay.")
    max_inflight: Whole = Field(100, ge=1, le=65535, description="QoS 1 messages awaiting the broker's ack.")
    health_interval_s: Real = Field(30.0, gt=0, description="How often health is published.")
    escalate_after_s: Real = Field(120.0, gt=0, description="Critical alerts unacknowledged this long escalate.")
    require_receipt: bool = Field(False, description="An alert state counts as delivered only when a command "
                                  "post's receipt for it arrives on .../receipts, not on the broker's ack.")
    receipt_timeout_s: Real = Field(30.0, gt=0, le=86400, description="No receipt this long after the broker's "
                                    "ack: the alert state is published again (then twice as long, up to 1 h).")

    @model_validator(mode="after")
    def _password(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self

    @property
    def broker_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    def secret(self) -> str | None:
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").splitlines()[0]
            except (OSError, IndexError) as exc:
                raise ValueError(f"mqtt.password_file {self.password_file}: cannot read a password: {exc}") from None
        return self.password


class RetentionConfig(Strict):
    max_age_days: Real = Field(365.0, gt=0, description="Closed incidents older than this are removed.")
    critical_age_days: Real = Field(730.0, gt=0, description="Unacknowledged critical incidents are kept this long.")
    min_free_mb: Real = Field(500.0, ge=0, description="Below this free disk, the oldest evidence goes first.")


class IncidentLogConfig(Strict):
    path: Path | None = Field(None, description="SQLite file (default STATE_DIR/incidents.db).")
    snapshot_max_kb: Whole = Field(200, ge=10, description="Largest snapshot JPEG; quality drops to fit.")
    max_rejects: Whole = Field(10_000, ge=10, description="Rejected inputs kept (oldest first out).")
    reserve_mb: Real = Field(16.0, ge=0, description="Disk space held back in a reserve file beside the database "
                              "and given up when the disk fills, so incidents and the outbox can still be written; "
                              "0: no reserve.")
    retention: RetentionConfig = Field(default_factory=RetentionConfig,  # type: ignore[arg-type]
                                       description="What is removed when, by age and by free disk.")


class AgentConfig(Strict):
    """The whole edge box."""

    site: Ident = Field(description=f"Site id ({ID_RULE}).")
    box: Ident = Field(description=f"This edge box's id ({ID_RULE}).")
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="Models, incident database and snapshots live here (default $EDGE_AGENT_HOME or "
        "~/.local/share/edge-agent; /var/lib/edge-agent under systemd).",
    )
    detector: YoloConfig = Field(default_factory=YoloConfig,  # type: ignore[arg-type]
                                 description="The detection model and how to run it.")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig,  # type: ignore[arg-type]
                                   description="How detections become tracks with ids.")
    gating: GatingConfig = Field(default_factory=GatingConfig,  # type: ignore[arg-type]
                                 description="When the detector may skip a quiet frame.")
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
    incident_log: IncidentLogConfig = Field(default_factory=IncidentLogConfig,  # type: ignore[arg-type]
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


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None) -> AgentConfig:
    """Validate YAML text; raise ConfigError with every problem found. Relative paths (models, files,
    state_dir) are taken relative to ``base_dir``."""
    try:
        doc = read_yaml(text)
    except YamlRefused as exc:
        where = f"{source}:{exc.problem.line}" if exc.problem.line else source
        path = f" {_dotted(exc.problem.path)}:" if exc.problem.path else ""
        raise ConfigError(source, [f"{where}:{path} {exc.problem.reason}"]) from exc
    data, lines = doc.data, doc.lines

    def at(line: int | None, loc: KeyPath, reason: str) -> str:
        return f"{source}{f':{line}' if line else ''}: {_dotted(loc)}: {reason}"

    if data is None:
        raise ConfigError(source, [f"{source}: the file is empty; start from an example in configs/"])
    if not isinstance(data, dict):
        raise ConfigError(source, [f"{source}:1: the top level must be a mapping of keys, got {type(data).__name__}"])
    problems = [at(d.line, d.path, d.reason) for d in doc.duplicates]
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            problems.append(at(_line_for(lines, loc), loc, _message(err)))
        raise ConfigError(source, problems) from None
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    problems += [at(_line_for(lines, loc), loc, msg) for loc, msg in config.cross_check() + _file_problems(config)]
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


def load_config(path: Path | str) -> AgentConfig:
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)  # a device or a huge file must not be read whole
    except FileNotFoundError:
        raise ConfigError(p, [f"{p}: no such file; give the path of a YAML config (examples in configs/)"]) from None
    except OSError as exc:
        raise ConfigError(p, [f"{p}: cannot be read: {exc}"]) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(p, [f"{p}: more than {MAX_BYTES:,} bytes, more than a config may be; is this the right "
                              "file?"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(p, [f"{p}: cannot be read: not UTF-8 text: {exc}"]) from None
    return parse_config(text, str(p), base_dir=p.resolve().parent)


def json_schema() -> dict[str, Any]:
    schema = AgentConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://edge-agent.local/schema/config.json"
    schema["title"] = "edge-agent configuration"
    return schema
