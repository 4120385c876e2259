"""The web command post's side of the receiver: every box's alerts, status, health, site map and snapshots into
the store, a receipt back to the box for each alert state stored (the receiver sends it once ``take`` has
returned, so only after the store committed); the store tells the pages what changed (on a shared PostgreSQL
store, what any command post changed).

The client id is fixed (``cp-{name}``) and the session persistent (QoS 1 subscriptions), so what the boxes
publish while the command post is down waits at the broker and arrives when it is back. With
``mqtt.require_receipt`` on a box, an alert state a broker lost is published again until a receipt comes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_agent.commandpost.messages import AlertReceived, BoxHealth, BoxStatus, BrokerLink, Received, SiteMap, Snapshot
from edge_agent.commandpost.receiver import Receiver
from edge_agent.commandpost.store import CommandPostStore
from edge_agent.config.mqtt import MqttConfig

Publish = Callable[[dict[str, Any]], None]


@dataclass(slots=True)
class IngestCounters:
    """What storing did (what the receiver refused and the receipts it sent: ``Receiver.counters``)."""

    alerts: int = 0
    duplicates: int = 0
    snapshots: int = 0
    site_maps: int = 0
    health: int = 0


class Ingest:
    """Subscribes to every box under the prefix and keeps what arrives; see the module docstring."""

    def __init__(self, cfg: MqttConfig, client_id: str, store: CommandPostStore, publish: Publish,
                 by: str) -> None:
        self.store, self.publish = store, publish
        self.counters = IngestCounters()
        self.receiver = Receiver(cfg, client_id, self.take, persistent=True, receipts_by=by)

    def start(self) -> None:
        self.receiver.start()

    def stop(self) -> None:
        self.receiver.stop()

    def take(self, message: Received) -> None:
        """Store one message (committed when this returns); the store tells the open pages what changed."""
        match message:
            case AlertReceived(alert, received):
                stored = self.store.add_alert(alert, received)
                if not stored.new:
                    self.counters.duplicates += 1
                    return
                self.counters.alerts += 1
            case BoxStatus(site, box, state, version, received):
                self.store.box_status(site, box, state, version, received)
            case BoxHealth(site, box, summary, received):
                self.store.box_health(site, box, summary, received)
                self.counters.health += 1
            case SiteMap(site, box, geojson, received):
                self.store.site_map(site, box, geojson, received)
                self.counters.site_maps += 1
            case Snapshot(_site, _box, alert_id, jpeg, received):
                self.store.add_snapshot(alert_id, jpeg, received)
                self.counters.snapshots += 1
            case BrokerLink(connected):
                self.publish({"type": "broker", "connected": connected})
