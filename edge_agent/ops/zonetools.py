"""Zone tools for field engineers: draw a camera's zones and lines over its frame, find which zones hold a
point."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edge_agent.config.agent import load_config
from edge_agent.core.site import Site
from edge_agent.ops.errors import OpsError


def zones_preview(config_path: str, camera: str, output: str, source: str | None = None, frame_no: int = 0) -> str:
    """Draw a camera's zones and lines over one of its frames into a PNG; returns what was written."""
    from sensors.captures import open_capture, to_frame, unpaced
    from sensors.errors import SensorError

    config = load_config(config_path)
    cams = {c.id: c for c in config.cameras}
    if camera not in cams:
        raise OpsError(f"unknown camera {camera!r}; cameras in {config_path}: {', '.join(cams) or 'none'}")
    cam = cams[camera]
    cam = cam.model_copy(update={"source": unpaced(source or cam.source)})
    try:
        cap = open_capture(cam.spec())
    except SensorError as exc:
        raise OpsError(str(exc)) from exc
    frame, reasons = None, []
    try:
        for i in range(frame_no + 50):
            ok, raw = cap.read()
            if not ok:
                break
            if i < frame_no:
                continue
            try:
                frame = to_frame(cam.spec(), i, 0.0, raw)  # type: ignore[arg-type]
                break
            except ValueError as exc:
                reasons.append(str(exc))
    finally:
        cap.release()
    if frame is None:
        raise OpsError(f"no usable frame from {cam.source}" + (f": {reasons[-1]}" if reasons else ""))
    img = preview(Site.from_config(config), cam.id, frame.gray8())
    if not cv2.imwrite(output, img):
        raise OpsError(f"cannot write {output}; does the folder exist?")
    return f"wrote {output} ({img.shape[1]}x{img.shape[0]}) from {cam.source}"


def zones_where(config_path: str, camera: str | None, pixel: tuple[float, float] | None,
                latlon: tuple[float, float] | None) -> dict[str, Any]:
    """Which zones contain a pixel of a camera (and where it is on the map), or a lat/lon."""
    config = load_config(config_path)
    site = Site.from_config(config)
    if latlon:
        out = site.where_latlon(*latlon)
    else:
        if not camera:
            raise OpsError("--pixel needs --camera")
        if camera not in {c.id for c in config.cameras}:
            raise OpsError(f"unknown camera {camera!r}")
        if pixel is None:
            raise OpsError("give --pixel X Y with --camera, or --latlon LAT LON")
        out = site.where_pixel(camera, *pixel)
    return out


ZONE_COLOURS = [(0, 200, 255), (255, 0, 200), (0, 255, 0), (255, 200, 0), (200, 0, 255)]


def preview(site: Site, camera: str, gray8: np.ndarray) -> np.ndarray:
    """The camera frame with its zones and lines drawn (geo ones through the calibration), labelled."""
    img = cv2.cvtColor(gray8, cv2.COLOR_GRAY2BGR)
    cal = site.calibrations.get(camera)
    items: list[tuple[str, list[tuple[float, float]], bool]] = []
    shapes = [(z.id, z.space, z.camera, z.polygon, True) for z in site.config.zones]
    shapes += [(ln.id, ln.space, ln.camera, ln.points, False) for ln in site.config.lines]
    for name, space, cam_id, pts, closed in shapes:
        if space == "pixel" and cam_id == camera:
            items.append((name, list(pts), closed))
        elif space == "geo" and cal is not None:
            u, v = cal.latlon_to_pixel(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
            items.append((name, list(zip(u.tolist(), v.tolist(), strict=True)), closed))
    for k, (name, pts, closed) in enumerate(items):
        colour = ZONE_COLOURS[k % len(ZONE_COLOURS)]
        arr = np.round(np.array(pts) * 16).astype(np.int32).reshape(-1, 1, 2)
        if closed:
            overlay = img.copy()
            cv2.fillPoly(overlay, [arr], colour, cv2.LINE_AA, shift=4)
            img = cv2.addWeighted(overlay, 0.25, img, 0.75, 0)
        cv2.polylines(img, [arr], closed, colour, 2, cv2.LINE_AA, shift=4)
        if not closed and len(pts) >= 2:  # an arrow shows the line's direction: first point to last
            a, b = np.array(pts[-2], float), np.array(pts[-1], float)
            a = b - 30.0 * (b - a) / max(float(np.linalg.norm(b - a)), 1e-9)
            cv2.arrowedLine(img, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), colour, 2,
                            cv2.LINE_AA, tipLength=0.4)
        cx, cy = np.array(pts).mean(axis=0)
        cv2.putText(img, name, (int(cx), int(cy)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return img
