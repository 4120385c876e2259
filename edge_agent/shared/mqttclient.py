"""The one place a paho client is built, and what the publisher needs to know of paho's network thread."""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config.mqtt import MqttConfig
from edge_agent.shared.errors import MqttClientError

paho_log = logging.getLogger("edge_agent.paho")  # exceptions paho caught in a callback of a client make_client built
RESUBSCRIBE_S = 5.0  # a subscription the broker refused (a cluster electing leaders) is asked for again then
SESSION_EXPIRY_S = 7 * 86400  # acks sent while a box is away wait this long at the broker


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
                raise MqttClientError(f"mqtt.tls.{key}: {path} does not exist or is not a file")
        try:
            client.tls_set(ca_certs=str(t.ca_file), certfile=str(t.cert_file) if t.cert_file else None,
                           keyfile=str(t.key_file) if t.key_file else None, cert_reqs=ssl.CERT_REQUIRED,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        except (ssl.SSLError, OSError) as exc:
            raise MqttClientError(f"mqtt.tls: cannot use {t.ca_file}, {t.cert_file}, {t.key_file}: {exc} (PEM files, "
                             "the key matching the certificate?)") from exc
        client.tls_insecure_set(t.insecure)
    client.reconnect_delay_set(int(max(1, cfg.reconnect_min_s)), int(max(1, cfg.reconnect_max_s)))
    return client


def connect_persistent(client: mqtt.Client, cfg: MqttConfig, broker: tuple[str, int] | None = None) -> None:
    """Connect in the background to ``broker`` (default: the first configured), keeping the session (MQTT 5: for
    ``SESSION_EXPIRY_S``). Called again from a callback, it points paho's next reconnect at another broker."""
    host, port = broker or cfg.brokers[0]
    if cfg.protocol == "5":
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        client.connect_async(host, port, keepalive=cfg.keepalive_s, clean_start=False, properties=props)
    else:
        client.connect_async(host, port, keepalive=cfg.keepalive_s)


class Brokers:
    """The brokers a client may use (``mqtt.hosts``, else ``mqtt.host``) and the one it uses now. ``advance``, on
    paho's network thread after a failed connect or a lost connection, points paho's next reconnect (after its
    backoff) at the next broker."""

    def __init__(self, cfg: MqttConfig) -> None:
        self.cfg = cfg
        self.list = cfg.brokers
        self.index = 0
        self.moves = 0

    @property
    def current(self) -> tuple[str, int]:
        return self.list[self.index]

    @property
    def where(self) -> str:
        host, port = self.current
        return f"{host}:{port}"

    def advance(self, client: mqtt.Client, persistent: bool = True) -> bool:
        """Move to the next broker (False: only one is configured)."""
        if len(self.list) < 2:
            return False
        self.index = (self.index + 1) % len(self.list)
        self.moves += 1
        if persistent:
            connect_persistent(client, self.cfg, self.current)
        else:
            client.connect_async(*self.current, keepalive=self.cfg.keepalive_s)
        return True


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


def give_up(client: mqtt.Client) -> None:
    """Leave a client whose network thread ended or hangs (its callbacks are ignored from now on): its thread,
    if it ever turns again, stops, and a dead one says DISCONNECT on its socket (paho writes it at once when no
    thread runs), so the broker does not publish the will for it."""
    client._thread_terminate = True
    with contextlib.suppress(Exception):
        client.disconnect()
