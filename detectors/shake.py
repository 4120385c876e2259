"""A shaking mast: the frame's shift against the scene's background, measured on the background's own strongest
edges (half across the columns, half across the rows), and the frame moved back onto it (``detectors.heat``)."""

from __future__ import annotations

import math

import cv2
import numpy as np

SHAKE_MAX_PX = 8  # the largest shake followed, in pixels each way
EDGES_EVERY = 50  # frames between choosing the background's edges again
EDGE_POINTS = 3000
SEARCH_EVERY = 5  # the whole-pixel search on a fifth of the edges: as sure, five times faster
SHAKE_JUMP = 1.6  # the edges disagree this much more than usual: look for a shake


class MastShake:
    """Follows one camera's shake against its background; ``align`` every frame (not thread-safe)."""

    def __init__(self) -> None:
        self._edges: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._edges_age = 0
        self._edge_error = math.nan  # how much the edges usually disagree with the background, without shake

    def align(self, img: np.ndarray, bg: np.ndarray, noise: float) -> tuple[np.ndarray, float, float]:
        """The frame moved onto the background when the mast shakes, and the shift. Measured on the background's
        strongest static edges only (targets cover few of them, so people walking cannot pull it): only when those
        edges disagree with the frame beyond the noise is a shift searched (whole pixels up to ``SHAKE_MAX_PX`` on
        a fifth of the edges, then one least-squares step on all the edges' gradients for the fraction). The frame
        is moved, not the background, which stays where the mast is on average and is never smeared by repeated
        shifts."""
        h, w = img.shape
        if self._edges is None or self._edges_age > EDGES_EVERY:
            self._edges = strong_edges(bg, SHAKE_MAX_PX + 1)
            self._edges_age = 0
        self._edges_age += 1
        ys, xs, across_columns = self._edges
        if across_columns.sum() < 25 or (~across_columns).sum() < 25:
            return img, 0.0, 0.0
        ref = bg[ys, xs]
        noise = noise if math.isfinite(noise) else 0.1

        def cost(dx: np.ndarray, dy: np.ndarray, every: int = 1) -> np.ndarray:
            """(len(dx), 2): for each whole-pixel shift, the upper quartile of the edges' differences across the
            columns and across the rows (the edges a target covers do not count; a one-pixel shift, which
            changes only one side of each step, does)."""
            pick = slice(None, None, every)
            err = np.abs(img[ys[pick][None, :] + dy[:, None], xs[pick][None, :] + dx[:, None]] - ref[pick][None, :])
            side = across_columns[pick]
            return np.stack([np.percentile(err[:, side], 75, axis=1), np.percentile(err[:, ~side], 75, axis=1)], 1)

        zero = np.zeros(1, np.int64)
        here = float(cost(zero, zero).max())
        usual = self._edge_error if math.isfinite(self._edge_error) else here
        if here < max(3.0 * noise, SHAKE_JUMP * usual):
            # no more than the edges' usual disagreement (gain control, drift and noise): no shake
            self._edge_error = 0.9 * usual + 0.1 * here
            return img, 0.0, 0.0
        r = SHAKE_MAX_PX
        grid_y, grid_x = np.mgrid[-r:r + 1, -r:r + 1]
        both = cost(grid_x.ravel(), grid_y.ravel(), SEARCH_EVERY).reshape(2 * r + 1, 2 * r + 1, 2)
        costs = both.max(axis=2)  # the worse direction: a horizon alone cannot say it fits
        iy, ix = np.unravel_index(int(np.argmin(costs)), costs.shape)
        if costs[iy, ix] > 0.5 * here:
            self._edge_error = 0.9 * usual + 0.1 * here
            return img, 0.0, 0.0  # no shift explains the frame better: not shake

        # the fraction by one least-squares step on the background's gradients at the edges (the frame there is
        # the background moved by the shift), leaving out the points a target covers
        wx, wy = int(ix - r), int(iy - r)
        err = img[ys + wy, xs + wx] - ref
        gx = (bg[ys, xs + 1] - bg[ys, xs - 1]) * np.float32(0.5)
        gy = (bg[ys + 1, xs] - bg[ys - 1, xs]) * np.float32(0.5)
        ok = np.abs(err) <= 3.0 * float(np.median(np.abs(err))) + 3.0 * noise
        a = np.stack([gx[ok], gy[ok]], axis=1).astype(np.float64)
        try:
            frac = np.linalg.solve(a.T @ a, -(a.T @ err[ok].astype(np.float64)))
        except np.linalg.LinAlgError:
            frac = np.zeros(2)
        dx = wx + float(np.clip(frac[0], -0.6, 0.6))
        dy = wy + float(np.clip(frac[1], -0.6, 0.6))
        if math.hypot(dx, dy) < 0.5:
            return img, 0.0, 0.0
        m = np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy]], np.float32)
        moved = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
        return moved, float(dx), float(dy)


def strong_edges(bg: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows and columns of the background's strongest gradients, away from the border, half of them across the
    columns and half across the rows (a horizon alone would not show a shake along it), and which half each is
    in (True: a change across the columns); levels are clipped to the scene's own range first, so that a hot
    target in the background cannot take them."""
    lo, hi = np.percentile(bg[::8, ::8], (2, 98))
    clipped = np.clip(bg, lo, hi).astype(np.float32)
    picked = []
    for dx, dy in ((1, 0), (0, 1)):
        mag = np.abs(cv2.Sobel(clipped, cv2.CV_32F, dx, dy, ksize=3))
        mag[:margin], mag[-margin:], mag[:, :margin], mag[:, -margin:] = 0, 0, 0, 0
        flat = mag.ravel()
        n = min(EDGE_POINTS // 2, int(np.count_nonzero(flat)))
        if n == 0:
            picked.append(np.zeros(0, np.int64))
            continue
        idx = np.argpartition(flat, -n)[-n:]
        picked.append(idx[flat[idx] > 0.25 * float(flat[idx].max())])
    rows, cols = np.unravel_index(np.concatenate(picked), bg.shape)
    across_columns = np.arange(len(rows)) < len(picked[0])
    return rows, cols, across_columns
