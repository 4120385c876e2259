"""Writing the incident log from the core stage through the disk guard: a full disk degrades, never stops.

Writes that must not be lost (evidence, alerts, acks, sensor states) are done now or, when the disk is full,
held in order and done when there is room; rejected input and snapshots give way first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge_agent.config.agent import AgentConfig
from edge_agent.incidents.diskguard import DiskGuard, UnwrittenQueue, is_disk_full
from edge_agent.incidents.errors import StoreError
from edge_agent.incidents.sensorlog import Rejected
from edge_agent.incidents.store import IncidentStore

log = logging.getLogger(__name__)


class IncidentLogWriter:
    def __init__(self, store: IncidentStore, disk: DiskGuard) -> None:
        self.store = store
        self.disk = disk
        self.unwritten = UnwrittenQueue(disk.counters)

    def write(self, what: str, write: Callable[[], None]) -> None:
        """An incident-log write that must not be lost: done now, or, when the disk is full, held in order and
        done when there is room."""
        if self.unwritten:
            self.unwritten.add(what, write)  # keep the order: older writes wait
            return
        try:
            write()
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            if self.disk.give_up_reserve():
                try:
                    write()
                    return
                except Exception as again:
                    if not is_disk_full(again):
                        raise
            self.unwritten.add(what, write)

    def reject(self, rows: list[Rejected]) -> None:
        """Rejected input goes to the log unless the disk is full (then it is counted and dropped first)."""
        if self.disk.full:
            self.disk.counters.dropped_rejects += len(rows)
            return
        try:
            self.store.add_rejects(rows)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            self.disk.counters.dropped_rejects += len(rows)
            self.disk.give_up_reserve()

    def snapshot_room(self) -> bool:
        """Whether a snapshot may be written; a full disk drops it (and counts it)."""
        if self.disk.full:
            self.disk.counters.dropped_snapshots += 1
            return False
        return True

    def catch_up(self) -> bool:
        """Check the disk and do the held writes there is room for; True when some were done."""
        self.disk.check()
        return bool(self.unwritten) and bool(self.unwritten.flush())

    def retain(self, config: AgentConfig) -> None:
        r = config.incident_log.retention
        min_free = int(r.min_free_mb * 2**20)
        if self.disk.full:  # room for the reserve and as much again
            min_free = max(min_free, 3 * self.disk.reserve_bytes, 2**21)
        try:
            removed = self.store.retain(time.time(), r.max_age_days * 86400, r.critical_age_days * 86400, min_free)
        except StoreError as exc:
            log.error("retention: %s", exc)
            return
        if removed:
            log.info("retention removed %d item(s), e.g. %s", len(removed), removed[0])
