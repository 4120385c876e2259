"""The command post's MQTT side: every box's alerts, status, health, site map and snapshots into the store,
a receipt back to the box for each alert state stored, acks out in a signed-in user's name, and a live event
for the page after each change.

The client id is fixed (``cp-{name}``) and the session persistent (QoS 1 subscriptions), so what the boxes
publish while the command post is down waits at the broker and arrives when it is back. A receipt goes out
only after the state is committed to the store, and again for a copy already stored (the box may not have
had the first receipt): with ``mqtt.require_receipt`` on a box, an alert state a broker lost is published
again until a receipt comes.

Everything from the broker is untrusted: each payload is checked and cleaned here (texts bounded, numbers
finite, coordinates on the earth) before it is stored, and what is refused is counted and logged (rate-
limited), never raised into paho's thread."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from edge_agent.commandpost.console import BadMessageReport
from edge_agent.commandpost.store import CommandPostStore
from edge_agent.config.mqtt import MqttConfig
from edge_agent.contract.acks import ack_payload, receipt_payload
from edge_agent.contract.alert import BadAlert, load_untrusted, parse_alert, refuse_constant
from edge_agent.contract.ids import IDENT_RE, ULID_RE, one_line
from edge_agent.contract.topics import BoxTopics, parse_topic, subscription
from edge_agent.shared.mqttclient import connect_persistent, make_client

log = logging.getLogger(__name__)

MAX_SNAPSHOT = 4 * 1024 * 1024
MAX_SITE_MAP = 2 * 1024 * 1024
MAX_FEATURES = 5000
MAX_VERTICES = 20_000
TEXT_MAX = 200

Publish = Callable[[dict[str, Any]], None]


@dataclass(slots=True)
class IngestCounters:
    alerts: int = 0
    duplicates: int = 0
    receipts: int = 0
    snapshots: int = 0
    site_maps: int = 0
    health: int = 0
    rejected: int = 0
    connects: int = 0


class BadPayload(ValueError):
    """A message that cannot be stored; the reason names the field."""


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


def clean_alert(p: dict[str, Any]) -> dict[str, Any]:
    """An alert ``parse_alert`` accepted, with the fields the store indexes checked too."""
    if p.get("incident_id") is not None and not (isinstance(p["incident_id"], str) and ULID_RE.match(p["incident_id"])):
        raise BadPayload("incident_id: expected a ULID")
    zone = p.get("zone")
    if zone is not None:
        _text(zone.get("id"), "zone.id")
        _text(zone.get("name"), "zone.name")
    loc = p.get("location")
    if loc is not None:
        if not isinstance(loc, dict):
            raise BadPayload("location: expected null or {lat, lon}")
        _number(loc.get("lat"), "location.lat", -90, 90)
        _number(loc.get("lon"), "location.lon", -180, 180)
    return p


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


class Ingest:
    """Subscribes to every box under the prefix; see the module docstring."""

    def __init__(self, cfg: MqttConfig, client_id: str, store: CommandPostStore, publish: Publish,
                 by: str) -> None:
        self.cfg, self.client_id, self.store, self.publish, self.by = cfg, client_id, store, publish, by
        self.topics = subscription(cfg.prefix)
        self.counters = IngestCounters()
        self.bad = BadMessageReport(lambda line: log.warning("%s", line))
        self.connected = threading.Event()
        self.client = make_client(cfg, client_id, persistent=True)
        # a receipt per alert state: in a burst, hundreds wait for the broker's PUBACK at once (paho's default of 20
        # in flight kept them queued for seconds)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self) -> None:
        connect_persistent(self.client, self.cfg)
        self.client.loop_start()

    def stop(self) -> None:
        self.connected.clear()  # a disconnect we asked for is no news
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker %s:%s refused the command post: %s", self.cfg.host, self.cfg.broker_port, reason)
            return
        self.counters.connects += 1
        t = self.topics
        client.subscribe([(t.alerts, 1), (t.status, 1), (t.health, 0), (t.site, 1), (t.snapshot("+"), 1)])
        log.info("command post connected to %s:%s as %s, watching %s/#", self.cfg.host, self.cfg.broker_port,
                 self.client_id, t.root)
        self.connected.set()
        self.publish({"type": "broker", "connected": True})

    def _on_disconnect(self, *_a: Any) -> None:
        if self.connected.is_set():
            log.warning("command post lost the broker; reconnecting")
            self.publish({"type": "broker", "connected": False})
        self.connected.clear()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._handle(msg.topic, bytes(msg.payload))
        except (BadAlert, BadPayload) as exc:
            self.counters.rejected += 1
            self.bad(msg.topic, str(exc))
        except Exception as exc:  # paho would end its thread on it
            self.counters.rejected += 1
            log.debug("message on %r", msg.topic, exc_info=True)
            self.bad(msg.topic, f"could not be handled ({type(exc).__name__}: {one_line(exc, 200)})")

    def _handle(self, topic_text: str, payload: bytes) -> None:
        received = time.time()
        parts = topic_text.split("/")
        if len(parts) == 5 and parts[3] == "snapshots":
            self._snapshot(parts[1], parts[2], parts[4], payload, received)
            return
        topic = parse_topic(topic_text)
        if topic is None:
            return
        if not topic.names_a_box:
            raise BadPayload("site and box in the topic must be ids")
        site, box = topic.site, topic.box
        if topic.leaf == "alerts":
            p, _ts = parse_alert(payload, site, box)
            self._alert(topic.box_topics, clean_alert(p), received)
        elif topic.leaf == "status":
            if not payload:  # a retained status cleared
                return
            s = load_untrusted(payload)
            state = s.get("state") if isinstance(s, dict) else None
            if state not in ("online", "offline"):
                raise BadPayload(f"status: expected state online or offline, got {one_line(repr(state), 40)}")
            version = _text(s.get("version"), "version", 40)
            if self.store.box_status(site, box, state, version, received):
                self.publish({"type": "box", "key": f"{site}/{box}"})
        elif topic.leaf == "health":
            summary = health_summary(load_untrusted(payload))
            self.store.box_health(site, box, summary, received)
            self.counters.health += 1
            self.publish({"type": "box", "key": f"{site}/{box}"})
        elif topic.leaf == "site":
            if len(payload) > MAX_SITE_MAP:
                raise BadPayload(f"site map of {len(payload)} bytes, at most {MAX_SITE_MAP}")
            if not payload:
                return
            self.store.site_map(site, box, clean_site_map(_json(payload)), received)
            self.counters.site_maps += 1
            self.publish({"type": "site", "key": f"{site}/{box}"})

    def _alert(self, box_topics: BoxTopics, p: dict[str, Any], received: float) -> None:
        stored = self.store.add_alert(p, received)
        self.client.publish(box_topics.receipts, receipt_payload(p["alert_id"], p["state"], self.by), qos=1)
        self.counters.receipts += 1
        if not stored.new:
            self.counters.duplicates += 1
            return
        self.counters.alerts += 1
        if stored.latest:
            self.publish({"type": "alert", "alert_id": p["alert_id"], "received": received})

    def _snapshot(self, site: str, box: str, alert_id: str, payload: bytes, received: float) -> None:
        if not (IDENT_RE.match(site) and IDENT_RE.match(box) and ULID_RE.match(alert_id)):
            raise BadPayload("snapshot topic: site, box and alert id must be ids")
        if len(payload) > MAX_SNAPSHOT or payload[:3] != b"\xff\xd8\xff":
            raise BadPayload(f"snapshot: expected a JPEG of at most {MAX_SNAPSHOT} bytes")
        self.store.add_snapshot(alert_id, payload, received)
        self.counters.snapshots += 1
        self.publish({"type": "snapshot", "alert_id": alert_id})

    def send_ack(self, site: str, box: str, alert_id: str, by: str, note: str) -> None:
        """Publish an ack to the alert's box (QoS 1); the box answers by publishing the alert ``acknowledged``."""
        info = self.client.publish(BoxTopics.of(self.cfg.prefix, site, box).acks, ack_payload(alert_id, by, note),
                                   qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"the broker is not reachable ({mqtt.error_string(info.rc)}); try again")
        self.store.ack_sent(alert_id, by, note, time.time())


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8"), parse_constant=refuse_constant)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, NaN, nested too deep
        raise BadPayload(f"not JSON: {one_line(exc, 80)}") from None
