"""Logging for journald: plain or JSON lines on stdout, the same message repeated is rate-limited, and
configured secrets never reach a log line."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterable

from edge_agent.contract.ids import iso_ms


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": iso_ms(record.created), "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        for key in ("sensor", "alert_id", "incident_id", "stage"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        return json.dumps(out, ensure_ascii=False)


class RateLimit(logging.Filter):
    """At most ``burst`` records of one (logger, message template) per ``window_s``; the next record after a
    quiet spell says how many were held back."""

    def __init__(self, burst: int = 5, window_s: float = 60.0) -> None:
        super().__init__()
        self.burst, self.window_s = burst, window_s
        self._seen: dict[tuple[str, str], tuple[float, int, int]] = {}  # key -> (window start, passed, held)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            start, passed, held = self._seen.get(key, (now, 0, 0))
            if now - start >= self.window_s:
                if held:
                    record.msg = f"{record.msg} (and {held} more like it in the last {self.window_s:.0f} s)"
                start, passed, held = now, 0, 0
            if passed >= self.burst:
                self._seen[key] = (start, passed, held + 1)
                return False
            self._seen[key] = (start, passed + 1, held)
            if len(self._seen) > 10_000:
                self._seen.clear()
        return True


class Redact(logging.Filter):
    """Replaces every configured secret (passwords, key material) in the final message with ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 3]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            for s in self.secrets:
                text = text.replace(s, "***")
            record.msg, record.args = text, None
        return True


def setup(verbose: bool = False, json_lines: bool = False, secrets: Iterable[str] = ()) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stdout if json_lines else sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RateLimit())  # first: it keys on the message template, before arguments are filled in
    handler.addFilter(Redact(secrets))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("ultralytics", "amqtt", "transitions", "websockets", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
