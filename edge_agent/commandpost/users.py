"""The command post's users: a name, a role and an Argon2id password hash (memory-hard, via argon2-cffi).

Roles: ``viewer`` sees, ``guard`` also acknowledges alerts, ``commander`` also exports history and manages
users. The page asks the store on every request, so a removed user or a changed role takes effect at once."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from edge_agent.commandpost.store import CommandPostStore

ROLES = ("viewer", "guard", "commander")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 256
_hasher = PasswordHasher()  # argon2id, 64 MiB, 3 passes: the library's RFC 9106 low-memory profile
_DUMMY = _hasher.hash("not a password of anybody")  # an unknown name costs as much time as a wrong password


class UserError(ValueError):
    """A user request that cannot be done (bad name, unknown user, weak password)."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    changed: float  # when the password or role last changed: sessions from before are void

    @property
    def can_ack(self) -> bool:
        return self.role in ("guard", "commander")

    @property
    def can_export(self) -> bool:
        return self.role == "commander"


def _check(name: str, role: str | None = None, password: str | None = None) -> None:
    if not NAME_RE.match(name):
        raise UserError(f"user name {name!r}: 1 to 32 letters, digits, '.', '_' or '-', starting with a letter "
                        "or digit")
    if role is not None and role not in ROLES:
        raise UserError(f"role {role!r}: one of {', '.join(ROLES)}")
    if password is not None and not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError(f"password: {MIN_PASSWORD} to {MAX_PASSWORD} characters")


class Users:
    def __init__(self, store: CommandPostStore) -> None:
        self.store = store

    def add(self, name: str, role: str, password: str) -> None:
        _check(name, role, password)
        now = time.time()
        with self.store.tx():
            if self.store.execute("SELECT 1 FROM users WHERE name = ?", [name]).fetchone():
                raise UserError(f"user {name!r} exists; use 'passwd' to change the password")
            self.store.execute("INSERT INTO users (name, role, hash, created, changed) VALUES (?, ?, ?, ?, ?)",
                               [name, role, _hasher.hash(password), now, now])

    def remove(self, name: str) -> None:
        with self.store.tx():
            if self.store.execute("DELETE FROM users WHERE name = ?", [name]).rowcount != 1:
                raise UserError(f"no user {name!r}")

    def passwd(self, name: str, password: str, role: str | None = None) -> None:
        _check(name, role, password)
        with self.store.tx():
            sets = "hash = ?, changed = ?" + (", role = ?" if role else "")
            args = [_hasher.hash(password), time.time(), *([role] if role else []), name]
            if self.store.execute(f"UPDATE users SET {sets} WHERE name = ?", args).rowcount != 1:
                raise UserError(f"no user {name!r}")

    def get(self, name: str) -> User | None:
        rows = self.store.rows("SELECT name, role, changed FROM users WHERE name = ?", [name])
        return User(rows[0]["name"], rows[0]["role"], rows[0]["changed"]) if rows else None

    def list(self) -> list[User]:
        return [User(r["name"], r["role"], r["changed"])
                for r in self.store.rows("SELECT name, role, changed FROM users ORDER BY name")]

    def verify(self, name: str, password: str) -> User | None:
        """The user when the password is right; None otherwise (same cost for an unknown name)."""
        rows = self.store.rows("SELECT name, role, hash, changed FROM users WHERE name = ?", [name]) \
            if NAME_RE.match(name) and len(password) <= MAX_PASSWORD else []
        try:
            _hasher.verify(rows[0]["hash"] if rows else _DUMMY, password[:MAX_PASSWORD])
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if not rows:
            return None
        return User(rows[0]["name"], rows[0]["role"], rows[0]["changed"])
