"""What every verb needs before any configuration model is built (kept light: the incident verbs of the
command line import only this, sqlite and the store): where state lives, and the configuration error."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ConfigError", "default_state_dir"]


def default_state_dir() -> Path:
    """Where models and data live when the config does not say: $EDGE_AGENT_HOME, else ~/.local/share."""
    env = os.environ.get("EDGE_AGENT_HOME")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "edge-agent"


class ConfigError(Exception):
    """A configuration file that cannot be used; ``problems`` lists every one, each with where and why."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = Path(path)
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}:\n{lines}")
