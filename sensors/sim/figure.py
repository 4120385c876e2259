"""An actor drawn as a camera sees it. A real camera integrates radiance over each pixel's area: a person 1.3 px wide
and 5 px tall at 300 m is a column 5 px tall whose edge pixels are partly warm. Drawn straight into the frame,
OpenCV fills every pixel a part's edge touches and gives a thin limb at least a pixel, so a small figure gains about
a pixel on every side (at 300 m a person came out 8 px tall, 2.7 m: a vehicle, to a classifier that measures sizes).

So every actor is drawn super-sampled: into a patch of the frame around it (its ``reach_m``) at S x S sub-pixels a
pixel, then averaged down (area integration, ``cv2.INTER_AREA``). The frame gets the area-weighted mix of the figure
and whatever was drawn before it, so painter's order still holds, and the figure owns the pixels it mostly covers
and, where it is thinner than a pixel, the ones it runs through (``_owned``): the truth's boxes (the figure's true
extent rounded to whole pixels) and visible fractions come from those. Every actor, near ones too: one way of drawing
means no size at which a figure changes its look (a walker coming closer would grow by a pixel or two when it crossed
a threshold, a step a tracker sees), and a near figure costs about what drawing it straight into the frame did. S
falls as a figure grows (8 up to 32 px across, 4 up to 96, then 2), since the part of a pixel an edge gets wrong
matters less the bigger the figure, and a near figure's patch would otherwise grow with S squared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sensors.sim.draw import draw_actor, reach_m
from sensors.sim.world import Actor, CameraModel

# a patch up to this many pixels across is drawn with this many sub-pixels a pixel each way; a bigger one with 2
SUPERSAMPLE = ((32, 8), (96, 4))
MARGIN_PX = 2  # around an actor's reach: a part's rounding, the smallest dot a drawing makes


@dataclass(frozen=True, slots=True)
class Figure:
    """The pixels an actor owns in a frame: ``owned`` (bool) over the rows and columns ``box``, tight around them."""

    box: tuple[slice, slice]
    owned: np.ndarray

    def __post_init__(self) -> None:
        shape = (self.box[0].stop - self.box[0].start, self.box[1].stop - self.box[1].start)
        if self.owned.shape != shape or self.owned.dtype != np.bool_:
            raise ValueError(f"figure: owned must be bool of the box's shape {shape}, got {self.owned.dtype} "
                             f"{self.owned.shape}")


def draw_figure(temp: np.ndarray, cam: CameraModel, actor: Actor, x: float, y: float, heading: float,
                walked: float, t: float) -> Figure | None:
    """Draw an actor into the frame's temperatures (in place), super-sampled, and give the pixels it owns; None where
    it owns none (outside the frame, or too faint a sliver to own a pixel: it may still warm the frame a little)."""
    patch = _patch(cam, actor, x, y, temp.shape)
    if patch is None:
        return None
    box, s = patch
    h, w = box[0].stop - box[0].start, box[1].stop - box[1].start
    heat = np.zeros((h * s, w * s), np.float32)  # the figure's temperatures, 0 where it is not
    cover = np.zeros((h * s, w * s), np.float32)  # 255 where it is
    draw_actor(heat, cover, cam.window(box[1].start, box[0].start, s), actor, x, y, heading, walked, t)
    area = cv2.resize(cover, (w, h), interpolation=cv2.INTER_AREA)  # 0..255: how much of each pixel it covers
    region = temp[box]
    region *= 1.0 - area / np.float32(255.0)
    region += cv2.resize(heat, (w, h), interpolation=cv2.INTER_AREA)
    owned = _owned(area, cover, s)
    tight = extent(owned)
    if tight is None:
        return None
    rows, cols = tight
    return Figure((slice(box[0].start + rows.start, box[0].start + rows.stop),
                   slice(box[1].start + cols.start, box[1].start + cols.stop)), owned[tight])


def _patch(cam: CameraModel, actor: Actor, x: float, y: float, shape: tuple[int, ...]
           ) -> tuple[tuple[slice, slice], int] | None:
    """The frame's rows and columns an actor's drawing can reach (inside the frame), and how finely to draw it."""
    z, half, below, above = reach_m(actor)
    u, v = cam.project(np.array([x]), np.array([y]), np.array([z]))
    ppm = cam.px_per_m(y)
    left, right, top, bottom = u[0] - half * ppm, u[0] + half * ppm, v[0] - above * ppm, v[0] + below * ppm
    across = max(right - left, bottom - top)
    s = next((s for size, s in SUPERSAMPLE if across <= size), 2)
    h, w = shape
    c0, c1 = max(0, math.floor(left) - MARGIN_PX), min(w, math.ceil(right) + MARGIN_PX + 1)
    r0, r1 = max(0, math.floor(top) - MARGIN_PX), min(h, math.ceil(bottom) + MARGIN_PX + 1)
    return ((slice(r0, r1), slice(c0, c1)), s) if r0 < r1 and c0 < c1 else None


def _owned(area: np.ndarray, cover: np.ndarray, s: int) -> np.ndarray:
    """The pixels a figure owns: those it covers at least half of (``area`` >= 127.5 of 255). A part thinner than a
    pixel covers half of none, yet it is there and a camera sees it warm its pixels: in a row where no pixel is half
    covered, the figure also owns the pixel it covers most if it spans more than half of that pixel's height (in a
    column, its width). So the figure's box is its true extent rounded to the nearest pixel at every range: a walker
    0.6 px wide at 500 m is a column as tall as they are, and the partly covered row along a broad edge (the top of
    a near head) goes with whichever side of the half it lies. ``cover`` is the figure at ``s`` x ``s`` sub-pixels
    a pixel (255 where it is); a part's edge touches one sub-pixel more than it covers, hence "more than half"."""
    h, w = area.shape
    own = area >= 127.5
    blocks = cover.reshape(h, s, w, s)  # blocks[r, :, c, :]: pixel (r, c)'s sub-pixels
    rows = np.flatnonzero(area.any(axis=1))
    best = area[rows].argmax(axis=1)
    free = ~own[rows, best]  # rows no pixel of which is half covered
    rows, best = rows[free], best[free]
    tall = np.count_nonzero(blocks[rows, :, best, :].any(axis=2), axis=1) * 2 > s
    own[rows[tall], best[tall]] = True
    cols = np.flatnonzero(area.any(axis=0))
    best = area[:, cols].argmax(axis=0)
    free = ~own[best, cols]
    cols, best = cols[free], best[free]
    wide = np.count_nonzero(blocks[best, :, cols, :].any(axis=1), axis=1) * 2 > s
    own[best[wide], cols[wide]] = True
    return own


def extent(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The rows and columns a mask covers (its bounding box as slices), or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
