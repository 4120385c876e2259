"""Run in a fresh interpreter by test_offline: arm a network guard before anything is imported, then
load, run and export the default model. Prints one JSON line: the refused attempts and what worked."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from pathlib import Path

attempts: list[str] = []


def _local(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        return host in ("localhost", "::1") or host.startswith("127.")
    return isinstance(address, (str, bytes))


def _guarded(name: str, real):  # type: ignore[no-untyped-def]
    def inner(self, address, *a, **k):  # type: ignore[no-untyped-def]
        if not _local(address):
            attempts.append(f"{name} {address!r}")
            raise ConnectionRefusedError(f"offline probe: {address!r}")
        return real(self, address, *a, **k)

    return inner


_real_gai = socket.getaddrinfo


def _gai(host, *a, **k):  # type: ignore[no-untyped-def]
    if host is not None and not _local((host, 0)):
        attempts.append(f"resolve {host!r}")
        raise socket.gaierror(f"offline probe: {host!r}")
    return _real_gai(host, *a, **k)


socket.socket.connect = _guarded("connect", socket.socket.connect)  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded("connect", socket.socket.connect_ex)  # type: ignore[method-assign]

socket.getaddrinfo = _gai


def main() -> None:
    mode, models_dir, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    done: dict[str, object] = {}
    if mode == "control":  # proves the guard works: this must be refused and recorded
        with contextlib.suppress(OSError):
            socket.create_connection(("192.0.2.1", 80), timeout=1)
    else:
        import shutil

        import numpy as np

        from detectors.yolo import YoloConfig, YoloDetector
        from edge_agent.ops import modelfiles as models

        pt = work / "best.pt"
        shutil.copyfile(models.weights_path(models_dir), pt)
        frame = np.zeros((240, 320), np.uint8)
        frame[80:200, 150:175] = 230
        for model in (pt, models.export_path(models_dir, "openvino", 320)):
            det = YoloDetector(YoloConfig(model=model, imgsz=320))
            det.load()
            done[f"detect {model.name}"] = len(det.detect(frame))
        from ultralytics import YOLO

        for fmt in ("onnx", "openvino"):
            out = YOLO(str(pt), task="detect").export(format=fmt, imgsz=160, device="cpu")
            done[f"export {fmt}"] = Path(out).exists()
        res = YOLO(str(pt), task="detect").predict(frame[:, :, None].repeat(3, 2), imgsz=160, verbose=False)
        res[0].plot()  # plotting is where ultralytics fetches Arial.ttf when it has no local copy
        done["plot"] = True
    print(json.dumps({"attempts": attempts, "done": done}))


if __name__ == "__main__":
    main()
