"""Ids and times as the wire carries them: ULIDs for alerts and incidents, ids for sites, boxes, sensors and
zones, RFC 3339 UTC times with milliseconds out and RFC 3339 times in, and text made safe for one terminal
line. The contract stands alone: nothing here comes from the libraries (a sensor line's time, which may also
be epoch milliseconds, is the sensors library's own business)."""

from __future__ import annotations

import math
import os
import re
import threading
import time
from datetime import UTC, datetime, timedelta

from edge_agent.contract.errors import ContractError

__all__ = ["IDENT_RE", "ULID_RE", "ParseError", "iso_ms", "new_ulid", "one_line", "parse_time"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# \Z, not $: "$" also matches before a trailing newline, which must not pass as part of an id
ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}\Z")
IDENT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_ulid_lock = threading.Lock()
_ulid_last: tuple[int, int] = (0, 0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
                      r"([Zz]|[+-][0-9]{2}:[0-9]{2})?")
_TS_TEXT_MAX = 64  # the longest RFC 3339 time, nanoseconds and an offset, is 35 characters
# times every consumer can format, in UTC and in any local zone (a day inside datetime's years 1-9999)
_TS_MIN = datetime(1, 1, 2, tzinfo=UTC).timestamp()
_TS_MAX = datetime(9999, 12, 30, tzinfo=UTC).timestamp()


class ParseError(ContractError):
    """Text that is not the time the contract says; the message shows the value."""


def parse_time(value: object) -> float:
    """RFC 3339 text with a timezone (``2026-11-23T12:00:00.5Z``, ``...+01:00``) to epoch seconds; raises only
    ``ParseError``."""
    if not isinstance(value, str):
        raise ParseError(f"ts must be RFC 3339 text, got {type(value).__name__}")
    shown = one_line(repr(value), 40)
    text = value.strip()
    if len(text) > _TS_TEXT_MAX or not _RFC3339.fullmatch(text):  # fromisoformat alone takes any separator
        raise ParseError(f"ts {shown} is not RFC 3339 with a timezone (like 2026-11-23T12:00:00.5Z)")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    elif text[-6] not in "+-":
        raise ParseError(f"ts {shown} has no timezone offset (RFC 3339 needs Z or +hh:mm)")
    try:
        parsed = datetime.fromisoformat(text)
        ts = (parsed - _EPOCH).total_seconds()  # the difference of two aware times never overflows
    except (ValueError, OverflowError) as exc:
        raise ParseError(f"ts {shown} is not a time: {exc}") from None
    if not _TS_MIN <= ts <= _TS_MAX:
        raise ParseError(f"ts {shown} is outside the years 0001-9999 in UTC")
    return ts


def new_ulid(ts: float | None = None) -> str:
    """A ULID: 48-bit milliseconds + 80 random bits, monotonic within a millisecond."""
    global _ulid_last
    ms = int((time.time() if ts is None else ts) * 1000)
    with _ulid_lock:
        last_ms, last_rand = _ulid_last
        rand = last_rand + 1 if ms <= last_ms else int.from_bytes(os.urandom(10), "big")
        ms = max(ms, last_ms)
        _ulid_last = (ms, rand)
    value = (ms << 80) | (rand & ((1 << 80) - 1))
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in range(25, -1, -1))


def iso_ms(ts: object) -> str:
    """RFC 3339 UTC with milliseconds; total: a value that is no date (a stored row can hold anything) prints
    as ``invalid-time(VALUE)`` instead of raising."""
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        try:
            # floor to whole ms first, so the seconds and the milliseconds always agree (and negatives too)
            when = _EPOCH + timedelta(milliseconds=math.floor(ts * 1000))
        except (OverflowError, ValueError):  # beyond year 1..9999, inf, nan
            pass
        else:
            return (f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:"
                    f"{when.second:02d}.{when.microsecond // 1000:03d}Z")
    try:
        shown = repr(ts)
    except ValueError:  # an integer too long to print
        shown = type(ts).__name__
    return f"invalid-time({one_line(shown, 40)})"


def one_line(value: object, limit: int = 200) -> str:
    """Text that is safe to print on one terminal line: control, format and separator characters escaped
    (no terminal escape sequences, no forged lines), at most ``limit`` characters plus a note of the rest."""
    try:
        text = value if isinstance(value, str) else str(value)
    except ValueError:  # an integer too long to print
        text = f"<{type(value).__name__}>"
    extra = len(text) - limit
    if extra > 0:
        text = text[:limit]
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return text + (f"…(+{extra} chars)" if extra > 0 else "")
