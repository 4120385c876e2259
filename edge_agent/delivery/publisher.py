"""Alert delivery over MQTT (paho-mqtt 2.x) from the durable outbox.

The outbox in the incident database is the only queue: the ``Publisher`` reads undelivered rows (most severe
alert first, then oldest), publishes them with QoS 1 while connected, and marks a row delivered only when
the broker's PUBACK for it arrives. After a reconnect or a restart everything still undelivered is published
again, so delivery is at least once and consumers de-duplicate by ``alert_id``. With ``require_receipt`` a
PUBACK is not enough: an alert state is done when a command post's receipt for it arrives on ``.../receipts``,
and is published again until one does (a broker killed before it saved its queue loses what it acknowledged).
With ``mqtt.hosts`` a lost connection (or a failed connect) moves the client to the next broker, after paho's
backoff, and the outbox replays there. ``status`` is retained with a last will of ``offline``; acks arrive on
``.../acks`` and go to ``on_ack``. The box's map (``set_site``) is retained on ``.../site``, published when it is
set and again on every connect (a broker restarted without persistence has it back).

No message can stop delivery: every paho callback catches what it raises (a bad message is kept as rejected
input), and the sender notices a network thread that ended or hangs, builds the client again (same id, will,
callbacks, TLS) and reconnects; what the broker had not acknowledged is replayed from the outbox.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from edge_agent import __version__
from edge_agent.config.mqtt import MqttConfig
from edge_agent.contract.acks import Ack
from edge_agent.contract.ids import iso_ms
from edge_agent.contract.topics import BoxTopics, topic_root
from edge_agent.delivery.inbound import Inbound, InboundCounters
from edge_agent.incidents.store import IncidentStore
from edge_agent.shared.mqttclient import (
    RESUBSCRIBE_S,
    Brokers,
    connect_persistent,
    give_up,
    heard_from_broker_s,
    make_client,
    network_thread,
)

__all__ = ["DeliveryCounters", "Publisher"]

log = logging.getLogger(__name__)

REFUSED_RETRY_S = 30.0
REBUILD_RETRY_S = 5.0
SILENCE_GRACE_S = 2.0  # a live connection hears the broker at least every keepalive (ping); twice that, plus this


def status_payload(state: str) -> bytes:
    """The retained ``status`` message (and the last will, ``offline``)."""
    return json.dumps({"state": state, "ts": iso_ms(time.time()), "version": __version__}).encode()


@dataclass(slots=True)
class DeliveryCounters(InboundCounters):
    published: int = 0
    delivered: int = 0
    refused: int = 0
    connects: int = 0
    rebuilds: int = 0  # the MQTT client built again after its network thread ended or hung
    failovers: int = 0  # moves to the next broker of mqtt.hosts
    callback_errors: int = 0
    last_error: str = ""


def _guarded(callback: Callable[..., None]) -> Callable[..., None]:
    """A paho callback that cannot end the network thread, and that ignores a client given up on."""

    @functools.wraps(callback)
    def run(self: Publisher, client: mqtt.Client, *args: Any) -> None:
        if client is not self.client:
            return
        try:
            callback(self, client, *args)
        except Exception:
            self.counters.callback_errors += 1
            log.exception("mqtt callback %s failed; the client goes on", callback.__name__)

    return run


class Publisher:
    """Publishes the outbox to the broker; see the module docstring."""

    def __init__(self, cfg: MqttConfig, site: str, box: str, store: IncidentStore,
                 on_ack: Callable[[Ack], None] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.root = topic_root(cfg.prefix, site, box)
        self.topics = BoxTopics(self.root)
        self.counters = DeliveryCounters()
        self.client_id = cfg.client_id or f"edge-agent-{site}-{box}"
        self.brokers = Brokers(cfg)  # on a loss the client moves to the next of mqtt.hosts
        self.connected = threading.Event()
        self.listening = threading.Event()  # the broker confirmed the subscription to acks (and receipts)
        self.client = self._new_client()
        self._wake = threading.Event()
        self.inbound = Inbound(self.root, store, self.counters, on_ack, self._wake.set)
        self._acked: queue.SimpleQueue[tuple[mqtt.Client, int, bool, str]] = queue.SimpleQueue()
        self._inflight: dict[int, int] = {}  # mid -> outbox seq (sender thread only)
        self._held: dict[int, float] = {}  # seq -> monotonic time; rows the broker refused wait before a retry
        self._next_rebuild = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.heartbeat = time.monotonic()  # the sender loop's last turn, for the watchdog
        self._site: bytes | None = None
        self._site_lock = threading.Lock()  # a map set while a connect completes is published by one or the other
        self._resubscribe_at: float | None = None  # a refused subscription is asked for again then

    # -- life cycle ------------------------------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        client = make_client(self.cfg, self.client_id, persistent=True)
        client.will_set(self.topics.status, status_payload("offline"), qos=1, retain=True)
        client.max_inflight_messages_set(self.cfg.max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        return client

    @property
    def where(self) -> str:
        return self.brokers.where

    def _connect(self) -> None:
        connect_persistent(self.client, self.cfg, self.brokers.current)
        self.client.loop_start()

    def _next_broker(self, client: mqtt.Client) -> None:
        """On paho's network thread, after a failed connect or a lost connection: its next reconnect (after
        paho's backoff) goes to the next broker of ``mqtt.hosts``; the outbox replays there."""
        was = self.where
        if self.brokers.advance(client):
            self.counters.failovers += 1
            log.warning("mqtt: %s lost; trying the next broker, %s", was, self.where)

    def start(self) -> None:
        if not self.cfg.require_receipt and (waived := self.store.waive_receipts()):
            log.info("receipts are no longer required: %d alert state(s) the broker took count as delivered", waived)
        self._connect()
        self._thread = threading.Thread(target=self._run, name="mqtt-sender", daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread | None:
        """The sender thread (None before ``start``), for the agent's watchdog."""
        return self._thread

    def stop(self, timeout: float = 3.0) -> None:
        """Publish ``offline`` (retained) and disconnect; what is undelivered stays in the outbox."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
        self.inbound.take()
        if self.connected.is_set():
            info = self.client.publish(self.topics.status, status_payload("offline"), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self.connected.clear()  # a disconnect we asked for is no news
        self.listening.clear()
        self.client.disconnect()
        thread = network_thread(self.client)
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.1, deadline - time.monotonic()))  # not loop_stop(): a hung thread must not hang us

    def wake(self) -> None:
        """Something new is in the outbox."""
        self._wake.set()

    def set_site(self, payload: bytes) -> None:
        """The box's map: kept, and published retained (QoS 1) on ``.../site`` now if connected and again on every
        connect."""
        with self._site_lock:
            self._site = payload
            if self.connected.is_set():
                self.client.publish(self.topics.site, payload, qos=1, retain=True)

    def publish_health(self, health: dict[str, Any]) -> None:
        if self.connected.is_set():
            self.client.publish(self.topics.health, json.dumps(health, separators=(",", ":")), qos=0)

    # -- paho callbacks (network thread) ---------------------------------------------------------------

    @_guarded
    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.counters.last_error = f"broker refused the connection: {reason}"
            log.error("mqtt %s: %s", self.where, self.counters.last_error)
            self._next_broker(client)
            return
        self.counters.connects += 1
        client.publish(self.topics.status, status_payload("online"), qos=1, retain=True)
        client.subscribe(self._subscriptions())
        log.info("mqtt connected to %s as %s", self.where, self.root)
        with self._site_lock:
            if self._site is not None:
                client.publish(self.topics.site, self._site, qos=1, retain=True)
            self.connected.set()
        self._wake.set()

    def _subscriptions(self) -> list[tuple[str, int]]:
        return [(self.topics.acks, 1)] + ([(self.topics.receipts, 1)] if self.cfg.require_receipt else [])

    @_guarded
    def _on_subscribe(self, _c: mqtt.Client, _ud: Any, _mid: int, reasons: Any, _props: Any) -> None:
        if all(not r.is_failure for r in reasons):
            self.listening.set()
            self._resubscribe_at = None
        else:  # a cluster electing leaders can fail one: asked again, or acks and receipts would never come
            self.counters.last_error = f"the broker refused the subscription to acks or receipts: {reasons}"
            self._resubscribe_at = time.monotonic() + RESUBSCRIBE_S
            log.error("mqtt: %s; asking again in %.0f s", self.counters.last_error, RESUBSCRIBE_S)

    @_guarded
    def _on_connect_fail(self, client: mqtt.Client, _ud: Any) -> None:
        self.counters.last_error = f"cannot reach the broker at {self.where}"
        log.warning("mqtt: %s; alerts wait in the outbox, retrying", self.counters.last_error)
        self._next_broker(client)

    @_guarded
    def _on_disconnect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if self.connected.is_set():
            log.warning("mqtt disconnected from %s: %s", self.where, reason)
            self.counters.last_error = f"disconnected from {self.where}: {reason}"
            if not self._stop.is_set():
                self._next_broker(client)
        self.connected.clear()
        self.listening.clear()
        self._wake.set()

    @_guarded
    def _on_publish(self, client: mqtt.Client, _ud: Any, mid: int, reason: Any, _props: Any) -> None:
        self._acked.put((client, mid, bool(reason.is_failure), str(reason)))
        self._wake.set()

    @_guarded
    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        self.inbound.on_message(msg)

    # -- the sender ------------------------------------------------------------------------------------

    def _run(self) -> None:
        generation = -1
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            self._wake.wait(0.5)
            self._wake.clear()
            self._check_network()
            self._resubscribe()
            self._settle()
            self.inbound.take()
            if not self.connected.is_set():
                continue
            if generation != self.counters.connects:  # a new connection: everything unacked goes again
                generation = self.counters.connects
                self._inflight.clear()
            room = self.cfg.max_inflight - len(self._inflight)
            if room <= 0:
                continue
            now = time.monotonic()
            self._held = {seq: t for seq, t in self._held.items() if t > now}
            items = self.store.pending(limit=room, exclude=[*self._inflight.values(), *self._held])
            sent = []
            for item in items:
                info = self.client.publish(self.topics.under(item.topic), item.payload, qos=item.qos)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break  # the connection went; the rest waits for the next one
                self._inflight[info.mid] = item.seq
                sent.append(item.seq)
            if sent:
                self.counters.published += len(sent)
                self.store.attempted(sent, time.time())
                if len(sent) == room:
                    self._wake.set()  # more may be waiting

    def _check_network(self) -> None:
        """Build the client again when its network thread ended (an exception paho let through, a
        ``loop_stop`` from elsewhere) or hangs (connected, yet nothing heard from the broker for twice the
        keepalive: a healthy connection pings). Without this a dead thread looks connected and the outbox
        waits for ever."""
        if time.monotonic() < self._next_rebuild:
            return
        if network_thread(self.client) is None:
            why = "the MQTT network thread has ended"
        elif self.connected.is_set() and (silent := heard_from_broker_s(self.client)) > \
                2 * self.cfg.keepalive_s + SILENCE_GRACE_S:
            why = f"the MQTT network thread hangs: nothing heard from the broker for {silent:.0f} s"
        else:
            return
        self._next_rebuild = time.monotonic() + REBUILD_RETRY_S
        try:
            fresh = self._new_client()
        except ValueError as exc:  # e.g. the TLS files went (MqttClientError): say so and try again later
            self.counters.last_error = f"{why}; cannot build a new client: {exc}"
            log.error("mqtt: %s", self.counters.last_error)
            return
        log.error("mqtt: %s; building the client again and reconnecting (unacknowledged alerts go again)", why)
        self.counters.rebuilds += 1
        self.counters.last_error = why
        old, self.client = self.client, fresh
        self.connected.clear()
        self.listening.clear()
        self._inflight.clear()
        give_up(old)
        self._connect()

    def _resubscribe(self) -> None:
        due = self._resubscribe_at
        if due is not None and time.monotonic() >= due and self.connected.is_set():
            self._resubscribe_at = time.monotonic() + RESUBSCRIBE_S  # cleared by the SUBACK that grants both
            self.client.subscribe(self._subscriptions())

    def _settle(self) -> None:
        done = []
        while True:
            try:
                client, mid, failed, reason = self._acked.get_nowait()
            except queue.Empty:
                break
            seq = self._inflight.pop(mid, None) if client is self.client else None
            if seq is None:
                continue
            if failed:  # MQTT 5 brokers say why (e.g. not authorised): kept, tried again later
                self.counters.refused += 1
                self._held[seq] = time.monotonic() + REFUSED_RETRY_S
                self.counters.last_error = f"broker refused message {seq}: {reason}"
                log.error("broker refused outbox row %s: %s", seq, reason)
            else:
                done.append(seq)
        if done:
            self.store.delivered(done, time.time(), self.cfg.receipt_timeout_s if self.cfg.require_receipt else None)
            self.counters.delivered += len(done)
            self._wake.set()
