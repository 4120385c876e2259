"""The camera's H.264 stream: 8-bit frames through a real encoder and decoder (libx264 and FFmpeg's decoder,
through PyAV, in this process). One thread and fixed settings, so the same frames always give the same bytes.

Compression makes a frame depend on the frames before it back to the last key frame (its group of pictures, GOP).
Each GOP is encoded by a fresh encoder, so frame i depends on frames ``i - i % gop .. i`` only: read in order each
frame is encoded once; a frame asked for out of order is encoded again from its GOP's key frame.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from sensors.sim.world import H264

# A camera's encoder, as plain as the cheap hardware ones: x264's fastest preset (no CABAC, no deblocking, the
# simplest motion search), no B-frames and no look-ahead (frames leave as they come), a key frame exactly every
# GOP, constant bit rate with a one-second buffer.
X264_PRESET = "ultrafast"


class H264Stream:
    """Frames of one scene through H.264; ``frame(i, gray, earlier)`` gives frame i as the viewer decodes it
    (``earlier(j)`` renders an earlier frame of its GOP when frame i comes out of order)."""

    def __init__(self, width: int, height: int, fps: float, h264: H264) -> None:
        try:
            import av
        except ImportError as exc:  # pragma: no cover - pinned in requirements.txt, the `sim` extra
            raise ValueError("camera.h264 needs PyAV (pip install av): the stream is encoded in-process") from exc
        self._av: Any = av
        self.h264 = h264
        self.width, self.height = width, height
        self._w, self._h = width + width % 2, height + height % 2  # 4:2:0 needs even sides
        self._rate = Fraction(fps).limit_denominator(1000)
        self._encoder: Any = None
        self._decoder: Any = None
        self._next = -1  # the frame the open encoder takes next
        self._last: tuple[int, np.ndarray] | None = None

    def frame(self, index: int, gray: np.ndarray, earlier: Callable[[int], np.ndarray]) -> np.ndarray:
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        start = index - index % self.h264.gop
        if index != self._next or index == start:
            self._open()
            for j in range(start, index):
                self._code(j - start, earlier(j))
        out = self._code(index - start, gray)
        self._next = index + 1
        self._last = (index, out)
        return out

    def _open(self) -> None:
        av, kbps = self._av, int(round(self.h264.bitrate_kbps))
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = self._w, self._h, "yuv420p"
        enc.time_base = 1 / self._rate
        enc.framerate = self._rate
        enc.bit_rate = kbps * 1000
        enc.gop_size = self.h264.gop
        enc.thread_count = 1
        enc.options = {
            "preset": X264_PRESET, "tune": "zerolatency", "threads": "1",
            "x264-params": f"keyint={self.h264.gop}:min-keyint={self.h264.gop}:scenecut=0:bframes=0:"
                           f"vbv-maxrate={kbps}:vbv-bufsize={kbps}:nal-hrd=none",
        }
        enc.open()
        dec = av.CodecContext.create("h264", "r")
        dec.thread_count = 1
        dec.options = {"threads": "1"}
        self._encoder, self._decoder = enc, dec

    def _code(self, pts: int, gray: np.ndarray) -> np.ndarray:
        h, w = self.height, self.width
        yuv = np.full((self._h * 3 // 2, self._w), 128, np.uint8)
        yuv[:h, :w] = gray
        if self._w != w:
            yuv[:h, w:] = gray[:, -1:]
        if self._h != h:
            yuv[h:self._h, :w] = gray[-1:, :]
        frame = self._av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = pts
        decoded = []
        for packet in self._encoder.encode(frame):
            decoded += self._decoder.decode(packet)
        if len(decoded) != 1:
            raise RuntimeError(f"H.264: frame {pts} of its GOP gave {len(decoded)} decoded frames, expected 1")
        luma = decoded[0].planes[0]  # the grey itself, not a conversion that would rescale video range
        return np.frombuffer(luma, np.uint8).reshape(-1, luma.line_size)[:h, :w].copy()
