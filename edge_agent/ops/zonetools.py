"""Zone tools for field engineers: draw a camera's zones and lines over its frame, find which zones hold a
point."""

from __future__ import annotations

from typing import Any

from edge_agent.config.agent import load_config
from edge_agent.ops.errors import OpsError


def zones_preview(config_path: str, camera: str, output: str, source: str | None = None, frame_no: int = 0) -> str:
    """Draw a camera's zones and lines over one of its frames into a PNG; returns what was written."""
    from edge_agent.runtime.site import Site, preview
    from sensors.errors import SensorError
    from sensors.thermal import open_capture, to_frame

    config = load_config(config_path)
    cams = {c.id: c for c in config.cameras}
    if camera not in cams:
        raise OpsError(f"unknown camera {camera!r}; cameras in {config_path}: {', '.join(cams) or 'none'}")
    cam = cams[camera]
    if source:
        cam = cam.model_copy(update={"source": source})
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
    import cv2

    if not cv2.imwrite(output, img):
        raise OpsError(f"cannot write {output}; does the folder exist?")
    return f"wrote {output} ({img.shape[1]}x{img.shape[0]}) from {cam.source}"


def zones_where(config_path: str, camera: str | None, pixel: tuple[float, float] | None,
                latlon: tuple[float, float] | None) -> dict[str, Any]:
    """Which zones contain a pixel of a camera (and where it is on the map), or a lat/lon."""
    from edge_agent.runtime.site import Site

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
