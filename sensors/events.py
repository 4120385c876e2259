"""Radio and metal-detector events: the contract's line formats, parsed strictly.

Every line is either parsed into an immutable event or rejected with a ``ParseError`` whose message says
what is wrong; nothing else escapes. Both the sensor's own time and the receive time are kept, and a sensor
clock further off than ``max_skew_s`` is flagged on the event.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

SENSOR_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RADIO_KINDS = ("rf_detect", "bearing", "position", "emergency")
METAL_EVENTS = ("ALARM", "CLEAR", "TAMPER", "FAULT", "HB")
INT_TEXT = re.compile(r"-?[0-9]{1,12}")
PMDET = re.compile(rb"^\$PMDET,([^,*]*),([^,*]*),([^,*]*),([^,*]*),([^,*]*)\*([0-9A-Fa-f]{2})$")

RadioKind = Literal["rf_detect", "bearing", "position", "emergency"]
MetalKind = Literal["ALARM", "CLEAR", "TAMPER", "FAULT", "HB"]


class ParseError(ValueError):
    """A line that is not a valid event; the message is the reason kept with the rejected line."""


@dataclass(frozen=True, slots=True)
class RadioEvent:
    sensor: str
    kind: RadioKind
    ts: float  # the sensor's time (epoch seconds)
    received: float  # when the agent read the line
    skewed: bool  # the sensor clock is off by more than the allowed skew
    freq_hz: float | None = None
    rssi_db: float | None = None
    bearing_deg: float | None = None
    bearing_conf: float | None = None
    lat: float | None = None
    lon: float | None = None
    radio_id: str | None = None


@dataclass(frozen=True, slots=True)
class MetalEvent:
    sensor: str
    seq: int
    event: MetalKind
    level: int
    zone: int
    ts: float  # the sensor's time when it sent one (JSON), else the receive time
    received: float
    skewed: bool = False


def _text(line: bytes) -> str:
    try:
        return line.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 (byte {exc.start})") from None


def _sensor(value: Any) -> str:
    if not isinstance(value, str) or not SENSOR_ID.match(value):
        raise ParseError(f"sensor {value!r} is not a valid id (letters, digits, _ and -, 1-64)")
    return value


def parse_time(value: Any) -> float:
    """RFC 3339 text or epoch milliseconds to epoch seconds."""
    if isinstance(value, bool):
        raise ParseError("ts must be RFC 3339 text or epoch milliseconds, got a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or not 0 <= value < 1e14:
            raise ParseError(f"ts {value!r} is not a plausible epoch in milliseconds")
        return float(value) / 1000.0
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ParseError(f"ts {value!r} is not RFC 3339") from None
        if parsed.tzinfo is None:
            raise ParseError(f"ts {value!r} has no timezone offset (RFC 3339 needs Z or +hh:mm)")
        return parsed.timestamp()
    raise ParseError(f"ts must be RFC 3339 text or epoch milliseconds, got {type(value).__name__}")


def _number(obj: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    if key not in obj or obj[key] is None:
        return None
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ParseError(f"{key} must be a number, got {v!r}")
    if not lo <= v <= hi:
        raise ParseError(f"{key} {v!r} is out of range [{lo:g}, {hi:g}]")
    return float(v)


def _json_object(line: bytes) -> dict[str, Any]:
    text = _text(line)
    if not text:
        raise ParseError("empty line")
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ParseError(f"not JSON: {getattr(exc, 'msg', exc)}") from None
    if not isinstance(obj, dict):
        raise ParseError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def parse_radio(line: bytes, received: float, max_skew_s: float = 30.0) -> RadioEvent:
    """One newline-delimited JSON radio event."""
    obj = _json_object(line)
    for key in ("sensor", "ts", "kind"):
        if key not in obj:
            raise ParseError(f"missing field {key!r}")
    sensor = _sensor(obj["sensor"])
    kind = obj["kind"]
    if kind not in RADIO_KINDS:
        raise ParseError(f"unknown kind {kind!r}; expected one of {', '.join(RADIO_KINDS)}")
    ts = parse_time(obj["ts"])
    bearing = _number(obj, "bearing_deg", 0.0, 360.0)
    lat = _number(obj, "lat", -90.0, 90.0)
    lon = _number(obj, "lon", -180.0, 180.0)
    if kind == "bearing" and bearing is None:
        raise ParseError("a bearing event needs bearing_deg")
    if kind == "position" and (lat is None or lon is None):
        raise ParseError("a position event needs lat and lon")
    if (lat is None) != (lon is None):
        raise ParseError("lat and lon come together")
    radio_id = obj.get("radio_id")
    if radio_id is not None and (not isinstance(radio_id, (str, int)) or isinstance(radio_id, bool)
                                 or len(str(radio_id)) > 128):
        raise ParseError(f"radio_id must be a short string, got {radio_id!r}")
    return RadioEvent(
        sensor=sensor, kind=kind, ts=ts, received=received, skewed=abs(received - ts) > max_skew_s,
        freq_hz=_number(obj, "freq_hz", 0.0, 1e12), rssi_db=_number(obj, "rssi_db", -200.0, 50.0),
        bearing_deg=bearing, bearing_conf=_number(obj, "bearing_conf", 0.0, 1.0), lat=lat, lon=lon,
        radio_id=None if radio_id is None else str(radio_id),
    )


def nmea_checksum(body: bytes) -> int:
    """XOR of the bytes between ``$`` and ``*``."""
    c = 0
    for b in body:
        c ^= b
    return c


def parse_metal(line: bytes, received: float, max_skew_s: float = 30.0) -> MetalEvent:
    """A ``$PMDET`` sentence, or a JSON line with the same fields (and an optional ``ts``)."""
    raw = line.strip()
    if raw.startswith(b"$"):
        m = PMDET.match(raw)
        if m is None:
            if not raw.startswith(b"$PMDET,"):
                raise ParseError(f"not a $PMDET sentence: {raw[:12]!r}")
            raise ParseError("malformed $PMDET sentence: expected $PMDET,sensor,seq,event,level,zone*HH")
        body = raw[1:raw.rindex(b"*")]
        want = nmea_checksum(body)
        got = int(m.group(6), 16)
        if got != want:
            raise ParseError(f"bad checksum *{got:02X}, computed *{want:02X}")
        fields = [g.decode("ascii", "replace") for g in m.groups()[:5]]
        return _metal(dict(zip(("sensor", "seq", "event", "level", "zone"), fields, strict=True)), received,
                      max_skew_s, text_fields=True)
    return _metal(_json_object(line), received, max_skew_s, text_fields=False)


def _int(obj: dict[str, Any], key: str, lo: int, hi: int, text: bool) -> int:
    if key not in obj:
        raise ParseError(f"missing field {key!r}")
    v = obj[key]
    if text:
        if not isinstance(v, str) or not INT_TEXT.fullmatch(v):
            raise ParseError(f"{key} {v!r} is not an integer")
        v = int(v)
    elif isinstance(v, bool) or not isinstance(v, int):
        raise ParseError(f"{key} must be an integer, got {v!r}")
    if not lo <= v <= hi:
        raise ParseError(f"{key} {v} is out of range [{lo}, {hi}]")
    return int(v)


def _metal(obj: dict[str, Any], received: float, max_skew_s: float, text_fields: bool) -> MetalEvent:
    if "sensor" not in obj:
        raise ParseError("missing field 'sensor'")
    sensor = _sensor(obj["sensor"])
    event = obj.get("event")
    if event not in METAL_EVENTS:
        raise ParseError(f"unknown event {event!r}; expected one of {', '.join(METAL_EVENTS)}")
    seq = _int(obj, "seq", 0, 2**31 - 1, text_fields)
    level = _int(obj, "level", 0, 100, text_fields)
    zone = _int(obj, "zone", 0, 9999, text_fields)
    ts, skewed = received, False
    if not text_fields and obj.get("ts") is not None:
        ts = parse_time(obj["ts"])
        skewed = abs(received - ts) > max_skew_s
    return MetalEvent(sensor, seq, event, level, zone, ts, received, skewed)


@dataclass(slots=True)
class MetalHealth:
    """Per-detector sequence gaps and heartbeat watch."""

    hb_timeout_s: float = 30.0
    last_seq: dict[str, int] | None = None
    last_heard: dict[str, float] | None = None
    gaps: dict[str, int] | None = None

    def __post_init__(self) -> None:
        self.last_seq, self.last_heard, self.gaps = {}, {}, {}

    def observe(self, ev: MetalEvent) -> int:
        """Record an event; returns how many sequence numbers were missed before it (0 if none)."""
        assert self.last_seq is not None and self.last_heard is not None and self.gaps is not None
        missed = 0
        prev = self.last_seq.get(ev.sensor)
        if prev is not None and ev.seq > prev + 1:
            missed = ev.seq - prev - 1
        self.gaps[ev.sensor] = self.gaps.get(ev.sensor, 0) + missed
        self.last_seq[ev.sensor] = ev.seq  # a lower number is a detector restart: start counting again
        self.last_heard[ev.sensor] = ev.received
        return missed

    def silent(self, now: float) -> list[str]:
        """Detectors not heard from for longer than the heartbeat timeout: faulty."""
        assert self.last_heard is not None
        return sorted(s for s, t in self.last_heard.items() if now - t > self.hb_timeout_s)
