"""The checks that keep the house in order: imports go one way and never in a circle (read from the source with
``ast``, nothing is imported; ``tests/house.py``), benchmarks import no test module, every CLI verb has help and
a README row, every path the README names exists, the package root does no work, mypy is clean over all the
code and ``type: ignore`` does not creep back."""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.cli import build_parser
from tests.house import ROOT, circles, graph, imports, module_name, sources, within

LIBRARIES = ("sensors", "detectors", "geofences")
# What each subpackage of edge_agent may import of edge_agent (itself always, and the package root's __version__). A
# frame's trip goes down these floors: perception -> core -> incidents (the outbox) -> delivery; none imports one above.
ALLOWED = {
    "edge_agent.contract": (),
    "edge_agent.config": ("edge_agent.paths",),
    "edge_agent.shared": ("edge_agent.config",),
    "edge_agent.incidents": ("edge_agent.config", "edge_agent.contract", "edge_agent.shared", "edge_agent.paths"),
    "edge_agent.core": ("edge_agent.config", "edge_agent.contract", "edge_agent.incidents", "edge_agent.paths"),
    "edge_agent.perception": ("edge_agent.config", "edge_agent.contract", "edge_agent.core.messages",
                              "edge_agent.incidents.sensorlog", "edge_agent.paths"),
    "edge_agent.delivery": ("edge_agent.config", "edge_agent.contract", "edge_agent.incidents", "edge_agent.shared"),
    "edge_agent.outputs": ("edge_agent.config", "edge_agent.contract", "edge_agent.incidents"),
    "edge_agent.runtime": ("edge_agent.config", "edge_agent.contract", "edge_agent.perception", "edge_agent.core",
                           "edge_agent.incidents", "edge_agent.delivery", "edge_agent.outputs", "edge_agent.shared",
                           "edge_agent.paths"),
    # what a field engineer runs: the box's floors, never the running agent, the demo or the command post
    "edge_agent.ops": ("edge_agent.config", "edge_agent.contract", "edge_agent.perception", "edge_agent.core",
                       "edge_agent.incidents", "edge_agent.outputs", "edge_agent.shared", "edge_agent.paths"),
    # the command post runs on its own machine: the wire contract and shared plumbing, nothing of the box
    "edge_agent.commandpost": ("edge_agent.config", "edge_agent.contract", "edge_agent.shared", "edge_agent.paths",
                               "edge_agent.logs"),
    # the demo composes a box and a command post
    "edge_agent.demo": ("edge_agent.config", "edge_agent.contract", "edge_agent.runtime", "edge_agent.commandpost",
                        "edge_agent.shared", "edge_agent.paths"),
}
TYPE_IGNORES_MAX = 8  # a ratchet: lower it when one goes, never raise it


def problems_of(path: Path, me: str) -> list[str]:
    """What a file imports that the house rules forbid, one line each."""
    out = []
    for line, name in imports(path, me):
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}: imports {name}"
        top = me.split(".")[0]
        if top in LIBRARIES and within(name, "edge_agent"):
            out.append(f"{where} (the libraries never import edge_agent)")
        if top == "geofences" and (within(name, "sensors") or within(name, "detectors")):
            out.append(f"{where} (geofences takes arrays and ids: it needs neither sensors nor detectors)")
        if top == "sensors" and within(name, "detectors"):
            out.append(f"{where} (sensors turn the world into values; detectors come after them)")
        if within(me, "edge_agent.contract") and any(within(name, lib) for lib in LIBRARIES):
            out.append(f"{where} (the contract imports no library: they convert to it at the edge)")
        for package, allowed in ALLOWED.items():
            if within(me, package) and within(name, "edge_agent") and name != "edge_agent" \
                    and not within(name, package) and not any(within(name, ok) for ok in allowed):
                out.append(f"{where} ({package} may import only {', '.join(allowed) or 'itself'})")
    return out


def test_imports_go_one_way() -> None:
    problems = [p for path in sources("edge_agent", *LIBRARIES) for p in problems_of(path, module_name(path))]
    assert problems == [], "\n".join(problems)


def test_there_is_no_import_circle_anywhere() -> None:
    assert circles(graph()) == []


def test_the_rules_see_a_forbidden_import_and_a_circle(tmp_path: Path) -> None:
    """The checkers themselves (so the rules above can fail): a core module importing perception or a library,
    the contract importing the sensors library, a command post module importing the box's incident log, and two
    modules importing each other."""
    probe = tmp_path / "probe.py"
    probe.write_text("from edge_agent.perception import tracks\nfrom . import fusion\nimport detectors.types\n")
    found = problems_of(probe, "edge_agent.core.probe")
    assert any("edge_agent.perception" in p for p in found) and not any("fusion" in p for p in found)
    probe.write_text("from sensors.events import parse_time\n")
    assert problems_of(probe, "edge_agent.contract.probe")
    probe.write_text("from edge_agent.incidents.store import IncidentStore\n")
    assert problems_of(probe, "edge_agent.commandpost.probe")
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def imports_of_tests(paths: list[Path]) -> list[str]:
    """Where these benchmark files import a test module, one line each."""
    found = [f"{p.name}:{line}: imports {name}" for p in paths for line, name in imports(p, f"benchmarks.{p.stem}")
             if within(name, "tests")]
    return list(dict.fromkeys(found))  # one line per import statement, not per name it takes


def test_no_benchmark_imports_a_test_module(tmp_path: Path) -> None:
    """A benchmark stands on the product and ``benchmarks/testbed.py``, never on ``tests/``: the tests change
    freely, and ``./dev bench`` must not break when they do. The probe shows the check can fail."""
    probe = tmp_path / "bench_probe.py"
    probe.write_text("import tests.brokers\nfrom tests import conftest\nfrom benchmarks.testbed import wait_for\n")
    assert len(imports_of_tests([probe])) == 2
    assert imports_of_tests(sources("benchmarks")) == []


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


README_SPAN = re.compile(r"`([\w-][\w.-]*(?:/[\w.-]+)+/?)`")  # a token with a '/' that does not start with '.'


def _in_checkout(path: str) -> bool:
    """From the root, or from edge_agent/ (the README's map names the packages without it)."""
    return any((base / path).exists() for base in (ROOT, ROOT / "edge_agent"))


def readme_paths(text: str) -> list[str]:
    """The paths the README names in backticks: a token with a '/' that ends in .py or whose first part is in the
    checkout. A topic (``border/s1/b1/alerts``), a URL or a folder made at run time (``.state/``) is none."""
    found = (t for t in README_SPAN.findall(text) if t.endswith(".py") or _in_checkout(t.split("/")[0]))
    return list(dict.fromkeys(found))


def test_every_path_the_readme_names_exists() -> None:
    """The README is where a newcomer starts: a file it names that has moved sends them nowhere."""
    probe = "`sensors/simdraw.py` `runtime/core.py` `gone/away.py` `border/s1/b1/alerts` `sim://x/y` `.state/web/`"
    assert readme_paths(probe) == ["sensors/simdraw.py", "runtime/core.py", "gone/away.py"]
    named = readme_paths((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(named) >= 20
    assert [p for p in named if not _in_checkout(p)] == []


def test_the_package_root_does_no_work() -> None:
    tree = ast.parse((ROOT / "edge_agent" / "__init__.py").read_text(encoding="utf-8"))
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    assert all(isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) for n in body), ast.dump(tree)


@pytest.mark.slow
def test_mypy_is_clean_over_all_the_code_and_type_ignores_do_not_creep_back() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "edge_agent" in (ROOT / "pyproject.toml").read_text().split("[tool.mypy]")[1].split("\n\n")[0]
    ignores = [f"{p.relative_to(ROOT)}:{i}" for p in sources("edge_agent")
               for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if "type: ignore" in line]
    assert len(ignores) <= TYPE_IGNORES_MAX, ignores
