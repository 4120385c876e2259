"""A PostgreSQL server from a fresh data directory on a free loopback port, for the tests and benchmarks of
command posts that share one store: Debian's postgresql 15 binaries, run as the ``postgres`` user when started
by root (PostgreSQL refuses to run as root). Stoppable, killable (SIGKILL) and startable again on its data."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from benchmarks.testbed import wait_for
from edge_agent.demo.brokers import free_port

BINDIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
BIN = Path(BINDIRS[0]) if BINDIRS else None


def have_postgres() -> bool:
    return BIN is not None and (BIN / "postgres").exists()


class Postgres:
    """One server, one database ``edge`` owned by the user ``edge`` (trust on loopback: a test bench)."""

    def __init__(self) -> None:
        if BIN is None:
            raise RuntimeError("PostgreSQL is not installed (./dev installs Debian's postgresql)")
        self.dir = Path(tempfile.mkdtemp(prefix="edge-pg-"))
        self.dir.chmod(0o755)
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: dict[str, str] = {}  # PostgreSQL refuses root: the process itself becomes postgres
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self._user = {"user": "postgres", "group": "postgres"}
        self._run(str(BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E",
                  "UTF8")

    def _run(self, *cmd: str) -> None:
        out = subprocess.run(list(cmd), capture_output=True, text=True, **self._user)  # type: ignore[call-overload]
        if out.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {out.stderr[-2000:]}")

    @property
    def url(self) -> str:
        return f"postgresql://edge@127.0.0.1:{self.port}/edge"

    def start(self, timeout: float = 30.0) -> Postgres:
        first = self.proc is None and not (self.dir / "started").exists()
        log = (self.dir / "postgres.log").open("ab")
        self.proc = subprocess.Popen([str(BIN / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h",
                                      "127.0.0.1", "-k", str(self.dir), "-c", "fsync=on", "-c", "max_connections=200"],
                                     stdout=log, stderr=subprocess.STDOUT, **self._user)  # type: ignore[call-overload]
        if not wait_for(self._ready, timeout):
            raise RuntimeError(f"postgres did not start:\n{self.log()[-3000:]}")
        if first:
            psql = str(BIN / "psql")
            self._run(psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c",
                      "CREATE USER edge CREATEDB")
            self._run(psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c",
                      "CREATE DATABASE edge OWNER edge")
            (self.dir / "started").touch()
        return self

    def _ready(self) -> bool:
        out = subprocess.run([str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                             capture_output=True)
        return out.returncode == 0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        path = self.dir / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""
