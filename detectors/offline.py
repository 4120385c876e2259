"""Keep ultralytics off the network: offline mode, no auto-install, a local font, a private config dir."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def default_config_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-agent" / "ultralytics"


def prepare_ultralytics(config_dir: Path | None = None) -> Path:
    """Set the environment before ultralytics is imported; put a local font where it looks first.

    ultralytics downloads Arial.ttf on first plot unless one is already in its config dir, and checks
    for updates, telemetry and missing packages unless told not to. Returns the config dir used.
    """
    cfg = Path(config_dir or os.environ.get("YOLO_CONFIG_DIR") or default_config_dir())
    cfg.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_VERBOSE", "false")
    font_dir = cfg / "Ultralytics"  # ultralytics appends this to YOLO_CONFIG_DIR
    font_dir.mkdir(exist_ok=True)
    missing = [name for name in FONT_NAMES if not (font_dir / name).exists()]
    if missing:
        import matplotlib  # a dependency of ultralytics; it ships DejaVu fonts

        font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        for name in missing:
            shutil.copyfile(font, font_dir / name)
    return cfg
