"""The core's errors: one base, a subclass per problem; each also derives from the builtin its callers catch."""

from __future__ import annotations


class CoreError(Exception):
    """Base of the errors of ``edge_agent.core``."""


class UnknownSensor(CoreError, KeyError):
    """A fixed sensor id the configuration does not name."""
