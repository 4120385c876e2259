"""The SAPIENT fusion-node simulator (benchmarks/sapient_fusion.py) itself: that its checks fail on what the standard
forbids and pass on what it allows, and that the server answers, records and survives a SIGKILL as the tests of
the edge node will rely on."""

from __future__ import annotations

import socket
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest
from sapient_msg.bsi_flex_335_v2_0.alert_ack_pb2 import AlertAck
from sapient_msg.bsi_flex_335_v2_0.alert_pb2 import Alert
from sapient_msg.bsi_flex_335_v2_0.location_pb2 import (
    LOCATION_COORDINATE_SYSTEM_LAT_LNG_DEG_M,
    LOCATION_DATUM_WGS84_E,
    Location,
)
from sapient_msg.bsi_flex_335_v2_0.registration_pb2 import Registration
from sapient_msg.bsi_flex_335_v2_0.sapient_message_pb2 import SapientMessage
from sapient_msg.bsi_flex_335_v2_0.status_report_pb2 import StatusReport

from benchmarks.sapient_fusion import (
    ACK_REASON,
    FUSION_NODE_ID,
    ICD_VERSION,
    MAX_FRAME,
    REJECT_REASON,
    FusionNode,
    Record,
    frame,
    new_ulid,
    now_timestamp,
    read_frame,
    validate,
)
from tests.brokers import free_port

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------------------------------------------- messages


def registration(node_id: str) -> SapientMessage:
    """A registration with every field the standard marks mandatory, at every level, filled."""
    seconds = Registration.Duration(units=Registration.TIME_UNITS_SECONDS, value=1.0)
    area = Registration.LocationType(location_units=LOCATION_COORDINATE_SYSTEM_LAT_LNG_DEG_M,
                                     location_datum=LOCATION_DATUM_WGS84_E)
    mode = Registration.ModeDefinition(
        mode_name="default", mode_type=Registration.MODE_TYPE_DEFAULT, settle_time=seconds,
        detection_definition=[Registration.DetectionDefinition(location_type=area)],
        task=Registration.TaskDefinition(region_definition=Registration.RegionDefinition(
            region_type=[Registration.REGION_TYPE_AREA_OF_INTEREST], region_area=[area])))
    body = Registration(
        node_definition=[Registration.NodeDefinition(node_type=Registration.NODE_TYPE_CAMERA)],
        icd_version=ICD_VERSION, name="test edge node", short_name="edge",
        capabilities=[Registration.Capability(category="sensor", type="thermal camera")],
        status_definition=Registration.StatusDefinition(status_interval=seconds),
        mode_definition=[mode],
        config_data=[Registration.ConfigurationData(manufacturer="Test Works", model="EN-1")])
    return now_timestamp(SapientMessage(node_id=node_id, registration=body))


def status_report(node_id: str) -> SapientMessage:
    body = StatusReport(report_id=new_ulid(), system=StatusReport.SYSTEM_OK, info=StatusReport.INFO_NEW,
                        mode="default")
    return now_timestamp(SapientMessage(node_id=node_id, status_report=body))


def alert(node_id: str, alert_id: str, status: Alert.AlertStatus = Alert.ALERT_STATUS_ACTIVE) -> SapientMessage:
    body = Alert(alert_id=alert_id, alert_type=Alert.ALERT_TYPE_WARNING, status=status, description="intrusion",
                 location=Location(x=-1.5, y=51.0, coordinate_system=LOCATION_COORDINATE_SYSTEM_LAT_LNG_DEG_M,
                                   datum=LOCATION_DATUM_WGS84_E))
    return now_timestamp(SapientMessage(node_id=node_id, alert=body))


def new_node_id() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------------------------------------------- validate()


@pytest.mark.parametrize("build", [registration, status_report, lambda n: alert(n, new_ulid())],
                         ids=["registration", "status_report", "alert"])
def test_complete_messages_have_no_violations(build: Callable[[str], SapientMessage]) -> None:
    msg = build(new_node_id())
    assert validate(msg, time.time()) == []


def _unknown_field(msg: SapientMessage) -> SapientMessage:
    msg.registration.MergeFromString(b"\xf8\x3f\x05")  # field 1023, varint 5: not in the proto
    return msg


def _set(path: str, value: object) -> Callable[[SapientMessage], SapientMessage]:
    def mutate(msg: SapientMessage) -> SapientMessage:
        *parents, name = path.split(".")
        target = msg
        for part in parents:
            target = getattr(target, part.split("[")[0])[int(part.split("[")[1][:-1])] if "[" in part \
                else getattr(target, part)
        setattr(target, name, value)
        return msg
    return mutate


def _clear(path: str) -> Callable[[SapientMessage], SapientMessage]:
    def mutate(msg: SapientMessage) -> SapientMessage:
        *parents, name = path.split(".")
        target = msg
        for part in parents:
            target = getattr(target, part.split("[")[0])[int(part.split("[")[1][:-1])] if "[" in part \
                else getattr(target, part)
        target.ClearField(name)
        return msg
    return mutate


def _stamp(offset: float) -> Callable[[SapientMessage], SapientMessage]:
    def mutate(msg: SapientMessage) -> SapientMessage:
        msg.timestamp.FromNanoseconds(time.time_ns() + int(offset * 1e9))
        return msg
    return mutate


REGISTRATION_FAULTS = {
    "no icd_version": (_clear("registration.icd_version"), "registration.icd_version: mandatory field missing"),
    "wrong icd_version": (_set("registration.icd_version", "BSI Flex 335 v1.0"), "registration.icd_version: 'BSI"),
    "empty mandatory repeated": (_clear("registration.capabilities"), "registration.capabilities: mandatory repeated"),
    "no model in config_data[0]": (_set("registration.config_data[0].model", ""),
                                   "registration.config_data[0].model: mandatory field missing"),
    "no region_area deep down": (_clear("registration.mode_definition[0].task.region_definition.region_area"),
                                 "registration.mode_definition[0].task.region_definition.region_area: mandatory"),
    "mandatory oneof unset": (
        _clear("registration.mode_definition[0].detection_definition[0].location_type.location_units"),
        "registration.mode_definition[0].detection_definition[0].location_type.coordinates_oneof: mandatory oneof"),
    "no content": (_clear("registration"), "content: mandatory oneof not set"),
    "no node_id": (_clear("node_id"), "node_id: mandatory field missing"),
    "upper-case node_id": (lambda m: _set("node_id", m.node_id.upper())(m), "node_id: "),
    "UUID v1 node_id": (_set("node_id", str(uuid.uuid1())), "is not a lower-case UUID v4"),
    "upper-case destination_id": (_set("destination_id", FUSION_NODE_ID.upper()), "destination_id: "),
    "timestamp 5 s old": (_stamp(-5.0), "timestamp: -"),
    "timestamp 0.5 s ahead": (_stamp(0.5), "timestamp: +"),
    "unknown enum value": (_set("registration.node_definition[0].node_type", 99),
                           "registration.node_definition[0].node_type: unknown enum value 99"),
    "unknown field": (_unknown_field, "registration: 1 unknown field(s)"),
}


@pytest.mark.parametrize("fault", list(REGISTRATION_FAULTS))
def test_validate_flags_one_fault_in_a_registration(fault: str) -> None:
    mutate, expected = REGISTRATION_FAULTS[fault]
    violations = validate(mutate(registration(new_node_id())), time.time())
    assert len(violations) == 1 and expected in violations[0], violations


@pytest.mark.parametrize("report_id", [new_ulid().lower(), new_ulid()[:-1], "8" + new_ulid()[1:], str(uuid.uuid4())],
                         ids=["lower-case", "25 characters", "over 128 bits", "a UUID"])
def test_validate_flags_a_report_id_that_is_not_an_upper_case_ulid(report_id: str) -> None:
    msg = status_report(new_node_id())
    msg.status_report.report_id = report_id
    assert validate(msg, time.time()) == [f"status_report.report_id: {report_id!r} is not an upper-case ULID"]


def test_validate_keeps_the_timestamp_window() -> None:
    msg = status_report(new_node_id())
    sent = msg.timestamp.seconds + msg.timestamp.nanos / 1e9
    assert validate(msg, sent + 0.85) == []
    assert validate(msg, sent - 0.05) == []
    assert validate(msg, sent + 0.95) != []
    assert validate(msg, sent - 0.15) != []


# ---------------------------------------------------------------------------------------------------- the server


@pytest.fixture()
def record(tmp_path: Path) -> Path:
    return tmp_path / "fusion.jsonl"


@pytest.fixture()
def fusion(record: Path) -> Iterator[FusionNode]:
    with FusionNode(free_port(), record, ack_alerts=True) as node:
        yield node


def connect(node: FusionNode) -> socket.socket:
    sock = socket.create_connection((node.host, node.port), timeout=5)
    sock.settimeout(5)
    return sock


def send(sock: socket.socket, msg: SapientMessage) -> None:
    sock.sendall(frame(now_timestamp(msg)))


def reply(sock: socket.socket) -> SapientMessage:
    msg = read_frame(sock)
    assert msg is not None, "the fusion node closed the connection instead of answering"
    assert msg.node_id == FUSION_NODE_ID and validate(msg, time.time()) == [], msg
    return msg


def count(kind: str, n: int) -> Callable[[list[Record]], bool]:
    return lambda records: sum(r.get("type") == kind and "msg" in r for r in records) >= n


def test_complete_registrations_on_concurrent_connections_are_accepted(fusion: FusionNode) -> None:
    nodes = [new_node_id(), new_node_id()]
    with closing(connect(fusion)) as first, closing(connect(fusion)) as second:
        for sock, node_id in zip((first, second), nodes, strict=True):
            send(sock, registration(node_id))
        for sock, node_id in zip((first, second), nodes, strict=True):
            ack = reply(sock)
            assert ack.WhichOneof("content") == "registration_ack" and ack.registration_ack.acceptance
            assert ack.destination_id == node_id
        # the simulator records a reply after sending it: wait for the records, not only the replies
        records = fusion.wait_for(lambda rs: count("registration", 2)(rs) and
                                  sum(r.get("sent") == "registration_ack" for r in rs) == 2)
    assert fusion.violations() == []
    received = fusion.received("registration")
    assert {r["node_id"] for r in received} == set(nodes) and len({r["conn"] for r in received}) == 2
    assert received[0]["msg"]["registration"]["icd_version"] == ICD_VERSION
    assert sum(r.get("sent") == "registration_ack" for r in records) == 2
    fusion.wait_for(lambda rs: sum("closed" in r for r in rs) == 2)


def test_messages_before_registration_and_from_another_node_are_flagged(fusion: FusionNode) -> None:
    node_id = new_node_id()
    with closing(connect(fusion)) as sock:
        send(sock, status_report(node_id))
        send(sock, registration(node_id))
        reply(sock)
        send(sock, status_report(node_id))
        send(sock, status_report(new_node_id()))
        fusion.wait_for(count("status_report", 3))
    early, good, stranger = fusion.received("status_report")
    assert early["violations"] == ["status_report before registration"]
    assert good["violations"] == []
    assert len(stranger["violations"]) == 1 and "differs from the registered" in stranger["violations"][0]
    assert fusion.received("registration")[0]["violations"] == []


def test_an_active_alert_is_acked_once(fusion: FusionNode) -> None:
    node_id, first, second = new_node_id(), new_ulid(), new_ulid()
    with closing(connect(fusion)) as sock:
        send(sock, registration(node_id))
        assert reply(sock).registration_ack.acceptance
        send(sock, alert(node_id, first))
        ack = reply(sock)
        assert ack.WhichOneof("content") == "alert_ack" and ack.destination_id == node_id
        assert ack.alert_ack.alert_id == first
        assert ack.alert_ack.alert_ack_status == AlertAck.ALERT_ACK_STATUS_ACCEPTED
        assert list(ack.alert_ack.reason) == [ACK_REASON]
        send(sock, alert(node_id, first))  # the same alert again: acked already
        send(sock, alert(node_id, new_ulid(), Alert.ALERT_STATUS_CLEAR))  # not active: no ack
        send(sock, alert(node_id, second))
        assert reply(sock).alert_ack.alert_id == second  # the next reply: nothing came for the two between
    # the simulator records a reply after sending it: wait for the records of both acks, not only the replies
    records = fusion.wait_for(lambda rs: count("alert", 4)(rs) and
                              sum(r.get("sent") == "alert_ack" for r in rs) >= 2)
    assert [r["alert_id"] for r in records if r.get("sent") == "alert_ack"] == [first, second]
    assert fusion.violations() == []


def test_a_rejected_registration_leaves_the_node_unregistered(record: Path) -> None:
    node_id = new_node_id()
    with FusionNode(free_port(), record, ack_alerts=False, reject_registration=True) as fusion, \
            closing(connect(fusion)) as sock:
        send(sock, registration(node_id))
        ack = reply(sock)
        assert not ack.registration_ack.acceptance
        assert list(ack.registration_ack.ack_response_reason) == [REJECT_REASON]
        send(sock, status_report(node_id))
        fusion.wait_for(count("status_report", 1))
    assert [v for _, v in fusion.violations()] == ["status_report before registration (its registration was rejected)"]


def test_bad_frames_are_recorded_not_fatal(fusion: FusionNode) -> None:
    node_id = new_node_id()
    with closing(connect(fusion)) as sock:
        sock.sendall(struct.pack("<I", 3) + b"\xff\xff\xff")  # not a SapientMessage
        send(sock, registration(node_id))
        assert reply(sock).registration_ack.acceptance  # the connection goes on
        sock.sendall(struct.pack("<I", MAX_FRAME + 1))
        assert sock.recv(1) == b"", "an oversized frame must end the connection"
    records = fusion.wait_for(lambda rs: any("closed" in r for r in rs))
    violations = [v for r in records for v in r.get("violations", [])]
    assert len(violations) == 2
    assert violations[0].startswith("undecodable SapientMessage") and "over the 16777216-byte limit" in violations[1]
    with closing(connect(fusion)) as sock:  # and the server still serves
        send(sock, registration(node_id))
        assert reply(sock).registration_ack.acceptance


def test_a_killed_fusion_node_restarts_on_its_port_and_keeps_its_record(fusion: FusionNode) -> None:
    node_id = new_node_id()
    with closing(connect(fusion)) as sock:
        send(sock, registration(node_id))
        reply(sock)
        fusion.wait_for(lambda rs: any(r.get("sent") == "registration_ack" for r in rs))
        first_pid = fusion.pid
        fusion.kill()
        assert sock.recv(1) == b""  # the edge node sees its fusion node go
    with fusion.record_path.open("ab") as torn:
        torn.write(b'{"t": 1, "pid": 1, "conn": 9, "typ')  # as if a kill had cut a line short
    assert len(fusion.records()) == len(fusion.wait_for(bool))  # the torn line is left out
    fusion.start()
    with closing(connect(fusion)) as sock:
        send(sock, registration(node_id))
        assert reply(sock).registration_ack.acceptance
        records = fusion.wait_for(count("registration", 2))
    assert fusion.pid != first_pid
    assert {r["pid"] for r in records} == {first_pid, fusion.pid}
    assert [r["pid"] for r in fusion.received("registration")] == [first_pid, fusion.pid]
    assert fusion.violations() == []
