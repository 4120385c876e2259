"""The running agent's errors: one base, a subclass per problem, each raised ``from`` its cause. They also derive
from the builtin their callers have always caught (RuntimeError)."""

from __future__ import annotations


class AgentError(Exception):
    """Base of the errors of ``edge_agent.runtime``."""


class NotStarted(AgentError, RuntimeError):
    """The agent was asked for what exists only once it has started."""


class CoreBusy(AgentError):
    """The core queue stayed full: a message from a thread that cannot wait (an ack) was not taken."""
