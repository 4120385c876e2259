"""The command post's one MQTT receiver and its one way to send an ack, shared by the web command post
(``ingest``), the terminal console (``edge-agent watch``) and ``edge-agent ack``.

The receiver subscribes to the boxes' topics under a prefix (``+`` for any site or box), turns each message
into a typed value (``messages``) and hands it to one ``take`` function. A message that cannot be read is
refused, counted and reported (rate-limited), never raised into paho's thread (it would end it). Where it is
given a name for receipts, it sends the box a receipt for each alert state once ``take`` has returned: a
``take`` that stores the alert returns only after the store committed, so a receipt never runs ahead of the
store, and one goes out again for a copy already stored (the box may not have had the first)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from edge_agent.commandpost.messages import (
    AlertReceived,
    BadPayload,
    BrokerLink,
    Received,
    parse_health,
    parse_site_map,
    parse_snapshot,
    parse_status,
)
from edge_agent.config.mqtt import MqttConfig
from edge_agent.contract.acks import ack_payload, receipt_payload
from edge_agent.contract.alert import Alert, BadAlert, parse_alert
from edge_agent.contract.ids import IDENT_RE, ULID_RE, one_line
from edge_agent.contract.topics import ANY, BoxTopics, parse_topic, subscription
from edge_agent.shared.mqttclient import RESUBSCRIBE_S, Brokers, connect_persistent, make_client

log = logging.getLogger(__name__)

REPORT_EVERY_S = 10.0  # at most one line about bad messages in this time
LEAF_QOS = {"alerts": 1, "status": 1, "health": 0, "site": 1, "snapshots": 1}
EVERY_LEAF = tuple(LEAF_QOS)
# a receipt per alert state: in a burst, hundreds wait for the broker's PUBACK at once (paho's default of 20 in
# flight kept them queued for seconds)
MAX_INFLIGHT = 1000

Take = Callable[[Received], None]


class BadRequest(ValueError):
    """A request to the command post's tools that cannot be done as asked (a bad id, site or box)."""


class BadMessageReport:
    """Tells of bad messages once, then at most once every ``every_s`` with how many more there were."""

    def __init__(self, write: Callable[[str], None], every_s: float = REPORT_EVERY_S) -> None:
        self.write, self.every_s = write, every_s
        self._last = -float("inf")
        self._held = 0
        self._lock = threading.Lock()

    def __call__(self, topic: str, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.every_s:
                self._held += 1
                return
            held, self._held, self._last = self._held, 0, now
        more = f" ({held} more bad messages since the last report)" if held else ""
        self.write(f"! {one_line(topic, 200)}: {one_line(reason, 300)}; skipped{more}")


def check_alert_id(alert_id: str) -> str:
    """``alert_id`` if it is one (a ULID), else ``BadRequest`` saying so."""
    if not ULID_RE.match(alert_id):
        raise BadRequest(f"{one_line(repr(alert_id), 60)} is not an alert id (a 26-character ULID)")
    return alert_id


@dataclass(slots=True)
class ReceiverCounters:
    taken: int = 0  # messages handed to ``take``
    rejected: int = 0  # refused, or ``take`` failed on them
    receipts: int = 0
    connects: int = 0


def _log_warning(line: str) -> None:
    log.warning("%s", line)


class Receiver:
    """Takes what the boxes publish under ``{prefix}/{site}/{box}`` (``leaves`` of ``EVERY_LEAF``) from the
    broker and hands it on as typed values; see the module docstring. ``persistent`` keeps the session (and the
    QoS 1 messages published meanwhile) at the broker while this client is away: give it a fixed client id."""

    def __init__(self, cfg: MqttConfig, client_id: str, take: Take, *, site: str = ANY, box: str = ANY,
                 leaves: tuple[str, ...] = EVERY_LEAF, persistent: bool = False, receipts_by: str | None = None,
                 warn: Callable[[str], None] = _log_warning) -> None:
        for what, value in (("site", site), ("box", box)):
            if value != ANY and not IDENT_RE.match(value):
                raise BadRequest(f"{what} {value!r}: use letters, digits, '_' and '-'")
        unknown = set(leaves) - set(LEAF_QOS)
        if unknown:
            raise BadRequest(f"no such topics of a box: {', '.join(sorted(unknown))}")
        self.cfg, self.client_id, self.take = cfg, client_id, take
        self.topics = subscription(cfg.prefix, site, box)
        self.leaves, self.persistent, self.receipts_by = leaves, persistent, receipts_by
        self.counters = ReceiverCounters()
        self.report = BadMessageReport(warn)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.brokers = Brokers(cfg)  # with mqtt.hosts: on a loss, the next broker (a cluster's other node)
        self.client = make_client(cfg, client_id, persistent=persistent)
        self.client.max_inflight_messages_set(MAX_INFLIGHT)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def start(self) -> None:
        if self.persistent:
            connect_persistent(self.client, self.cfg, self.brokers.current)
        else:
            self.client.connect_async(*self.brokers.current, keepalive=self.cfg.keepalive_s)
        self.client.on_connect_fail = self._on_connect_fail
        self.client.loop_start()

    def stop(self) -> None:
        self.connected.clear()  # a disconnect we asked for is no news
        self.client.disconnect()
        self.client.loop_stop()

    def send_ack(self, site: str, box: str, alert_id: str, by: str, note: str = "") -> mqtt.MQTTMessageInfo:
        """The one way an ack leaves a command post (the page's Ack, ``edge-agent ack``): ``{"alert_id", "by",
        "ts", "note"}`` to the box's ``acks`` at QoS 1; the box answers by publishing the alert ``acknowledged``.
        ``BadRequest`` or ``BadTopic`` for a bad id, ``ConnectionError`` while the broker is not reachable."""
        check_alert_id(alert_id)
        topic = BoxTopics.of(self.cfg.prefix, site, box).acks
        info = self.client.publish(topic, ack_payload(alert_id, by, note), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"the broker is not reachable ({mqtt.error_string(info.rc)}); try again")
        return info

    # -- paho's thread -------------------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        where = self.brokers.where
        if reason.is_failure:
            log.error("broker %s refused %s: %s", where, self.client_id, reason)
            self._hand_on("broker", BrokerLink(False, f"refused the connection: {reason}"))
            self.brokers.advance(client, self.persistent)
            return
        self.counters.connects += 1
        client.subscribe(self._subscriptions())
        log.info("connected to %s as %s, watching %s/#", where, self.client_id, self.topics.root)
        self.connected.set()
        self._hand_on("broker", BrokerLink(True))

    def _on_disconnect(self, client: mqtt.Client, *_a: Any) -> None:
        if self.connected.is_set():
            self.connected.clear()
            moved = self.brokers.advance(client, self.persistent)
            log.warning("%s lost the broker; reconnecting%s", self.client_id,
                        f" to {self.brokers.where}" if moved else "")
            self._hand_on("broker", BrokerLink(False, "lost; reconnecting"))

    def _on_connect_fail(self, client: mqtt.Client, *_a: Any) -> None:
        self.brokers.advance(client, self.persistent)

    def _subscriptions(self) -> list[tuple[str, int]]:
        t = self.topics
        by_leaf = {"alerts": t.alerts, "status": t.status, "health": t.health, "site": t.site,
                   "snapshots": t.snapshot(ANY)}
        return [(by_leaf[leaf], LEAF_QOS[leaf]) for leaf in self.leaves]

    def _on_subscribe(self, client: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        if any(getattr(r, "is_failure", False) for r in reasons):
            # a cluster electing leaders can refuse one: asked again, or what the boxes send would never come
            log.error("broker %s refused a subscription of %s: %s; asking again in %.0f s", self.brokers.where,
                      self.client_id, reasons, RESUBSCRIBE_S)
            timer = threading.Timer(RESUBSCRIBE_S, self._subscribe_again, args=(client,))
            timer.daemon = True
            timer.start()
            return
        self.subscribed.set()

    def _subscribe_again(self, client: mqtt.Client) -> None:
        if client is self.client and self.connected.is_set():
            client.subscribe(self._subscriptions())

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            message = self._read(msg.topic, bytes(msg.payload), time.time())
        except (BadAlert, BadPayload) as exc:
            self._refuse(msg.topic, str(exc))
            return
        except Exception as exc:  # paho would end its thread on it
            log.debug("message on %r", msg.topic, exc_info=True)
            self._refuse(msg.topic, f"could not be read ({type(exc).__name__}: {one_line(exc, 200)})")
            return
        if message is not None and self._hand_on(msg.topic, message) and isinstance(message, AlertReceived):
            self._receipt(message.alert)

    def _read(self, topic_text: str, payload: bytes, received: float) -> Received | None:
        """The message as a typed value; None for a topic or an empty retained message that says nothing."""
        parts = topic_text.split("/")
        if len(parts) == 5 and parts[3] == "snapshots":
            return parse_snapshot(payload, parts[1], parts[2], parts[4], received)
        topic = parse_topic(topic_text)
        if topic is None:
            return None
        if not topic.names_a_box:
            raise BadPayload("site and box in the topic must be ids")
        site, box = topic.site, topic.box
        if topic.leaf == "alerts":
            try:
                return AlertReceived(parse_alert(payload, site, box), received)
            except BadAlert as exc:
                raise BadAlert(f"not an alert: {exc}") from None
        if not payload:  # a retained status or site map cleared
            return None
        if topic.leaf == "status":
            return parse_status(payload, site, box, received)
        if topic.leaf == "health":
            return parse_health(payload, site, box, received)
        if topic.leaf == "site":
            return parse_site_map(payload, site, box, received)
        return None

    def _hand_on(self, topic: str, message: Received) -> bool:
        """``take`` the message; False (counted and reported) when it failed."""
        try:
            self.take(message)
        except Exception as exc:  # paho would end its thread on it
            log.debug("message on %r", topic, exc_info=True)
            self._refuse(topic, f"could not be handled ({type(exc).__name__}: {one_line(exc, 200)})")
            return False
        self.counters.taken += 1
        return True

    def _receipt(self, alert: Alert) -> None:
        if self.receipts_by is None:
            return
        topic = BoxTopics.of(self.cfg.prefix, alert.site, alert.box).receipts
        self.client.publish(topic, receipt_payload(alert.alert_id, alert.state, self.receipts_by), qos=1)
        self.counters.receipts += 1

    def _refuse(self, topic: str, reason: str) -> None:
        self.counters.rejected += 1
        self.report(topic, reason)
