"""The package's floors: each folder of tagger/ imports only from the floors below it (lazy
imports inside functions and annotation-only imports count too), and nothing imports in a
circle. README's Layout section draws the same picture."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# bottom first; packages on one floor are siblings and never import each other
FLOORS = [
    ["tagger.errors"],
    ["tagger.audio", "tagger.files"],
    ["tagger.model"],
    ["tagger.engine", "tagger.store"],
    ["tagger.library"],
    ["tagger.scan"],
    ["training"],
    ["tagger.cli"],
    ["tagger.__main__"],
]
ROOMS = [room for floor in FLOORS for room in floor]


def room(module: str) -> str | None:
    return next((r for r in ROOMS if module == r or module.startswith(r + ".")), None)


def floor(r: str) -> int:
    return next(i for i, f in enumerate(FLOORS) if r in f)


def modules() -> dict[str, Path]:
    out = {}
    for base in ("tagger", "training"):
        for path in (ROOT / base).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path, module: str) -> set[str]:
    """Every tagger/training module ``path`` imports, wherever the import statement is."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # `from tagger.library import examples`
    known = modules()
    return {m for m in out if m in known and (m.startswith("tagger") or m.startswith("training"))}


def test_every_module_has_a_room():
    homeless = [m for m in modules() if room(m) is None and m not in ("tagger", "training")]
    assert not homeless, f"modules outside the floors of this test: {homeless}"


def test_imports_go_down_only():
    upward = []
    for module, path in modules().items():
        here = room(module)
        if here is None:
            continue
        for target in imports(path, module):
            there = room(target)
            if there is None or there == here:
                continue
            if floor(there) >= floor(here):
                upward.append(f"{module} → {target}")
    assert not upward, "imports that do not go down a floor:\n" + "\n".join(sorted(upward))


def test_no_import_circles():
    graph = {m: imports(p, m) - {m} for m, p in modules().items()}
    # a package's __init__ is imported by its submodules' imports: leave those edges out
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    circles = []

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                circles.append(" → ".join(trail[trail.index(t):] + [t]))
            elif t not in state:
                visit(t, trail + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not circles, "import circles:\n" + "\n".join(circles)


def _imports_sqlalchemy(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(n == "sqlalchemy" or n.startswith("sqlalchemy.") for n in names):
            return True
    return False


def test_the_store_is_the_only_place_with_sql():
    sql = [m for m, p in modules().items() if _imports_sqlalchemy(p) and not m.startswith("tagger.store")]
    assert not sql, f"SQLAlchemy imported outside tagger/store: {sql}"
