"""Shared fixtures: the provisioned model (./dev setup puts it in .state/), offline ultralytics, the
intrusion scene run once, and the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("EDGE_AGENT_HOME", str(ROOT / ".state"))
os.environ.setdefault("OMP_NUM_THREADS", "2")

from detectors.offline import prepare_ultralytics  # noqa: E402
from edge_agent.paths import default_state_dir  # noqa: E402
from edge_agent.perception import models  # noqa: E402

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


MODEL_FIXTURES = {"default_pt", "default_ov640", "default_ov320", "intrusion_run", "models_dir"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that load the model are marked ``model`` (``./dev test --quick`` leaves them out with the slow and
    integration ones: the quick loop is the pure and contract tests)."""
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The order's seed, also under -q (pytest-randomly says it only in the header): a failure that depends on
    the order can be replayed with it."""
    seed = config.getoption("randomly_seed", default=None)
    if seed is not None and config.getoption("randomly_reorganize", default=True):
        terminalreporter.write_line(f"tests ran in random order, seed {seed}: replay it with "
                                    f"./dev test --randomly-seed={seed}")


def run_cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real console script in a subprocess."""
    exe = Path(sys.executable).with_name("edge-agent")
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=ROOT)
