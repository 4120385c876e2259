"""What a command post sends a box, checked field by field: every hostile ack or receipt gets an AckError or a
ReceiptError that names the field and shows the value, never another exception."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.contract.acks import AckError, ReceiptError, parse_ack, parse_receipt, receipt_payload
from edge_agent.contract.ids import new_ulid

NOW = 1_790_000_000.0  # a fixed box clock for the field table


@pytest.mark.parametrize(("payload", "error"), [
    (b"[" * 100_000, r"payload of 100000 bytes, expected at most 8192"),
    (b"[" * 8_000, r"not JSON: nested too deep"),
    (b"\xff\xfe{}", r"not JSON"),
    (b'{"alert_id": "01J0000000000000000000000A", "by": "x", "ts": 1' + b"0" * 5000 + b"}", r"not JSON"),
    (b'[1, 2]', r"expected a JSON object, got list"),
    ({"alert_id": "../../x", "by": "me"}, r"alert_id: expected a ULID.*'\.\./\.\./x'"),
    ({"alert_id": None}, r"alert_id: expected a ULID.*None"),
    ({"by": ""}, r"by: expected a name of 1 to 64 printable characters, got ''"),
    ({"by": "sgt\nnovak acknowledged everything"}, r"by: .*'sgt\\nnovak"),
    ({"by": "\x1b[31mred"}, r"by: .*\\x1b"),
    ({"by": "x" * 65}, r"by: .*'xxxx.*\(67 characters\)"),
    ({"by": ["me"]}, r"by: .*\['me'\]"),
    ({"note": "x" * 1001}, r"note: expected printable text of at most 1000 characters"),
    ({"note": "fine\x00"}, r"note: .*\\x00"),
    ({"ts": 1e20}, r"ts: expected a time within 24 h of the box's clock .*got 1e\+20"),
    ({"ts": -1}, r"ts: .*got -1"),
    ({"ts": True}, r"ts: expected RFC 3339 text or epoch seconds or milliseconds, got True"),
    ({"ts": 10**400}, r"ts: .*\(401 characters\)"),
    ({"ts": "0000-01-01T00:00:00Z"}, r"ts: .*0000-01-01"),
    ({"ts": "9999-12-31T23:59:59Z"}, r"ts: .*9999-12-31"),
    ({"ts": "2026-09-24T00:00:00Z"}, r"ts: expected a time within 24 h of the box's clock .*2026-09-24"),
    ({"ts": "0001-01-01T00:00:00+14:00"}, r"ts: "),
    ({"ts": "2026-01-01T00:00:00"}, r"ts: .*no timezone offset"),
    ({"ts": "x" * 65}, r"ts: expected RFC 3339 text"),
])
def test_a_hostile_ack_gets_an_error_that_names_the_field_and_the_value(payload: bytes | dict[str, object],
                                                                         error: str) -> None:
    if isinstance(payload, dict):
        payload = json.dumps({"alert_id": new_ulid(NOW), "by": "sgt-novak", **payload}).encode()
    with pytest.raises(AckError, match=error):
        parse_ack(payload, now=NOW)


def test_infinite_and_nan_ack_times_are_refused() -> None:
    for raw in (b"Infinity", b"-Infinity", b"NaN"):
        payload = b'{"alert_id": "%s", "by": "me", "ts": %s}' % (new_ulid(NOW).encode(), raw)
        with pytest.raises(AckError, match=r"ts: .*got (inf|-inf|nan)\Z"):
            parse_ack(payload, now=NOW)


@pytest.mark.parametrize(("ts", "expected"), [
    (None, NOW), (NOW - 3600, NOW - 3600), ((NOW + 60) * 1000, NOW + 60), ("2026-09-21T14:20:00Z", NOW + 400),
    ("2026-09-21T16:20:00.250+02:00", NOW + 400.25),
])
def test_ack_times_within_a_day_of_the_box_clock_are_taken(ts: object, expected: float) -> None:
    alert_id = new_ulid(NOW)
    ack = parse_ack(json.dumps({"alert_id": alert_id, "by": " sgt-novak ", "ts": ts, "note": "two\nlines"}).encode(),
                    now=NOW)
    assert (ack.alert_id, ack.by, ack.ts, ack.note) == (alert_id, "sgt-novak", expected, "two\nlines")


def test_receipts_are_checked_like_acks() -> None:
    alert_id = new_ulid(NOW)
    r = parse_receipt(receipt_payload(alert_id, "escalated", "cp-1", NOW), now=NOW)
    assert (r.alert_id, r.state, r.by, r.ts) == (alert_id, "escalated", "cp-1", NOW)
    for bad, error in ((receipt_payload(alert_id, "lost", "cp-1"), r"state: expected one of new, updated.*'lost'"),
                       (receipt_payload("x", "new", "cp-1"), "alert_id"),
                       (receipt_payload(alert_id, "new", "cp\r1"), r"by: .*\\r"),
                       (b"[" * 9000, "payload of 9000 bytes")):
        with pytest.raises(ReceiptError, match=error):
            parse_receipt(bad, now=NOW)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["alert_id", "by", "ts", "note", "state", "x"]), inner, max_size=5), max_leaves=20)
    .map(lambda v: json.dumps(v).encode())))
def test_parsers_raise_nothing_but_their_own_error(payload: bytes) -> None:
    for parse, error in ((parse_ack, AckError), (parse_receipt, ReceiptError)):
        with contextlib.suppress(error):
            parse(payload, now=NOW)
