"""Topic names, built and read in this one place: a box's root ``{prefix}/{site}/{box}`` and its leaves
(``status``, ``alerts``, ``health``, ``acks``, ``receipts``, ``site``, ``snapshots/{alert_id}``), the outbox's
forms relative to the root, and the command post's subscription filters (``+`` for any site or box)."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.contract.errors import ContractError
from edge_agent.contract.ids import IDENT_RE

__all__ = ["ANY", "OUTBOX_ALERTS", "BadTopic", "BoxTopics", "ReceivedTopic", "outbox_snapshot", "parse_topic",
           "subscription", "topic_root"]

ANY = "+"  # the MQTT single-level wildcard: any site, any box
OUTBOX_ALERTS = "alerts"  # an outbox row's topic, relative to the box's root


class BadTopic(ContractError):
    """A level that cannot be part of a topic."""


def topic_root(prefix: str, site: str, box: str) -> str:
    """``{prefix}/{site}/{box}``; each level must be an id ('+', '#' or '/' would change what a topic means)."""
    for what, value in (("prefix", prefix), ("site", site), ("box", box)):
        if not IDENT_RE.match(value):
            raise BadTopic(f"{what} {value!r} cannot be a topic level: use letters, digits, '_' and '-'")
    return f"{prefix}/{site}/{box}"


def outbox_snapshot(alert_id: str) -> str:
    """An outbox row's topic for an alert's snapshot, relative to the box's root."""
    return f"snapshots/{alert_id}"


def subscription(prefix: str, site: str = ANY, box: str = ANY) -> BoxTopics:
    """The topics of one box or, with ``+`` for site or box, a filter over many (the command post's view)."""
    return BoxTopics(f"{prefix}/{site}/{box}")


@dataclass(frozen=True, slots=True)
class BoxTopics:
    """The topics under one root: a box's ``topic_root`` or a command post's ``subscription`` filter."""

    root: str

    @classmethod
    def of(cls, prefix: str, site: str, box: str) -> BoxTopics:
        return cls(topic_root(prefix, site, box))

    def under(self, relative: str) -> str:
        """A topic from its form relative to the root (an outbox row's ``alerts`` or ``snapshots/{id}``)."""
        return f"{self.root}/{relative}"

    @property
    def status(self) -> str:
        return self.under("status")

    @property
    def alerts(self) -> str:
        return self.under(OUTBOX_ALERTS)

    @property
    def health(self) -> str:
        return self.under("health")

    @property
    def acks(self) -> str:
        return self.under("acks")

    @property
    def receipts(self) -> str:
        return self.under("receipts")

    @property
    def site(self) -> str:
        return self.under("site")

    def snapshot(self, alert_id: str) -> str:
        return self.under(outbox_snapshot(alert_id))


@dataclass(frozen=True, slots=True)
class ReceivedTopic:
    """A topic a message arrived on, read back into its levels."""

    prefix: str
    site: str
    box: str
    leaf: str

    @property
    def box_topics(self) -> BoxTopics:
        return BoxTopics(f"{self.prefix}/{self.site}/{self.box}")

    @property
    def names_a_box(self) -> bool:
        """Site and box are ids (not wildcards or empty levels)."""
        return IDENT_RE.match(self.site) is not None and IDENT_RE.match(self.box) is not None


def parse_topic(topic: str) -> ReceivedTopic | None:
    """``{prefix}/{site}/{box}/{leaf}`` read back; None for a topic of any other depth (a snapshot's, say)."""
    parts = topic.split("/")
    if len(parts) != 4:
        return None
    prefix, site, box, leaf = parts
    return ReceivedTopic(prefix, site, box, leaf)

