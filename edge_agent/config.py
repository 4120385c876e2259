"""The agent's one YAML configuration file: pydantic models, loading with every problem reported at once
(file, line, key path, reason), and the JSON Schema for editors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from detectors.yolo import YoloConfig
from edge_agent.paths import ConfigError, default_state_dir
from geofences.geo import GeoCalibration, GroundControlPoint
from geofences.zones import GeometryError, make_line, make_polygon
from sensors.thermal import CameraSpec

Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
ID_RULE = "letters, digits, '_' and '-', 1 to 64 characters"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GroundPointConfig(Strict):
    pixel: tuple[float, float] = Field(description="[x, y] in the camera image.")
    latlon: tuple[float, float] = Field(description="[lat, lon] (WGS84) of that spot on the ground.")


class CalibrationConfig(Strict):
    """Ground control points: spots visible in the image whose lat/lon was measured (GPS, map)."""

    points: list[GroundPointConfig] = Field(min_length=4, description="Four or more, spread over the ground.")
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
    enabled: bool = True
    pixel_format: Literal["auto", "gray8", "y16"] = Field(
        "auto", description="gray8: AGC already applied; y16: 16-bit radiometric counts; auto: by frame depth."
    )
    scale: float = Field(0.01, gt=0, description="Degrees per count for y16 frames (TLinear 0.01 K/count).")
    offset: float = Field(-273.15, description="Degrees Celsius at count 0 for y16 frames.")
    polarity: Literal["white_hot", "black_hot"] = Field(
        "white_hot", description="gray8 frames only: black_hot cameras show warm objects dark."
    )
    stall_s: float = Field(20.0, gt=0, description="No frame for this long: camera offline, reopen it.")
    backoff_min_s: float = Field(1.0, gt=0, description="First reopen delay; doubles after each failure.")
    backoff_max_s: float = Field(30.0, gt=0, description="Longest reopen delay.")
    loop: bool = Field(False, description="Start files and scenes again at their end (demos).")
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
    high_confidence: float = Field(0.25, ge=0.0, le=1.0, description="Detections above this start tracks.")
    match_iou: float = Field(0.2, gt=0.0, lt=1.0, description="Least overlap of a detection with a track.")
    min_hits: int = Field(3, ge=1, le=30, description="Detections before a track is confirmed and gets an id.")
    max_age_s: float = Field(2.0, gt=0, description="A track unseen this long is lost.")
    coast_s: float = Field(0.5, ge=0, description="A confirmed track missed this long is still reported, "
                           "at its predicted place.")


class GatingConfig(Strict):
    enabled: bool = Field(True, description="Skip the detector on frames without motion, new heat or tracks.")
    motion_delta_c: float = Field(1.5, gt=0, description="Temperature change (°C) that counts as motion.")
    motion_delta_gray: float = Field(14.0, gt=0, description="Grey-level change that counts as motion (8-bit).")
    min_changed: float = Field(0.0004, gt=0, lt=1, description="Fraction of pixels that must change.")
    heat_delta_c: float = Field(6.0, gt=0, description="Spot this much above the scene median: detect.")
    keepalive_s: float = Field(10.0, gt=0, description="Detect at least this often, even when quiet.")


Label = Literal["person", "vehicle", "animal"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
HHMM = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class WindowConfig(Strict):
    start: HHMM = Field(description="Local time HH:MM the rule becomes active.")
    end: HHMM = Field(description="Local time HH:MM it stops; before start means over midnight.")
    days: list[Day] = Field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"])


class ScheduleConfig(Strict):
    timezone: str = Field("UTC", description="IANA timezone of the windows, e.g. Europe/Vienna.")
    windows: list[WindowConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_zone(self) -> ScheduleConfig:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}; use an IANA name like Europe/Vienna") from None
        return self


class FilterConfig(Strict):
    labels: list[Label] = Field(default_factory=lambda: ["person"], description="Which objects the rule is about.")
    min_confidence: float = Field(0.3, ge=0, le=1, description="Weaker detections count as nowhere.")
    min_height_px: float = Field(0, ge=0, description="Smaller boxes count as nowhere.")
    min_height_m: float = Field(
        0, ge=0, description="Objects less tall than this (metres, estimated through the camera's geo-calibration) "
        "count as nowhere; e.g. 1.0 keeps dogs a person-only model mistakes for people out of a zone.",
    )
    min_age_s: float = Field(0.5, ge=0, description="Tracks younger than this fire nothing.")
    min_frames: int = Field(3, ge=1, description="Frames in a row on the new side before it counts (inertia).")
    margin: float | None = Field(
        None, ge=0, description="Hysteresis band around the edge: pixels for pixel zones (default 6), metres for "
        "geographic ones (default 0.3).",
    )


class ZoneConfig(Strict):
    """A polygon: pixel [x, y] points of one camera, or [lat, lon] points on the map (space: geo)."""

    id: Ident
    name: str | None = None
    space: Literal["pixel", "geo"] = "pixel"
    camera: Ident | None = Field(None, description="The camera of a pixel zone (geo zones: every calibrated one).")
    polygon: list[tuple[float, float]]
    entry: bool = Field(True, description="An event when a track enters (intrusion).")
    exit: bool = Field(False, description="An event when a track leaves.")
    loiter_s: float | None = Field(None, gt=0, description="An event when a track stays this long.")
    max_count: int | None = Field(None, ge=0, description="An event when more tracks than this are inside.")
    filters: FilterConfig = Field(default_factory=FilterConfig)  # type: ignore[arg-type]
    schedule: ScheduleConfig | None = Field(None, description="Active hours; none: always.")
    cooldown_s: float = Field(60.0, ge=0, description="At most one event of a kind per track in this time.")

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

    id: Ident
    name: str | None = None
    space: Literal["pixel", "geo"] = "pixel"
    camera: Ident | None = None
    points: list[tuple[float, float]]
    direction: Literal["left_to_right", "right_to_left", "both"] = Field(
        "both", description="Which crossings count, as seen on the screen (or map, north up) looking from the "
        "first point towards the last.",
    )
    filters: FilterConfig = Field(default_factory=FilterConfig)  # type: ignore[arg-type]
    schedule: ScheduleConfig | None = None
    cooldown_s: float = Field(60.0, ge=0)

    @model_validator(mode="after")
    def _geometry(self) -> LineConfig:
        try:
            make_line(self.points, self.space)
        except GeometryError as exc:
            raise ValueError(f"points: {exc}") from None
        if self.space == "pixel" and self.camera is None:
            raise ValueError("a pixel line needs its camera")
        return self


class FixedSensorConfig(Strict):
    """A sensor at a known place: a metal detector or a radio receiver, and where its lines come from."""

    id: Ident
    kind: Literal["metal", "radio"]
    name: str | None = None
    latlon: tuple[float, float]
    url: str | None = Field(None, description="udp://HOST:PORT, tcp://HOST:PORT, tcp-listen://HOST:PORT or "
                            "serial:///dev/ttyX?baud=N; none: events arrive through another sensor's feed.")
    hb_timeout_s: float = Field(30.0, gt=0, description="Metal detectors: silent this long means faulty.")
    max_skew_s: float = Field(30.0, gt=0, description="A sensor clock further off than this is flagged.")

    @model_validator(mode="after")
    def _url(self) -> FixedSensorConfig:
        if self.url is not None:
            from sensors.errors import SensorError
            from sensors.lines import parse_url

            try:
                parse_url(self.url)
            except SensorError as exc:
                raise ValueError(f"url: {exc}") from None
        return self


class FusionConfig(Strict):
    """Which sensors corroborate each other at a place (a zone or a line)."""

    id: Ident
    place: Ident = Field(description="Zone or line id the incidents belong to.")
    metal: list[Ident] = Field(default_factory=list, description="Metal detectors of this place.")
    radio: list[Ident] = Field(default_factory=list, description="Receivers whose bare detections count here.")
    radius_m: float = Field(50.0, ge=0, description="Metal detectors and radio positions this close count too.")
    window_s: float = Field(30.0, gt=0, description="Events this close in time join one incident.")
    severity: Literal["info", "low", "medium", "high", "critical"] = Field(
        "medium", description="Severity of one sensor kind; each further kind raises it one step."
    )
    quiet_s: float = Field(120.0, gt=0, description="An incident closes after this long without new evidence.")
    cooldown_s: float = Field(300.0, ge=0, description="No second alert for the same thing within this time.")


class TlsConfig(Strict):
    """TLS to the broker: the CA that signed the broker's certificate, and this box's own (mutual TLS)."""

    ca_file: Path = Field(description="PEM file of the CA that signed the broker's certificate.")
    cert_file: Path | None = Field(None, description="This box's client certificate (PEM), for mutual TLS.")
    key_file: Path | None = Field(None, description="Its private key (PEM).")
    insecure: bool = Field(False, description="Skip the broker hostname check (test benches only).")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS needs both)")
        return self


class MqttConfig(Strict):
    """The command post's broker and how alerts are delivered to it."""

    host: str = Field(min_length=1, description="Broker host name or address.")
    port: int | None = Field(None, ge=1, le=65535, description="Default 1883, or 8883 with tls.")
    prefix: Ident = Field("border", description="First topic level: {prefix}/{site}/{box}/...")
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    client_id: Ident | None = Field(None, description="Default edge-agent-{site}-{box}.")
    username: str | None = None
    password: str | None = Field(None, description="Prefer password_file: a config file is often shared.")
    password_file: Path | None = Field(None, description="A file whose first line is the password.")
    tls: TlsConfig | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    max_inflight: int = Field(100, ge=1, le=65535, description="QoS 1 messages awaiting the broker's ack.")
    health_interval_s: float = Field(30.0, gt=0, description="How often health is published.")
    escalate_after_s: float = Field(120.0, gt=0, description="Critical alerts unacknowledged this long escalate.")
    require_receipt: bool = Field(False, description="An alert state counts as delivered only when a command "
                                  "post's receipt for it arrives on .../receipts, not on the broker's ack.")
    receipt_timeout_s: float = Field(30.0, gt=0, le=86400, description="No receipt this long after the broker's "
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
    max_age_days: float = Field(365.0, gt=0, description="Closed incidents older than this are removed.")
    critical_age_days: float = Field(730.0, gt=0, description="Unacknowledged critical incidents are kept this long.")
    min_free_mb: float = Field(500.0, ge=0, description="Below this free disk, the oldest evidence goes first.")


class IncidentLogConfig(Strict):
    path: Path | None = Field(None, description="SQLite file (default STATE_DIR/incidents.db).")
    snapshot_max_kb: int = Field(200, ge=10, description="Largest snapshot JPEG; quality drops to fit.")
    max_rejects: int = Field(10_000, ge=10, description="Rejected inputs kept (oldest first out).")
    retention: RetentionConfig = Field(default_factory=RetentionConfig)  # type: ignore[arg-type]


class AgentConfig(Strict):
    """The whole edge box."""

    site: Ident = Field(description=f"Site id ({ID_RULE}).")
    box: Ident = Field(description=f"This edge box's id ({ID_RULE}).")
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="Models, incident database and snapshots live here (default $EDGE_AGENT_HOME or "
        "~/.local/share/edge-agent; /var/lib/edge-agent under systemd).",
    )
    detector: YoloConfig = Field(default_factory=YoloConfig)  # type: ignore[arg-type]
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)  # type: ignore[arg-type]
    gating: GatingConfig = Field(default_factory=GatingConfig)  # type: ignore[arg-type]
    cameras: list[CameraConfig] = Field(default_factory=list, description="Thermal cameras.")
    zones: list[ZoneConfig] = Field(default_factory=list, description="Zones and their rules.")
    lines: list[LineConfig] = Field(default_factory=list, description="Lines to cross.")
    fixed_sensors: list[FixedSensorConfig] = Field(default_factory=list, description="Sensors at known places.")
    fusion: list[FusionConfig] = Field(default_factory=list, description="Correlation rules.")
    mqtt: MqttConfig | None = Field(None, description="The command post's broker; none: alerts stay in the outbox.")
    incident_log: IncidentLogConfig = Field(default_factory=IncidentLogConfig)  # type: ignore[arg-type]

    def cross_check(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Problems between sections: duplicate ids, rules for unknown or uncalibrated cameras."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
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
        return problems

    @property
    def models_dir(self) -> Path:
        return self.state_dir / "models"

    @property
    def db_path(self) -> Path:
        return self.incident_log.path or self.state_dir / "incidents.db"


def _node_lines(node: yaml.Node, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], int]]:
    """Every key path in a YAML document with its 1-based line."""
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield path + (str(key.value),), key.start_mark.line + 1
            yield from _node_lines(value, path + (str(key.value),))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _node_lines(item, path + (i,))


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


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None) -> AgentConfig:
    """Validate YAML text; raise ConfigError with every problem found. Relative paths (models, files,
    state_dir) are taken relative to ``base_dir``."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(source, [f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from exc
    if data is None:
        raise ConfigError(source, [f"{source}: the file is empty; start from an example in configs/"])
    if not isinstance(data, dict):
        raise ConfigError(source, [f"{source}:1: the top level must be a mapping of keys, got {type(data).__name__}"])
    lines = dict(_node_lines(node)) if node is not None else {}
    try:
        config = AgentConfig.model_validate(data)
        cross = config.cross_check()
        if cross:
            problems = [f"{source}{f':{ln}' if (ln := _line_for(lines, loc)) else ''}: {_dotted(loc)}: {msg}"
                        for loc, msg in cross]
            raise ConfigError(source, problems)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            line = _line_for(lines, loc)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "string_pattern_mismatch":
                msg = f"{err['input']!r} is not a valid id: use {ID_RULE}"
            elif err["type"] == "extra_forbidden":
                msg = "unknown key (misspelt? see 'edge-agent config schema')"
            problems.append(f"{source}{f':{line}' if line else ''}: {_dotted(loc)}: {msg}")
        raise ConfigError(source, problems) from None
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    return config


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
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(p, [f"{p}: no such file; give the path of a YAML config (examples in configs/)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(p, [f"{p}: cannot be read: {exc}"]) from None
    return parse_config(text, str(p), base_dir=p.resolve().parent)


def json_schema() -> dict[str, Any]:
    schema = AgentConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://edge-agent.local/schema/config.json"
    schema["title"] = "edge-agent configuration"
    return schema
