"""What can go wrong with the incident log: one base class, a subclass for each kind of failure."""

from __future__ import annotations


class IncidentLogError(Exception):
    """Any failure of the incident log; the message names the file or the value and what to do."""


class StoreError(IncidentLogError):
    """The database cannot be opened or written; the message says which file and what to do."""


class SchemaTooNew(StoreError):
    """The file was written by a newer agent (a schema version or migration this one does not know)."""


class SnapshotPathError(IncidentLogError, ValueError):
    """A stored snapshot path that is not one the store writes (tampered, or pointing out of its folder)."""


class SnapshotRefused(IncidentLogError, ValueError):
    """A snapshot the store will not write: an alert id that is no ULID, or more bytes than the limit."""


class ReviewError(IncidentLogError, ValueError):
    """A review request that cannot be answered as given: a filter, time or format the log does not know."""


class NoDatabase(IncidentLogError, FileNotFoundError):
    """There is no incident database where the review looked for one."""
