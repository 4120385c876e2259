"""Bytes in, complete lines out, with bounded memory: what every line transport (``lines``, ``listeners``) uses."""

from __future__ import annotations

DEFAULT_MAX_LINE = 4096


class LineSplitter:
    """Bytes in, complete lines out; bounded memory whatever arrives."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            chunk = data[start:] if nl < 0 else data[start:nl]
            if self._discarding:
                if nl >= 0:
                    self._discarding = False
            else:
                room = self.max_line - len(self._buf)
                if len(chunk) > room:
                    self._buf += chunk[:room]
                    out.append((bytes(self._buf).rstrip(b"\r"), True))
                    self._buf.clear()
                    self._discarding = nl < 0
                else:
                    self._buf += chunk
                    if nl >= 0:
                        line = bytes(self._buf).rstrip(b"\r")
                        self._buf.clear()
                        if line:
                            out.append((line, False))
            if nl < 0:
                return out
            start = nl + 1

    def flush(self) -> list[tuple[bytes, bool]]:
        """The unterminated tail at the end of a stream or datagram."""
        line = bytes(self._buf).rstrip(b"\r")
        self._buf.clear()
        self._discarding = False
        return [(line, False)] if line else []
