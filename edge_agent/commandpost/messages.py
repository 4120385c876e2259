"""What the command post takes from the broker, one frozen value per kind of message, and the checks that make
them from untrusted payloads: an alert (the contract's ``Alert``), a box's status, its health as the boxes
panel shows it, its site map as the page draws it, an alert's snapshot, and the broker link itself.

Every payload is untrusted: texts are bounded, numbers finite, coordinates on the earth; the parsers raise only
``BadAlert`` (alerts, from the contract) or ``BadPayload``, whose message names the field."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from edge_agent.contract.alert import Alert, load_untrusted, refuse_constant
from edge_agent.contract.errors import ContractError
from edge_agent.contract.ids import IDENT_RE, ULID_RE, one_line

MAX_SNAPSHOT = 4 * 1024 * 1024
MAX_SITE_MAP = 2 * 1024 * 1024
MAX_FEATURES = 5000
MAX_VERTICES = 20_000
TEXT_MAX = 200
JPEG_MAGIC = b"\xff\xd8\xff"

BoxState = Literal["online", "offline"]


class BadPayload(ContractError):
    """A message that cannot be taken: the reason names the field."""


@dataclass(frozen=True, slots=True)
class AlertReceived:
    """One alert state as a box published it, and when it arrived here."""

    alert: Alert
    received: float


@dataclass(frozen=True, slots=True)
class BoxStatus:
    """A box's retained ``status``: online, or offline (its last will)."""

    site: str
    box: str
    state: BoxState
    version: str | None
    received: float


@dataclass(frozen=True, slots=True)
class BoxHealth:
    """A box's ``health``, reduced to what the boxes panel shows (``health_summary``)."""

    site: str
    box: str
    summary: dict[str, Any]
    received: float


@dataclass(frozen=True, slots=True)
class SiteMap:
    """A box's ``site`` map, rebuilt from the fields the page draws (``clean_site_map``)."""

    site: str
    box: str
    geojson: dict[str, Any]
    received: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The JPEG of an alert's frame."""

    site: str
    box: str
    alert_id: str
    jpeg: bytes
    received: float


@dataclass(frozen=True, slots=True)
class BrokerLink:
    """The command post's link to the broker came up or went down (``detail`` says why, for a refusal)."""

    connected: bool
    detail: str = ""


Received = AlertReceived | BoxStatus | BoxHealth | SiteMap | Snapshot | BrokerLink


def _text(value: Any, what: str, limit: int = TEXT_MAX, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise BadPayload(f"{what}: expected text, got {type(value).__name__}")
    return value[:limit]


def _number(value: Any, what: str, lo: float = -math.inf, hi: float = math.inf) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise BadPayload(f"{what}: expected a number from {lo} to {hi}, got {one_line(repr(value), 40)}")
    return float(value)


def parse_status(payload: bytes, site: str, box: str, received: float) -> BoxStatus:
    """A box's ``{"state": "online"|"offline", "ts", "version"}``."""
    s = load_untrusted(payload)
    state = s.get("state") if isinstance(s, dict) else None
    if state not in ("online", "offline"):
        raise BadPayload(f"status: expected state online or offline, got {one_line(repr(state), 40)}")
    return BoxStatus(site, box, state, _text(s.get("version"), "version", 40), received)


def health_summary(h: Any) -> dict[str, Any]:
    """What the boxes panel shows of a box's health, typed and bounded (the rest of the payload is dropped)."""
    if not isinstance(h, dict):
        raise BadPayload(f"health: expected an object, got {type(h).__name__}")
    out: dict[str, Any] = {"state": _text(h.get("state"), "state", 20), "uptime_s": _number(h.get("uptime_s"),
                                                                                               "uptime_s", 0),
                           "version": _text(h.get("version"), "version", 40)}
    sensors = h.get("sensors") or {}
    if not isinstance(sensors, dict):
        raise BadPayload("sensors: expected an object")
    out["sensors"] = {}
    for sid, s in list(sensors.items())[:64]:
        if not isinstance(s, dict):
            continue
        out["sensors"][str(sid)[:64]] = {"kind": _text(s.get("kind"), "kind", 20), "state": _text(s.get("state"),
                                                                                                  "state", 20),
                                         "rate_hz": _number(s.get("rate_hz"), "rate_hz", 0)}
    outbox = h.get("outbox") or {}
    out["backlog"] = _number(outbox.get("backlog"), "outbox.backlog", 0) if isinstance(outbox, dict) else None
    out["disk_free_mb"] = _number(h.get("disk_free_mb"), "disk_free_mb", 0)
    det = h.get("detector_ms") or {}
    out["detector_ms"] = {str(k)[:64]: _number(v, "detector_ms", 0) for k, v in list(det.items())[:64]} \
        if isinstance(det, dict) else {}
    return out


def parse_health(payload: bytes, site: str, box: str, received: float) -> BoxHealth:
    return BoxHealth(site, box, health_summary(load_untrusted(payload)), received)


def _position(coords: Any, what: str) -> list[float]:
    if not (isinstance(coords, list) and len(coords) >= 2):
        raise BadPayload(f"{what}: expected [lon, lat]")
    lon = _number(coords[0], f"{what} lon", -180, 180)
    lat = _number(coords[1], f"{what} lat", -90, 90)
    if lon is None or lat is None:
        raise BadPayload(f"{what}: a position needs both lon and lat")
    return [lon, lat]


def clean_site_map(data: Any) -> dict[str, Any]:
    """A box's site map rebuilt from the fields the page draws (geometry checked, texts bounded)."""
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" or \
            not isinstance(data.get("features"), list):
        raise BadPayload("expected a GeoJSON FeatureCollection")
    if len(data["features"]) > MAX_FEATURES:
        raise BadPayload(f"{len(data['features'])} features, at most {MAX_FEATURES}")
    vertices = 0
    features = []
    for i, f in enumerate(data["features"]):
        if not isinstance(f, dict) or not isinstance(f.get("properties") or {}, dict):
            raise BadPayload(f"features[{i}]: expected a Feature with properties")
        props = f.get("properties") or {}
        clean_props: dict[str, Any] = {k: _text(props.get(k), f"features[{i}].properties.{k}", TEXT_MAX)
                                       for k in ("kind", "id", "name", "camera", "space")}
        clean_props["range_m"] = _number(props.get("range_m"), f"features[{i}].range_m", 0)
        g = f.get("geometry")
        geom = None
        if g is not None:
            if not isinstance(g, dict):
                raise BadPayload(f"features[{i}].geometry: expected an object or null")
            kind, coords = g.get("type"), g.get("coordinates")
            where = f"features[{i}].geometry"
            if kind == "Point":
                geom = {"type": kind, "coordinates": _position(coords, where)}
                vertices += 1
            elif kind == "LineString" and isinstance(coords, list):
                geom = {"type": kind, "coordinates": [_position(c, where) for c in coords[:MAX_VERTICES]]}
                vertices += len(geom["coordinates"])
            elif kind == "Polygon" and isinstance(coords, list):
                rings = [[_position(c, where) for c in ring[:MAX_VERTICES]] for ring in coords[:16]
                         if isinstance(ring, list)]
                geom = {"type": kind, "coordinates": rings}
                vertices += sum(len(r) for r in rings)
            else:
                raise BadPayload(f"{where}: expected a Point, LineString or Polygon")
        if vertices > MAX_VERTICES:
            raise BadPayload(f"more than {MAX_VERTICES} vertices")
        features.append({"type": "Feature", "geometry": geom, "properties": clean_props})
    center = data.get("center")
    return {"type": "FeatureCollection", "features": features,
            "center": _position(center, "center") if center is not None else None}


def parse_site_map(payload: bytes, site: str, box: str, received: float) -> SiteMap:
    if len(payload) > MAX_SITE_MAP:
        raise BadPayload(f"site map of {len(payload)} bytes, at most {MAX_SITE_MAP}")
    try:  # not load_untrusted: a site map may be larger than an alert and nest deeper
        data = json.loads(payload.decode("utf-8"), parse_constant=refuse_constant)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, NaN, nested too deep
        raise BadPayload(f"not JSON: {one_line(exc, 80)}") from None
    return SiteMap(site, box, clean_site_map(data), received)


def parse_snapshot(payload: bytes, site: str, box: str, alert_id: str, received: float) -> Snapshot:
    """The JPEG on ``{prefix}/{site}/{box}/snapshots/{alert_id}``."""
    if not (IDENT_RE.match(site) and IDENT_RE.match(box) and ULID_RE.match(alert_id)):
        raise BadPayload("snapshot topic: site, box and alert id must be ids")
    if len(payload) > MAX_SNAPSHOT or payload[:3] != JPEG_MAGIC:
        raise BadPayload(f"snapshot: expected a JPEG of at most {MAX_SNAPSHOT} bytes")
    return Snapshot(site, box, alert_id, payload, received)
