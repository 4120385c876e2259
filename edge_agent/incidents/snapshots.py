"""Snapshot files beside the database: ``snapshots/YYYY-MM-DD/<alert ULID>.jpg``, the only form the store writes,
and so the only one it reads or deletes."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from edge_agent.contract.ids import ULID_RE
from edge_agent.incidents.errors import SnapshotPathError, SnapshotRefused

SNAPSHOT_RE = re.compile(r"^snapshots/\d{4}-\d{2}-\d{2}/" + ULID_RE.pattern.removeprefix("^").removesuffix(r"\Z")
                         + r"\.jpg\Z")

log = logging.getLogger(__name__)


class SnapshotFolder:
    """The ``snapshots`` folder next to the database file; stored paths are relative to the database's folder."""

    def __init__(self, base: Path, max_bytes: int) -> None:
        self.base = base
        self.folder = base / "snapshots"
        self.max_bytes = max_bytes

    def write(self, alert_id: str, jpeg: bytes) -> str:
        """Write (fsynced, then renamed into place) and return the stored path."""
        if not ULID_RE.match(alert_id):  # the file name is the alert id: nothing else may reach the path
            raise SnapshotRefused(f"snapshot of alert {alert_id!r}: the alert id must be a ULID")
        if len(jpeg) > self.max_bytes:
            raise SnapshotRefused(f"snapshot of {alert_id} is {len(jpeg)} bytes, over the {self.max_bytes} limit")
        rel = f"snapshots/{time.strftime('%Y-%m-%d', time.gmtime())}/{alert_id}.jpg"
        target = self.base / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(jpeg)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(target)
        return rel

    def file(self, rel: object) -> Path:
        """The file of a stored snapshot path, only when it has the form the store writes
        (``snapshots/YYYY-MM-DD/<ULID>.jpg``) and resolves inside the snapshot folder (no link out of it);
        else ``SnapshotPathError`` saying why. Nothing else is ever read or deleted."""
        if not isinstance(rel, str) or not SNAPSHOT_RE.match(rel):
            shown = repr(rel)
            raise SnapshotPathError(f"snapshot path {shown[:80]}{'…' if len(shown) > 80 else ''} is not of the "
                                    "form snapshots/YYYY-MM-DD/<ULID>.jpg")
        folder = self.folder.resolve()
        target = (self.base / rel).resolve()
        if not target.is_relative_to(folder):
            raise SnapshotPathError(f"snapshot path {rel!r} resolves to {target}, outside {folder}")
        return target

    def refusal(self, rel: object) -> str | None:
        """Why a stored path would never be read or deleted, or None for a path the store writes."""
        try:
            self.file(rel)
        except SnapshotPathError as exc:
            return str(exc)
        return None

    def remove(self, incident_id: str, rel: object) -> bool:
        """Delete a snapshot file only where its stored path is one the store writes; False (and a warning)
        for any other path, whose file is left alone."""
        try:
            target = self.file(rel)
        except SnapshotPathError as exc:
            log.warning("retention: incident %s: %s; left alone ('edge-agent incidents verify' lists it)",
                        incident_id, exc)
            return False
        target.unlink(missing_ok=True)
        return True
