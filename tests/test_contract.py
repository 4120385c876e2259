"""The wire contract in one place: the shipped schema is the shared one, an alert survives the trip out and
back in, and topics are built and read back by the same module."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from edge_agent.contract.acks import AckError, ReceiptError
from edge_agent.contract.alert import (
    Alert,
    BadAlert,
    Evidence,
    alert_from_payload,
    alert_schema,
    parse_alert,
)
from edge_agent.contract.errors import ContractError
from edge_agent.contract.ids import ULID_RE, iso_ms, new_ulid, parse_time
from edge_agent.contract.topics import (
    OUTBOX_ALERTS,
    BadTopic,
    BoxTopics,
    outbox_snapshot,
    parse_topic,
    subscription,
    topic_root,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "edge_agent" / "contract" / "schemas" / "alert.schema.json"
SHARED = ROOT.parent / "shared" / "alert.schema.json"
TS = 1_790_000_000.123


def test_shipped_schema_is_the_shared_one() -> None:
    if not SHARED.exists():  # the repository cloned alone: the copy inside the package is all there is
        pytest.skip(f"no shared schema at {SHARED}")
    assert json.loads(SHIPPED.read_text(encoding="utf-8")) == json.loads(SHARED.read_text(encoding="utf-8")), (
        f"{SHIPPED} differs from {SHARED}: copy the shared schema into the package")
    assert alert_schema() == json.loads(SHARED.read_text(encoding="utf-8"))


def _alert() -> Alert:
    evidence = (
        Evidence("cam-1", "thermal", TS - 1.5, (("label", "person"), ("confidence", 0.91), ("track_id", 7),
                                                  ("kind", "intrusion"), ("bbox", [10.0, 20.0, 30.0, 60.0]))),
        Evidence("md-1", "metal", TS - 0.25, (("event", "ALARM"), ("level", 80), ("zone", 2))),
        Evidence("rf-1", "radio", TS, (("kind", "rf_detect"), ("freq_hz", 433_920_000.0), ("rssi_db", -61.5))),
    )
    return Alert(new_ulid(TS), new_ulid(TS), "s-1", "box_2", TS, "fused", "high", "new", ("z1", "Ford"),
                 (46.5123456, 15.6543210), evidence, "person with metal near the ford",
                 BoxTopics.of("border", "s-1", "box_2").snapshot("01J0000000000000000000000A"))


def test_alert_round_trip() -> None:
    alert = _alert()
    payload, ts = parse_alert(alert.to_json(), "s-1", "box_2")
    jsonschema.validate(payload, alert_schema())
    assert ts == parse_time(iso_ms(alert.ts))
    back = alert_from_payload(payload)
    # times travel with millisecond precision; everything else comes back as it went
    assert back == alert
    assert back.to_json() == alert.to_json()


def test_alert_round_trip_without_zone_location_or_snapshot() -> None:
    alert = Alert(new_ulid(TS), new_ulid(TS), "s", "b", TS, "sensor_fault", "medium", "closed", None, None, (),
                  "metal detector md-1 is silent")
    assert alert_from_payload(parse_alert(alert.to_json(), "s", "b")[0]) == alert


def test_a_received_alert_must_name_the_topics_box() -> None:
    with pytest.raises(BadAlert, match="box 'box_2' is not the topic's 'other'"):
        parse_alert(_alert().to_json(), "s-1", "other")


def test_one_exception_base() -> None:
    for error in (BadAlert, AckError, ReceiptError, BadTopic):
        assert issubclass(error, ContractError) and issubclass(error, ValueError)


def test_topics_round_trip() -> None:
    topics = BoxTopics.of("border", "s-1", "box_2")
    assert topics.root == topic_root("border", "s-1", "box_2") == "border/s-1/box_2"
    leaves = {"status": topics.status, "alerts": topics.alerts, "health": topics.health, "acks": topics.acks,
              "receipts": topics.receipts, "site": topics.site}
    for leaf, topic in leaves.items():
        assert topic == f"border/s-1/box_2/{leaf}"
        received = parse_topic(topic)
        assert received is not None
        assert (received.prefix, received.site, received.box, received.leaf) == ("border", "s-1", "box_2", leaf)
        assert received.names_a_box and received.box_topics == topics
    alert_id = new_ulid(TS)
    assert ULID_RE.match(alert_id)
    assert topics.snapshot(alert_id) == f"border/s-1/box_2/snapshots/{alert_id}"
    assert topics.under(outbox_snapshot(alert_id)) == topics.snapshot(alert_id)
    assert topics.under(OUTBOX_ALERTS) == topics.alerts
    assert parse_topic(topics.snapshot(alert_id)) is None  # five levels: no alert, status or ack topic


def test_subscription_filters() -> None:
    every = subscription("border")
    assert (every.alerts, every.status) == ("border/+/+/alerts", "border/+/+/status")
    assert subscription("border", "s-1").alerts == "border/s-1/+/alerts"
    received = parse_topic("border/+/b/alerts")
    assert received is not None and not received.names_a_box
    with pytest.raises(BadTopic, match="box '\\+' cannot be a topic level"):
        BoxTopics.of("border", "s-1", "+")
