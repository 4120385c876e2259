"""One event model: evidence from each sensor kind and alerts, and the one place where an alert becomes the
contract's payload (``edge-agent/alert@1``) and where a received payload is checked and read back."""

from __future__ import annotations

import json
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
MAX_PAYLOAD = 256 * 1024  # an alert with its evidence is a few kB; snapshots travel on their own topic
MAX_DEPTH = 16  # the contract's alert nests 4 deep


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
    """One state of one alert, as the box publishes it."""

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


def alert_from_payload(p: dict[str, Any]) -> Alert:
    """An alert back from its payload (the store's copy, for state changes: acknowledged, escalated)."""
    evidence = tuple(
        Evidence(e["sensor"], e["type"], parse_time(e["ts"]),
                 tuple((k, v) for k, v in e.items() if k not in ("sensor", "type", "ts")))
        for e in p["evidence"])
    zone = (p["zone"]["id"], p["zone"]["name"]) if p.get("zone") else None
    loc = (p["location"]["lat"], p["location"]["lon"]) if p.get("location") else None
    return Alert(p["alert_id"], p["incident_id"], p["site"], p["box"], parse_time(p["ts"]), p["kind"], p["severity"],
                 p["state"], zone, loc, evidence, p["summary"], p.get("snapshot"))


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


def _field(p: dict[str, Any], key: str, allowed: Any) -> Any:
    value = p.get(key)
    if isinstance(allowed, type):
        ok = isinstance(value, allowed)
        expected = allowed.__name__
    elif isinstance(allowed, tuple):
        ok = isinstance(value, str) and value in allowed
        expected = "one of " + "|".join(allowed)
    else:
        ok = isinstance(value, str) and allowed.match(value) is not None
        expected = "an id" if allowed is IDENT_RE else "a ULID"
    if not ok:
        raise BadAlert(f"{key} must be {expected}, got {one_line(repr(value), 60)}")
    return value


def parse_alert(payload: bytes, site: str, box: str) -> tuple[dict[str, Any], float]:
    """An alert received on ``{prefix}/{site}/{box}/alerts``, checked field by field: the payload and its
    time. ``BadAlert`` says what is wrong."""
    p = load_untrusted(payload)
    if not isinstance(p, dict):
        raise BadAlert(f"not a JSON object but {type(p).__name__}")
    _field(p, "alert_id", ULID_RE)
    _field(p, "state", ALERT_STATES)
    _field(p, "severity", SEVERITIES)
    _field(p, "kind", ALERT_KINDS)
    _field(p, "summary", str)
    for key, topic_value in (("site", site), ("box", box)):
        if _field(p, key, IDENT_RE) != topic_value:
            raise BadAlert(f"{key} {p[key]!r} is not the topic's {topic_value!r}")
    try:
        ts = parse_time(p.get("ts"))
        datetime.fromtimestamp(ts)  # a time a command post can print
    except (ParseError, ValueError, OverflowError, OSError) as exc:
        raise BadAlert(f"ts: {one_line(exc, 80)}") from None
    zone = p.get("zone")
    if zone is not None and not (isinstance(zone, dict) and isinstance(zone.get("name", ""), str)):
        raise BadAlert("zone must be null or an object with a text name")
    evidence = p.get("evidence", [])
    if not isinstance(evidence, list) or not all(isinstance(e, dict) and isinstance(e.get("type"), str)
                                                 for e in evidence):
        raise BadAlert("evidence must be a list of objects, each with a text type")
    if p.get("snapshot") is not None and not isinstance(p["snapshot"], str):
        raise BadAlert("snapshot must be null or a topic")
    return p, ts


def alert_schema() -> dict[str, Any]:
    """The contract's alert payload as a JSON Schema (the copy shipped beside this module)."""
    text = resources.files("edge_agent.contract").joinpath("schemas/alert.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
