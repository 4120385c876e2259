"""The box's outputs besides MQTT: Cursor on Target to TAK (``outputs.cot``) and a SAPIENT edge node
(``outputs.sapient``). Each is fed from the outbox and keeps its own delivery state in the incident database."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge_agent.config.fields import Flag, Real, Strict, Whole

UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")
COT_PORTS = {"udp": 6969, "tcp": 8087, "tls": 8089}


class RetryConfig(Strict):
    """How an output that is down is tried again."""

    retry_min_s: Real = Field(1.0, gt=0, le=3600, description="First wait after a failed connection; doubles.")
    retry_max_s: Real = Field(30.0, gt=0, le=3600, description="Longest wait between connection attempts.")

    @model_validator(mode="after")
    def _order(self) -> RetryConfig:
        if self.retry_max_s < self.retry_min_s:
            raise ValueError(f"retry_max_s ({self.retry_max_s:g}) is below retry_min_s ({self.retry_min_s:g})")
        return self


class CotTlsConfig(Strict):
    """TLS to a TAK server: its CA and this box's client certificate (TAK servers require one)."""

    ca_file: Path = Field(description="PEM file of the CA that signed the TAK server's certificate.")
    cert_file: Path = Field(description="This box's client certificate (PEM).")
    key_file: Path = Field(description="Its private key (PEM, unencrypted).")
    insecure: Flag = Field(False, description="Skip the server hostname check (test benches only).")


class CotConfig(RetryConfig):
    """Cursor on Target events for TAK: UDP multicast to every TAK device on the network, or TCP/TLS to a TAK
    server."""

    transport: Literal["udp", "tcp", "tls"] = Field("udp", description="udp (multicast or unicast), tcp or tls.")
    host: str = Field("239.2.3.1", min_length=1, description="Multicast group, or the TAK server's address.")
    port: Whole | None = Field(None, ge=1, le=65535, description="Default 6969 (udp), 8087 (tcp), 8089 (tls).")
    ttl: Whole = Field(1, ge=1, le=255, description="Multicast TTL: how many routers a datagram may cross.")
    interface: str | None = Field(None, description="Local address to send multicast from (default: the route's).")
    tls: CotTlsConfig | None = Field(None, description="Certificates for transport tls.")
    protocol: Literal["xml", "tak"] = Field("xml", description="xml: CoT 2.0 XML; tak: TAK Protocol v1 "
                                            "(protobuf; mesh framing on udp, stream framing on tcp/tls).")
    callsign: str | None = Field(None, min_length=1, max_length=64, description="The box on TAK maps "
                                 "(default {site}-{box}).")
    stale_s: Real = Field(600.0, ge=10, le=86400, description="How long a TAK device shows an alert after "
                          "its last update.")
    confirm: Literal["ping", "none"] = Field("ping", description="tcp/tls: an event counts as delivered when the "
                                             "server answers a ping sent after it (t-x-c-t); none: when written.")
    confirm_timeout_s: Real = Field(10.0, gt=0, le=300, description="No answer to the ping this long: the "
                                    "connection is dropped and the events go again.")

    @property
    def server_port(self) -> int:
        return self.port or COT_PORTS[self.transport]

    @model_validator(mode="after")
    def _tls(self) -> CotConfig:
        if self.transport == "tls" and self.tls is None:
            raise ValueError("transport tls needs tls: {ca_file, cert_file, key_file}")
        if self.protocol == "tak" and self.transport != "udp":
            raise ValueError("protocol tak (TAK Protocol v1) is sent on udp (mesh); a TAK server's tcp/tls stream "
                             "takes xml")
        return self


class SapientConfig(RetryConfig):
    """A SAPIENT (BSI Flex 335 v2.0) edge node: registers with a fusion node over TCP, then sends status
    reports, detection reports and alerts; the fusion node's alert acks acknowledge alerts."""

    host: str = Field(min_length=1, description="The fusion node's address.")
    port: Whole = Field(ge=1, le=65535, description="The fusion node's TCP port.")
    node_id: str | None = Field(None, description="This node's UUID v4, lower case (default: derived from the "
                                "site and box ids, the same on every start).")
    name: str | None = Field(None, min_length=1, max_length=100, description="Name in the registration "
                             "(default edge-agent {site}/{box}).")
    status_interval_s: Real = Field(10.0, ge=1, le=3600, description="Status report interval (declared in the "
                                    "registration).")
    detection_interval_s: Real = Field(1.0, ge=0.1, le=60, description="At most one detection report per track "
                                       "this often.")
    registration_timeout_s: Real = Field(10.0, gt=0, le=60, description="No registration ack this long: "
                                         "the connection is dropped and tried again.")
    resend_window_s: Real = Field(10.0, ge=0, le=3600, description="Alerts written this long before a lost "
                                  "connection are sent again after the next registration (TCP has no receipts).")

    @field_validator("node_id")
    @classmethod
    def _uuid(cls, value: str | None) -> str | None:
        if value is not None and not UUID4_RE.match(value):
            raise ValueError(f"node_id must be a lower-case UUID v4 (SAPIENT), got {value!r}")
        return value


class OutputsConfig(Strict):
    """Outputs besides MQTT (``mqtt:`` stays where it is)."""

    cot: CotConfig | None = Field(None, description="Cursor on Target to TAK; none: off.")
    sapient: SapientConfig | None = Field(None, description="SAPIENT edge node; none: off.")
    snapshot_url: str | None = Field(None, description="Where guards open an alert's snapshot, {alert_id} "
                                     "replaced (e.g. https://cp.example/api/snapshots/{alert_id}); none: no link.")
    fixed_sensor_error_m: Real = Field(10.0, gt=0, le=100000, description="Circular error of an alarm placed at a "
                                       "fixed sensor (metres); a camera's comes from its calibration.")

    @field_validator("snapshot_url")
    @classmethod
    def _alert_id(cls, value: str | None) -> str | None:
        if value is not None and "{alert_id}" not in value:
            raise ValueError(f"snapshot_url must contain {{alert_id}}, got {value!r}")
        return value

    def names(self) -> tuple[str, ...]:
        return tuple(name for name in ("cot", "sapient") if getattr(self, name) is not None)
