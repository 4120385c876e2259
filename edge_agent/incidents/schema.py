"""The incident database's tables, and the migrations that bring an older file up to date.

The schema is built by ``sqlite_utils.Migrations`` steps, recorded in its ``_sqlite_migrations`` table. Files
written before that table existed are numbered by ``PRAGMA user_version`` (1, 2, 3): the first that many steps
count as applied. ``user_version`` is kept equal to the number of steps applied, so an older agent still
refuses a newer file.

Tables: ``incidents`` and their ``evidence``; ``alerts`` (the last payload of each alert) and the ``outbox``
(every state of every alert and snapshot, delivered or not, and a command post's receipt where one is
required); ``acks``; ``rejected_input`` (bounded, oldest first out); ``sensor_health`` (state changes);
``retention_log`` (what retention removed) and the ``ledger`` (a hash chain over every write to an incident or
an ack); ``site_maps`` (the box's map as last published, newest few kept, for offline tools and the report);
``output_queue`` (each alert state owed to an output besides MQTT: Cursor on Target, SAPIENT).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils
from sqlite_utils import Migrations

from edge_agent.contract.alert import SEVERITIES
from edge_agent.incidents.errors import SchemaTooNew

SEV_RANK = {s: i for i, s in enumerate(SEVERITIES)}  # the sev_rank columns: higher is more severe
MIGRATION_SET = "edge-agent/incidents"


def rejected_input(db: sqlite_utils.Database) -> None:
    """The first released schema: bad input kept with its reason."""
    if "rejected_input" not in db.table_names():
        db.table("rejected_input").create({"id": int, "sensor": str, "ts": float, "reason": str, "data": bytes},
                                          pk="id")
        db.table("rejected_input").create_index(["sensor", "ts"])


def incident_log(db: sqlite_utils.Database) -> None:
    """Incidents, evidence, alerts, the outbox, acks, sensor health, retention and the ledger."""
    db.table("incidents").create({
        "id": str, "rule": str, "kind": str, "severity": str, "sev_rank": int, "state": str, "zone_id": str,
        "zone_name": str, "lat": float, "lon": float, "opened": float, "updated": float, "closed": float,
        "sensors": str, "summary": str, "alert_id": str, "acked_by": str, "acked_ts": float, "ack_note": str,
        "snapshot": str, "degraded": str,
    }, pk="id", not_null={"rule", "kind", "severity", "sev_rank", "state", "opened", "updated"})
    for cols in (["opened"], ["zone_id", "opened"], ["sev_rank", "opened"], ["kind", "opened"], ["state", "opened"],
                 ["alert_id"]):
        db.table("incidents").create_index(cols)
    db.table("evidence").create({"id": int, "incident_id": str, "sensor": str, "type": str, "ts": float, "lat": float,
                           "lon": float, "data": str}, pk="id", not_null={"incident_id", "sensor", "type", "ts"})
    db.table("evidence").create_index(["incident_id", "ts"])
    db.table("evidence").create_index(["sensor", "ts"])
    db.table("evidence").create_index(["incident_id", "sensor", "ts", "data"], unique=True)
    db.table("alerts").create({"alert_id": str, "incident_id": str, "kind": str, "severity": str, "sev_rank": int,
                         "state": str, "created": float, "updated": float, "acked": int, "escalated": int,
                         "payload": str}, pk="alert_id")
    db.table("alerts").create_index(["incident_id"])
    db.table("alerts").create_index(["sev_rank", "acked", "escalated", "created"])
    db.table("outbox").create({"seq": int, "alert_id": str, "topic": str, "state": str, "sev_rank": int, "qos": int,
                         "created": float, "payload": bytes, "attempts": int, "last_attempt": float,
                         "delivered": float}, pk="seq")
    db.execute("CREATE INDEX idx_outbox_pending ON outbox (sev_rank DESC, seq) WHERE delivered IS NULL")
    db.table("outbox").create_index(["alert_id"])
    db.table("acks").create({"id": int, "alert_id": str, "incident_id": str, "by": str, "ts": float, "note": str,
                       "received": float}, pk="id")
    db.table("acks").create_index(["alert_id"])
    db.table("sensor_health").create({"id": int, "sensor": str, "ts": float, "state": str, "detail": str}, pk="id")
    db.table("sensor_health").create_index(["sensor", "ts"])
    db.table("retention_log").create({"id": int, "ts": float, "incident_id": str, "what": str, "reason": str}, pk="id")
    db.table("ledger").create({"seq": int, "ts": float, "kind": str, "ref": str, "digest": str, "prev": str,
                               "hash": str}, pk="seq")
    db.table("ledger").create_index(["kind", "ref"])


def receipts(db: sqlite_utils.Database) -> None:
    """End-to-end receipts: when a command post's receipt for an outbox row arrived and whose it was, and when a
    row the broker took (PUBACK) but no receipt confirmed is due to be published again (NULL: nothing owed)."""
    db.table("outbox").add_column("receipt", float)
    db.table("outbox").add_column("receipt_by", str)
    db.table("outbox").add_column("receipt_due", float)
    db.execute("CREATE INDEX idx_outbox_receipt_due ON outbox (receipt_due) WHERE receipt_due IS NOT NULL")


def site_maps(db: sqlite_utils.Database) -> None:
    """The box's map (the ``site`` topic's GeoJSON) each time it changed; only the newest few rows are kept."""
    db.table("site_maps").create({"id": int, "ts": float, "geojson": str}, pk="id", not_null={"ts", "geojson"})


def output_deliveries(db: sqlite_utils.Database) -> None:
    """Each alert state owed to each output besides MQTT (``cot``, ``sapient``): when it is due, how often it was
    tried, when the output took it, and the last error."""
    db.table("output_queue").create({"output": str, "seq": int, "due": float, "attempts": int,
                                     "last_attempt": float, "sent": float, "error": str},
                                    pk=("output", "seq"), not_null={"due", "attempts"})
    db.execute("CREATE INDEX idx_output_queue_owed ON output_queue (output, due, seq) WHERE sent IS NULL")
    db.execute("CREATE INDEX idx_output_queue_sent ON output_queue (output, sent) WHERE sent IS NOT NULL")
    db.table("output_queue").create_index(["seq"])


@dataclass(frozen=True, slots=True)
class Step:
    """One migration; ``name`` is what ``_sqlite_migrations`` records, so it never changes once released."""

    name: str
    apply: Callable[[sqlite_utils.Database], None]


STEPS: tuple[Step, ...] = (Step("v1", rejected_input), Step("v2", incident_log), Step("v3", receipts),
                           Step("v4", site_maps), Step("v5", output_deliveries))
SCHEMA_VERSION = len(STEPS)  # the user_version a file has once every step is applied


def migrations(steps: tuple[Step, ...] = STEPS) -> Migrations:
    """The steps as a ``sqlite_utils.Migrations`` set."""
    migration_set = Migrations(MIGRATION_SET)
    for step in steps:
        migration_set(name=step.name)(step.apply)
    return migration_set


def user_version(db: sqlite_utils.Database) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def upgrade(db: sqlite_utils.Database, path: Path, steps: tuple[Step, ...] = STEPS) -> None:
    """Apply the steps the file lacks, all in one transaction; nothing is written to a file that is up to date.
    Raises ``SchemaTooNew`` for a file of a newer agent."""
    if user_version(db) == len(steps):
        return
    with db.conn:
        db.execute("BEGIN IMMEDIATE")  # another process may be migrating the same file: read again under the lock
        version = user_version(db)
        if version > len(steps):
            raise SchemaTooNew(f"{path} has schema version {version}, newer than this agent's {len(steps)}; "
                               "upgrade the agent or open a copy")
        migration_set = migrations(steps)
        names = [step.name for step in steps]
        applied = [m.name for m in migration_set.applied(db)]
        unknown = sorted(set(applied) - set(names))
        if unknown:
            raise SchemaTooNew(f"{path} has migrations {', '.join(unknown)} that this agent does not know; "
                               "upgrade the agent or open a copy")
        _adopt(db, migration_set, [name for name in names[:version] if name not in applied])
        migration_set.apply(db)
        db.execute(f"PRAGMA user_version = {len(steps)}")


def _adopt(db: sqlite_utils.Database, migration_set: Migrations, names: list[str]) -> None:
    """Record as applied the steps a file numbered by ``user_version`` alone already has."""
    migration_set.ensure_migrations_table(db)
    now = str(datetime.datetime.now(datetime.UTC))
    db.table(Migrations.migrations_table).insert_all(
        [{"migration_set": migration_set.name, "name": name, "applied_at": now} for name in names])
