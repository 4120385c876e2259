"""What a command post sends a box, checked field by field before anything uses it: acks
(``{"alert_id", "by", "ts", "note"}`` on ``.../acks``) and end-to-end receipts (``{"alert_id", "state", "by",
"ts"}`` on ``.../receipts``). Every payload is untrusted: the parsers raise only ``AckError`` or
``ReceiptError``, whose message names the field and shows the value (escaped and cut short)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from edge_agent.contract.alert import ALERT_STATES
from edge_agent.contract.errors import ContractError
from edge_agent.contract.ids import ULID_RE, ParseError, iso_ms, parse_time

MAX_MESSAGE_BYTES = 8 * 1024  # an ack or a receipt is a few hundred bytes; the cap comes before the JSON parser
CLOCK_WINDOW_S = 86_400.0  # a time further than this from the box's clock is no ack time
BY_MAX, NOTE_MAX, TS_TEXT_MAX = 64, 1000, 64
NOTE_CONTROLS = "\n\t"  # line breaks and tabs are fine in a note (escaped wherever it is logged)


@dataclass(frozen=True, slots=True)
class Ack:
    """A command post's acknowledgement of an alert: who, when, and an optional note."""

    alert_id: str
    by: str
    ts: float
    note: str = ""


@dataclass(frozen=True, slots=True)
class Receipt:
    """A command post has stored this state of this alert (end-to-end: more than the broker's PUBACK)."""

    alert_id: str
    state: str
    by: str
    ts: float


class InboundError(ContractError):
    """A message from the command post that cannot be used; the reason names the field and its value."""


class AckError(InboundError):
    """An ack that cannot be used."""


class ReceiptError(InboundError):
    """A receipt that cannot be used."""


def shown(value: Any, limit: int = 40) -> str:
    """A value as an error message shows it: repr (control characters escaped), at most ``limit`` characters."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _object(payload: bytes, error: type[InboundError]) -> dict[str, Any]:
    if len(payload) > MAX_MESSAGE_BYTES:
        raise error(f"payload of {len(payload)} bytes, expected at most {MAX_MESSAGE_BYTES}")
    try:
        data = json.loads(payload.decode("utf-8"))
    except RecursionError:
        raise error("not JSON: nested too deep") from None
    except ValueError as exc:  # bad UTF-8, bad JSON, an integer of thousands of digits
        raise error(f"not JSON: {shown(str(exc), 80)}") from None
    if not isinstance(data, dict):
        raise error(f"expected a JSON object, got {type(data).__name__}")
    return data


def _alert_id(data: dict[str, Any], error: type[InboundError]) -> str:
    value = data.get("alert_id")
    if not isinstance(value, str) or not ULID_RE.match(value):
        raise error(f"alert_id: expected a ULID (26 characters of Crockford base32), got {shown(value)}")
    return value


def _by(data: dict[str, Any], error: type[InboundError]) -> str:
    value = data.get("by")
    text = value.strip() if isinstance(value, str) else None
    # printable only: a newline in a name would forge a log line, an escape sequence would drive a terminal
    if text is None or not 1 <= len(text) <= BY_MAX or not text.isprintable():
        raise error(f"by: expected a name of 1 to {BY_MAX} printable characters, got {shown(value)}")
    return text


def _note(data: dict[str, Any], error: type[InboundError]) -> str:
    value = data.get("note")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > NOTE_MAX or \
            not all(ch.isprintable() or ch in NOTE_CONTROLS for ch in value):
        raise error(f"note: expected printable text of at most {NOTE_MAX} characters, got {shown(value)}")
    return value


def _ts(data: dict[str, Any], now: float, error: type[InboundError]) -> float:
    """RFC 3339 text with an offset (the contract's parser) or epoch seconds or milliseconds, within a day of
    the box's clock; the box's clock when the command post sent none."""
    value = data.get("ts")
    if value is None:
        return now
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            number = math.inf
        ts = number / 1000.0 if abs(number) > 1e11 else number  # beyond year 5000 in seconds: milliseconds
    elif isinstance(value, str) and len(value) <= TS_TEXT_MAX:
        try:
            ts = parse_time(value)
        except (ParseError, ValueError, OverflowError) as exc:
            raise error(f"ts: {exc}") from None
    else:
        raise error(f"ts: expected RFC 3339 text or epoch seconds or milliseconds, got {shown(value)}")
    if not math.isfinite(ts) or abs(ts - now) > CLOCK_WINDOW_S:
        raise error(f"ts: expected a time within {CLOCK_WINDOW_S / 3600:.0f} h of the box's clock "
                    f"({iso_ms(now)}), got {shown(value)}")
    return ts


def parse_ack(payload: bytes, now: float | None = None) -> Ack:
    """The command post's ``{"alert_id", "by", "ts", "note"}``."""
    now = time.time() if now is None else now
    data = _object(payload, AckError)
    return Ack(_alert_id(data, AckError), _by(data, AckError), _ts(data, now, AckError), _note(data, AckError))


def parse_receipt(payload: bytes, now: float | None = None) -> Receipt:
    """A command post's ``{"alert_id", "state", "by", "ts"}``: it has stored that state of that alert."""
    now = time.time() if now is None else now
    data = _object(payload, ReceiptError)
    alert_id = _alert_id(data, ReceiptError)
    state = data.get("state")
    if state not in ALERT_STATES:
        raise ReceiptError(f"state: expected one of {', '.join(ALERT_STATES)}, got {shown(state)}")
    return Receipt(alert_id, state, _by(data, ReceiptError), _ts(data, now, ReceiptError))


def ack_payload(alert_id: str, by: str, note: str = "", ts: float | None = None) -> bytes:
    """The ack a command post sends (``ts`` defaults to now)."""
    return json.dumps({"alert_id": alert_id, "by": by, "ts": iso_ms(ts or time.time()), "note": note}).encode()


def receipt_payload(alert_id: str, state: str, by: str, ts: float | None = None) -> bytes:
    """The receipt a command post sends for an alert state it has stored (``ts`` defaults to now)."""
    return json.dumps({"alert_id": alert_id, "state": state, "by": by, "ts": iso_ms(ts or time.time())}).encode()
