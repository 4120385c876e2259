"""Hostile input for the fuzz acceptance test (tests/test_hostile.py): sensor lines of every bad kind the
contract's line formats invite, packed into UDP datagrams or TCP streams, and hostile command-post acks.

Deterministic for a seed and a ``now``: the same arguments give the same bytes. The lines are hostile to the
parsers, never to the test: none of them is a valid ALARM, radio detection or emergency of the sensors a
fusion rule watches (``own`` ids), so the real alarm sent afterwards is the first thing the rule sees.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from edge_agent.contract.ids import iso_ms, new_ulid
from edge_agent.demo.script import pmdet
from sensors.linesplit import DEFAULT_MAX_LINE

FAR_OFF_TIMES: tuple[object, ...] = (
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0000-01-01T00:00:00Z", "2100-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z", "2026-13-45T25:61:61Z", "2026-01-01T00:00:00", "yesterday", "",
    1e20, -1e20, 1e308, -1, 0, 2**63, True, None, [], {},
)
BAD_IDS = ("md/gate", "#", "+", "../etc/passwd", "md-gate/../x", "md gate", "x" * 65, "", "md-gåte", "md-gate\x00",
           "'; DROP TABLE incidents; --", "%s%s%n", "${jndi:ldap://x}", "md\u202egate")
CONTROL = ("\x00", "\x01", "\x07", "\x08", "\t", "\x0b", "\x0c", "\x1b[2J", "\x7f", "\u2028", "\ufeff")


def lines_in(payload: bytes, max_line: int = DEFAULT_MAX_LINE) -> int:
    """How many lines the agent's splitter (sensors/linesplit.py ``LineSplitter``) makes of one UDP datagram or
    of one whole TCP connection's byte stream, each of which it ends with a flush.

    The counting rule: the bytes are cut at every ``\\n``; a piece counts as one line if it is longer than
    ``max_line`` (one oversized line, however long: the rest up to the next newline is dropped, not split
    into more lines), or if anything is left of it after trailing ``\\r`` are stripped (so empty lines and
    lone ``\\r`` do not count). The piece after the last ``\\n`` (a datagram or a stream without a trailing
    newline) counts by the same rule: a datagram is complete, and a closed connection is flushed. Every
    counted line is either an event or a rejected line, so ``events + rejected`` per feed equals this sum.
    """
    return sum(1 for piece in payload.split(b"\n") if len(piece) > max_line or piece.rstrip(b"\r"))


def _json(obj: object) -> bytes:
    return json.dumps(obj, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


@dataclass(slots=True)
class HostileLines:
    """An endless deterministic stream of hostile lines for one feed (``kind`` metal or radio)."""

    kind: str
    own: str  # the feed's own sensor id, watched by a fusion rule
    others: tuple[str, ...]  # ids of the other feeds
    now: float
    rng: random.Random
    heavy: float = 1.0  # weight of the long lines (deep JSON, oversized): UDP rounds are paced by bytes
    seq: int = 0

    def line(self) -> bytes:
        makers: list[tuple[float, Callable[[], bytes]]] = [
            (14, self._random_bytes), (4, self._nul), (5, self._bad_utf8), (self.heavy, self._deep_json),
            (6, self._not_finite), (8, self._far_off_time), (8, self._bad_id), (8, self._other_feed),
            (8, self._control_chars), (self.heavy, self._oversized), (6, self._out_of_range), (5, self._not_an_object),
            (6, self._truncated), (4, self._blankish), (15, self._valid_harmless),
        ]
        if self.kind == "metal":
            makers.append((10, self._wrong_checksum))
        weights = [w for w, _ in makers]
        return self.rng.choices([m for _, m in makers], weights)[0]()

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _good(self, sensor: str | None = None, event: str = "HB") -> bytes:
        """A well-formed line of this feed's format that is no alarm of a watched sensor."""
        sensor = sensor or self.own
        if self.kind == "metal":
            return pmdet(sensor, self._next_seq(), event, self.rng.randint(0, 100), 1).encode()
        return _json({"sensor": sensor, "ts": iso_ms(self.now), "kind": "position", "lat": -89.9, "lon": 179.99})

    def _random_bytes(self) -> bytes:
        raw = self.rng.randbytes(self.rng.randint(1, 48))
        return raw.replace(b"\n", b"\\")

    def _nul(self) -> bytes:
        n = self.rng.randint(1, 40)
        return self.rng.choice([b"\x00" * n, self._good().replace(b",", b"\x00,", 1), b"{\x00}"])

    def _bad_utf8(self) -> bytes:
        return self.rng.choice([
            b"\xff\xfe\xfd", b"\xc3\x28", b"\xed\xa0\x80",  # a lone surrogate, encoded
            self._good()[:-4] + b"\xe2\x82",
            b'{"sensor":"' + self.own.encode() + b'\xff","ts":1,"kind":"rf_detect"}',
            b"$PMDET,\xc0\xaf,1,ALARM,50,1*00",
        ])

    def _deep_json(self) -> bytes:
        return self.rng.choice([b"[" * 10_000, b"[" * 4000, b'{"a":' * 800, b"[" * 2000 + b"]" * 2000])

    def _not_finite(self) -> bytes:
        v = self.rng.choice([float("nan"), float("inf"), float("-inf"), 1e400])
        if self.kind == "metal":
            key = self.rng.choice(["seq", "level", "zone", "ts"])
            obj: dict[str, object] = {"sensor": self.own, "seq": 1, "event": "HB", "level": 0, "zone": 1}
        else:
            key = self.rng.choice(["freq_hz", "rssi_db", "lat", "lon", "bearing_deg", "ts"])
            obj = {"sensor": self.own, "ts": iso_ms(self.now), "kind": "position", "lat": 0.0, "lon": 0.0}
        obj[key] = v
        return _json(obj)

    def _far_off_time(self) -> bytes:
        ts = self.rng.choice(FAR_OFF_TIMES)
        if self.kind == "metal":
            return _json({"sensor": self.own, "seq": self._next_seq(), "event": "HB", "level": 0, "zone": 1, "ts": ts})
        return _json({"sensor": self.own, "ts": ts, "kind": "bearing", "bearing_deg": 45.0})  # away from the zone

    def _bad_id(self) -> bytes:
        bad = self.rng.choice(BAD_IDS)
        if self.kind == "metal" and self.rng.random() < 0.6:
            body = f"PMDET,{bad},1,ALARM,90,1".encode("utf-8", "surrogatepass")
            checksum = 0
            for b in body:
                checksum ^= b
            return b"$" + body + f"*{checksum:02X}".encode()
        return _json({"sensor": bad, "seq": 1, "event": "ALARM", "level": 90, "zone": 1, "ts": iso_ms(self.now),
                      "kind": "rf_detect"})

    def _other_feed(self) -> bytes:
        other = self.rng.choice(self.others)
        if self.kind == "metal":  # the other feeds' sensors sit far from the zone: no rule takes them
            return self._good(other, self.rng.choice(["HB", "CLEAR", "ALARM"]))
        return _json({"sensor": other, "ts": iso_ms(self.now), "kind": "rf_detect", "freq_hz": 446e6})

    def _control_chars(self) -> bytes:
        c = self.rng.choice(CONTROL)
        good = self._good().decode()
        cut = self.rng.randint(1, len(good) - 1)
        if self.kind == "metal" and self.rng.random() < 0.5:  # inside the id, with a checksum that matches
            return pmdet(f"md-{c}gate", self._next_seq(), "HB", 0, 1).encode()
        return (good[:cut] + c + good[cut:]).encode()

    def _oversized(self) -> bytes:
        return self.rng.choice([b"A" * (DEFAULT_MAX_LINE + 1), b"B" * DEFAULT_MAX_LINE, b"C" * 9000,
                                b"$PMDET," + b"9" * 5000 + b"*00"])

    def _out_of_range(self) -> bytes:
        if self.kind == "metal":
            seq, level, zone = self.rng.choice([("99999999999999999999", "50", "1"), ("1", "101", "1"),
                                                ("1", "-1", "1"), ("1", "50", "10000"), ("-5", "50", "1"),
                                                ("0x10", "50", "1"), ("1.5", "50", "1"), ("", "", "")])
            body = f"PMDET,{self.own},{seq},HB,{level},{zone}"
            checksum = 0
            for b in body.encode():
                checksum ^= b
            return f"${body}*{checksum:02X}".encode()
        key, value = self.rng.choice([("lat", 91.0), ("lon", -181.0), ("bearing_deg", 361.0), ("rssi_db", 1e9),
                                      ("freq_hz", -1.0), ("bearing_conf", 2.0), ("radio_id", "r" * 200)])
        return _json({"sensor": self.own, "ts": iso_ms(self.now), "kind": "position", "lat": 0.0, "lon": 0.0,
                      key: value})

    def _not_an_object(self) -> bytes:
        return self.rng.choice([b"[]", b'"PMDET"', b"123", b"null", b"true", b"{}", b'{"sensor":null}', b"{",
                                b'{"sensor":"' + self.own.encode() + b'"}'])

    def _truncated(self) -> bytes:
        good = self._good()
        return good[: self.rng.randint(1, len(good) - 1)]

    def _blankish(self) -> bytes:
        return self.rng.choice([b" ", b"   ", b"\t", b"\r", b"\r\r", b" \r", b"*", b"$", b"$PMDET"])

    def _wrong_checksum(self) -> bytes:
        good = pmdet(self.own, self._next_seq(), "ALARM", 95, 1)
        wrong = int(good[-2:], 16) ^ self.rng.randint(1, 255)
        return f"{good[:-2]}{wrong:02X}".encode()

    def _valid_harmless(self) -> bytes:
        if self.kind == "metal":
            return self._good(event=self.rng.choice(["HB", "CLEAR"]))
        return self.rng.choice([self._good(), _json({"sensor": self.own, "ts": iso_ms(self.now), "kind": "bearing",
                                                      "bearing_deg": self.rng.uniform(10.0, 80.0)})])


def datagrams(source: HostileLines, count: int, size: int) -> Iterator[bytes]:
    """Datagrams of about ``size`` bytes packed with lines until they hold ``count`` lines in all; now and
    then a single huge one (60-65 KB: one long line, or many lines)."""
    rng = source.rng
    total = 0
    while total < count:
        if rng.random() < 0.02:
            payload = rng.choice([b"D" * 65_000, b"\n".join(source.line() for _ in range(1500))[:60_000]])
        else:
            parts: list[bytes] = []
            length = 0
            while length < size:
                part = source.line() + rng.choice([b"\n"] * 8 + [b"\r\n", b"\n\n"])
                parts.append(part)
                length += len(part)
            payload = b"".join(parts)
            if rng.random() < 0.5:
                payload = payload.rstrip(b"\n")  # the datagram's last line has no newline
        n = lines_in(payload)
        if total + n > count and total > 0:
            return
        total += n
        yield payload


def stream(source: HostileLines, count: int, tail: bool) -> bytes:
    """One TCP connection's bytes: ``count`` lines (counted with ``lines_in``) including 64 KiB lines; with
    ``tail`` the last line has no newline (the agent counts it when the connection closes)."""
    rng = source.rng
    parts: list[bytes] = []
    n = 0
    while n < count:
        line = b"E" * 65_536 if rng.random() < 0.002 else source.line()
        piece = line + b"\n"
        n += lines_in(piece)
        parts.append(piece)
    data = b"".join(parts)
    return data.rstrip(b"\n") if tail else data


def hostile_acks(known_alert: str, now: float) -> list[bytes]:
    """Acks a command post should never send: unknown ids, impossible times, a newline in ``by``, deep JSON,
    1 MiB, invalid UTF-8. Those naming ``known_alert`` probe what an accepted odd ack leaves in the log."""
    unknown = new_ulid(now - 3600)
    acks: list[bytes] = [b"[" * 10_000, b'{"alert_id":' * 5000, b"[" * 4000, b'{"a":' * 1600, b"\xff\xfe\xfd",
                         b'{"alert_id":"\xc3\x28"}', b"",
                         b"null", b"[]", b'"ack"', b"x" * (1 << 20),
                         _json({"alert_id": unknown, "by": "x", "note": "n" * (1 << 20)}),
                         _json({"alert_id": "../../x", "by": "x"}), _json({"alert_id": "+/#", "by": "x"}),
                         _json({"alert_id": unknown, "by": {"a": 1}, "ts": [1]}),
                         _json({"alert_id": unknown, "by": "sgt-novak"})]
    for alert_id in (unknown, known_alert):
        for ts in (1e20, -1e20, float("inf"), float("nan"), 1e400, True, "0000-01-01T00:00:00Z",
                   "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-01-01T00:00:00"):
            acks.append(_json({"alert_id": alert_id, "by": "x", "ts": ts}))
        acks.append(_json({"alert_id": alert_id, "by": "sgt\nnovak", "ts": iso_ms(now), "note": "line\nbreak"}))
        acks.append(_json({"alert_id": alert_id, "by": "\x1b[2J", "ts": iso_ms(now)}))
        acks.append(_json({"alert_id": alert_id, "by": "y" * 65, "ts": iso_ms(now)}))
    return acks
