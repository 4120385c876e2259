"""The command post's YAML configuration: its name, the broker it watches every box through, where its page
listens (HTTPS when a certificate is given), its store, and its map (an optional local MBTiles base map)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from edge_agent.config.agent import parse_model, read_config_text
from edge_agent.config.fields import Ident, Real, Strict, Whole
from edge_agent.config.mqtt import MqttConfig
from edge_agent.paths import ConfigError, default_state_dir

__all__ = ["CommandPostConfig", "load_command_post_config", "parse_command_post_config"]


class PageTlsConfig(Strict):
    """The page's certificate: with it the page is served over HTTPS only (and session cookies are Secure)."""

    cert_file: Path = Field(description="PEM certificate (chain) of the command post's page.")
    key_file: Path = Field(description="Its private key (PEM).")


class ListenConfig(Strict):
    """Where guards' browsers reach the page."""

    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on (0.0.0.0: every interface).")
    port: Whole = Field(8080, ge=0, le=65535, description="TCP port (0: any free port, printed at start).")
    tls: PageTlsConfig | None = Field(None, description="HTTPS certificate; none: plain HTTP (a closed network).")


class MapConfig(Strict):
    """The map under the boxes' zones: a local MBTiles file of raster tiles, or a plain metric grid."""

    tiles: Path | None = Field(None, description="MBTiles file (raster PNG/JPEG tiles, as made by e.g. "
                               "gdal2tiles/tilemaker/MOBAC); none: a grid with a scale bar.")
    attribution: str = Field("", max_length=200, description="The base map's credit, shown in a corner.")
    center: tuple[float, float] | None = Field(None, description="[lat, lon] before any box has sent its map; "
                                               "default: the boxes' sites.")
    zoom: Whole = Field(15, ge=1, le=22, description="Zoom level to start at.")
    leaflet_dir: Path | None = Field(None, description="Leaflet's dist folder (npm package leaflet); default "
                                     "$EDGE_AGENT_HOME/web/node_modules/leaflet/dist, where ./dev setup puts it.")


class CommandPostConfig(Strict):
    """One command post: watches every box under ``mqtt.prefix`` and serves the guards' page."""

    name: Ident = Field("command-post", description="This command post's name: its MQTT client id is cp-{name} "
                        "(fixed, so its persistent session survives a restart) and receipts say it stored alerts.")
    mqtt: MqttConfig = Field(description="The broker the boxes publish to (host, port, prefix, credentials, tls). "
                             "Delivery options (require_receipt, escalate_after_s...) are the boxes' own.")
    listen: ListenConfig = Field(default_factory=ListenConfig, description="The page's address.")
    store: Path | None = Field(None, description="SQLite store; default $EDGE_AGENT_HOME/commandpost.db.")
    store_url: str | None = Field(None, description="A PostgreSQL store shared by several command posts "
                                  "(postgresql://USER@HOST:PORT/DB; the password from PGPASSWORD or ~/.pgpass), "
                                  "instead of store.")
    map: MapConfig = Field(default_factory=MapConfig, description="The map.")
    silent_after_s: Real = Field(90.0, gt=0, description="A box online by its status but without health for this "
                                 "long is shown as silent.")
    session_hours: Real = Field(12.0, gt=0, le=24 * 30, description="A sign-in lasts this long.")
    max_alerts_shown: Whole = Field(500, ge=10, le=100_000, description="Alerts the board keeps in the page; "
                                    "older ones are in History.")

    @field_validator("mqtt")
    @classmethod
    def _no_client_id(cls, mqtt: MqttConfig) -> MqttConfig:
        if mqtt.client_id is not None:
            raise ValueError("client_id: the command post's id is cp-{name}; set name instead")
        return mqtt

    @field_validator("store_url")
    @classmethod
    def _postgres(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"store_url must be a postgresql:// URL, got {url[:40]!r}")
        return url

    @model_validator(mode="after")
    def _one_store(self) -> CommandPostConfig:
        if self.store is not None and self.store_url is not None:
            raise ValueError("give store (SQLite) or store_url (PostgreSQL), not both")
        return self

    @property
    def store_path(self) -> Path:
        return self.store or default_state_dir() / "commandpost.db"

    @property
    def store_location(self) -> Path | str:
        """The shared PostgreSQL store's URL, else the SQLite file."""
        return self.store_url or self.store_path

    @property
    def store_shown(self) -> str:
        """Where the store is, for a log line: a URL without its password."""
        if self.store_url is None:
            return str(self.store_path)
        head, at, tail = self.store_url.rpartition("@")
        return f"{head.split('://')[0]}://…@{tail}" if at else self.store_url

    @property
    def client_id(self) -> str:
        return f"cp-{self.name}"

    def resolve(self, base: Path) -> CommandPostConfig:
        """Relative paths taken relative to the config file's folder ``base``."""

        def fix(p: Path | None) -> Path | None:
            return p if p is None or p.is_absolute() else (base / p).resolve()

        upd: dict[str, Any] = {"store": fix(self.store)}
        upd["map"] = self.map.model_copy(update={"tiles": fix(self.map.tiles),
                                                 "leaflet_dir": fix(self.map.leaflet_dir)})
        if self.listen.tls is not None:
            upd["listen"] = self.listen.model_copy(update={"tls": self.listen.tls.model_copy(update={
                "cert_file": fix(self.listen.tls.cert_file), "key_file": fix(self.listen.tls.key_file)})})
        mq = self.mqtt
        mupd: dict[str, Any] = {"password_file": fix(mq.password_file)}
        if mq.tls is not None:
            mupd["tls"] = mq.tls.model_copy(update={k: fix(getattr(mq.tls, k)) for k in ("ca_file", "cert_file",
                                                                                      "key_file")})
        upd["mqtt"] = mq.model_copy(update=mupd)
        return self.model_copy(update=upd)


def parse_command_post_config(text: str, source: str = "<config>", base_dir: Path | None = None
                              ) -> CommandPostConfig:
    config, _lines, problems = parse_model(text, source, CommandPostConfig)
    if problems:
        raise ConfigError(source, problems)
    return config.resolve(base_dir) if base_dir is not None else config


def load_command_post_config(path: Path | str) -> CommandPostConfig:
    p = Path(path)
    return parse_command_post_config(read_config_text(p), str(p), base_dir=p.resolve().parent)
