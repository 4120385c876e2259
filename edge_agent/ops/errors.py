"""Operator tools' errors: one base; the CLI prints the message and exits 2."""


class OpsError(Exception):
    """A field engineer's request that cannot be done as asked; the message says what to do."""
