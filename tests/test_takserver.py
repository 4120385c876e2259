"""The TAK test harness itself (benchmarks/takserver.py): a real taky carries a CoT event from a sender to a listener,
keeps a track for a late client, comes back on its port after a kill, refuses a TLS client without a certificate,
and a multicast listener on loopback hears what pytak sends. If these fail, the CoT output's tests prove nothing."""

from __future__ import annotations

import asyncio
import socket
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from configparser import ConfigParser
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.takserver import (
    TAKY,
    CotEvent,
    CotListener,
    CotStreamSplitter,
    MulticastListener,
    TakServer,
    have_taky,
    parse_cot,
)

pytestmark = pytest.mark.integration

STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"


def cot_event(uid: str, kind: str = "b-a-g", stale_s: float = 60.0, lat: float = 46.5512, lon: float = 15.6458,
              remarks: str = "test") -> bytes:
    """A CoT event built with ElementTree, as a sender would (no declaration)."""
    now = datetime.now(UTC)
    event = ET.Element("event", version="2.0", uid=uid, type=kind, how="m-f", time=now.strftime(STAMP),
                       start=now.strftime(STAMP), stale=(now + timedelta(seconds=stale_s)).strftime(STAMP))
    ET.SubElement(event, "point", lat=f"{lat}", lon=f"{lon}", hae="270.0", ce="15.0", le="10.0")
    ET.SubElement(ET.SubElement(event, "detail"), "remarks").text = remarks
    return ET.tostring(event)


def send_raw(server: TakServer, *documents: bytes) -> None:
    """A plain TCP client that writes and leaves (after taky has read it: it closes only when taky does)."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"".join(documents))
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5)
        while sock.recv(4096):  # taky sends nothing to a plain sender but what others send; it closes on our EOF
            pass


def by_uid(uid: str) -> Callable[[CotEvent], bool]:
    return lambda event: event.uid == uid


def need_taky() -> None:
    if not have_taky():
        pytest.skip(f"taky is not installed ({TAKY}): './dev setup' puts taky 0.10 into its own venv there")


@pytest.fixture
def taky(tmp_path: Path) -> Iterator[TakServer]:
    need_taky()
    with TakServer(tmp_path / "taky") as server:
        yield server


@pytest.fixture(scope="module")
def taky_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TakServer]:
    need_taky()
    with TakServer(tmp_path_factory.mktemp("taky-tls"), tls=True) as server:
        yield server


def test_event_reaches_a_listener_and_takproto_reads_it(taky: TakServer) -> None:
    with CotListener(taky) as listener:
        send_raw(taky, b'<?xml version="1.0" encoding="UTF-8"?>\n' + cot_event("edge-test-1", remarks="a & b"))
        [event] = listener.wait_for(by_uid("edge-test-1"))
    assert event.error is None, event.error
    cot = event.cot
    assert (cot.type, cot.uid, cot.how) == ("b-a-g", "edge-test-1", "m-f")
    assert (cot.lat, cot.lon, cot.hae, cot.ce, cot.le) == pytest.approx((46.5512, 15.6458, 270.0, 15.0, 10.0))
    assert cot.staleTime - cot.startTime == pytest.approx(60_000, abs=2)
    assert cot.detail.xmlDetail == "<remarks>a &amp; b</remarks>"
    assert event.element.find("detail/remarks").text == "a & b"


def test_a_late_client_gets_the_kept_track_but_not_an_alert(taky: TakServer) -> None:
    with CotListener(taky) as early:
        send_raw(taky, cot_event("edge-track", kind="a-h-G"), cot_event("edge-alert", kind="b-a-g"))
        early.wait_for(lambda event: event.uid in ("edge-track", "edge-alert"), count=2)
    with CotListener(taky) as late:
        [track] = late.wait_for(by_uid("edge-track"))
        assert track.cot.type == "a-h-G"
        with pytest.raises(AssertionError, match="0 of 1 matching events"):  # taky keeps a-*, not b-a-*
            late.wait_for(by_uid("edge-alert"), timeout=0.5)


def test_kill_and_start_on_the_same_port(taky: TakServer) -> None:
    port = taky.port
    listener = CotListener(taky)
    taky.kill()
    assert listener.disconnected.wait(5), "a listener of a killed server is cut off"
    listener.close()
    taky.start()
    assert taky.port == port
    with CotListener(taky) as listener:
        send_raw(taky, cot_event("edge-after-restart"))
        listener.wait_for(by_uid("edge-after-restart"))


def test_tls_client_with_the_certificate_gets_through(taky_tls: TakServer) -> None:
    with CotListener(taky_tls) as listener:
        context = ssl.create_default_context(cafile=str(taky_tls.ca_path))
        context.load_cert_chain(str(taky_tls.client_cert), str(taky_tls.client_key))
        with socket.create_connection((taky_tls.host, taky_tls.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=taky_tls.host) as sock:
            sock.sendall(cot_event("edge-tls", kind="a-h-G"))
            [event] = listener.wait_for(by_uid("edge-tls"))
    assert event.cot.type == "a-h-G"


def test_tls_client_without_a_certificate_is_refused(taky_tls: TakServer) -> None:
    with CotListener(taky_tls) as sender:
        sender.send(cot_event("edge-kept", kind="a-h-G", stale_s=120))
    with CotListener(taky_tls) as admitted:
        admitted.wait_for(by_uid("edge-kept"))
    try:
        refused = CotListener(taky_tls, with_cert=False)
    except (ssl.SSLError, OSError):
        return  # refused in the handshake itself (TLS 1.2)
    with refused:
        assert refused.disconnected.wait(5), "taky kept a client without a certificate"
        assert isinstance(refused.error, ssl.SSLError | ConnectionResetError), refused.error
        assert refused.events() == [], "a client without a certificate got the kept track"


def test_a_ping_is_answered_with_a_pong(taky: TakServer) -> None:
    with CotListener(taky) as pinger, CotListener(taky) as other:
        pinger.send(cot_event("edge-ping", kind="t-x-c-t"))
        [pong] = pinger.wait_for(lambda event: event.type == "t-x-c-t-r")
        assert (pong.uid, pong.cot.how) == ("takPong", "h-g-i-g-o")
        with pytest.raises(AssertionError):  # a ping goes no further
            other.wait_for(lambda event: (event.type or "").startswith("t-x-c-t"), timeout=0.5)


@pytest.mark.filterwarnings("ignore:The '(cryptography|aiohttp)' package is required:UserWarning")
def test_multicast_datagram_from_pytak_reaches_the_listener() -> None:
    import pytak

    with MulticastListener() as listener:
        config = ConfigParser()
        config["cot"] = {"COT_URL": f"udp+wo://{listener.group}:{listener.port}",
                         "PYTAK_MULTICAST_LOCAL_ADDR": "127.0.0.1", "PYTAK_MULTICAST_TTL": "1"}

        async def send() -> None:
            _, writer = await pytak.protocol_factory(config["cot"])
            await writer.send(cot_event("edge-mcast", kind="a-h-G"))
            writer.close()

        asyncio.run(send())
        [event] = listener.wait_for(by_uid("edge-mcast"))
    assert (event.cot.type, event.cot.lat, event.cot.lon) == ("a-h-G", pytest.approx(46.5512), pytest.approx(15.6458))
    assert event.sender is not None and event.sender[0] == "127.0.0.1"


def test_stream_splitter_keeps_the_raw_documents() -> None:
    one, two = cot_event("one"), cot_event("two")
    stream = b'<?xml version="1.0"?>\n' + one + b"\n<?xml version='1.0' ?>" + two.replace(b"</event>", b"</event >")
    splitter = CotStreamSplitter()
    pieces = [splitter.feed(stream[i:i + 7]) for i in range(0, len(stream), 7)]
    documents = [document for piece in pieces for document in piece]
    assert documents == [one, two.replace(b"</event>", b"</event >")]
    assert [parse_cot(document).cot.uid for document in documents] == ["one", "two"]


def test_parse_cot_reports_what_takproto_rejects() -> None:
    bad_time = cot_event("bad").replace(b'time="', b'time="x', 1)
    event: CotEvent = parse_cot(bad_time)
    assert event.element is not None and event.proto is None and "takproto" in (event.error or "")
    with pytest.raises(AssertionError, match="takproto could not parse"):
        _ = event.cot
    assert parse_cot(b"<event uid='x'>").error is not None
