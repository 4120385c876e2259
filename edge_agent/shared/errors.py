"""The shared plumbing's errors: one base, a subclass per problem; each also derives from the builtin its callers
catch."""

from __future__ import annotations


class SharedError(Exception):
    """Base of the errors of ``edge_agent.shared``."""


class MqttClientError(SharedError, ValueError):
    """The MQTT client cannot be built as configured (e.g. the TLS files are missing or do not match)."""
