"""Cursor on Target (CoT 2.0) events for TAK, built with the standard library's ElementTree (never by string
formatting), one per alert state:

- an intrusion, loitering or line crossing is a geofence-breach alarm, ``b-a-g`` with an
  ``<emergency type="Geo-fence Breached">``; a fused incident the same with ``how="m-f"``;
- a metal or radio alarm is a detection event, ``b-d``, at its sensor's configured place (``how="m-c"``);
- an acknowledged or closed alert cancels the alarm: ``b-a-o-can`` with the same uid and ``<emergency
  cancel="true">``, stale at once (a detection event is sent again, stale at once);
- a sensor fault has no place on a map: not sent.

The uid is ``edge-agent.{site}.{box}.{alert_id}``, the same for every state of an alert, so a TAK device updates
its marker in place. The point is the alert's location with a circular error (``ce``) from the camera's
calibration (a fixed sensor's is configured); ``<remarks>`` carry the summary, ``<contact callsign>`` the box,
``<link>`` the snapshot where the command post serves it. TAK Protocol v1 (protobuf) framing comes from
takproto (``encode_tak``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from edge_agent.contract.alert import Alert
from edge_agent.contract.ids import iso_ms

GEOFENCE_KINDS = ("intrusion", "loitering", "line_crossing", "fused")
DETECTION_KINDS = ("metal", "radio")
CANCEL_STATES = ("acknowledged", "closed")
UNKNOWN = "9999999.0"  # CoT's value for an unknown height or error
CANCEL_TYPE = "b-a-o-can"
PING_TYPE, PONG_TYPE = "t-x-c-t", "t-x-c-t-r"


@dataclass(frozen=True, slots=True)
class CotStyle:
    """How this box's events look: its callsign and uid prefix, how long they stay on a map, where snapshots
    are, and each sensor's circular error in metres."""

    callsign: str
    uid_prefix: str
    stale_s: float
    snapshot_url: str | None
    errors_m: Mapping[str, float]
    default_error_m: float

    def uid(self, alert_id: str) -> str:
        return f"{self.uid_prefix}.{alert_id}"


def _event(kind: str, uid: str, how: str, ts: float, stale: float) -> ET.Element:
    return ET.Element("event", {"version": "2.0", "uid": uid, "type": kind, "how": how, "time": iso_ms(ts),
                                "start": iso_ms(ts), "stale": iso_ms(stale)})


def _point(event: ET.Element, location: tuple[float, float] | None, ce: float) -> None:
    if location is None:  # CoT's convention for a place not known
        attrs = {"lat": "0.0", "lon": "0.0", "hae": UNKNOWN, "ce": UNKNOWN, "le": UNKNOWN}
    else:
        attrs = {"lat": f"{location[0]:.7f}", "lon": f"{location[1]:.7f}", "hae": UNKNOWN, "ce": f"{ce:.1f}",
                 "le": UNKNOWN}
    ET.SubElement(event, "point", attrs)


def _error_m(alert: Alert, style: CotStyle) -> float:
    """The largest circular error among the sensors that placed the alert."""
    errors = [style.errors_m[e.sensor] for e in alert.evidence if e.sensor in style.errors_m]
    return max(errors, default=style.default_error_m)


def _type_how(alert: Alert) -> tuple[str, str] | None:
    """The CoT type and how of an alert's events; None for a kind TAK has no use for."""
    if alert.kind in GEOFENCE_KINDS:
        return "b-a-g", "m-f" if alert.kind == "fused" else "m-i"
    if alert.kind in DETECTION_KINDS:
        return "b-d", "m-c"
    return None


def alert_event(alert: Alert, style: CotStyle) -> bytes | None:
    """One alert state as a CoT event (XML bytes); None for what TAK has no use for (a sensor fault)."""
    kind_how = _type_how(alert)
    if kind_how is None:
        return None
    kind, how = kind_how
    if alert.state in CANCEL_STATES:
        return cancel_event(alert, style, kind, how)
    event = _event(kind, style.uid(alert.alert_id), how, alert.ts, alert.ts + style.stale_s)
    _point(event, alert.location, _error_m(alert, style))
    detail = ET.SubElement(event, "detail")
    if kind == "b-a-g":
        ET.SubElement(detail, "emergency", {"type": "Geo-fence Breached"}).text = style.callsign
    ET.SubElement(detail, "contact", {"callsign": style.callsign})
    ET.SubElement(detail, "remarks", {"source": style.uid_prefix, "time": iso_ms(alert.ts)}).text = \
        f"{alert.severity.upper()} {alert.state}: {alert.summary}"
    if style.snapshot_url and alert.snapshot:
        ET.SubElement(detail, "link", {"url": style.snapshot_url.replace("{alert_id}", alert.alert_id),
                                       "mime": "image/jpeg", "relation": "r-u", "remarks": "snapshot"})
    return ET.tostring(event, encoding="utf-8", xml_declaration=False)


def cancel_event(alert: Alert, style: CotStyle, kind: str, how: str) -> bytes:
    """The alarm of this alert is over (acknowledged or closed): same uid, stale at once; a geofence alarm as
    ``b-a-o-can`` with ``<emergency cancel="true">``, a detection event as itself."""
    event = _event(CANCEL_TYPE if kind == "b-a-g" else kind, style.uid(alert.alert_id), how, alert.ts,
                   alert.ts + 1.0)
    _point(event, alert.location, _error_m(alert, style))
    detail = ET.SubElement(event, "detail")
    if kind == "b-a-g":
        ET.SubElement(detail, "emergency", {"cancel": "true", "type": "Geo-fence Breached"}).text = style.callsign
    ET.SubElement(detail, "contact", {"callsign": style.callsign})
    ET.SubElement(detail, "remarks", {"source": style.uid_prefix, "time": iso_ms(alert.ts)}).text = \
        f"{alert.state}: {alert.summary}"
    return ET.tostring(event, encoding="utf-8", xml_declaration=False)


def ping_event(callsign: str, ts: float) -> bytes:
    """TAK's keep-alive, ``t-x-c-t``: a TAK server answers ``t-x-c-t-r`` after everything sent before it."""
    event = _event(PING_TYPE, f"{callsign}-ping", "m-g", ts, ts + 20.0)
    _point(event, None, 0.0)
    ET.SubElement(event, "detail")
    return ET.tostring(event, encoding="utf-8", xml_declaration=False)


def encode_tak(xml: bytes, mesh: bool) -> bytes:
    """TAK Protocol v1: mesh framing (multicast) or stream framing (TCP/TLS), by takproto."""
    import takproto  # only when configured: plain XML needs nothing but the standard library

    return bytes(takproto.xml2proto(xml, takproto.TAKProtoVer.MESH if mesh else takproto.TAKProtoVer.STREAM))
