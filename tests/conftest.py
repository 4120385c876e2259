"""Shared fixtures: the provisioned model (./dev setup puts it in .state/), offline ultralytics, and a
network guard that fails any connection that is not to loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("EDGE_AGENT_HOME", str(ROOT / ".state"))
os.environ.setdefault("OMP_NUM_THREADS", "2")

from detectors.offline import prepare_ultralytics  # noqa: E402
from edge_agent import models  # noqa: E402
from edge_agent.config import default_state_dir  # noqa: E402

prepare_ultralytics(default_state_dir() / "ultralytics")

MODELS_DIR = default_state_dir() / "models"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: run './dev setup' (fetches and exports the default model)", False)
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS_DIR


@pytest.fixture(scope="session")
def default_pt() -> Path:
    return _need(models.weights_path(MODELS_DIR))


@pytest.fixture(scope="session")
def default_ov640() -> Path:
    return _need(models.export_path(MODELS_DIR, "openvino", 640))


@pytest.fixture(scope="session")
def default_ov320() -> Path:
    return _need(models.export_path(MODELS_DIR, "openvino", 320))


@pytest.fixture(scope="session")
def intrusion_run(default_ov640: Path):  # type: ignore[no-untyped-def]
    """sim://intrusion through the real detector, tracker and rules, once per session."""
    from tests.scenes import run_intrusion

    return run_intrusion(default_ov640)


@pytest.fixture(scope="session")
def assets() -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets"


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        return host in ("localhost", "::1") or host.startswith("127.")
    return isinstance(address, (str, bytes))  # unix sockets


class NetworkGuard:
    """Refuses, and records, every connection or name lookup that leaves the machine."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def check(self, what: str, address: object) -> None:
        if not _is_loopback(address):
            self.attempts.append(f"{what} {address!r}")
            raise ConnectionRefusedError(f"network guard: {what} to {address!r} is not allowed in tests")


@pytest.fixture
def network_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetworkGuard]:
    guard = NetworkGuard()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: object) -> None:
        guard.check("connect", address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        guard.check("connect", address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        guard.check("resolve", (host, 0) if host is not None else ("localhost", 0))
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield guard


def run_cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real console script in a subprocess."""
    exe = Path(sys.executable).with_name("edge-agent")
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=ROOT)
