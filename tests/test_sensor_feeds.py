"""Radio and metal-detector feeds: the contract's parsers, bad input, and real transports (UDP, TCP client
and server on loopback, serial over a pseudo-terminal pair)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensors.events import ParseError, nmea_checksum, parse_metal, parse_radio, parse_time
from sensors.feeds import SensorFeed
from sensors.lines import LineSplitter

NOW = 1_795_435_200.0  # 2026-11-23T12:00:00Z


def pmdet(sensor: str, seq: int, event: str, level: int, zone: int) -> bytes:
    body = f"PMDET,{sensor},{seq},{event},{level},{zone}".encode()
    return b"$" + body + b"*%02X" % nmea_checksum(body)


# -- parsers -------------------------------------------------------------------------------------------------


def test_radio_json_lines() -> None:
    ev = parse_radio(b'{"sensor": "rf-1", "ts": "2026-11-23T12:00:01.500Z", "kind": "bearing", '
                     b'"freq_hz": 446006250, "rssi_db": -71.5, "bearing_deg": 212.5, "bearing_conf": 0.8}', NOW)
    assert (ev.sensor, ev.kind, ev.bearing_deg, ev.ts, ev.skewed) == ("rf-1", "bearing", 212.5, NOW + 1.5, False)
    ev = parse_radio(b'{"sensor":"rf-1","ts":1795435100000,"kind":"position","lat":46.55,"lon":15.65}', NOW)
    assert ev.ts == NOW - 100 and ev.skewed and (ev.lat, ev.lon) == (46.55, 15.65)


@pytest.mark.parametrize("line, reason", [
    (b'{"sensor": "rf-1", "ts": 1795435200000, "kind": "jamming"}', "unknown kind 'jamming'"),
    (b'{"sensor": "rf 1", "ts": 1795435200000, "kind": "rf_detect"}', "not a valid id"),
    (b'{"sensor": "rf-1", "kind": "rf_detect"}', "missing field 'ts'"),
    (b'{"sensor": "rf-1", "ts": "yesterday", "kind": "rf_detect"}', "not RFC 3339"),
    (b'{"sensor": "rf-1", "ts": "2026-11-23T12:00:00", "kind": "rf_detect"}', "no timezone offset"),
    (b'{"sensor": "rf-1", "ts": 1795435200000, "kind": "bearing", "bearing_deg": 400}', "out of range"),
    (b'{"sensor": "rf-1", "ts": 1795435200000, "kind": "bearing"}', "needs bearing_deg"),
    (b'{"sensor": "rf-1", "ts": 1795435200000, "kind": "rf_detect", "bearing_conf": 1.5}', "out of range"),
    (b'{"sensor": "rf-1", "ts": 1795435200000, "kind": "rf_detect", "rssi_db": "loud"}', "must be a number"),
    (b'[1, 2]', "expected a JSON object"),
    (b'{"sensor": ', "not JSON"),
    (b'\xff\xfe', "not UTF-8"),
])
def test_radio_rejects_with_a_reason(line: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_radio(line, NOW)


def test_metal_sentences_and_json() -> None:
    ev = parse_metal(pmdet("md-gate", 17, "ALARM", 83, 2), NOW)
    assert (ev.sensor, ev.seq, ev.event, ev.level, ev.zone, ev.ts) == ("md-gate", 17, "ALARM", 83, 2, NOW)
    ev = parse_metal(b'{"sensor":"md-gate","seq":18,"event":"HB","level":0,"zone":2,"ts":"2026-11-23T12:00:00Z"}',
                     NOW + 60, max_skew_s=30)
    assert ev.event == "HB" and ev.skewed


@pytest.mark.parametrize("line, reason", [
    (pmdet("md-gate", 1, "ALARM", 50, 1)[:-2] + b"00", "bad checksum"),
    (pmdet("md-gate", 1, "BEEP", 50, 1), "unknown event 'BEEP'"),
    (pmdet("md-gate", 1, "ALARM", 150, 1), "level 150 is out of range"),
    (pmdet("md-gate", -1, "ALARM", 50, 1), "seq -1 is out of range"),
    (pmdet("md gate", 1, "ALARM", 50, 1), "not a valid id"),
    (b"$PMDET,md-gate,1,ALARM,50*00", "malformed"),
    (b"$GPGGA,123519,4807.038,N*47", r"not a \$PMDET sentence"),
    (b'{"sensor":"md-gate","seq":"x","event":"HB","level":0,"zone":1}', "must be an integer"),
])
def test_metal_rejects_with_a_reason(line: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_metal(line, NOW)


def test_time_formats() -> None:
    assert parse_time("2026-11-23T12:00:00+01:00") == NOW - 3600
    assert parse_time(1795435200000) == NOW
    with pytest.raises(ParseError):
        parse_time(True)


# -- bad input never escapes ---------------------------------------------------------------------------


@given(st.binary(max_size=600))
@settings(max_examples=400, deadline=None)
def test_random_bytes_are_parsed_or_rejected_never_raised(data: bytes) -> None:
    for kind in ("radio", "metal"):
        feed = SensorFeed("s1", kind, "udp://127.0.0.1:0", lambda ev: None)  # type: ignore[arg-type]
        result = feed.handle(data, NOW)
        c = feed.counters
        assert c.events + c.rejected == 1
        if result is None:
            assert c.rejects[-1].reason and c.rejects[-1].line == data[:512]


@given(st.integers(0, 10**6), st.sampled_from(["ALARM", "CLEAR", "TAMPER", "FAULT", "HB"]), st.integers(0, 100),
       st.integers(0, 99), st.integers(1, 30))
@settings(max_examples=200, deadline=None)
def test_truncated_sentences_are_rejected(seq: int, event: str, level: int, zone: int, cut: int) -> None:
    line = pmdet("md-1", seq, event, level, zone)
    assert parse_metal(line, NOW).seq == seq
    feed = SensorFeed("md-1", "metal", "udp://127.0.0.1:0", lambda ev: None)
    assert feed.handle(line[:-cut], NOW) is None and feed.counters.rejected == 1


def test_rejects_are_bounded_oldest_first_out() -> None:
    feed = SensorFeed("md-1", "metal", "udp://127.0.0.1:0", lambda ev: None, keep_rejects=5)
    for i in range(12):
        feed.handle(f"garbage {i}".encode(), NOW)
    assert feed.counters.rejected == 12
    assert [r.line for r in feed.counters.rejects] == [f"garbage {i}".encode() for i in range(7, 12)]


def test_sequence_gaps_and_heartbeat_timeout() -> None:
    feed = SensorFeed("md-1", "metal", "udp://127.0.0.1:0", lambda ev: None, hb_timeout_s=30)
    for seq, t in ((1, 0), (2, 1), (5, 2), (6, 3)):
        feed.handle(pmdet("md-1", seq, "HB", 0, 1), NOW + t)
    assert feed.counters.seq_gaps == 2
    assert feed.faulty(NOW + 20) == [] and feed.faulty(NOW + 40) == ["md-1"]


@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(8, 64))
@settings(max_examples=200, deadline=None)
def test_splitter_memory_is_bounded(chunks: list[bytes], max_line: int) -> None:
    sp = LineSplitter(max_line)
    for chunk in chunks:
        for line, oversized in sp.feed(chunk):
            assert len(line) <= max_line
            assert oversized or b"\n" not in line
        assert len(sp._buf) <= max_line


def test_splitter_cuts_a_line_without_newline() -> None:
    sp = LineSplitter(10)
    assert sp.feed(b"0123456789abcdef") == [(b"0123456789", True)]
    assert sp.feed(b"ghij\nok\n") == [(b"ok", False)]  # the rest of the long line is dropped


# -- transports --------------------------------------------------------------------------------------------


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    ev = threading.Event()
    yield ev
    ev.set()


def _collect(kind: str, url: str, stop: threading.Event, **kw: object) -> tuple[SensorFeed, list]:
    got: list = []
    feed = SensorFeed("s1", kind, url, got.append, **kw)  # type: ignore[arg-type]
    feed.start(stop)
    assert feed.reader.wait_ready(5)
    return feed, got


def _wait(pred, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_udp_datagrams_with_several_lines(stop: threading.Event) -> None:
    feed, got = _collect("metal", "udp://127.0.0.1:0", stop)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(pmdet("md-1", 1, "HB", 0, 1) + b"\r\n" + pmdet("md-1", 2, "ALARM", 70, 1), ("127.0.0.1",
                                                                                          feed.reader.bound_port))
        s.sendto(b"junk", ("127.0.0.1", feed.reader.bound_port))
    assert _wait(lambda: len(got) == 2 and feed.counters.rejected == 1)
    assert [e.event for e in got] == ["HB", "ALARM"]


def test_tcp_client_reconnects_after_the_sensor_drops(stop: threading.Event) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    feed, got = _collect("radio", f"tcp://127.0.0.1:{port}", stop, backoff_min_s=0.1, backoff_max_s=0.2)
    line = b'{"sensor":"rf-1","ts":1795435200000,"kind":"rf_detect","freq_hz":4.46e8}\n'
    for _ in range(2):
        conn, _ = srv.accept()
        conn.sendall(line + line.rstrip())  # the last line has no newline: kept...
        conn.close()  # ...and delivered when the stream ends
    assert _wait(lambda: len(got) == 4)
    assert feed.reader.counters.reconnects >= 1
    srv.close()


def test_tcp_server_takes_several_senders_and_cuts_oversized_lines(stop: threading.Event) -> None:
    feed, got = _collect("metal", "tcp-listen://127.0.0.1:0", stop, max_line=64)
    port = feed.reader.bound_port
    a = socket.create_connection(("127.0.0.1", port))
    b = socket.create_connection(("127.0.0.1", port))
    a.sendall(pmdet("md-a", 1, "ALARM", 90, 3) + b"\n")
    b.sendall(b"X" * 10_000 + b"\n" + pmdet("md-b", 1, "CLEAR", 0, 3) + b"\n")
    assert _wait(lambda: len(got) == 2 and feed.counters.rejected == 1)
    assert "longer than 64 bytes" in feed.counters.rejects[0].reason
    a.close()
    b.close()


def test_serial_over_a_pseudo_terminal(stop: threading.Event) -> None:
    master, slave = os.openpty()
    feed, got = _collect("metal", f"serial://{os.ttyname(slave)}?baud=4800", stop)
    os.write(master, pmdet("md-1", 1, "TAMPER", 100, 4) + b"\r\n" + b"$PMDET,bad*00\r\n")
    assert _wait(lambda: len(got) == 1 and feed.counters.rejected == 1)
    assert got[0].event == "TAMPER"
    os.close(master)
    os.close(slave)


def test_unreachable_tcp_sensor_is_offline_and_retried(stop: threading.Event) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    feed = SensorFeed("rf-9", "radio", f"tcp://127.0.0.1:{port}", lambda ev: None, backoff_min_s=0.05,
                      backoff_max_s=0.1)
    feed.start(stop)
    assert _wait(lambda: feed.reader.counters.reconnects >= 2)
    assert feed.reader.counters.state == "offline" and "cannot connect" in (feed.reader.counters.last_error or "")
