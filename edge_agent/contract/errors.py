"""The contract's one exception base: a value that is not what the wire contract allows."""

from __future__ import annotations


class ContractError(ValueError):
    """A payload, topic or id that breaks the wire contract; the message names the field and shows the value."""
