"""Alert delivery over MQTT (paho-mqtt 2.x) from the durable outbox.

The outbox in the incident database is the only queue: the ``Publisher`` reads undelivered rows (most severe
alert first, then oldest), publishes them with QoS 1 while connected, and marks a row delivered only when
the broker's PUBACK for it arrives. After a reconnect or a restart everything still undelivered is published
again, so delivery is at least once and consumers de-duplicate by ``alert_id``. With ``require_receipt`` a
PUBACK is not enough: an alert state is done when a command post's receipt for it arrives on ``.../receipts``,
and is published again until one does (a broker killed before it saved its queue loses what it acknowledged).
``status`` is retained with a last will of ``offline``; acks arrive on ``.../acks`` and go to ``on_ack``.

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
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import __version__
from edge_agent.config.agent import MqttConfig
from edge_agent.contract.acks import (
    AckError,
    InboundError,
    ReceiptError,
    ack_payload,
    parse_ack,
    parse_receipt,
    receipt_payload,
)
from edge_agent.contract.alert import IDENT_RE, ULID_RE, iso_ms
from edge_agent.incidents.store import Ack, IncidentStore, Receipt, Rejected

__all__ = ["IDENT_RE", "ULID_RE", "AckError", "DeliveryCounters", "Publisher", "ReceiptError", "ack_payload",
           "make_client", "parse_ack", "parse_receipt", "topic_root"]

log = logging.getLogger(__name__)
paho_log = logging.getLogger("edge_agent.paho")  # exceptions paho caught in a callback of a client make_client built

REFUSED_RETRY_S = 30.0
SESSION_EXPIRY_S = 7 * 86400  # acks sent while a box is away wait this long at the broker
INBOX_MAX = 10_000  # receipts and rejected messages waiting for the sender thread; beyond, they are dropped
REBUILD_RETRY_S = 5.0
SILENCE_GRACE_S = 2.0  # a live connection hears the broker at least every keepalive (ping); twice that, plus this


def topic_root(prefix: str, site: str, box: str) -> str:
    for what, value in (("prefix", prefix), ("site", site), ("box", box)):
        if not IDENT_RE.match(value):  # '+', '#' or '/' in an id would change what a topic means
            raise ValueError(f"{what} {value!r} cannot be a topic level: use letters, digits, '_' and '-'")
    return f"{prefix}/{site}/{box}"


def make_client(cfg: MqttConfig, client_id: str, persistent: bool = False) -> mqtt.Client:
    """The one place a paho client is built: the configured protocol, credentials and TLS (no callbacks, not
    connected). A persistent session keeps the box's subscriptions (acks, receipts) queued at the broker while
    it is away. An exception in a callback is logged and the network thread goes on (paho would re-raise it
    and its thread would end: a console or a box that looks alive and hears nothing)."""
    protocol = mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311
    kwargs: dict[str, Any] = {"callback_api_version": CallbackAPIVersion.VERSION2, "client_id": client_id,
                              "protocol": protocol}
    if protocol == mqtt.MQTTv311:
        kwargs["clean_session"] = not persistent
    client = mqtt.Client(**kwargs)
    client.suppress_exceptions = True
    if not paho_log.filters:
        paho_log.addFilter(_CallbackErrors())
    client.enable_logger(paho_log)
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.secret())
    if cfg.tls is not None:
        t = cfg.tls
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(t, key)
            if path is not None and not path.is_file():
                raise ValueError(f"mqtt.tls.{key}: {path} does not exist or is not a file")
        try:
            client.tls_set(ca_certs=str(t.ca_file), certfile=str(t.cert_file) if t.cert_file else None,
                           keyfile=str(t.key_file) if t.key_file else None, cert_reqs=ssl.CERT_REQUIRED,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"mqtt.tls: cannot use {t.ca_file}, {t.cert_file}, {t.key_file}: {exc} (PEM files, "
                             "the key matching the certificate?)") from None
        client.tls_insecure_set(t.insecure)
    client.reconnect_delay_set(int(max(1, cfg.reconnect_min_s)), int(max(1, cfg.reconnect_max_s)))
    return client


class _CallbackErrors(logging.Filter):
    """Of paho's own log, only the exceptions it caught in a callback: the rest (each packet, each failed read
    while the broker is away) our callbacks already say once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return str(record.msg).startswith("Caught exception")


def network_thread(client: mqtt.Client) -> threading.Thread | None:
    """paho's loop thread (``loop_start``); None once it has ended."""
    thread: threading.Thread | None = client._thread
    return thread if thread is not None and thread.is_alive() else None


def heard_from_broker_s(client: mqtt.Client) -> float:
    """Seconds since paho last read a byte from the broker (or sent a ping, which it counts the same)."""
    return float(time.monotonic() - client._last_bytes_received)


@dataclass(slots=True)
class DeliveryCounters:
    published: int = 0
    delivered: int = 0
    refused: int = 0
    connects: int = 0
    acks: int = 0
    acks_rejected: int = 0
    receipts: int = 0
    receipts_rejected: int = 0
    rebuilds: int = 0  # the MQTT client built again after its network thread ended or hung
    callback_errors: int = 0
    inbox_dropped: int = 0
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
        self.on_ack = on_ack
        self.counters = DeliveryCounters()
        self.client_id = cfg.client_id or f"edge-agent-{site}-{box}"
        self.connected = threading.Event()
        self.client = self._new_client()
        self._wake = threading.Event()
        self._acked: queue.SimpleQueue[tuple[mqtt.Client, int, bool, str]] = queue.SimpleQueue()
        self._inbox: queue.Queue[Receipt | Rejected] = queue.Queue(INBOX_MAX)  # for the sender's thread
        self._inflight: dict[int, int] = {}  # mid -> outbox seq (sender thread only)
        self._held: dict[int, float] = {}  # seq -> monotonic time; rows the broker refused wait before a retry
        self._next_rebuild = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.heartbeat = time.monotonic()  # the sender loop's last turn, for the watchdog

    # -- life cycle ------------------------------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        client = make_client(self.cfg, self.client_id, persistent=True)
        client.will_set(f"{self.root}/status", self._status("offline"), qos=1, retain=True)
        client.max_inflight_messages_set(self.cfg.max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        return client

    def _connect(self) -> None:
        if self.cfg.protocol == "5":
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            self.client.connect_async(self.cfg.host, self.cfg.broker_port, keepalive=self.cfg.keepalive_s,
                                      clean_start=False, properties=props)
        else:
            self.client.connect_async(self.cfg.host, self.cfg.broker_port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    def start(self) -> None:
        if not self.cfg.require_receipt and (waived := self.store.waive_receipts()):
            log.info("receipts are no longer required: %d alert state(s) the broker took count as delivered", waived)
        self._connect()
        self._thread = threading.Thread(target=self._run, name="mqtt-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Publish ``offline`` (retained) and disconnect; what is undelivered stays in the outbox."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
        self._take_inbox()
        if self.connected.is_set():
            info = self.client.publish(f"{self.root}/status", self._status("offline"), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self.connected.clear()  # a disconnect we asked for is no news
        self.client.disconnect()
        thread = network_thread(self.client)
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.1, deadline - time.monotonic()))  # not loop_stop(): a hung thread must not hang us

    def wake(self) -> None:
        """Something new is in the outbox."""
        self._wake.set()

    def publish_health(self, health: dict[str, Any]) -> None:
        if self.connected.is_set():
            self.client.publish(f"{self.root}/health", json.dumps(health, separators=(",", ":")), qos=0)

    def _status(self, state: str) -> bytes:
        return json.dumps({"state": state, "ts": iso_ms(time.time()), "version": __version__}).encode()

    # -- paho callbacks (network thread) ---------------------------------------------------------------

    @_guarded
    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.counters.last_error = f"broker refused the connection: {reason}"
            log.error("mqtt %s:%s: %s", self.cfg.host, self.cfg.broker_port, self.counters.last_error)
            return
        self.counters.connects += 1
        client.publish(f"{self.root}/status", self._status("online"), qos=1, retain=True)
        topics = [(f"{self.root}/acks", 1)] + ([(f"{self.root}/receipts", 1)] if self.cfg.require_receipt else [])
        client.subscribe(topics)
        log.info("mqtt connected to %s:%s as %s", self.cfg.host, self.cfg.broker_port, self.root)
        self.connected.set()
        self._wake.set()

    @_guarded
    def _on_connect_fail(self, _c: mqtt.Client, _ud: Any) -> None:
        self.counters.last_error = f"cannot reach the broker at {self.cfg.host}:{self.cfg.broker_port}"
        log.warning("mqtt: %s; alerts wait in the outbox, retrying", self.counters.last_error)

    @_guarded
    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if self.connected.is_set():
            log.warning("mqtt disconnected: %s", reason)
            self.counters.last_error = f"disconnected: {reason}"
        self.connected.clear()
        self._wake.set()

    @_guarded
    def _on_publish(self, client: mqtt.Client, _ud: Any, mid: int, reason: Any, _props: Any) -> None:
        self._acked.put((client, mid, bool(reason.is_failure), str(reason)))
        self._wake.set()

    @_guarded
    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        source = "mqtt-receipts" if topic == f"{self.root}/receipts" else "mqtt-acks"
        try:
            if source == "mqtt-receipts":
                self._to_sender(parse_receipt(msg.payload))
                return
            ack = parse_ack(msg.payload)
            if self.on_ack is not None:
                self.on_ack(ack)
            self.counters.acks += 1
        except InboundError as exc:
            self._reject(source, f"{topic}: {exc}", msg.payload)
            log.warning("message on %s rejected: %s", topic, exc)
        except Exception as exc:  # the ack's consumer failed: the message is kept, the thread goes on
            self._reject(source, f"{topic}: not handled: {type(exc).__name__}: {exc}", msg.payload)
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
        self._wake.set()

    # -- the sender ------------------------------------------------------------------------------------

    def _run(self) -> None:
        generation = -1
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            self._wake.wait(0.5)
            self._wake.clear()
            self._check_network()
            self._settle()
            self._take_inbox()
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
                info = self.client.publish(f"{self.root}/{item.topic}", item.payload, qos=item.qos)
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
        except ValueError as exc:  # e.g. the TLS files went: say so and try again later
            self.counters.last_error = f"{why}; cannot build a new client: {exc}"
            log.error("mqtt: %s", self.counters.last_error)
            return
        log.error("mqtt: %s; building the client again and reconnecting (unacknowledged alerts go again)", why)
        self.counters.rebuilds += 1
        self.counters.last_error = why
        old, self.client = self.client, fresh
        self.connected.clear()
        self._inflight.clear()
        _give_up(old)
        self._connect()

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

    def _take_inbox(self) -> None:
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
                rejected.append(Rejected("mqtt-receipts", time.time(), f"{self.root}/receipts: no published alert "
                                         f"{item.alert_id} in state {item.state}",
                                         receipt_payload(item.alert_id, item.state, item.by, item.ts)))
                log.warning("receipt for an alert state this box never published: %s %s", item.alert_id, item.state)
            else:
                self.counters.receipts += 1
        if rejected:
            self.store.add_rejects(rejected)


def _give_up(client: mqtt.Client) -> None:
    """Leave a client whose network thread ended or hangs (its callbacks are ignored from now on): its thread,
    if it ever turns again, stops, and a dead one says DISCONNECT on its socket (paho writes it at once when no
    thread runs), so the broker does not publish the will for it."""
    client._thread_terminate = True
    with contextlib.suppress(Exception):
        client.disconnect()
