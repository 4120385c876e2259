"""What a command post sends the box over MQTT: acks (handed to the core) and end-to-end receipts (written to
the outbox by the sender's thread). A message that does not parse, or that its consumer cannot take, is kept
as rejected input; nothing here can end paho's network thread."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from edge_agent.contract.acks import Ack, InboundError, Receipt, parse_ack, parse_receipt, receipt_payload
from edge_agent.contract.topics import BoxTopics
from edge_agent.incidents.sensorlog import Rejected
from edge_agent.incidents.store import IncidentStore

log = logging.getLogger(__name__)

INBOX_MAX = 10_000  # receipts and rejected messages waiting for the sender thread; beyond, they are dropped


@dataclass(slots=True)
class InboundCounters:
    acks: int = 0
    acks_rejected: int = 0
    receipts: int = 0
    receipts_rejected: int = 0
    inbox_dropped: int = 0


class Inbound:
    """Acks and receipts from ``{root}/acks`` and ``{root}/receipts``. The network thread parses (``on_message``);
    database work waits in a bounded inbox for the sender's thread (``take``)."""

    def __init__(self, root: str, store: IncidentStore, counters: InboundCounters,
                 on_ack: Callable[[Ack], None] | None, wake: Callable[[], None]) -> None:
        self.root = root
        self.topics = BoxTopics(root)
        self.store = store
        self.counters = counters
        self.on_ack = on_ack
        self.wake = wake
        self._inbox: queue.Queue[Receipt | Rejected] = queue.Queue(INBOX_MAX)

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        """On the network thread: only read and hand over."""
        topic, payload = msg.topic, bytes(msg.payload)
        source = "mqtt-receipts" if topic == self.topics.receipts else "mqtt-acks"
        try:
            if source == "mqtt-receipts":
                self._to_sender(parse_receipt(payload))
                return
            ack = parse_ack(payload)
            if self.on_ack is not None:
                self.on_ack(ack)
            self.counters.acks += 1
        except InboundError as exc:
            self._reject(source, f"{topic}: {exc}", payload)
            log.warning("message on %s rejected: %s", topic, exc)
        except Exception as exc:  # the ack's consumer failed: the message is kept, the thread goes on
            self._reject(source, f"{topic}: not handled: {type(exc).__name__}: {exc}", payload)
            log.exception("message on %s not handled", topic)

    def _reject(self, source: str, reason: str, payload: bytes) -> None:
        if source == "mqtt-receipts":
            self.counters.receipts_rejected += 1
        else:
            self.counters.acks_rejected += 1
        self._to_sender(Rejected(source, time.time(), reason, payload[:512]))

    def _to_sender(self, item: Receipt | Rejected) -> None:
        """Database work for the sender's thread: the network thread only reads and answers the broker."""
        try:
            self._inbox.put_nowait(item)
        except queue.Full:
            self.counters.inbox_dropped += 1
            log.warning("mqtt: %d receipts and rejected messages wait already; one more dropped", INBOX_MAX)
        self.wake()

    def take(self) -> None:
        """On the sender's thread: receipts into the outbox, rejected messages into the incident log."""
        rejected = []
        for _ in range(INBOX_MAX):
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Rejected):
                rejected.append(item)
                continue
            outcome = self.store.record_receipt(item)
            if outcome == "unknown":
                self.counters.receipts_rejected += 1
                rejected.append(Rejected("mqtt-receipts", time.time(), f"{self.topics.receipts}: no published alert "
                                         f"{item.alert_id} in state {item.state}",
                                         receipt_payload(item.alert_id, item.state, item.by, item.ts)))
                log.warning("receipt for an alert state this box never published: %s %s", item.alert_id, item.state)
            else:
                self.counters.receipts += 1
        if rejected:
            self.store.add_rejects(rejected)
