"""Fixed sensors (metal detectors, radio receivers) and their feeds: each sensor is heard on its own feed or
on another's (via), and no two feeds (or a feed and a camera stream) share a port or a serial device. Feed
timeouts default to the sensors library's (``SensorFeed``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, model_validator

from edge_agent.config.fields import ID_RULE, Ident, LatLon, Real, Strict, library_default
from edge_agent.config.reader import KeyPath
from sensors.feeds import SensorFeed


class FixedSensorConfig(Strict):
    """A sensor at a known place: a metal detector or a radio receiver, and where its lines come from."""

    id: Ident = Field(description=f"Sensor id ({ID_RULE}); the 'sensor' field of its lines.")
    kind: Literal["metal", "radio"] = Field(description="metal: a metal detector; radio: a radio receiver.")
    name: str | None = Field(None, description="A name guards recognise, e.g. 'Gate metal detector'.")
    latlon: LatLon = Field(description="[lat, lon] (WGS84) where the sensor stands.")
    url: str | None = Field(None, description="Its own feed: udp://HOST:PORT, tcp://HOST:PORT, "
                            "tcp-listen://HOST:PORT or serial:///dev/ttyX?baud=N.")
    via: Ident | None = Field(None, description="Events of this sensor arrive on the feed of sensor VIA (a sensor "
                              "of the same kind with a url); a feed accepts only its own id and those that name it "
                              "here. Give url or via.")
    hb_timeout_s: Real = Field(library_default(SensorFeed, "hb_timeout_s"), gt=0,
                               description="Metal detectors: silent this long means faulty.")
    max_skew_s: Real = Field(library_default(SensorFeed, "max_skew_s"), gt=0,
                             description="A sensor clock further off than this is flagged.")

    @model_validator(mode="after")
    def _url(self) -> FixedSensorConfig:
        if self.url is not None and self.via is not None:
            raise ValueError(f"give url or via, not both (url {self.url!r}, via {self.via!r})")
        if self.url is not None:
            from sensors.errors import SensorError
            from sensors.lines import parse_url

            try:
                parse_url(self.url)
            except SensorError as exc:
                raise ValueError(f"url: {exc}") from None
        return self


def unheard_sensors(sensors: Sequence[FixedSensorConfig]) -> list[tuple[KeyPath, str]]:
    """Each fixed sensor is heard: on its own feed (url), or on a feed of its kind that it names (via)."""
    problems: list[tuple[KeyPath, str]] = []
    by_id = {s.id: s for s in sensors}
    for i, s in enumerate(sensors):
        if s.url is None and s.via is None:
            problems.append((("fixed_sensors", i), f"sensor {s.id!r} would never be heard: give url (its own "
                             "feed) or via (the sensor whose feed carries its events)"))
        elif s.via is not None:
            feed = by_id.get(s.via)
            if feed is None:
                problems.append((("fixed_sensors", i, "via"), f"unknown fixed sensor {s.via!r}; expected the id "
                                 f"of a {s.kind} sensor with a url"))
            elif feed.kind != s.kind:
                problems.append((("fixed_sensors", i, "via"), f"{s.via!r} is a {feed.kind} sensor; expected a "
                                 f"{s.kind} sensor (a feed reads one kind of line)"))
            elif feed.url is None:
                problems.append((("fixed_sensors", i, "via"), f"{s.via!r} has no url of its own; expected a "
                                 "sensor with a feed (via does not chain)"))
    return problems


WILDCARD_HOSTS = {"", "0.0.0.0", "::", "@"}
SENSOR_TRANSPORTS = {"udp": "udp", "tcp-listen": "tcp", "serial": "serial"}
CAMERA_TRANSPORTS = {"udp": "udp", "rtp": "udp", "tcp": "tcp"}  # OpenCV/FFmpeg sources that bind a port


def _listening(url: str, scheme_of: dict[str, str]) -> tuple[str, str, int] | None:
    """(transport, host, port) a URL makes this box listen on or hold, or None (a client, or port 0)."""
    parts = urlsplit(url)
    transport = scheme_of.get(parts.scheme)
    if transport == "serial":
        return "serial", parts.path or parts.netloc, 0
    if transport == "tcp" and parts.scheme == "tcp" and "listen" not in parse_qs(parts.query, keep_blank_values=True):
        return None  # an OpenCV tcp:// source without ?listen is a client
    try:
        port = parts.port
    except ValueError:
        return None
    if transport is None or not port:
        return None
    host = parts.hostname or ""
    return transport, "127.0.0.1" if host == "localhost" else host, port


def shared_ports(sensors: Sequence[FixedSensorConfig], cameras: Sequence[tuple[str, str]]) -> list[tuple[KeyPath, str]]:
    """Two feeds (or a feed and a camera stream) on one listening port or one serial device: the second
    would fail to bind, or steal the first one's lines. ``cameras`` are (id, source) pairs."""
    users: list[tuple[KeyPath, str, tuple[str, str, int]]] = []
    for i, s in enumerate(sensors):
        if s.url is not None and (where := _listening(s.url, SENSOR_TRANSPORTS)) is not None:
            users.append((("fixed_sensors", i, "url"), f"fixed sensor {s.id!r}", where))
    for i, (camera_id, source) in enumerate(cameras):
        if (where := _listening(source, CAMERA_TRANSPORTS)) is not None:
            users.append((("cameras", i, "source"), f"camera {camera_id!r}", where))
    problems: list[tuple[KeyPath, str]] = []
    by_port: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for loc, who, (transport, host, port) in users:
        earlier = by_port.setdefault((transport, port), [])
        clash = next((o for o in earlier if transport == "serial" or host == o[1] or WILDCARD_HOSTS & {host, o[1]}),
                     None)
        if clash is not None:
            what = (f"serial device {host}" if transport == "serial"
                    else f"{transport} port {port} ({host or 'any address'} and {clash[1] or 'any address'})")
            problems.append((loc, f"{who} and {clash[0]} both use {what}; give each its own, or send one "
                             "sensor's lines through the other's feed (via)"))
        earlier.append((who, host))
    return problems
