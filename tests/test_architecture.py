"""The checks that keep the house in order: imports go one way (read from the source with ``ast``, nothing is
imported), every CLI verb has help and a README row, the package root does no work, mypy is clean over all
the code and ``type: ignore`` does not creep back."""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("sensors", "detectors", "geofences")
# (importing package, packages of edge_agent it must never import)
FORBIDDEN = {
    "edge_agent.runtime": ("edge_agent.ops", "edge_agent.demo", "edge_agent.commandpost"),
    "edge_agent.incidents": ("edge_agent.runtime", "edge_agent.ops", "edge_agent.demo", "edge_agent.commandpost"),
    "edge_agent.config": ("edge_agent.runtime", "edge_agent.incidents", "edge_agent.ops", "edge_agent.demo",
                          "edge_agent.commandpost"),
}
TYPE_IGNORES_MAX = 8  # a ratchet: lower it when one goes, never raise it


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, absolute, with its line (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out += [(node.lineno, f"{base}.{a.name}" if base == "edge_agent" else base) for a in node.names]
    return out


def _sources(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_imports_go_one_way() -> None:
    problems = []
    for path in _sources("edge_agent", *LIBRARIES):
        me = _module_name(path)
        for line, name in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line}: imports {name}"
            if me.split(".")[0] in LIBRARIES and _within(name, "edge_agent"):
                problems.append(f"{where} (the libraries never import edge_agent)")
            if _within(me, "edge_agent.contract") and _within(name, "edge_agent") and not any(
                    _within(name, ok) for ok in ("edge_agent.contract",)):
                problems.append(f"{where} (the wire contract stands alone)")
            for package, banned in FORBIDDEN.items():
                if _within(me, package):
                    problems += [f"{where} ({package} never imports {b})" for b in banned if _within(name, b)]
    assert problems == [], "\n".join(problems)


def test_the_import_rule_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: a runtime module that imports ops is caught (so the rule above can fail)."""
    bad = ROOT / "edge_agent" / "runtime" / "_probe_forbidden.py"
    bad.write_text("from edge_agent.ops import doctor\nfrom . import fusion\n")
    try:
        names = [n for _, n in _imports(bad)]
        assert "edge_agent.ops" in names and "edge_agent.runtime" in names
        assert any(_within(n, b) for n in names for b in FORBIDDEN["edge_agent.runtime"])
    finally:
        bad.unlink()


def _verbs(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """Every verb and sub-verb of the argparse tree with its help text."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                out.append(((*prefix, name), helps.get(name, "")))
                out += _verbs(sub, (*prefix, name))
    return out


def test_every_verb_has_help_and_a_readme_row() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = [ln for ln in readme.splitlines() if ln.startswith("| `edge-agent ")]
    verbs = _verbs(build_parser())
    assert len(verbs) >= 15
    missing_help = [" ".join(v) for v, h in verbs if not h.strip()]
    assert missing_help == [], f"verbs without help: {missing_help}"
    leaves = [v for v, _ in verbs if not any(w[: len(v)] == v and len(w) > len(v) for w, _ in verbs)]
    missing_row = [" ".join(v) for v in leaves
                   if not any(re.match(rf"\| `edge-agent {re.escape(' '.join(v))}( |`)", r) for r in rows)]
    assert missing_row == [], f"verbs without a row in the README's command table: {missing_row}"


def test_the_package_root_does_no_work() -> None:
    tree = ast.parse((ROOT / "edge_agent" / "__init__.py").read_text(encoding="utf-8"))
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    assert all(isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) for n in body), ast.dump(tree)


@pytest.mark.slow
def test_mypy_is_clean_over_all_the_code_and_type_ignores_do_not_creep_back() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "edge_agent" in (ROOT / "pyproject.toml").read_text().split("[tool.mypy]")[1].split("\n\n")[0]
    ignores = [f"{p.relative_to(ROOT)}:{i}" for p in _sources("edge_agent")
               for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if "type: ignore" in line]
    assert len(ignores) <= TYPE_IGNORES_MAX, ignores
