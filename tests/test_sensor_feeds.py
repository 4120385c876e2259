"""Radio and metal-detector feeds: the contract's parsers, bad input, and real transports (UDP, TCP client
and server on loopback, serial over a pseudo-terminal pair)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensors.errors import SensorError
from sensors.events import ParseError, nmea_checksum, parse_metal, parse_radio, parse_time
from sensors.feeds import SensorFeed
from sensors.lines import LineReader, LineSpec, parse_url
from sensors.linesplit import LineSplitter

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


# -- hostile input ---------------------------------------------------------------------------------------

DAYS_OFF = r"is [0-9,]+ days from the box clock \(limit 1 day\): set the sensor's clock"


def radio(**fields: object) -> bytes:
    obj = {"sensor": "rf-1", "ts": 1795435200000, "kind": "rf_detect", **fields}
    return json.dumps(obj).encode()  # NaN and Infinity come out as JSON's unofficial literals


def metal(**fields: object) -> bytes:
    return json.dumps({"sensor": "md-1", "seq": 1, "event": "HB", "level": 0, "zone": 1, **fields}).encode()


HOSTILE = [
    # times: far off, out of datetime's range, not numbers
    ("radio", radio(ts="0001-01-01T00:00:00+14:00"), r"ts 0001-01-01T00:00:00\+14:00 " + DAYS_OFF),
    ("radio", radio(ts="9999-12-31T23:59:59-14:00"), r"ts 9999-12-31T23:59:59-14:00 " + DAYS_OFF),
    ("metal", metal(ts="0001-01-01T00:00:00+14:00"), r"ts 0001-01-01T00:00:00\+14:00 " + DAYS_OFF),
    ("metal", metal(ts="9999-12-31T23:59:59-14:00"), "ts 9999-12-31T23:59:59-14:00 " + DAYS_OFF),
    ("radio", radio(ts=0), "ts 0 " + DAYS_OFF),
    ("metal", metal(ts=99_999_999_999_999), "ts 99999999999999 " + DAYS_OFF),
    ("radio", radio(ts=float("nan")), "ts nan is not a plausible epoch"),
    ("radio", radio(ts=float("inf")), "ts inf is not a plausible epoch"),
    ("metal", metal(ts=float("-inf")), "ts -inf is not a plausible epoch"),
    ("radio", radio(ts=1e308), r"ts 1e\+308 is not a plausible epoch"),
    ("metal", metal(ts=10**400), r"ts 1000000000.*\.\.\. is not a plausible epoch"),
    ("radio", radio(ts="2026-11-23\n12:00:00Z"), r"ts '2026-11-23\\n12:00:00Z' is not RFC 3339"),
    ("radio", radio(ts="2026-11-23T12:00:00Z" + " " * 100), "ts '2026-11-23T12:00:00Z .* is not RFC 3339"),
    ("metal", metal(ts=[1795435200000]), "ts must be RFC 3339 text or epoch milliseconds, got list"),
    # numbers
    ("radio", radio(freq_hz=1e308), r"freq_hz 1e\+308 is out of range"),
    ("radio", radio(rssi_db=float("nan")), "rssi_db must be a number, got nan"),
    ("radio", radio(kind="position", lat=float("inf"), lon=15.0), "lat must be a number, got inf"),
    ("radio", radio(kind="bearing", bearing_deg=10**400), "bearing_deg 1000.* is out of range"),
    ("metal", metal(seq=10**400), "seq 1000.* is out of range"),
    ("metal", metal(level=float("nan")), "level must be an integer, got nan"),
    # ids and text that would reach a log line, a topic or a summary
    ("radio", radio(radio_id="a/b"), "radio_id 'a/b' must be"),
    ("radio", radio(radio_id="border/#"), "radio_id 'border/#' must be"),
    ("radio", radio(radio_id="+"), r"radio_id '\+' must be"),
    ("radio", radio(radio_id="../../etc/passwd"), r"radio_id '\.\./\.\./etc/passwd' must be"),
    ("radio", radio(radio_id=".."), r"radio_id '\.\.' must be"),
    ("radio", radio(radio_id="PMR-7\nWARNING forged"), r"radio_id 'PMR-7\\nWARNING forged' must be"),
    ("radio", radio(radio_id="PMR\u202e7"), r"radio_id 'PMR\\u202e7' must be"),
    ("radio", radio(radio_id="x" * 65), r"radio_id 'xxx.*\.\.\. must be"),
    ("radio", radio(radio_id=10**30), "radio_id 1000.* must be"),
    ("radio", radio(sensor="rf-1\n"), r"sensor 'rf-1\\n' is not a valid id"),
    ("metal", metal(sensor="../md-1"), r"sensor '\.\./md-1' is not a valid id"),
    ("metal", metal(sensor="md/1/#"), "sensor 'md/1/#' is not a valid id"),
    ("radio", radio(kind="rf_detect\r\nforged"), r"unknown kind 'rf_detect\\r\\nforged'"),
    ("metal", metal(event="HB\x1b[31m"), r"unknown event 'HB\\x1b\[31m'"),
    ("metal", pmdet("md/gate", 1, "HB", 0, 1), "sensor 'md/gate' is not a valid id"),
    ("metal", pmdet("md+", 1, "HB", 0, 1), r"sensor 'md\+' is not a valid id"),
    ("metal", pmdet("md\x00gate", 1, "HB", 0, 1), r"sensor 'md\\x00gate' is not a valid id"),
    ("metal", pmdet("md-\x1b]0;pwned\x07", 1, "HB", 0, 1), r"sensor 'md-\\x1b\]0;pwned\\x07' is not a valid id"),
    # bytes and structure
    ("metal", pmdet("md-1", 1, "HB", 0, 1)[:-2] + b"7Z", "malformed"),
    ("metal", pmdet("md-1", 1, "HB", 0, 1)[:-2] + b"00", r"bad checksum \*00, computed"),
    ("metal", pmdet("md-1", 1, "ALARM", 50, 1).replace(b"50", b"51"), "bad checksum"),
    ("radio", b'{"sensor": "rf\x00-1", "ts": 1795435200000, "kind": "rf_detect"}', "not JSON: Invalid control"),
    ("metal", b'\x00\x00\x00', "not JSON"),
    ("radio", b'{"sensor": "\xff\xfe"}', r"not UTF-8 \(byte 12\)"),
    ("metal", b"$PMDET,md-\xc0,1,HB,0,1*00", "bad checksum"),
    ("radio", b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "JSON nested deeper than 8 levels"),
    ("metal", b"[" * 100_000, "JSON nested deeper than 8 levels"),
    ("radio", b'{"a": [[[[[[[[[1]]]]]]]]]}', "JSON nested deeper than 8 levels"),
    ("radio", b'{"a": "[[[[[[[[[[[[\\"[[[[", "sensor": "rf 1"}', "missing field 'ts'"),  # brackets in text
    ("radio", b'{"ts": ' + b"9" * 5000 + b"}", "not JSON: a number too long"),
]


@pytest.mark.parametrize("kind, line, reason", HOSTILE)
def test_hostile_lines_are_rejected_with_a_reason_that_names_the_field(kind: str, line: bytes, reason: str) -> None:
    parse = parse_radio if kind == "radio" else parse_metal
    with pytest.raises(ParseError, match=reason) as err:
        parse(line, NOW)
    assert type(err.value) is ParseError
    text = str(err.value)
    assert text.isprintable() and len(text) < 400, text  # safe to log, store and show
    seen: list = []
    feed = SensorFeed("s1", kind, "udp://127.0.0.1:0", seen.append,  # type: ignore[arg-type]
                      accept=frozenset({"rf-1", "md-1"}))
    assert feed.handle(line, NOW) is None and seen == []
    assert feed.counters.rejected == 1 and feed.counters.events == 0
    assert feed.counters.rejects[0].reason == text


def test_a_64_kib_line_through_the_splitter_is_one_rejected_line() -> None:
    feed = SensorFeed("md-1", "metal", "udp://127.0.0.1:0", lambda ev: None)
    handed = 0
    splitter = LineSplitter(4096)
    data = b"$PMDET," + b"A" * 65536 + b"\n" + b"[" * 65536 + b"\n" + pmdet("md-1", 1, "HB", 0, 1) + b"\n"
    for chunk in (data[i:i + 1500] for i in range(0, len(data), 1500)):
        for line, oversized in splitter.feed(chunk):
            handed += 1
            feed.handle(line, NOW, oversized)
    assert handed == 3 and feed.counters.events == 1 and feed.counters.rejected == 2
    assert all("longer than 4096 bytes" in r.reason for r in feed.counters.rejects)


def test_sensor_clock_within_skew_is_fine_further_is_flagged_far_is_rejected() -> None:
    ok = parse_radio(radio(ts="2026-11-23T12:00:20Z"), NOW)
    assert ok.ts == NOW + 20 and not ok.skewed
    skewed = parse_radio(radio(ts="2026-11-23T20:00:00+01:00"), NOW)  # 7 h ahead: flagged, kept
    assert skewed.ts == NOW + 7 * 3600 and skewed.skewed
    assert parse_metal(metal(ts=(NOW - 86000) * 1000), NOW).skewed
    with pytest.raises(ParseError, match=r"ts 2026-11-23T20:00:00\+01:00 is 7 h from the box clock \(limit 1 h\)"):
        parse_radio(radio(ts="2026-11-23T20:00:00+01:00"), NOW, max_clock_off_s=3600)
    with pytest.raises(ParseError, match="is 1.5 days from the box clock"):
        parse_metal(metal(ts=(NOW + 1.5 * 86400) * 1000), NOW)
    # without a receive time only what no consumer could format is refused
    assert parse_time("2001-01-01T00:00:00Z") == 978307200.0
    for far in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        with pytest.raises(ParseError, match="outside the years 0001-9999"):
            parse_time(far)


def test_feed_rejects_lines_of_sensors_it_does_not_carry() -> None:
    heard: list = []
    gate = SensorFeed("md-gate", "metal", "udp://127.0.0.1:0", heard.append, hb_timeout_s=30)
    lines = [pmdet("md-gate", 1, "HB", 0, 1), pmdet("md-fence", 7, "HB", 0, 2), b"garbage",
             pmdet("md-fence", 8, "ALARM", 90, 2), pmdet("md-gate", 2, "HB", 0, 1)]
    for i, line in enumerate(lines):
        gate.handle(line, NOW + i)
    c = gate.counters
    assert [e.seq for e in heard] == [1, 2] and c.events + c.rejected == len(lines) == 5
    assert [r.reason for r in c.rejects if "unknown" in r.reason] == [
        "unknown sensor 'md-fence' (this feed accepts md-gate)"] * 2
    assert gate.health.last_heard is not None and set(gate.health.last_heard) == {"md-gate"}
    assert gate.faulty(NOW + 60) == ["md-gate"]  # md-fence is not this feed's to judge
    shared = SensorFeed("rx-1", "radio", "udp://127.0.0.1:0", heard.append, accept=frozenset({"rx-1", "rx-2"}))
    assert shared.handle(radio(sensor="rx-2"), NOW) is not None
    assert shared.handle(radio(sensor="rf-1"), NOW) is None
    assert shared.counters.rejects[0].reason == "unknown sensor 'rf-1' (this feed accepts rx-1, rx-2)"


@pytest.mark.parametrize("url, reason", [
    ("serial:///dev/ttyS0?baud=fast", "baud 'fast' is not a standard serial rate; use one of 50, 75"),
    ("serial:///dev/ttyS0?baud=12345", "baud '12345' is not a standard"),
    ("serial:///dev/ttyS0?baud=", "baud '' is not a standard"),
    ("serial:///dev/ttyS0?baud=%EF%BC%99600", "baud '９600' is not a standard"),
    ("serial:///dev/ttyS0?speed=9600", "unknown option 'speed' for serial:// \\(options: baud\\)"),
    ("serial:///dev/ttyS0?baud=9600&baud=4800", "option baud is given twice"),
    ("tcp-listen://0.0.0.0:5005?max_conn=0", "max_conn '0' must be a whole number from 1 to 1000"),
    ("tcp-listen://0.0.0.0:5005?max_conn=-3", "max_conn '-3' must be"),
    ("tcp-listen://0.0.0.0:5005?max_conn=many", "max_conn 'many' must be"),
    ("tcp-listen://0.0.0.0:5005?max_conn=100000", "max_conn '100000' must be"),
    ("tcp-listen://0.0.0.0:5005?idle_s=0", "idle_s '0' must be a positive number of seconds"),
    ("tcp-listen://0.0.0.0:5005?idle_s=-5", "idle_s '-5' must be"),
    ("tcp-listen://0.0.0.0:5005?idle_s=nan", "idle_s 'nan' must be"),
    ("tcp-listen://0.0.0.0:5005?idle_s=inf", "idle_s 'inf' must be"),
    ("tcp-listen://0.0.0.0:5005?idle_s=soon", "idle_s 'soon' must be"),
    ("udp://0.0.0.0:5005?max_conn=4", "unknown option 'max_conn' for udp:// \\(options: none\\)"),
    ("tcp://10.0.0.5:5005?idle_s=5", "unknown option 'idle_s' for tcp://"),
    ("tcp://10.0.0.5:70000", "port '70000' is not a number from 0 to 65535"),
    ("udp://0.0.0.0:-1", "port '-1' is not a number"),
    ("tcp://10.0.0.5:http", "port 'http' is not a number"),
    ("tcp://10.0.0.5:0", "port 0 cannot be connected to"),
    ("tcp-listen://:5005", "needs a host and a port"),
    ("carrier-pigeon://loft", "unknown transport 'carrier-pigeon'"),
])
def test_bad_url_options_are_sensor_errors_naming_the_option(url: str, reason: str) -> None:
    with pytest.raises(SensorError, match=reason):
        parse_url(url)
    with pytest.raises(SensorError, match=reason):  # the feed refuses it when built, not at run time
        SensorFeed("s1", "metal", url, lambda ev: None)


def test_url_options_reach_the_reader() -> None:
    assert parse_url("serial:///dev/ttyUSB0?baud=4800") == ("serial", "/dev/ttyUSB0", 0, {"baud": "4800"})
    listen = LineReader(LineSpec("md-1", "tcp-listen://0.0.0.0:5005?max_conn=4&idle_s=60"), print)
    assert (listen.max_conn, listen.idle_s) == (4, 60.0)
    plain = LineReader(LineSpec("md-1", "tcp-listen://0.0.0.0:5005"), print)
    assert (plain.max_conn, plain.idle_s) == (16, 300.0)
    own = LineReader(LineSpec("md-1", "tcp-listen://0.0.0.0:5005?max_conn=4", max_conn=2, idle_s=5), print)
    assert (own.max_conn, own.idle_s) == (2, 5.0)
    with pytest.raises(ValueError, match="max_conn must be 1-1000, got 0"):
        LineSpec("md-1", "tcp-listen://0.0.0.0:5005", max_conn=0)


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
    feed, got = _collect("metal", "udp://127.0.0.1:0", stop, accept=frozenset({"md-1"}))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(pmdet("md-1", 1, "HB", 0, 1) + b"\r\n" + pmdet("md-1", 2, "ALARM", 70, 1), ("127.0.0.1",
                                                                                          feed.reader.bound_port))
        s.sendto(b"junk", ("127.0.0.1", feed.reader.bound_port))
    assert _wait(lambda: len(got) == 2 and feed.counters.rejected == 1)
    assert [e.event for e in got] == ["HB", "ALARM"]


def test_tcp_client_reconnects_after_the_sensor_drops(stop: threading.Event) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    feed, got = _collect("radio", f"tcp://127.0.0.1:{port}", stop, backoff_min_s=0.1, backoff_max_s=0.2,
                        accept=frozenset({"rf-1"}))
    # the sensor's clock is now: a fixed stamp would be rejected as a clock off by more than a day once the
    # calendar moves on
    line = b'{"sensor":"rf-1","ts":%d,"kind":"rf_detect","freq_hz":4.46e8}\n' % int(time.time() * 1000)
    for _ in range(2):
        conn, _ = srv.accept()
        conn.sendall(line + line.rstrip())  # the last line has no newline: kept...
        conn.close()  # ...and delivered when the stream ends
    assert _wait(lambda: len(got) == 4)
    assert feed.reader.counters.reconnects >= 1
    srv.close()


def test_tcp_server_takes_several_senders_and_cuts_oversized_lines(stop: threading.Event) -> None:
    feed, got = _collect("metal", "tcp-listen://127.0.0.1:0", stop, max_line=64, accept=frozenset({"md-a", "md-b"}))
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
    feed, got = _collect("metal", f"serial://{os.ttyname(slave)}?baud=4800", stop, accept=frozenset({"md-1"}))
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


def test_a_failing_consumer_never_stops_the_udp_reader(stop: threading.Event) -> None:
    taken: list = []

    def consumer(ev: object) -> None:
        taken.append(ev)
        if len(taken) == 1:
            raise RuntimeError("consumer bug")

    feed = SensorFeed("md-1", "metal", "udp://127.0.0.1:0", consumer)  # type: ignore[arg-type]
    feed.start(stop)
    assert feed.reader.wait_ready(5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(pmdet("md-1", 1, "ALARM", 80, 1), ("127.0.0.1", feed.reader.bound_port))
        assert _wait(lambda: len(taken) == 1)
        s.sendto(pmdet("md-1", 2, "CLEAR", 0, 1), ("127.0.0.1", feed.reader.bound_port))
        assert _wait(lambda: len(taken) == 2)
    assert feed.reader.alive and feed.counters.events == 2


def test_a_transport_that_raises_is_restarted_with_backoff(stop: threading.Event) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(10)
    got: list = []
    feed = SensorFeed("rf-1", "radio", f"tcp://127.0.0.1:{srv.getsockname()[1]}", got.append, backoff_min_s=0.05,
                      backoff_max_s=0.1)
    real, failed = feed.reader.deliver, []

    def deliver_failing_once(splitter: LineSplitter, data: bytes, end: bool = False) -> int:
        if data and not failed:
            failed.append(data)
            raise RuntimeError("transport surprise")
        return real(splitter, data, end)

    feed.reader.deliver = deliver_failing_once  # type: ignore[method-assign]
    feed.start(stop)
    line = b'{"sensor":"rf-1","ts":%d,"kind":"rf_detect"}\n' % int(time.time() * 1000)
    first, _ = srv.accept()
    first.sendall(line)  # lost with the failure...
    second, _ = srv.accept()  # ...and the reader comes back by itself
    second.sendall(line)
    assert _wait(lambda: len(got) == 1)
    assert failed and feed.reader.counters.errors == 1 and "transport surprise" in (feed.reader.counters.last_error
                                                                                   or "")
    assert feed.reader.alive
    for s in (first, second, srv):
        s.close()


def test_datagrams_the_kernel_drops_are_counted_not_lost_silently(stop: threading.Event) -> None:
    """A reader that falls behind a burst: what the kernel drops is counted (SO_RXQ_OVFL), so lines heard plus
    datagrams dropped is exactly what was sent."""
    release, heard = threading.Event(), []

    def slow(line: bytes, received: float, oversized: bool) -> None:
        release.wait(30)
        heard.append(line)

    reader = LineReader(LineSpec("md-1", "udp://127.0.0.1:0"), slow)
    reader.start(stop)
    assert reader.wait_ready(5) and reader.bound_port
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        payload = b"x" * 1400
        while sent < 20_000:  # far more than a receive buffer holds while the reader is stuck on the first one
            try:
                s.sendto(payload + b"%d\n" % sent, ("127.0.0.1", reader.bound_port))
            except BlockingIOError:
                continue
            sent += 1
        release.set()
        assert _wait(lambda: len(heard) > 0 and reader.counters.lines == len(heard), 30)
        s.setblocking(True)
        s.sendto(b"one more\n", ("127.0.0.1", reader.bound_port))  # the kernel's count rides on the next datagram
        sent += 1
    assert _wait(lambda: len(heard) + reader.counters.dropped == sent, 30), (len(heard), reader.counters.dropped)
    assert reader.counters.dropped > 0
