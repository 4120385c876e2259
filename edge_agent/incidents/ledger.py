"""The ledger: a hash chain over every write to an incident or an ack, and ``verify``, which walks it to find
rows changed or removed after the fact.

An incident's digest is its row and a running hash over its evidence in id order (``v2:``); the running hash
is kept per incident in memory, so a new piece of evidence costs the same at 5,000 rows as at one. Entries
written before ``v2:`` hashed every evidence row again each time; they still verify."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from edge_agent.incidents.record import canonical

GENESIS = "0" * 64
DIGEST_V2 = "v2:"  # incident digests with a running evidence hash; older ledger entries have none
DIGEST_CACHE_SIZE = 1024  # incidents whose running evidence hash is kept in memory
RANGE_SCAN_MAX = 4096  # more evidence rows than this since an incident's last one: find its rows by index
_EVIDENCE_COLS = "id, sensor, type, ts, lat, lon, data"


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of ``verify``: a table, the row or entry, and what is wrong with it."""

    table: str
    ref: str
    what: str

    def __str__(self) -> str:
        return f"{self.table} {self.ref}: {self.what}"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _evidence_line(row: tuple[Any, ...]) -> bytes:
    """One evidence row as the running hash takes it in: canonical JSON (no raw newline inside), then one."""
    return (canonical(list(row)) + "\n").encode("utf-8")


def _row_dict(cur: Any, row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip([d[0] for d in cur.description], row, strict=True))


@dataclass(slots=True)
class _EvidenceFold:
    """A running hash over one incident's evidence rows in id order, and the last row it took in."""

    hash: Any = field(default_factory=hashlib.sha256)
    count: int = 0
    last_id: int = 0
    last_line: bytes = b""  # sha256 of the last row's line: a rolled-back or removed row shows as a mismatch

    def add(self, row: tuple[Any, ...]) -> None:
        line = _evidence_line(row)
        self.hash.update(line)
        self.count += 1
        self.last_id, self.last_line = int(row[0]), hashlib.sha256(line).digest()


class Ledger:
    """Chains writes (inside the caller's transaction) and verifies the chain (under the caller's lock)."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self._folds: OrderedDict[str, _EvidenceFold] = OrderedDict()  # incident id -> its evidence hash so far

    # -- digests ---------------------------------------------------------------------------------------

    def incident_digest(self, incident_id: str, cached: bool = True) -> str | None:
        """The incident row and a running hash over its evidence in id order (``v2:``)."""
        cur = self.db.execute("SELECT * FROM incidents WHERE id = ?", [incident_id])
        row = cur.fetchone()
        if row is None:
            self._folds.pop(incident_id, None)
            return None
        fold = self._evidence_fold(incident_id) if cached else self._fold_all(incident_id)
        return DIGEST_V2 + _sha(canonical({"incident": _row_dict(cur, row),
                                           "evidence": [fold.count, fold.hash.hexdigest()]}))

    def _fold_all(self, incident_id: str) -> _EvidenceFold:
        fold = _EvidenceFold()
        for row in self.db.execute(f"SELECT {_EVIDENCE_COLS} FROM evidence WHERE incident_id = ? ORDER BY id",
                                   [incident_id]):
            fold.add(row)
        return fold

    def _evidence_fold(self, incident_id: str) -> _EvidenceFold:
        """The cached running hash brought up to date with the rows added since, or rebuilt from the database
        when it is not cached or its last row is gone or changed (a rolled-back write, retention)."""
        fold = self._folds.pop(incident_id, None)
        if fold is not None and fold.count:
            last = self.db.execute(f"SELECT {_EVIDENCE_COLS} FROM evidence WHERE id = ? AND incident_id = ?",
                                   [fold.last_id, incident_id]).fetchone()
            if last is None or hashlib.sha256(_evidence_line(last)).digest() != fold.last_line:
                fold = None
        if fold is None:
            fold = self._fold_all(incident_id)
        else:
            # rows are added with ids above every existing one, so the new ones lie above this incident's last
            newest = self.db.execute("SELECT MAX(id) FROM evidence").fetchone()[0] or 0
            if newest - fold.last_id <= RANGE_SCAN_MAX:  # "+incident_id": walk the newest rows, not the index
                query = f"SELECT {_EVIDENCE_COLS} FROM evidence WHERE id > ? AND +incident_id = ? ORDER BY id"
            else:
                query = f"SELECT {_EVIDENCE_COLS} FROM evidence WHERE id > ? AND incident_id = ? ORDER BY id"
            for row in self.db.execute(query, [fold.last_id, incident_id]):
                fold.add(row)
        self._folds[incident_id] = fold
        while len(self._folds) > DIGEST_CACHE_SIZE:
            self._folds.popitem(last=False)
        return fold

    def forget(self, incident_id: str) -> None:
        """Drop the running hash of an incident that is gone (retention)."""
        self._folds.pop(incident_id, None)

    def incident_digest_v1(self, incident_id: str) -> str | None:
        """The digest ledger entries written before ``v2:`` hold (every evidence row hashed again each time)."""
        cur = self.db.execute("SELECT * FROM incidents WHERE id = ?", [incident_id])
        row = cur.fetchone()
        if row is None:
            return None
        ev = self.db.execute("SELECT sensor, type, ts, lat, lon, data FROM evidence WHERE incident_id = ? ORDER BY id",
                             [incident_id]).fetchall()
        return _sha(canonical({"incident": _row_dict(cur, row), "evidence": [list(e) for e in ev]}))

    def ack_digest(self, ack_id: str) -> str | None:
        cur = self.db.execute("SELECT * FROM acks WHERE id = ?", [int(ack_id)])
        row = cur.fetchone()
        return None if row is None else _sha(canonical(_row_dict(cur, row)))

    # -- the chain -------------------------------------------------------------------------------------

    def chain_incident(self, incident_id: str) -> None:
        self.chain("incident", incident_id)

    def chain(self, kind: str, ref: str, digest: str | None = None) -> None:
        """Append an entry for a row just written (``incident``, ``ack``) or removed (``removed``)."""
        if digest is None:
            digest = (self.incident_digest(ref) if kind == "incident" else self.ack_digest(ref)) or ""
        prev = self.head()
        ts = time.time()
        self.db.execute("INSERT INTO ledger (ts, kind, ref, digest, prev, hash) VALUES (?, ?, ?, ?, ?, ?)",
                        [ts, kind, ref, digest, prev, _sha(f"{prev}|{kind}|{ref}|{digest}|{ts!r}")])

    def head(self) -> str:
        last = self.db.execute("SELECT hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        return str(last[0]) if last else GENESIS

    def _digest_now(self, kind: str, ref: str, written: object) -> str | None:
        """The row's digest now, computed the way its ledger entry was (old entries: before ``v2:``)."""
        if kind == "incident":
            if isinstance(written, str) and written.startswith(DIGEST_V2):
                return self.incident_digest(ref, cached=False)
            return self.incident_digest_v1(ref)
        try:
            return self.ack_digest(ref)
        except (ValueError, OverflowError):  # a ledger ref that is no ack id: it cannot match any row
            return None

    # -- verify ----------------------------------------------------------------------------------------

    def verify(self, snapshot_refusal: Callable[[object], str | None]) -> list[Problem]:
        """Walk the chain and compare every incident and ack with its last ledger entry; list snapshot paths
        that ``snapshot_refusal`` says the store would refuse to read or delete."""
        problems: list[Problem] = []
        latest = self._walk(problems)
        for (kind, ref), digest in latest.items():
            if kind == "removed":
                continue
            if kind not in ("incident", "ack"):
                problems.append(Problem("ledger", f"{kind} {ref}", "names no kind of row the agent writes"))
                continue
            removed = ("removed", f"{kind}:{ref}") in latest
            now = self._digest_now(kind, ref, digest)
            if now is None and not removed:
                problems.append(Problem(kind + "s", ref, "row deleted (not by retention)"))
            elif now is not None and now != digest:
                problems.append(Problem(kind + "s", ref, "row changed after it was written"))
        known = {ref for kind, ref in latest if kind == "incident"}
        for incident_id, snapshot in self.db.execute("SELECT id, snapshot FROM incidents"):
            if str(incident_id) not in known:
                problems.append(Problem("incidents", str(incident_id),
                                        "row added outside the agent (not in the ledger)"))
            if snapshot is not None and (why := snapshot_refusal(snapshot)) is not None:
                problems.append(Problem("incidents", str(incident_id), f"{why}: never read or deleted"))
        return problems

    def _walk(self, problems: list[Problem]) -> dict[tuple[str, str], object]:
        """Check each entry against the one before it; the last digest written for each (kind, ref)."""
        latest: dict[tuple[str, str], object] = {}
        prev = GENESIS
        expected_seq = None
        for seq, ts, kind, ref, digest, prev_hash, h in self.db.execute(
                "SELECT seq, ts, kind, ref, digest, prev, hash FROM ledger ORDER BY seq"):
            if expected_seq is not None and seq != expected_seq:
                gone = seq - expected_seq
                problems.append(Problem("ledger", f"#{expected_seq}",
                                        f"{gone} entr{'y' if gone == 1 else 'ies'} removed"))
            if prev_hash != prev:
                problems.append(Problem("ledger", f"#{seq}", "does not follow the entry before it (chain broken)"))
            if _sha(f"{prev_hash}|{kind}|{ref}|{digest}|{ts!r}") != h:
                problems.append(Problem("ledger", f"#{seq}", "entry changed after it was written"))
            prev, expected_seq = h, seq + 1
            latest[(str(kind), str(ref))] = digest
        return latest
