"""SAPIENT (BSI Flex 335 v2.0) messages of this box as an edge node (ASM), built with the protobuf classes of
the ``sapient-proto`` package (``sapient_msg.bsi_flex_335_v2_0``; its field names and numbers were checked
against Dstl's published .proto files, see README "Why these dependencies"). On the wire each message is a
4-byte little-endian length, then the serialized ``SapientMessage``.

Ids: the node id is a lower-case UUID v4 (derived from the site and box, so the same on every start, unless
configured); report, object and alert ids are upper-case ULIDs (an alert's is the box's own alert id, a track's
is made when the track is first reported)."""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp
from sapient_msg.bsi_flex_335_v2_0 import (
    alert_pb2,
    associated_file_pb2,
    detection_report_pb2,
    location_pb2,
    registration_pb2,
    sapient_message_pb2,
    status_report_pb2,
    task_ack_pb2,
)

from edge_agent import __version__
from edge_agent.contract.alert import Alert
from edge_agent.contract.ids import new_ulid
from geofences.rules import TrackPoint

ICD_VERSION = "BSI Flex 335 v2.0"
MODE = "default"
FRAME_MAX = 16 * 1024 * 1024  # a fusion node's message longer than this is refused (the connection dropped)
CLASSES = {"person": "Human", "animal": "Animal", "vehicle": "Vehicle"}  # else "Unknown"
R = registration_pb2.Registration
SR = status_report_pb2.StatusReport
ALERT_TYPE = {"info": alert_pb2.Alert.ALERT_TYPE_INFORMATION, "low": alert_pb2.Alert.ALERT_TYPE_INFORMATION,
              "medium": alert_pb2.Alert.ALERT_TYPE_WARNING, "high": alert_pb2.Alert.ALERT_TYPE_WARNING,
              "critical": alert_pb2.Alert.ALERT_TYPE_CRITICAL}
PRIORITY = {"info": alert_pb2.Alert.DISCRETE_PRIORITY_LOW, "low": alert_pb2.Alert.DISCRETE_PRIORITY_LOW,
            "medium": alert_pb2.Alert.DISCRETE_PRIORITY_MEDIUM, "high": alert_pb2.Alert.DISCRETE_PRIORITY_HIGH,
            "critical": alert_pb2.Alert.DISCRETE_PRIORITY_HIGH}
STATUS = {"new": alert_pb2.Alert.ALERT_STATUS_ACTIVE, "updated": alert_pb2.Alert.ALERT_STATUS_ACTIVE,
          "escalated": alert_pb2.Alert.ALERT_STATUS_ACTIVE, "acknowledged": alert_pb2.Alert.ALERT_STATUS_ACKNOWLEDGE,
          "closed": alert_pb2.Alert.ALERT_STATUS_CLEAR}


def node_id_of(site: str, box: str) -> str:
    """A UUID v4 (lower case) that is the same for the same site and box on every start."""
    digest = hashlib.sha256(f"edge-agent/{site}/{box}".encode()).digest()[:16]
    return str(uuid.UUID(bytes=digest, version=4))


@dataclass(frozen=True, slots=True)
class NodeSheet:
    """What the registration says about this box."""

    node_id: str
    name: str
    short_name: str
    cameras: int
    metal: int
    radio: int
    status_interval_s: float


def frame(msg: sapient_message_pb2.SapientMessage) -> bytes:
    data = msg.SerializeToString()
    return struct.pack("<I", len(data)) + data


def envelope(node_id: str, ts: float, destination: str | None = None) -> sapient_message_pb2.SapientMessage:
    msg = sapient_message_pb2.SapientMessage(node_id=node_id)
    stamp = Timestamp()
    stamp.FromNanoseconds(int(ts * 1e9))
    msg.timestamp.CopyFrom(stamp)
    if destination:
        msg.destination_id = destination
    return msg


def _duration(seconds: float) -> R.Duration:
    return R.Duration(units=R.TIME_UNITS_SECONDS, value=seconds)


def _latlon_type() -> R.LocationType:
    return R.LocationType(location_units=location_pb2.LOCATION_COORDINATE_SYSTEM_LAT_LNG_DEG_M,
                          location_datum=location_pb2.LOCATION_DATUM_WGS84_G)


def registration(sheet: NodeSheet, ts: float) -> sapient_message_pb2.SapientMessage:
    """The box as an edge node: one node definition per kind of sensor it has, a status interval, one mode that
    reports tracks of people, animals and vehicles in lat/lon, and no tasks it accepts."""
    definitions = [R.NodeDefinition(node_type=node_type, node_sub_type=[sub]) for count, node_type, sub in (
        (sheet.cameras, R.NODE_TYPE_CAMERA, "thermal camera"),
        (sheet.metal, R.NODE_TYPE_PROXIMITY_SENSOR, "metal detector"),
        (sheet.radio, R.NODE_TYPE_PASSIVE_RF, "radio receiver")) if count]
    if not definitions:
        definitions = [R.NodeDefinition(node_type=R.NODE_TYPE_OTHER, node_sub_type=["edge-agent box"])]
    detection = R.DetectionDefinition(
        location_type=_latlon_type(),
        detection_report=[R.DetectionReport(category=R.DETECTION_REPORT_CATEGORY_TRACK, type="confidence",
                                            units="probability")],
        detection_class_definition=[R.DetectionClassDefinition(
            confidence_definition=R.CONFIDENCE_DEFINITION_SINGLE_CLASS,
            class_definition=[R.ClassDefinition(type=t, units="probability")
                              for t in (*CLASSES.values(), "Unknown")])])
    mode = R.ModeDefinition(
        mode_name=MODE, mode_type=R.MODE_TYPE_PERMANENT, mode_description="tracks and alerts of the whole box",
        settle_time=_duration(0), scan_type=R.SCAN_TYPE_FIXED, tracking_type=R.TRACKING_TYPE_TRACK,
        detection_definition=[detection],
        task=R.TaskDefinition(concurrent_tasks=0, region_definition=R.RegionDefinition(
            region_type=[R.REGION_TYPE_AREA_OF_INTEREST], region_area=[_latlon_type()])))
    body = R(node_definition=definitions, icd_version=ICD_VERSION, name=sheet.name, short_name=sheet.short_name,
             capabilities=[R.Capability(category="alerts", type="geofence, fused and sensor alerts")],
             status_definition=R.StatusDefinition(
                 status_interval=_duration(sheet.status_interval_s),
                 status_report=[R.StatusReport(category=R.STATUS_REPORT_CATEGORY_SENSOR, type="sensors",
                                               on_change=True)]),
             mode_definition=[mode],
             config_data=[R.ConfigurationData(manufacturer="edge-agent", model="edge sensor-fusion box",
                                              software_version=__version__)])
    msg = envelope(sheet.node_id, ts)
    msg.registration.CopyFrom(body)
    return msg


def status_report(node_id: str, ts: float, system: SR.System, new_info: bool,
                  faults: Sequence[str] = ()) -> sapient_message_pb2.SapientMessage:
    """``system``: ``SR.SYSTEM_OK``, ``SYSTEM_WARNING``, ``SYSTEM_ERROR`` or ``SYSTEM_GOODBYE`` (on stop)."""
    body = SR(report_id=new_ulid(ts), system=system, info=SR.INFO_NEW if new_info else SR.INFO_UNCHANGED, mode=MODE,
              status=[SR.Status(status_level=SR.STATUS_LEVEL_WARNING_STATUS, status_type=SR.STATUS_TYPE_INTERNAL_FAULT,
                                status_value=fault[:200]) for fault in faults])
    msg = envelope(node_id, ts)
    msg.status_report.CopyFrom(body)
    return msg


def _location(lat: float, lon: float, error_m: float | None = None) -> location_pb2.Location:
    loc = location_pb2.Location(x=lon, y=lat, coordinate_system=location_pb2.LOCATION_COORDINATE_SYSTEM_LAT_LNG_DEG_M,
                                datum=location_pb2.LOCATION_DATUM_WGS84_G)
    if error_m is not None:
        loc.x_error = loc.y_error = error_m
    return loc


def detection_report(node_id: str, ts: float, object_id: str, point: TrackPoint,
                     error_m: float | None) -> sapient_message_pb2.SapientMessage | None:
    """One confirmed track update, placed in lat/lon (None for a track the camera cannot place)."""
    if point.latlon is None:
        return None
    DR = detection_report_pb2.DetectionReport
    body = DR(report_id=new_ulid(ts), object_id=object_id, location=_location(*point.latlon, error_m),
              detection_confidence=max(0.0, min(1.0, point.confidence)),
              classification=[DR.DetectionReportClassification(type=CLASSES.get(point.label, "Unknown"),
                                                                confidence=max(0.0, min(1.0, point.confidence)))],
              track_info=[DR.TrackObjectInfo(type="camera", value=point.camera),
                          DR.TrackObjectInfo(type="track", value=str(point.track_id))])
    if point.height_m is not None:
        body.object_info.append(DR.TrackObjectInfo(type="height_m", value=f"{point.height_m:.2f}"))
    msg = envelope(node_id, ts)
    msg.detection_report.CopyFrom(body)
    return msg


def alert_message(node_id: str, ts: float, alert: Alert, error_m: float | None,
                  snapshot_url: str | None = None) -> sapient_message_pb2.SapientMessage:
    """One state of one alert: the box's alert id, type and priority from its severity, status from its state,
    the summary as the description, its place where it has one."""
    body = alert_pb2.Alert(alert_id=alert.alert_id, alert_type=ALERT_TYPE[alert.severity], status=STATUS[alert.state],
                           description=alert.summary[:1000], priority=PRIORITY[alert.severity],
                           additional_information=f"kind={alert.kind} incident={alert.incident_id} "
                                                  f"zone={alert.zone[0] if alert.zone else '-'}")
    if alert.location is not None:
        body.location.CopyFrom(_location(*alert.location, error_m))
    if snapshot_url and alert.snapshot:
        body.associated_file.append(associated_file_pb2.AssociatedFile(
            type="image/jpeg", url=snapshot_url.replace("{alert_id}", alert.alert_id)))
    msg = envelope(node_id, ts)
    msg.alert.CopyFrom(body)
    return msg


def task_refused(node_id: str, ts: float, task_id: str, destination: str) -> sapient_message_pb2.SapientMessage:
    """This node takes no tasks: each one is answered REJECTED."""
    msg = envelope(node_id, ts, destination)
    msg.task_ack.CopyFrom(task_ack_pb2.TaskAck(task_id=task_id, task_status=task_ack_pb2.TaskAck.TASK_STATUS_REJECTED,
                                               reason=["this edge node takes no tasks"]))
    return msg
