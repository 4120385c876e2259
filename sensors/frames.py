"""The thermal frame: the one value type that flows from a camera to the detector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Polarity = Literal["white_hot", "black_hot"]

# The span an automatic gain control never goes below: stretching a flat, quiet scene to full
# contrast would turn sensor noise into "motion" and "heat" for everything downstream.
MIN_AGC_SPAN_C = 8.0
MIN_AGC_SPAN_COUNTS = 64.0


@dataclass(frozen=True, slots=True)
class ThermalFrame:
    """One frame of one camera.

    ``image`` is either 8-bit grey (the camera applied its own gain control) or 16-bit radiometric
    counts; for the latter ``scale`` and ``offset`` turn counts into degrees Celsius
    (``celsius = counts * scale + offset``, e.g. TLinear 0.01 K/count gives scale 0.01, offset -273.15).
    """

    camera_id: str
    seq: int
    ts: float
    image: np.ndarray
    scale: float | None = None
    offset: float = 0.0
    polarity: Polarity = "white_hot"

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.ndim != 2:
            shape = getattr(img, "shape", type(img).__name__)
            raise ValueError(f"camera {self.camera_id}: expected a 2-D single-channel frame, got {shape}")
        if img.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"camera {self.camera_id}: expected uint8 or uint16 pixels, got {img.dtype}")
        if img.dtype == np.uint16 and self.scale is None:
            raise ValueError(
                f"camera {self.camera_id}: a 16-bit radiometric frame needs a scale (degrees per count)"
            )
        if self.scale is not None and not self.scale > 0:
            raise ValueError(f"camera {self.camera_id}: scale must be > 0, got {self.scale}")
        if self.seq < 0:
            raise ValueError(f"camera {self.camera_id}: seq must be >= 0, got {self.seq}")

    @property
    def radiometric(self) -> bool:
        return self.image.dtype == np.uint16

    @property
    def shape(self) -> tuple[int, int]:
        h, w = self.image.shape
        return int(h), int(w)

    def celsius(self) -> np.ndarray | None:
        """Per-pixel temperature in degrees Celsius, or None for an 8-bit frame."""
        if not self.radiometric or self.scale is None:
            return None
        return self.image.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)

    def gray8(self) -> np.ndarray:
        """White-hot 8-bit image for detection and display (gain control applied to 16-bit frames)."""
        if self.radiometric:
            img = agc(self.image, MIN_AGC_SPAN_COUNTS if self.scale is None else MIN_AGC_SPAN_C / self.scale)
        else:
            img = self.image
        if self.polarity == "black_hot":
            img = 255 - img
        return img


def agc(counts: np.ndarray, min_span: float = MIN_AGC_SPAN_COUNTS) -> np.ndarray:
    """Linear automatic gain control: 0.5th..99.95th percentile of a subsample onto 0..255."""
    sample = counts[::4, ::4]
    lo, hi = np.percentile(sample, (0.5, 99.95))
    span = max(float(hi - lo), min_span)
    mid = (float(hi) + float(lo)) / 2.0
    lo = mid - span / 2.0
    scaled = (counts.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / span)
    return np.clip(scaled, 0, 255).astype(np.uint8)
