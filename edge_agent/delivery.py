"""Alert delivery over MQTT (paho-mqtt 2.x) from the durable outbox.

The outbox in the incident database is the only queue: the ``Publisher`` reads undelivered rows (most severe
alert first, then oldest), publishes them with QoS 1 while connected, and marks a row delivered only when
the broker's PUBACK for it arrives. After a reconnect or a restart everything still undelivered is published
again, so delivery is at least once and consumers de-duplicate by ``alert_id``. ``status`` is retained with
a last will of ``offline``; acks arrive on ``.../acks`` and are handed to ``on_ack``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import __version__
from edge_agent.config import MqttConfig
from edge_agent.model import iso_ms
from edge_agent.store import Ack, IncidentStore
from sensors.events import ParseError, parse_time

log = logging.getLogger(__name__)

ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
IDENT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
REFUSED_RETRY_S = 30.0
SESSION_EXPIRY_S = 7 * 86400  # acks sent while a box is away wait this long at the broker


class AckError(ValueError):
    """An ack message that cannot be used; the reason says which field."""


def topic_root(prefix: str, site: str, box: str) -> str:
    for what, value in (("prefix", prefix), ("site", site), ("box", box)):
        if not IDENT_RE.match(value):  # '+', '#' or '/' in an id would change what a topic means
            raise ValueError(f"{what} {value!r} cannot be a topic level: use letters, digits, '_' and '-'")
    return f"{prefix}/{site}/{box}"


def _ack_time(value: Any, now: float | None) -> float:
    """An ack's ts: RFC 3339 text with an offset (the contract's parser), epoch seconds or milliseconds, or
    now when the command post sent none."""
    if value is None:
        return now or time.time()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    return parse_time(value)


def parse_ack(payload: bytes, now: float | None = None) -> Ack:
    """The command post's ``{"alert_id", "by", "ts", "note"}``, checked field by field."""
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AckError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AckError("not a JSON object")
    alert_id = data.get("alert_id")
    if not isinstance(alert_id, str) or not ULID_RE.match(alert_id):
        raise AckError(f"alert_id {alert_id!r} is not a ULID")
    by = data.get("by")
    if not isinstance(by, str) or not by.strip() or len(by) > 64:
        raise AckError("by: who acknowledged, 1 to 64 characters")
    note = data.get("note") or ""
    if not isinstance(note, str) or len(note) > 1000:
        raise AckError("note: text of at most 1000 characters")
    try:
        ts = _ack_time(data.get("ts"), now)
    except ParseError as exc:
        raise AckError(str(exc)) from None
    return Ack(alert_id, by.strip(), ts, note)


def ack_payload(alert_id: str, by: str, note: str = "", ts: float | None = None) -> bytes:
    return json.dumps({"alert_id": alert_id, "by": by, "ts": iso_ms(ts or time.time()), "note": note}).encode()


def make_client(cfg: MqttConfig, client_id: str, persistent: bool = False) -> mqtt.Client:
    """A paho client with the configured protocol, credentials and TLS (no callbacks, not connected). A
    persistent session keeps the box's subscription (acks) queued at the broker while it is away."""
    protocol = mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311
    kwargs: dict[str, Any] = {"callback_api_version": CallbackAPIVersion.VERSION2, "client_id": client_id,
                              "protocol": protocol}
    if protocol == mqtt.MQTTv311:
        kwargs["clean_session"] = not persistent
    client = mqtt.Client(**kwargs)
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


@dataclass(slots=True)
class DeliveryCounters:
    published: int = 0
    delivered: int = 0
    refused: int = 0
    connects: int = 0
    acks: int = 0
    acks_rejected: int = 0
    last_error: str = ""


class Publisher:
    """Publishes the outbox to the broker; see the module docstring."""

    def __init__(self, cfg: MqttConfig, site: str, box: str, store: IncidentStore,
                 on_ack: Callable[[Ack], None] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.root = topic_root(cfg.prefix, site, box)
        self.on_ack = on_ack
        self.counters = DeliveryCounters()
        self.client = make_client(cfg, cfg.client_id or f"edge-agent-{site}-{box}", persistent=True)
        self.client.will_set(f"{self.root}/status", self._status("offline"), qos=1, retain=True)
        self.client.max_inflight_messages_set(cfg.max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail
        self.connected = threading.Event()
        self._wake = threading.Event()
        self._acked: queue.SimpleQueue[tuple[int, bool, str]] = queue.SimpleQueue()
        self._inflight: dict[int, int] = {}  # mid -> outbox seq (sender thread only)
        self._held: dict[int, float] = {}  # seq -> monotonic time; rows the broker refused wait before a retry
        self._generation = 0  # connections so far; a new one means the in-flight set is void
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.heartbeat = time.monotonic()  # the sender loop's last turn, for the watchdog

    # -- life cycle ------------------------------------------------------------------------------------

    def start(self) -> None:
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
        self._thread = threading.Thread(target=self._run, name="mqtt-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Publish ``offline`` (retained) and disconnect; what is undelivered stays in the outbox."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
        if self.connected.is_set():
            info = self.client.publish(f"{self.root}/status", self._status("offline"), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self.connected.clear()  # a disconnect we asked for is no news
        self.client.disconnect()
        self.client.loop_stop()

    def wake(self) -> None:
        """Something new is in the outbox."""
        self._wake.set()

    def publish_health(self, health: dict[str, Any]) -> None:
        if self.connected.is_set():
            self.client.publish(f"{self.root}/health", json.dumps(health, separators=(",", ":")), qos=0)

    def _status(self, state: str) -> bytes:
        return json.dumps({"state": state, "ts": iso_ms(time.time()), "version": __version__}).encode()

    # -- paho callbacks (network thread) ---------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.counters.last_error = f"broker refused the connection: {reason}"
            log.error("mqtt %s:%s: %s", self.cfg.host, self.cfg.broker_port, self.counters.last_error)
            return
        self.counters.connects += 1
        client.publish(f"{self.root}/status", self._status("online"), qos=1, retain=True)
        client.subscribe(f"{self.root}/acks", qos=1)
        log.info("mqtt connected to %s:%s as %s", self.cfg.host, self.cfg.broker_port, self.root)
        self.connected.set()
        self._wake.set()

    def _on_connect_fail(self, _c: mqtt.Client, _ud: Any) -> None:
        self.counters.last_error = f"cannot reach the broker at {self.cfg.host}:{self.cfg.broker_port}"
        log.warning("mqtt: %s; alerts wait in the outbox, retrying", self.counters.last_error)

    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if self.connected.is_set():
            log.warning("mqtt disconnected: %s", reason)
            self.counters.last_error = f"disconnected: {reason}"
        self.connected.clear()
        self._wake.set()

    def _on_publish(self, _c: mqtt.Client, _ud: Any, mid: int, reason: Any, _props: Any) -> None:
        self._acked.put((mid, bool(reason.is_failure), str(reason)))
        self._wake.set()

    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            ack = parse_ack(msg.payload)
        except AckError as exc:
            self.counters.acks_rejected += 1
            from edge_agent.store import Rejected

            self.store.add_rejects([Rejected("mqtt-acks", time.time(), f"{msg.topic}: {exc}", msg.payload)])
            log.warning("ack on %s rejected: %s", msg.topic, exc)
            return
        self.counters.acks += 1
        if self.on_ack is not None:
            self.on_ack(ack)

    # -- the sender ------------------------------------------------------------------------------------

    def _run(self) -> None:
        generation = -1
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            self._wake.wait(0.5)
            self._wake.clear()
            self._settle()
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

    def _settle(self) -> None:
        done = []
        while True:
            try:
                mid, failed, reason = self._acked.get_nowait()
            except queue.Empty:
                break
            seq = self._inflight.pop(mid, None)
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
            self.store.delivered(done, time.time())
            self.counters.delivered += len(done)
            if self._inflight or done:
                self._wake.set()
