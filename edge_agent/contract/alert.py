"""One event model: evidence from each sensor kind, incidents and alerts, and the one place where an alert
becomes the contract's payload (``edge-agent/alert@1``)."""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # annotations only: the incident log and its CLI need no geometry
    from geofences.rules import ZoneEvent
    from sensors.events import MetalEvent, RadioEvent

SCHEMA_ID = "edge-agent/alert@1"
SEVERITIES = ("info", "low", "medium", "high", "critical")
Severity = Literal["info", "low", "medium", "high", "critical"]
AlertKind = Literal["intrusion", "loitering", "line_crossing", "metal", "radio", "fused", "sensor_fault"]
AlertState = Literal["new", "updated", "acknowledged", "escalated", "closed"]
SensorType = Literal["thermal", "radio", "metal"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# \Z, not $: "$" also matches before a trailing newline, which must not pass as part of an id
ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}\Z")
IDENT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_ulid_lock = threading.Lock()
_ulid_last: tuple[int, int] = (0, 0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def new_ulid(ts: float | None = None) -> str:
    """A ULID: 48-bit milliseconds + 80 random bits, monotonic within a millisecond."""
    global _ulid_last
    ms = int((time.time() if ts is None else ts) * 1000)
    with _ulid_lock:
        last_ms, last_rand = _ulid_last
        rand = last_rand + 1 if ms <= last_ms else int.from_bytes(os.urandom(10), "big")
        ms = max(ms, last_ms)
        _ulid_last = (ms, rand)
    value = (ms << 80) | (rand & ((1 << 80) - 1))
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in range(25, -1, -1))


def iso_ms(ts: object) -> str:
    """RFC 3339 UTC with milliseconds; total: a value that is no date (a stored row can hold anything) prints
    as ``invalid-time(VALUE)`` instead of raising."""
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        try:
            # floor to whole ms first, so the seconds and the milliseconds always agree (and negatives too)
            when = _EPOCH + timedelta(milliseconds=math.floor(ts * 1000))
        except (OverflowError, ValueError):  # beyond year 1..9999, inf, nan
            pass
        else:
            return (f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:"
                    f"{when.second:02d}.{when.microsecond // 1000:03d}Z")
    try:
        shown = repr(ts)
    except ValueError:  # an integer too long to print
        shown = type(ts).__name__
    return f"invalid-time({one_line(shown, 40)})"


def one_line(value: object, limit: int = 200) -> str:
    """Text that is safe to print on one terminal line: control, format and separator characters escaped
    (no terminal escape sequences, no forged lines), at most ``limit`` characters plus a note of the rest."""
    try:
        text = value if isinstance(value, str) else str(value)
    except ValueError:  # an integer too long to print
        text = f"<{type(value).__name__}>"
    extra = len(text) - limit
    if extra > 0:
        text = text[:limit]
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return text + (f"…(+{extra} chars)" if extra > 0 else "")


def raise_severity(base: Severity, steps: int) -> Severity:
    return SEVERITIES[min(len(SEVERITIES) - 1, SEVERITIES.index(base) + max(0, steps))]  # type: ignore[return-value]


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

    @classmethod
    def from_zone(cls, ev: ZoneEvent, temp_c: float | None = None) -> Evidence:
        f: dict[str, Any] = {"label": ev.label, "confidence": round(min(1.0, max(0.0, ev.confidence)), 3),
                             "track_id": ev.track_id, "kind": ev.kind}
        if ev.bbox is not None:
            f["bbox"] = [round(v, 1) for v in ev.bbox]
        if temp_c is not None:
            f["temp_c"] = round(temp_c, 1)
        if ev.direction:
            f["direction"] = ev.direction
        if ev.dwell_s is not None:
            f["dwell_s"] = round(ev.dwell_s, 1)
        return cls(ev.camera, "thermal", ev.ts, tuple(f.items()), ev.latlon)

    @classmethod
    def from_metal(cls, ev: MetalEvent, location: tuple[float, float] | None) -> Evidence:
        return cls(ev.sensor, "metal", ev.ts, (("event", ev.event), ("level", ev.level), ("zone", ev.zone)), location)

    @classmethod
    def from_radio(cls, ev: RadioEvent, location: tuple[float, float] | None) -> Evidence:
        f: dict[str, Any] = {"kind": ev.kind}
        for key in ("freq_hz", "rssi_db", "bearing_deg", "bearing_conf", "radio_id"):
            value = getattr(ev, key)
            if value is not None:
                f[key] = value
        where = (ev.lat, ev.lon) if ev.lat is not None and ev.lon is not None else location
        return cls(ev.sensor, "radio", ev.ts, tuple(f.items()), where)


@dataclass(frozen=True, slots=True)
class Alert:
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


def alert_schema() -> dict[str, Any]:
    text = resources.files("edge_agent.contract").joinpath("schemas/alert.schema.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]
