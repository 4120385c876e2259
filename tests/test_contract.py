"""The wire contract in one place: the shipped schema is the shared one, an alert survives the trip out and
back in, and topics are built and read back by the same module."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from edge_agent.contract.acks import AckError, ReceiptError
from edge_agent.contract.alert import (
    INT_MAX,
    MAX_PAYLOAD,
    SUMMARY_MAX,
    TEXT_MAX,
    Alert,
    BadAlert,
    Evidence,
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
    jsonschema.validate(json.loads(alert.to_json()), alert_schema())
    back = parse_alert(alert.to_json(), "s-1", "box_2")
    assert back.ts == parse_time(iso_ms(alert.ts))
    # times travel with millisecond precision; everything else comes back as it went
    assert back == alert
    assert back.to_json() == alert.to_json()
    assert parse_alert(alert.to_json()) == alert  # the box's own stored copy: no topic to compare with


def test_alert_round_trip_without_zone_location_or_snapshot() -> None:
    alert = Alert(new_ulid(TS), new_ulid(TS), "s", "b", TS, "sensor_fault", "medium", "closed", None, None, (),
                  "metal detector md-1 is silent")
    assert parse_alert(alert.to_json(), "s", "b") == alert


def test_what_the_wire_carries_survives_any_number_of_trips() -> None:
    """An alert as the box builds it from live times and places: the wire keeps times to the millisecond and
    places to 7 decimals (about 1 cm) and an evidence's own place not at all, so the first trip rounds; after
    that the typed alert and its JSON stay the same."""
    now = 1_790_000_000.123456789
    ev = Evidence("cam-1", "thermal", now - 0.0004, (("label", "person"), ("confidence", 0.912)),
                  (46.55012345678, 15.65098765432))
    alert = Alert(new_ulid(now), new_ulid(now), "s", "b", now, "intrusion", "high", "new", ("strip", "Strip"),
                  (46.55012345678, 15.65098765432), (ev,), "Person entered Strip")
    once = parse_alert(alert.to_json(), "s", "b")
    assert once.to_json() == alert.to_json()
    assert parse_alert(once.to_json(), "s", "b") == once
    assert once.location == (46.5501235, 15.6509877) and once.evidence[0].location is None
    assert once.ts == parse_time(iso_ms(now))


def test_evidence_fields_the_contract_does_not_name_are_kept() -> None:
    """A newer box's thermal evidence (who classified it, its size in pixels and metres, its speed) reaches
    the command post whole; an old payload without those fields stays valid."""
    newer = {"label": "person", "by": "physics", "px_tall": 9, "direction": "in", "dwell_s": 12.5, "count": 2,
             "height_m": 1.74, "width_m": 0.52, "speed_mps": 1.3, "tags": ["night", 3, None, True]}
    alert = _alert()
    payload = json.loads(alert.to_json())
    payload["evidence"][0] = {**payload["evidence"][0], **newer}
    jsonschema.validate(payload, alert_schema())
    back = parse_alert(json.dumps(payload).encode(), "s-1", "box_2")
    fields = dict(back.evidence[0].fields)
    assert {k: fields[k] for k in newer} == newer
    assert json.loads(back.to_json()) == payload
    older = json.loads(alert.to_json())
    older["evidence"][0] = {k: v for k, v in older["evidence"][0].items() if k not in newer or k == "label"}
    assert parse_alert(json.dumps(older).encode(), "s-1", "box_2") == alert


def test_texts_are_cut_to_what_is_shown() -> None:
    payload = json.loads(_alert().to_json())
    payload["summary"] = "s" * (SUMMARY_MAX + 50)
    payload["zone"]["name"] = "z" * (TEXT_MAX + 50)
    payload["evidence"][0]["note"] = "n" * 5000
    back = parse_alert(json.dumps(payload).encode(), "s-1", "box_2")
    assert back.summary == "s" * SUMMARY_MAX
    assert back.zone == ("z1", "z" * TEXT_MAX)
    assert dict(back.evidence[0].fields)["note"] == "n" * TEXT_MAX


def _with(path: str, value: object) -> bytes:
    """The test alert's payload with one field (``a.b.0.c``) set; ``...`` removes it."""
    payload = json.loads(_alert().to_json())
    *parents, last = path.split(".")
    node = payload
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    index = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[index]
    else:
        node[index] = value
    return json.dumps(payload).encode()


@pytest.mark.parametrize(("path", "value", "error"), [
    ("schema", "edge-agent/alert@2", r"^schema must be 'edge-agent/alert@1', got 'edge-agent/alert@2'"),
    ("alert_id", 7, r"^alert_id must be a ULID, got 7"),
    ("alert_id", "../x\n", r"^alert_id must be a ULID, got '\.\./x\\n'"),
    ("incident_id", None, r"^incident_id must be a ULID, got None"),
    ("state", "pwned", r"^state must be one of new\|updated.*, got 'pwned'"),
    ("severity", "huge", r"^severity must be one of info\|low.*, got 'huge'"),
    ("kind", ["intrusion"], r"^kind must be one of intrusion\|.*, got \['intrusion'\]"),
    ("site", "s 1", r"^site must be an id .*, got 's 1'"),
    ("box", "other", r"^box 'other' is not the topic's 'box_2'"),
    ("ts", 1e300, r"^ts: ts must be RFC 3339 text, got float"),
    ("ts", "2026-11-23 10:00", r"^ts: ts '2026-11-23 10:00' is not RFC 3339 with a timezone"),
    ("zone", "Ford", r"^zone must be an object, got 'Ford'"),
    ("zone.id", "<b>z</b>", r"^zone.id must be an id .*, got '<b>z</b>'"),
    ("zone.name", 5, r"^zone.name must be text, got 5"),
    ("location", [46, 15], r"^location must be an object, got \[46, 15\]"),
    ("location.lat", 95, r"^location.lat must be a finite number from -90 to 90, got 95"),
    ("location.lon", "15.6", r"^location.lon must be a finite number from -180 to 180, got '15.6'"),
    ("location.lon", ..., r"^location.lon must be a finite number from -180 to 180, got None"),
    ("evidence", "thermal", r"^evidence must be a list of objects, got 'thermal'"),
    ("evidence.0", "thermal", r"^evidence\[0\] must be an object, got 'thermal'"),
    ("evidence.1.sensor", "md 1", r"^evidence\[1\].sensor must be an id .*, got 'md 1'"),
    ("evidence.1.type", "sonar", r"^evidence\[1\].type must be one of thermal\|radio\|metal, got 'sonar'"),
    ("evidence.2.ts", ..., r"^evidence\[2\].ts: ts must be RFC 3339 text, got NoneType"),
    ("evidence.0.confidence", 1.5, r"^evidence\[0\].confidence must be a finite number from 0 to 1, got 1.5"),
    ("evidence.0.track_id", "7", r"^evidence\[0\].track_id must be an integer, got '7'"),
    ("evidence.0.bbox", [1, 2, 3], r"^evidence\[0\].bbox must be 4 numbers, got \[1, 2, 3\]"),
    ("evidence.0.bbox", [1, 2, 3, "4"], r"^evidence\[0\].bbox\[3\] must be a finite number, got '4'"),
    ("evidence.1.event", "BOOM", r"^evidence\[1\].event must be one of ALARM\|.*, got 'BOOM'"),
    ("evidence.1.level", 101, r"^evidence\[1\].level must be a finite number from 0 to 100, got 101"),
    ("evidence.2.rssi_db", True, r"^evidence\[2\].rssi_db must be a finite number, got True"),
    ("evidence.0.px_tall", 2**60, r"^evidence\[0\].px_tall must be a finite number, got 1152921504606846976"),
    ("evidence.0.by", {"who": "model"}, r"^evidence\[0\].by must be null, true, false, a number or text, got \{"),
    ("evidence.0.tags", [[1]], r"^evidence\[0\].tags\[0\] must be null, true, false, a number or text"),
    ("evidence.0.tags", [1] * 65, r"^evidence\[0\].tags must be a list of at most 64 values, got 65"),
    ("evidence.0.\u001b[2J", 1, r"^evidence\[0\] has a field name that is no name: '\\x1b\[2J'"),
    ("summary", ["x"], r"^summary must be text, got \['x'\]"),
    ("summary", "", r"^summary must be text of at least one character"),
    ("snapshot", 5, r"^snapshot must be text, got 5"),
])
def test_each_refused_field_names_itself_and_shows_its_value(path: str, value: object, error: str) -> None:
    with pytest.raises(BadAlert, match=error):
        parse_alert(_with(path, value), "s-1", "box_2")


@pytest.mark.parametrize(("payload", "error"), [
    (b"[1, 2]", r"^the alert must be an object, got \[1, 2\]"),
    (b"x" * (MAX_PAYLOAD + 1), r"bytes, over the .* byte limit"),
    (b"[" * 100_000, r"bytes, over the|not JSON|nested"),
    (b"[" * 40 + b"]" * 40, r"nested more than 16 deep"),
    (b'{"alert_id": NaN}', r"not JSON \(NaN is not JSON\)"),
    (b"\xff\xfe{}", r"not UTF-8"),
])
def test_what_is_no_json_object_is_refused_before_any_field(payload: bytes, error: str) -> None:
    with pytest.raises(BadAlert, match=error):
        parse_alert(payload, "s-1", "box_2")


def test_integers_a_browser_cannot_keep_are_refused() -> None:
    assert dict(parse_alert(_with("evidence.0.track_id", INT_MAX), "s-1", "box_2").evidence[0].fields)[
        "track_id"] == INT_MAX
    with pytest.raises(BadAlert, match=r"evidence\[0\].track_id must be an integer"):
        parse_alert(_with("evidence.0.track_id", INT_MAX + 1), "s-1", "box_2")


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
