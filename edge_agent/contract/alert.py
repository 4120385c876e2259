"""One event model: evidence from each sensor kind and alerts, the one place where an alert becomes the
contract's payload (``edge-agent/alert@1``), and the one parser that reads a payload back into an ``Alert``:
one received from a box (untrusted: every field checked, texts cut to what is shown) or the box's own stored
copy."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from importlib import resources
from typing import Any, Literal, cast, get_args

from edge_agent.contract.errors import ContractError
from edge_agent.contract.ids import IDENT_RE, ULID_RE, ParseError, iso_ms, one_line, parse_time

SCHEMA_ID = "edge-agent/alert@1"
SEVERITIES = ("info", "low", "medium", "high", "critical")
Severity = Literal["info", "low", "medium", "high", "critical"]
AlertKind = Literal["intrusion", "loitering", "line_crossing", "metal", "radio", "fused", "sensor_fault"]
AlertState = Literal["new", "updated", "acknowledged", "escalated", "closed"]
SensorType = Literal["thermal", "radio", "metal"]
ALERT_KINDS: tuple[str, ...] = get_args(AlertKind)
ALERT_STATES: tuple[str, ...] = get_args(AlertState)
SENSOR_TYPES: tuple[str, ...] = get_args(SensorType)
EVIDENCE_EVENTS = ("ALARM", "CLEAR", "TAMPER", "FAULT", "HB", "alarm", "clear", "tamper", "fault", "heartbeat")
MAX_PAYLOAD = 256 * 1024  # an alert with its evidence is a few kB; snapshots travel on their own topic
MAX_DEPTH = 16  # the contract's alert nests 4 deep
# what a received alert's texts are cut to: what the page and the console show of them
TEXT_MAX = 200  # a zone's name, an evidence label or any other evidence text
SUMMARY_MAX = 1000  # one line a guard reads aloud
SNAPSHOT_MAX = 300  # a topic: three ids, "snapshots" and a ULID fit in 231
KEY_MAX = 64  # an evidence field's name
EVIDENCE_FIELDS_MAX = 64  # fields of one evidence besides sensor, type and ts
LIST_MAX = 64  # values in a list-valued evidence field the contract does not name
INT_MAX = 2**53  # larger integers do not survive a browser's JSON


def raise_severity(base: Severity, steps: int) -> Severity:
    """``base`` raised by ``steps`` levels (lowered for negative steps), between info and critical."""
    return cast(Severity, SEVERITIES[min(len(SEVERITIES) - 1, max(0, SEVERITIES.index(base) + steps))])


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one sensor saw, as the alert carries it."""

    sensor: str
    type: SensorType
    ts: float
    fields: tuple[tuple[str, Any], ...] = ()
    location: tuple[float, float] | None = None

    def payload(self) -> dict[str, Any]:
        return {"sensor": self.sensor, "type": self.type, "ts": iso_ms(self.ts), **dict(self.fields)}


@dataclass(frozen=True, slots=True)
class Alert:
    """One state of one alert, as the box publishes it and a command post reads it back (``parse_alert``)."""

    alert_id: str
    incident_id: str
    site: str
    box: str
    ts: float
    kind: AlertKind
    severity: Severity
    state: AlertState
    zone: tuple[str, str] | None
    location: tuple[float, float] | None
    evidence: tuple[Evidence, ...]
    summary: str
    snapshot: str | None = None

    def with_state(self, state: AlertState, ts: float) -> Alert:
        return replace(self, state=state, ts=ts)

    def payload(self) -> dict[str, Any]:
        """The contract's alert payload; the only place it is built."""
        return {
            "schema": SCHEMA_ID,
            "alert_id": self.alert_id,
            "incident_id": self.incident_id,
            "site": self.site,
            "box": self.box,
            "ts": iso_ms(self.ts),
            "kind": self.kind,
            "severity": self.severity,
            "state": self.state,
            "zone": {"id": self.zone[0], "name": self.zone[1]} if self.zone else None,
            "location": {"lat": round(self.location[0], 7), "lon": round(self.location[1], 7)}
            if self.location else None,
            "evidence": [e.payload() for e in self.evidence],
            "summary": self.summary,
            "snapshot": self.snapshot,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.payload(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class BadAlert(ContractError):
    """A received message that is no alert (or status) a command post can show; the message says which field."""


def json_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deep decoded JSON nests (counted without recursion; a branch is followed no deeper than ``limit + 1``)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        v, d = todo.pop()
        deepest = max(deepest, d)
        if isinstance(v, dict | list) and d <= limit:
            todo.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def refuse_constant(name: str) -> Any:
    """``json.loads``'s ``parse_constant``: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")


def load_untrusted(payload: bytes) -> Any:
    """JSON from the network, bounded in size and depth (NaN and Infinity refused); raises only ``BadAlert``."""
    if len(payload) > MAX_PAYLOAD:
        raise BadAlert(f"{len(payload)} bytes, over the {MAX_PAYLOAD} byte limit")
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=refuse_constant)
    except UnicodeDecodeError as exc:
        raise BadAlert(f"not UTF-8 (byte {exc.start}: {exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise BadAlert(f"not JSON ({exc.msg} at character {exc.pos})") from None
    except (ValueError, RecursionError) as exc:
        raise BadAlert(f"not JSON ({one_line(exc, 80)})") from None
    if json_depth(data) > MAX_DEPTH:
        raise BadAlert(f"JSON nested more than {MAX_DEPTH} deep")
    return data


def _shown(value: Any) -> str:
    """A received value as an error message shows it: its repr, escaped for one line and cut short."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        text = f"<{type(value).__name__}>"
    return one_line(text, 60)


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadAlert(f"{name} must be an object, got {_shown(value)}")
    return value


def _text(value: Any, name: str, limit: int = TEXT_MAX) -> str:
    """Text cut to ``limit`` characters (what the page and the console show of it); printed escaped wherever
    it is shown, so control characters may stay."""
    if not isinstance(value, str):
        raise BadAlert(f"{name} must be text, got {_shown(value)}")
    return value[:limit]


def _match(value: Any, name: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or pattern.match(value) is None:
        expected = "an id (1-64 letters, digits, _ and -)" if pattern is IDENT_RE else "a ULID"
        raise BadAlert(f"{name} must be {expected}, got {_shown(value)}")
    return value


def _choice(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise BadAlert(f"{name} must be one of {'|'.join(allowed)}, got {_shown(value)}")
    return value


def _number(value: Any, name: str, lo: float = -math.inf, hi: float = math.inf) -> int | float:
    """A finite number from ``lo`` to ``hi``, as received (an integer stays one); integers within what a
    browser's JSON keeps exact."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and lo <= value <= hi and (
        abs(value) <= INT_MAX if isinstance(value, int) else math.isfinite(value))
    if not ok:
        where = "" if (lo, hi) == (-math.inf, math.inf) else f" from {lo:g} to {hi:g}"
        raise BadAlert(f"{name} must be a finite number{where}, got {_shown(value)}")
    return cast(int | float, value)


def _time(value: Any, name: str) -> float:
    try:
        ts = parse_time(value)
        datetime.fromtimestamp(ts)  # a time a command post can print in its own zone
    except (ParseError, ValueError, OverflowError, OSError) as exc:
        raise BadAlert(f"{name}: {one_line(exc, 120)}") from None
    return ts


def _integer(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) > INT_MAX:
        raise BadAlert(f"{name} must be an integer, got {_shown(value)}")
    return value


def _bbox(value: Any, name: str) -> list[int | float]:
    if not isinstance(value, list) or len(value) != 4:
        raise BadAlert(f"{name} must be 4 numbers, got {_shown(value)}")
    return [_number(v, f"{name}[{i}]") for i, v in enumerate(value)]


def _scalar(value: Any, name: str) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value[:TEXT_MAX]
    if isinstance(value, int | float):
        return _number(value, name)
    raise BadAlert(f"{name} must be null, true, false, a number or text, got {_shown(value)}")


def _other(value: Any, name: str) -> Any:
    """An evidence field the contract does not name (a newer box's): kept, bounded like the rest; a list of
    plain values at most, as the page shows nothing deeper."""
    if isinstance(value, list):
        if len(value) > LIST_MAX:
            raise BadAlert(f"{name} must be a list of at most {LIST_MAX} values, got {len(value)}")
        return [_scalar(v, f"{name}[{i}]") for i, v in enumerate(value)]
    return _scalar(value, name)


# the evidence fields the schema names, checked as it says; any other field is kept through ``_other``
_EVIDENCE_FIELDS: dict[str, Callable[[Any, str], Any]] = {
    "label": _text,
    "confidence": lambda v, n: _number(v, n, 0, 1),
    "track_id": _integer,
    "bbox": _bbox,
    "temp_c": _number,
    "event": lambda v, n: _choice(v, n, EVIDENCE_EVENTS),
    "level": lambda v, n: _number(v, n, 0, 100),
    "kind": _text,
    "freq_hz": _number,
    "rssi_db": _number,
    "bearing_deg": lambda v, n: _number(v, n, 0, 360),
}


def _evidence(value: Any, name: str) -> Evidence:
    e = _object(value, name)
    sensor = _match(e.get("sensor"), f"{name}.sensor", IDENT_RE)
    kind = _choice(e.get("type"), f"{name}.type", SENSOR_TYPES)
    ts = _time(e.get("ts"), f"{name}.ts")
    fields: list[tuple[str, Any]] = []
    for key, v in e.items():
        if key in ("sensor", "type", "ts"):
            continue
        if len(fields) == EVIDENCE_FIELDS_MAX:
            raise BadAlert(f"{name} must have at most {EVIDENCE_FIELDS_MAX} fields, got {len(e) - 3}")
        if not (0 < len(key) <= KEY_MAX and key.isprintable()):
            raise BadAlert(f"{name} has a field name that is no name: {_shown(key)}")
        fields.append((key, _EVIDENCE_FIELDS.get(key, _other)(v, f"{name}.{key}")))
    return Evidence(sensor, cast(SensorType, kind), ts, tuple(fields))


def parse_alert(payload: bytes | str, site: str | None = None, box: str | None = None) -> Alert:
    """The one way in for an alert: a payload received on ``{prefix}/{site}/{box}/alerts`` (``site`` and
    ``box`` the topic's, which the alert must name) or a stored copy (no topic to compare), checked field by
    field and read into the typed ``Alert``; texts are cut to what the page shows. Raises only ``BadAlert``,
    which names the field and shows the value."""
    p = _object(load_untrusted(payload.encode("utf-8") if isinstance(payload, str) else payload), "the alert")
    if p.get("schema") != SCHEMA_ID:
        raise BadAlert(f"schema must be {SCHEMA_ID!r}, got {_shown(p.get('schema'))}")
    alert_id = _match(p.get("alert_id"), "alert_id", ULID_RE)
    incident_id = _match(p.get("incident_id"), "incident_id", ULID_RE)
    state = _choice(p.get("state"), "state", ALERT_STATES)
    severity = _choice(p.get("severity"), "severity", SEVERITIES)
    kind = _choice(p.get("kind"), "kind", ALERT_KINDS)
    for key, topic_value in (("site", site), ("box", box)):
        value = _match(p.get(key), key, IDENT_RE)
        if topic_value is not None and value != topic_value:
            raise BadAlert(f"{key} {value!r} is not the topic's {topic_value!r}")
    ts = _time(p.get("ts"), "ts")
    zone = None
    if p.get("zone") is not None:
        z = _object(p["zone"], "zone")
        zone = (_match(z.get("id"), "zone.id", IDENT_RE), _text(z.get("name"), "zone.name"))
    location = None
    if p.get("location") is not None:
        loc = _object(p["location"], "location")
        location = (float(_number(loc.get("lat"), "location.lat", -90, 90)),
                    float(_number(loc.get("lon"), "location.lon", -180, 180)))
    evidence = p.get("evidence")
    if not isinstance(evidence, list):
        raise BadAlert(f"evidence must be a list of objects, got {_shown(evidence)}")
    summary = _text(p.get("summary"), "summary", SUMMARY_MAX)
    if not summary:
        raise BadAlert("summary must be text of at least one character, got ''")
    snapshot = p.get("snapshot")
    return Alert(alert_id, incident_id, p["site"], p["box"], ts, cast(AlertKind, kind), cast(Severity, severity),
                 cast(AlertState, state), zone, location,
                 tuple(_evidence(e, f"evidence[{i}]") for i, e in enumerate(evidence)), summary,
                 None if snapshot is None else _text(snapshot, "snapshot", SNAPSHOT_MAX))


def alert_schema() -> dict[str, Any]:
    """The contract's alert payload as a JSON Schema (the copy shipped beside this module)."""
    text = resources.files("edge_agent.contract").joinpath("schemas/alert.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
