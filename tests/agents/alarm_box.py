"""A box whose every metal ALARM is an incident and an alert of its own (the delivery tests' load): one geo zone,
one metal detector on a UDP port, a fusion rule with a window shorter than any two datagrams apart, no cooldown,
and incidents that stay open (only state 'new' is counted); and the read-only look at its incident log those
tests wait on."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import yaml


def every_alarm_box(tmp_path: Path, udp: int, **sections: Any) -> Path:
    """``box.yaml`` in ``tmp_path`` (site ``t``, box ``box1``, state in ``tmp_path/state``); ``sections`` add the
    delivery (``mqtt``, ``outputs``)."""
    cfg: dict[str, Any] = {
        "site": "t", "box": "box1", "state_dir": str(tmp_path / "state"),
        "zones": [{"id": "gate", "name": "Gate", "space": "geo",
                   "polygon": [[46.5500, 15.6500], [46.5500, 15.6502], [46.5502, 15.6502], [46.5502, 15.6500]]}],
        "fixed_sensors": [{"id": "md-1", "kind": "metal", "latlon": [46.5501, 15.6501],
                           "url": f"udp://127.0.0.1:{udp}", "hb_timeout_s": 3600}],
        "fusion": [{"id": "every-alarm", "place": "gate", "metal": ["md-1"], "severity": "high",
                    "window_s": 1e-6, "cooldown_s": 0, "quiet_s": 3600}],
        **sections,
    }
    path = tmp_path / "box.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def log_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of the box's incident log, read-only; none while the file is not there yet."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


def metal_alert_ids(db: Path, acked: bool = False) -> set[str]:
    """The metal alerts the box committed (``acked``: only those acknowledged)."""
    sql = "SELECT alert_id FROM alerts WHERE kind = 'metal'" + (" AND acked = 1" if acked else "")
    return {r[0] for r in log_rows(db, sql)}
