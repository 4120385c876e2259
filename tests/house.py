"""The house as the source says it is, read with ``ast`` (nothing is imported): every module's imports, the
import circles among our modules, and the figures a review starts from (biggest module and class, files per
subpackage). ``tests/test_architecture.py`` checks the rules; ``.venv/bin/python -m tests.house`` prints the
figures."""

from __future__ import annotations

import ast
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_agent", "sensors", "detectors", "geofences")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(*folders: str, root: Path = ROOT) -> list[Path]:
    return sorted(p for f in folders for p in (root / f).rglob("*.py"))


def imports(path: Path, name: str | None = None) -> list[tuple[int, str]]:
    """Every module a file imports (anywhere in it: inside functions and ``TYPE_CHECKING`` blocks too), absolute,
    with its line. ``from package import name`` gives ``package.name`` where that is one of our modules."""
    name = name or module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out += [(node.lineno, f"{base}.{a.name}") if _is_ours(f"{base}.{a.name}") else (node.lineno, base)
                    for a in node.names]
    return out


def _is_ours(name: str) -> bool:
    """A module of ours (a file or a package folder), not a name inside one."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def graph(folders: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """Our modules and the modules of ours each imports."""
    mods = {module_name(p): p for p in sources(*folders)}
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for _, target in imports(path, m):
            if target in mods and target != m:
                edges[m].add(target)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan): each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        work = [(v, iter(sorted(edges[v])))]
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        group.append(w)
                        if w == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def figures() -> list[str]:
    """Biggest module (lines) and class (lines), files per subpackage, import circles."""
    files = sources(*PACKAGES)
    sizes = {module_name(p): len(p.read_text(encoding="utf-8").splitlines()) for p in files}
    classes: list[tuple[int, str]] = []
    for p in files:
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                classes.append(((node.end_lineno or node.lineno) - node.lineno + 1, f"{module_name(p)}.{node.name}"))
    per_package = Counter(module_name(p).rsplit(".", 1)[0] if p.name != "__init__.py" else module_name(p)
                          for p in files)
    biggest = max(sizes.items(), key=lambda kv: kv[1])
    big_class = max(classes)
    out = [f"modules: {len(files)}, {sum(sizes.values()):,} lines",
           f"biggest module: {biggest[0]} ({biggest[1]} lines)",
           f"biggest class: {big_class[1]} ({big_class[0]} lines)",
           "files per package: " + ", ".join(f"{k} {v}" for k, v in sorted(per_package.items()))]
    found = circles(graph())
    out.append(f"import circles: {len(found)}" + "".join(f"\n  {' <-> '.join(c)}" for c in found))
    return out


if __name__ == "__main__":
    print("\n".join(figures()))
    sys.exit(0)
