"""Radio and metal-detector events: the contract's line formats, parsed strictly.

Every line is either parsed into an immutable event or rejected with a ``ParseError`` whose message says
what is wrong; nothing else escapes. Both the sensor's own time and the receive time are kept: a sensor clock
further off than ``max_skew_s`` is flagged on the event, one further off than ``max_clock_off_s`` is rejected
(a time the agent could not even format must never get past the parser). Text that reaches logs, topics or
summaries carries no control characters, and a reason shows hostile values escaped and shortened.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

SENSOR_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # always fullmatch: "$" would let a trailing newline through
RADIO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
RADIO_KINDS = ("rf_detect", "bearing", "position", "emergency")
METAL_EVENTS = ("ALARM", "CLEAR", "TAMPER", "FAULT", "HB")
INT_TEXT = re.compile(r"-?[0-9]{1,12}")
PMDET = re.compile(rb"\$PMDET,([^,*]*),([^,*]*),([^,*]*),([^,*]*),([^,*]*)\*([0-9A-Fa-f]{2})")
MAX_CLOCK_OFF_S = 86400.0
MAX_TS_TEXT = 64  # the longest RFC 3339 time with nanoseconds and an offset is 35 characters
MAX_JSON_DEPTH = 8  # the contract's lines are flat objects (depth 1); leave room for a vendor's extras
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# times every consumer can format, in UTC and in any local zone (a day inside datetime's years 1-9999)
TS_MIN = datetime(1, 1, 2, tzinfo=UTC).timestamp()
TS_MAX = datetime(9999, 12, 30, tzinfo=UTC).timestamp()
RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
                     r"([Zz]|[+-][0-9]{2}:[0-9]{2})?")
JSON_STRING = re.compile(rb'"[^"]*"')  # once escapes are gone; linear even when a quote is never closed
BRACKET_TABLE = bytes.maketrans(b"{}", b"[]")
NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")

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


def _show(value: Any, limit: int = 40) -> str:
    """A hostile value as it may appear in a reason: escaped (repr shows no control character) and short."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _span(seconds: float) -> str:
    """A duration the way a field engineer reads it: 739,502 days, 3.5 h, 90 s."""
    for unit, size in (("day", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            n = seconds / size
            text = f"{n:,.0f}" if n >= 10 or n == int(n) else f"{n:.1f}"
            return f"{text} {unit}{'s' if unit == 'day' and text != '1' else ''}"
    return f"{seconds:.0f} s"


def _text(line: bytes) -> str:
    try:
        return line.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 (byte {exc.start})") from None


def _sensor(value: Any) -> str:
    if not isinstance(value, str) or not SENSOR_ID.fullmatch(value):
        raise ParseError(f"sensor {_show(value)} is not a valid id (letters, digits, _ and -, 1-64)")
    return value


def parse_time(value: Any, received: float | None = None, max_clock_off_s: float = MAX_CLOCK_OFF_S) -> float:
    """RFC 3339 text or epoch milliseconds to epoch seconds; with ``received``, no further than
    ``max_clock_off_s`` from it. Raises only ParseError."""
    if isinstance(value, bool):
        raise ParseError("ts must be RFC 3339 text or epoch milliseconds, got a boolean")
    if isinstance(value, (int, float)):
        # ints first: math.isfinite of a 400-digit JSON integer raises OverflowError
        if (isinstance(value, float) and not math.isfinite(value)) or not 0 <= value < 1e14:
            raise ParseError(f"ts {_show(value)} is not a plausible epoch in milliseconds")
        ts, shown = value / 1000.0, _show(value)
    elif isinstance(value, str):
        if len(value) > MAX_TS_TEXT:
            raise ParseError(f"ts {_show(value)} is not RFC 3339 ({len(value)} characters)")
        text = value.strip()
        if not RFC3339.fullmatch(text):  # fromisoformat alone takes any separator, a newline too
            raise ParseError(f"ts {_show(value)} is not RFC 3339 (like 2026-11-23T12:00:00.5Z)")
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ParseError(f"ts {_show(value)} is not RFC 3339") from None
        if parsed.tzinfo is None:
            raise ParseError(f"ts {_show(value)} has no timezone offset (RFC 3339 needs Z or +hh:mm)")
        try:  # the difference of two aware times never overflows, unlike .timestamp() or .astimezone()
            ts = (parsed - EPOCH).total_seconds()
        except (OverflowError, ValueError, OSError) as exc:
            raise ParseError(f"ts {_show(value)} cannot be placed in time: {exc}") from None
        shown = value.strip()  # it matched RFC3339: no control character
    else:
        raise ParseError(f"ts must be RFC 3339 text or epoch milliseconds, got {type(value).__name__}")
    if received is not None and abs(ts - received) > max_clock_off_s:
        raise ParseError(f"ts {shown} is {_span(abs(ts - received))} from the box clock "
                         f"(limit {_span(max_clock_off_s)}): set the sensor's clock")
    if not TS_MIN <= ts <= TS_MAX:
        raise ParseError(f"ts {shown} is outside the years 0001-9999 in UTC")
    return ts


def _number(obj: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    if key not in obj or obj[key] is None:
        return None
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
        raise ParseError(f"{key} must be a number, got {_show(v)}")
    if not lo <= v <= hi:  # compared before float(): a 400-digit integer does not fit a float
        raise ParseError(f"{key} {_show(v)} is out of range [{lo:g}, {hi:g}]")
    return float(v)


def json_too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in JSON nest deeper than ``limit`` (or more than ``limit`` never close).

    C-speed bytes operations only (a Python loop over a hostile 4 KiB line cost ten times the parse it would
    save): strings are cut out, the brackets kept, and innermost pairs taken off one level per pass. On 4 KiB
    lines it costs at most about what json.loads does (0.1-0.5 ms); lines with few brackets skip it.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    if b"\\" in data:  # only escaped quotes matter; backslash pairs go first so "\\\\" cannot hide a quote
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = JSON_STRING.sub(b"", data).translate(BRACKET_TABLE, NOT_BRACKETS)  # "{" -> "[", "}" -> "]"
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            break
        brackets = shorter
    return b"[]" in brackets or brackets.count(b"[") > limit


def _json_object(line: bytes) -> dict[str, Any]:
    text = _text(line)
    if not text:
        raise ParseError("empty line")
    if json_too_deep(line):
        raise ParseError(f"not a sensor line: JSON nested deeper than {MAX_JSON_DEPTH} levels (or never closed)")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"not JSON: {exc.msg} (character {exc.pos})") from None
    except RecursionError:
        raise ParseError("not JSON: nested too deeply") from None
    except ValueError:  # an integer of more than 4,300 digits
        raise ParseError("not JSON: a number too long to read") from None
    if not isinstance(obj, dict):
        raise ParseError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _radio_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18:
        return str(value)
    if not isinstance(value, str) or not RADIO_ID.fullmatch(value):
        raise ParseError(f"radio_id {_show(value)} must be 1-64 letters, digits, _ . : or - (starting with a "
                         "letter or digit; no spaces, / # + or control characters)")
    return value


def parse_radio(line: bytes, received: float, max_skew_s: float = 30.0,
                max_clock_off_s: float = MAX_CLOCK_OFF_S) -> RadioEvent:
    """One newline-delimited JSON radio event."""
    obj = _json_object(line)
    for key in ("sensor", "ts", "kind"):
        if key not in obj:
            raise ParseError(f"missing field {key!r}")
    sensor = _sensor(obj["sensor"])
    kind = obj["kind"]
    if kind not in RADIO_KINDS:
        raise ParseError(f"unknown kind {_show(kind)}; expected one of {', '.join(RADIO_KINDS)}")
    ts = parse_time(obj["ts"], received, max_clock_off_s)
    bearing = _number(obj, "bearing_deg", 0.0, 360.0)
    lat = _number(obj, "lat", -90.0, 90.0)
    lon = _number(obj, "lon", -180.0, 180.0)
    if kind == "bearing" and bearing is None:
        raise ParseError("a bearing event needs bearing_deg")
    if kind == "position" and (lat is None or lon is None):
        raise ParseError("a position event needs lat and lon")
    if (lat is None) != (lon is None):
        raise ParseError("lat and lon come together")
    return RadioEvent(
        sensor=sensor, kind=kind, ts=ts, received=received, skewed=abs(received - ts) > max_skew_s,
        freq_hz=_number(obj, "freq_hz", 0.0, 1e12), rssi_db=_number(obj, "rssi_db", -200.0, 50.0),
        bearing_deg=bearing, bearing_conf=_number(obj, "bearing_conf", 0.0, 1.0), lat=lat, lon=lon,
        radio_id=_radio_id(obj.get("radio_id")),
    )


def nmea_checksum(body: bytes) -> int:
    """XOR of the bytes between ``$`` and ``*``."""
    c = 0
    for b in body:
        c ^= b
    return c


def parse_metal(line: bytes, received: float, max_skew_s: float = 30.0,
                max_clock_off_s: float = MAX_CLOCK_OFF_S) -> MetalEvent:
    """A ``$PMDET`` sentence, or a JSON line with the same fields (and an optional ``ts``)."""
    raw = line.strip()
    if raw.startswith(b"$"):
        m = PMDET.fullmatch(raw)
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
                      max_skew_s, max_clock_off_s, text_fields=True)
    return _metal(_json_object(line), received, max_skew_s, max_clock_off_s, text_fields=False)


def _int(obj: dict[str, Any], key: str, lo: int, hi: int, text: bool) -> int:
    if key not in obj:
        raise ParseError(f"missing field {key!r}")
    v = obj[key]
    if text:
        if not isinstance(v, str) or not INT_TEXT.fullmatch(v):
            raise ParseError(f"{key} {_show(v)} is not an integer")
        v = int(v)
    elif isinstance(v, bool) or not isinstance(v, int):
        raise ParseError(f"{key} must be an integer, got {_show(v)}")
    if not lo <= v <= hi:
        raise ParseError(f"{key} {_show(v)} is out of range [{lo}, {hi}]")
    return int(v)


def _metal(obj: dict[str, Any], received: float, max_skew_s: float, max_clock_off_s: float,
           text_fields: bool) -> MetalEvent:
    if "sensor" not in obj:
        raise ParseError("missing field 'sensor'")
    sensor = _sensor(obj["sensor"])
    event = obj.get("event")
    if event not in METAL_EVENTS:
        raise ParseError(f"unknown event {_show(event)}; expected one of {', '.join(METAL_EVENTS)}")
    seq = _int(obj, "seq", 0, 2**31 - 1, text_fields)
    level = _int(obj, "level", 0, 100, text_fields)
    zone = _int(obj, "zone", 0, 9999, text_fields)
    ts, skewed = received, False
    if not text_fields and obj.get("ts") is not None:
        ts = parse_time(obj["ts"], received, max_clock_off_s)
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
