"""The CoT events of each kind and state of alert, read back by takproto (an independent CoT parser): types,
how, the unknown-place convention, cancels, and a summary that tries to break out of its XML."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest
import takproto

from edge_agent.contract.alert import Alert, Evidence
from edge_agent.contract.ids import new_ulid
from edge_agent.outputs.cot import CotStyle, alert_event, ping_event

STYLE = CotStyle(callsign="box-07", uid_prefix="edge-agent.s.box-07", stale_s=600, snapshot_url=None,
                 errors_m={"cam": 1.4}, default_error_m=10.0)


def _alert(kind: str, state: str = "new", location: tuple[float, float] | None = (46.5, 15.6),
           summary: str = "Person entered Gate") -> Alert:
    now = time.time()
    return Alert(new_ulid(), new_ulid(), "s", "box-07", now, kind, "high", state, None, location,  # type: ignore[arg-type]
                 (Evidence("cam", "thermal", now),), summary)


def _cot(xml: bytes | None):  # type: ignore[no-untyped-def]
    assert xml is not None
    return takproto.parse_proto(takproto.xml2proto(xml)).cotEvent


@pytest.mark.parametrize(("kind", "cot_type", "how"), [
    ("intrusion", "b-a-g", "m-i"), ("loitering", "b-a-g", "m-i"), ("line_crossing", "b-a-g", "m-i"),
    ("fused", "b-a-g", "m-f"), ("metal", "b-d", "m-c"), ("radio", "b-d", "m-c")])
def test_each_kind_has_its_type_and_how_and_its_cancel(kind: str, cot_type: str, how: str) -> None:
    alert = _alert(kind)
    cot = _cot(alert_event(alert, STYLE))
    assert (cot.type, cot.how, cot.uid) == (cot_type, how, f"edge-agent.s.box-07.{alert.alert_id}")
    assert cot.ce == 1.4 and cot.staleTime - cot.startTime == 600_000
    assert ('Geo-fence Breached' in cot.detail.xmlDetail) == (cot_type == "b-a-g")
    for state in ("acknowledged", "closed"):
        cancel = _cot(alert_event(alert.with_state(state, alert.ts + 5), STYLE))  # type: ignore[arg-type]
        assert cancel.uid == cot.uid and cancel.how == how
        assert cancel.type == ("b-a-o-can" if cot_type == "b-a-g" else cot_type)
        assert cancel.staleTime - cancel.startTime <= 1000
        assert ('cancel="true"' in cancel.detail.xmlDetail) == (cot_type == "b-a-g")


def test_a_sensor_fault_is_not_sent_and_a_place_not_known_says_so() -> None:
    for state in ("new", "acknowledged", "closed"):
        assert alert_event(_alert("sensor_fault", state), STYLE) is None
    cot = _cot(alert_event(_alert("intrusion", location=None), STYLE))
    assert (cot.lat, cot.lon, cot.ce, cot.hae) == (0.0, 0.0, 9999999.0, 9999999.0)


def test_a_hostile_summary_stays_text() -> None:
    summary = 'x"/><event uid="forged" type="a-h-G"/><remarks>&amp; </remarks>\u202e'
    xml = alert_event(_alert("intrusion", summary=summary), STYLE)
    assert xml is not None
    root = ET.fromstring(xml)
    assert len(root.findall(".//event")) == 0 and root.get("uid", "").startswith("edge-agent.")
    assert summary in (root.findtext("detail/remarks") or "")
    assert _cot(ping_event("box-07", time.time())).type == "t-x-c-t"
