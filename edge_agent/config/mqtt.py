"""The command post's broker: where it is, how the box proves who it is (password, mutual TLS), and how alerts
are delivered (receipts, escalation, health)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from edge_agent.config import DEFAULT_PREFIX
from edge_agent.config.fields import Flag, Ident, Real, Strict, Whole


def split_host(entry: str, default_port: int, where: str = "host") -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` as (host, port); ValueError naming ``where`` otherwise."""
    text = entry.strip()
    host, port = text, default_port
    if text.startswith("["):
        inside, _, rest = text[1:].partition("]")
        host = inside
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"{where}: {entry!r} is not HOST, HOST:PORT or [IPv6]:PORT")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, digits = text.partition(":")
        if not digits.isdigit():
            raise ValueError(f"{where}: {entry!r} has no port number after ':'")
        port = int(digits)
    if not host or not 1 <= port <= 65535:
        raise ValueError(f"{where}: {entry!r} is not HOST, HOST:PORT or [IPv6]:PORT (port 1-65535)")
    return host, port


class TlsConfig(Strict):
    """TLS to the broker: the CA that signed the broker's certificate, and this box's own (mutual TLS)."""

    ca_file: Path = Field(description="PEM file of the CA that signed the broker's certificate.")
    cert_file: Path | None = Field(None, description="This box's client certificate (PEM), for mutual TLS.")
    key_file: Path | None = Field(None, description="Its private key (PEM).")
    insecure: Flag = Field(False, description="Skip the broker hostname check (test benches only).")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS needs both)")
        return self


class MqttConfig(Strict):
    """The command post's broker and how alerts are delivered to it."""

    host: str = Field(min_length=1, description="Broker host name or address (or give hosts).")
    hosts: list[str] = Field(default_factory=list, max_length=16, description="Brokers in order of preference, "
                             "each HOST or HOST:PORT (default port: port); on loss the box moves to the next. "
                             "host is a list of one.")
    port: Whole | None = Field(None, ge=1, le=65535, description="Default 1883, or 8883 with tls.")
    prefix: Ident = Field(DEFAULT_PREFIX, description="First topic level: {prefix}/{site}/{box}/...")
    protocol: Literal["3.1.1", "5"] = Field("3.1.1", description="MQTT protocol version.")
    client_id: Ident | None = Field(None, description="Default edge-agent-{site}-{box}.")
    username: str | None = Field(None, description="Broker user name (with mutual TLS: the certificate's CN).")
    password: str | None = Field(None, description="Prefer password_file: a config file is often shared.")
    password_file: Path | None = Field(None, description="A file whose first line is the password; it must exist "
                                       "and be readable when the config is loaded.")
    tls: TlsConfig | None = Field(None, description="TLS to the broker; none: plain TCP.")
    keepalive_s: Whole = Field(30, ge=5, le=3600, description="Seconds between MQTT pings while idle.")
    reconnect_min_s: Real = Field(1.0, gt=0, description="First reconnect delay; doubles after each failure.")
    reconnect_max_s: Real = Field(30.0, gt=0, description="Longest reconnect delay.")
    max_inflight: Whole = Field(100, ge=1, le=65535, description="QoS 1 messages awaiting the broker's ack.")
    health_interval_s: Real = Field(30.0, gt=0, description="How often health is published.")
    escalate_after_s: Real = Field(120.0, gt=0, description="Critical alerts unacknowledged this long escalate.")
    require_receipt: bool = Field(False, description="An alert state counts as delivered only when a command "
                                  "post's receipt for it arrives on .../receipts, not on the broker's ack.")
    receipt_timeout_s: Real = Field(30.0, gt=0, le=86400, description="No receipt this long after the broker's "
                                    "ack: the alert state is published again (then twice as long, up to 1 h).")

    @model_validator(mode="before")
    @classmethod
    def _host_or_hosts(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("hosts") not in (None, []):
            if data.get("host") is not None:
                raise ValueError("give host or hosts, not both (host is a list of one)")
            hosts = data["hosts"]
            if isinstance(hosts, list) and hosts and isinstance(hosts[0], str):
                data = {**data, "host": split_host(hosts[0], 1)[0]}
        return data

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        for i, entry in enumerate(hosts):
            split_host(entry, 1, f"hosts[{i}]")
        if len(set(hosts)) != len(hosts):
            raise ValueError("a broker is listed twice in hosts")
        return hosts

    @property
    def brokers(self) -> list[tuple[str, int]]:
        """The brokers to try, in order: ``hosts`` (each with its port or ``broker_port``), else ``host``."""
        if not self.hosts:
            return [(self.host, self.broker_port)]
        return [split_host(entry, self.broker_port) for entry in self.hosts]

    @model_validator(mode="after")
    def _password(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self

    @property
    def broker_port(self) -> int:
        """The port given, else MQTT's default for plain TCP or TLS."""
        return self.port or (8883 if self.tls else 1883)

    def secret(self) -> str | None:
        """The password: the first line of password_file, else password."""
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").splitlines()[0]
            except (OSError, IndexError) as exc:
                raise ValueError(f"mqtt.password_file {self.password_file}: cannot read a password: {exc}") from None
        return self.password
