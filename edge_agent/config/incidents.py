"""The incident log: its SQLite file, snapshot and rejected-input limits, the disk reserve, and retention."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from edge_agent.config.fields import Real, Strict, Whole


class RetentionConfig(Strict):
    """What is removed when, by age and by free disk."""

    max_age_days: Real = Field(365.0, gt=0, description="Closed incidents older than this are removed.")
    critical_age_days: Real = Field(730.0, gt=0, description="Unacknowledged critical incidents are kept this long.")
    min_free_mb: Real = Field(500.0, ge=0, description="Below this free disk, the oldest evidence goes first.")


class IncidentLogConfig(Strict):
    """Where incidents, alerts and snapshots are kept, and how much of each."""

    path: Path | None = Field(None, description="SQLite file (default STATE_DIR/incidents.db).")
    snapshot_max_kb: Whole = Field(200, ge=10, description="Largest snapshot JPEG; quality drops to fit.")
    max_rejects: Whole = Field(10_000, ge=10, description="Rejected inputs kept (oldest first out).")
    reserve_mb: Real = Field(16.0, ge=0, description="Disk space held back in a reserve file beside the database "
                              "and given up when the disk fills, so incidents and the outbox can still be written; "
                              "0: no reserve.")
    retention: RetentionConfig = Field(default_factory=RetentionConfig,
                                       description="What is removed when, by age and by free disk.")
