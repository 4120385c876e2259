"""The tcp-listen:// server under attack, on real loopback sockets: a flood of 2,000 connections, idle and
garbage-sending ones, connections silent past idle_s, and a process out of file descriptors. A real sensor
must still get in and be heard, and the reader thread must never die. The tests that change the process's
descriptor limit run in a child process of their own (``tests/childproc.py``)."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import socket
import threading
from collections.abc import Iterator

import pytest

from sensors.events import nmea_checksum
from sensors.feeds import SensorFeed
from tests.brokers import wait_for
from tests.childproc import in_child

FLOOD = 2000


def pmdet(seq: int, event: str = "HB", sensor: str = "md-gate") -> bytes:
    body = f"PMDET,{sensor},{seq},{event},{80 if event == 'ALARM' else 0},1".encode()
    return b"$" + body + b"*%02X\r\n" % nmea_checksum(body)


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    ev = threading.Event()
    yield ev
    ev.set()


def listening_feed(stop: threading.Event, query: str = "", **kw: object) -> tuple[SensorFeed, list, int]:
    got: list = []
    feed = SensorFeed("md-gate", "metal", f"tcp-listen://127.0.0.1:0{query}", got.append, **kw)  # type: ignore[arg-type]
    feed.start(stop)
    assert feed.reader.wait_ready(5)
    assert feed.reader.bound_port is not None
    return feed, got, feed.reader.bound_port


def lines_accounted(feed: SensorFeed) -> bool:
    return feed.counters.events + feed.counters.rejected == feed.reader.counters.lines


def test_a_sensor_is_heard_during_and_after_a_flood_of_2000_connections() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FLOOD + 500:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {FLOOD + 500} descriptors the flood needs")
    in_child(_flood)


def _flood() -> None:
    """In a child process: room for the flood's client ends there (the server side is capped by max_conn)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, FLOOD + 500), hard))
    stop = threading.Event()
    try:
        _flood_with(stop)
    finally:
        stop.set()


def _flood_with(stop: threading.Event) -> None:
    feed, got, port = listening_feed(stop)
    c = feed.reader.counters
    flood: list[socket.socket] = []
    try:
        for batch in range(FLOOD // 100):
            for _ in range(100):
                s = socket.socket()
                s.setblocking(False)
                assert s.connect_ex(("127.0.0.1", port)) in (0, errno.EINPROGRESS)
                flood.append(s)
            # the kernel's accept queue is short: let the server catch up before the next batch
            assert wait_for(lambda: c.connections >= len(flood), timeout=20), (batch, c)
            for s in flood[-100::7]:  # some of them talk garbage, as a scanner would
                with contextlib.suppress(OSError):  # the server already evicted this one
                    s.send(b"GET / HTTP/1.0\r\n\r\n\x00\xff" + b"A" * 300)
            assert feed.reader.alive and c.open_connections <= 16
        assert c.connections == FLOOD and c.evicted >= FLOOD - 16 and c.refused == 0

        # while all 2,000 are still open on this side, a real detector connects and is heard
        sensor = socket.create_connection(("127.0.0.1", port), timeout=10)
        sensor.sendall(pmdet(1, "ALARM"))
        assert wait_for(lambda: len(got) == 1, timeout=10), c
        assert (got[0].sensor, got[0].event) == ("md-gate", "ALARM")
        # more flood: the heard sensor keeps its place, the newcomers push each other out
        for _ in range(100):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            flood.append(s)
        assert wait_for(lambda: c.connections >= FLOOD + 101, timeout=20), c
        sensor.sendall(pmdet(2))
        assert wait_for(lambda: len(got) == 2, timeout=10), c
        assert feed.reader.alive and c.open_connections <= 16
    finally:
        for s in flood:
            s.close()
    # after the flood is gone the sensor stays heard, and a reconnecting sensor gets in at once
    assert wait_for(lambda: c.open_connections == 1, timeout=10), c
    sensor.sendall(pmdet(3))
    sensor.close()
    again = socket.create_connection(("127.0.0.1", port), timeout=10)
    again.sendall(pmdet(4))
    assert wait_for(lambda: len(got) == 4, timeout=10), c
    again.close()
    assert [e.seq for e in got] == [1, 2, 3, 4]
    assert feed.reader.alive and feed.reader.counters.state == "online"
    assert wait_for(lambda: lines_accounted(feed))
    assert feed.counters.rejected >= 1  # the garbage was counted, not lost


def test_a_heard_connection_outlives_silent_newcomers(stop: threading.Event) -> None:
    feed, got, port = listening_feed(stop, "?max_conn=2")
    sensor = socket.create_connection(("127.0.0.1", port), timeout=5)
    sensor.sendall(pmdet(1))
    assert wait_for(lambda: len(got) == 1)
    silent = []
    for n in range(5):
        silent.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        assert wait_for(lambda n=n: feed.reader.counters.connections == n + 2)
    assert feed.reader.counters.evicted == 4 and feed.reader.counters.open_connections == 2
    for s in silent[:-1]:  # the evicted ones were closed by the server
        assert s.recv(10) == b""
    sensor.sendall(pmdet(2))
    assert wait_for(lambda: len(got) == 2)
    for s in [sensor, *silent]:
        s.close()


def test_connections_silent_past_idle_s_are_closed(stop: threading.Event) -> None:
    feed, got, port = listening_feed(stop, "?idle_s=0.3")
    quiet = socket.create_connection(("127.0.0.1", port), timeout=10)
    talker = socket.create_connection(("127.0.0.1", port), timeout=10)
    talker.sendall(pmdet(1))
    assert quiet.recv(10) == b""  # closed by the server after 0.3 s of silence
    assert feed.reader.counters.idle_closed >= 1
    quiet.close()
    talker.close()
    assert got[0].seq == 1 and feed.reader.alive


def _lowest_free_descriptor() -> int:
    fd = os.dup(0)
    os.close(fd)
    return fd


def test_the_server_survives_running_out_of_descriptors() -> None:
    in_child(_out_of_descriptors)


def _out_of_descriptors() -> None:
    """In a child process, whose descriptor limit nothing else shares: its only other thread is the listener's."""
    stop = threading.Event()
    try:
        _out_of_descriptors_with(stop)
    finally:
        stop.set()


def _out_of_descriptors_with(stop: threading.Event) -> None:
    feed, got, port = listening_feed(stop, backoff_min_s=0.05)
    c = feed.reader.counters
    client = socket.socket()  # made now: connecting it needs no new descriptor here, accepting it does
    client.settimeout(10)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (_lowest_free_descriptor(), hard))
        client.connect(("127.0.0.1", port))  # the kernel completes the handshake; accept() gets EMFILE
        client.sendall(pmdet(1, "ALARM"))
        assert wait_for(lambda: c.refused >= 1, timeout=10), c  # accept() failed with EMFILE ...
        assert wait_for(lambda: c.refused >= 2, timeout=10), c  # ... and the server paused and tried again
        assert feed.reader.alive and "Too many open files" in (c.last_error or "")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert wait_for(lambda: len(got) == 1, timeout=10), c  # accepted once descriptors are free again
    assert c.connections == 1 and feed.reader.alive and c.state == "online"
    client.close()
