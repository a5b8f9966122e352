#!/usr/bin/env python3
"""A small mutation runner for the computations users rely on (an engineer's tool, not CI).

Each mutant is one realistic one-token bug planted in a critical module (a comparison made
strict or loose, + for −, min for max, an index off by one, a constant changed, a condition
negated, a keyword argument dropped); the module's tests then run against it in a scratch copy
of the tree. A mutant the tests fail on is *killed*; one they pass is a *survivor*: a bug no
test would catch. The score is killed / (killed + survived); mutants that time out count as
killed (the tests noticed something) and are listed apart.

    python tools/mutate.py                      # every module, up to 12 mutants each
    python tools/mutate.py --module query --max 40 --seed 3
    python tools/mutate.py --list               # the modules and their tests

Mutants are drawn at random (``--seed``) from all the places a module offers, so repeated
runs with other seeds cover more of it. Survivors are printed as diffs: read them, then write
the test that would have failed (some survivors are equivalent mutants that change nothing
observable; say so rather than test them).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# module → the tests that cover it (the fast ones that would notice a wrong result)
MODULES = {
    "aggregate": ("tagger/engine/aggregate.py", ["tests/test_engine.py"]),
    "batch": ("tagger/engine/batch.py", ["tests/test_engine.py"]),
    "plan": ("tagger/engine/plan.py", ["tests/test_plan.py"]),
    "store-query": ("tagger/store/query.py", ["tests/test_library.py", "tests/test_query.py"]),
    "query-parse": ("tagger/library/query.py", ["tests/test_library.py", "tests/test_query.py",
                                                "tests/test_metadata.py"]),  # --where's parsing
    "similar": ("tagger/library/similar.py", ["tests/test_similar.py"]),
    "standardise": ("tagger/library/standardise.py", ["tests/test_similar.py", "tests/test_learn.py"]),
    "learned": ("tagger/library/learned.py", ["tests/test_learn.py"]),
    "writer": ("tagger/library/writer.py", ["tests/test_write.py", "tests/test_write_safety.py"]),
    "metrics": ("training/metrics.py", ["tests/test_training_parts.py"]),
    "losses": ("training/losses.py", ["tests/test_training_parts.py"]),
    "splits": ("training/splits.py", ["tests/test_training_parts.py", "tests/test_train_small.py"]),
}

_COMPARE_SWAPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
                  ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_BINOP_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
                ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult}
_NAME_SWAPS = {"min": "max", "max": "min", "any": "all", "all": "any", "True": "False", "False": "True"}
_ATTR_SWAPS = {"min": "max", "max": "min", "argmax": "argmin", "argmin": "argmax", "desc": "asc", "asc": "desc",
               "mean": "sum", "sum": "mean", "popleft": "pop", "append": "appendleft"}


@dataclass
class Mutant:
    module: str
    line: int
    what: str
    source: str  # the whole mutated module


class _Planter(ast.NodeTransformer):
    """Walks the tree; at the ``target``-th mutable place it makes the change (and counts
    the places, so a first pass with target −1 only counts)."""

    def __init__(self, target: int) -> None:
        self.target, self.seen, self.done = target, 0, None

    def _here(self, node: ast.AST, what: str) -> bool:
        hit = self.seen == self.target
        self.seen += 1
        if hit:
            self.done = (getattr(node, "lineno", 0), what)
        return hit

    def visit_FunctionDef(self, node):  # docstrings and annotations are not code to mutate
        if node.name.startswith("__") and node.name not in ("__call__", "__init__", "__len__"):
            return node
        node.body = [self.visit(n) for n in node.body]
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Compare(self, node):
        self.generic_visit(node)
        for i, op in enumerate(node.ops):
            swap = _COMPARE_SWAPS.get(type(op))
            if swap and self._here(node, f"{type(op).__name__} → {swap.__name__}"):
                node.ops[i] = swap()
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        swap = _BINOP_SWAPS.get(type(node.op))
        if swap and self._here(node, f"{type(node.op).__name__} → {swap.__name__}"):
            node.op = swap()
        return node

    def visit_AugAssign(self, node):
        self.generic_visit(node)
        swap = _BINOP_SWAPS.get(type(node.op))
        if swap and self._here(node, f"{type(node.op).__name__}= → {swap.__name__}="):
            node.op = swap()
        return node

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        if self._here(node, f"{type(node.op).__name__} → {other.__name__}"):
            node.op = other()
        return node

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and self._here(node, "drop not"):
            return node.operand
        if isinstance(node.op, ast.USub) and self._here(node, "drop unary minus"):
            return node.operand
        return node

    def visit_If(self, node):
        self.generic_visit(node)
        if self._here(node, "negate if"):
            node.test = ast.UnaryOp(ast.Not(), node.test)
        return node

    def visit_Name(self, node):
        swap = _NAME_SWAPS.get(node.id)
        if swap and isinstance(node.ctx, ast.Load) and self._here(node, f"{node.id} → {swap}"):
            return ast.copy_location(ast.Name(swap, node.ctx), node)
        return node

    def visit_Constant(self, node):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or isinstance(v, complex):
            return node
        new = {0: 1, 1: 0, 2: 3, 0.5: 0.6}.get(v, v + 1 if isinstance(v, int) else v * 1.1)
        if self._here(node, f"{v!r} → {new!r}"):
            return ast.copy_location(ast.Constant(new), node)
        return node

    def visit_Attribute(self, node):
        self.generic_visit(node)
        swap = _ATTR_SWAPS.get(node.attr)
        if swap and self._here(node, f".{node.attr} → .{swap}"):
            node.attr = swap
        return node

    def visit_Subscript(self, node):
        self.generic_visit(node)
        s = node.slice
        if isinstance(s, ast.Constant) and isinstance(s.value, int) and not isinstance(s.value, bool):
            new = -1 if s.value == 0 else 0
            if self._here(node, f"[{s.value}] → [{new}]"):
                node.slice = ast.Constant(new)
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        if node.keywords and self._here(node, f"drop {node.keywords[-1].arg}= argument"):
            node.keywords = node.keywords[:-1]
        return node


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]


def mutants(module: str) -> list[Mutant]:
    path = ROOT / MODULES[module][0]
    text = path.read_text()
    counter = _Planter(-1)
    base = ast.parse(text)
    _strip_docstrings(base)
    counter.visit(base)
    out = []
    for k in range(counter.seen):
        tree = ast.parse(text)
        _strip_docstrings(tree)
        planter = _Planter(k)
        planter.visit(tree)
        ast.fix_missing_locations(tree)
        try:
            source = ast.unparse(tree)
            compile(source, str(path), "exec")
        except (SyntaxError, ValueError):
            continue
        out.append(Mutant(module, planter.done[0], planter.done[1], source))
    return out


def _scratch() -> Path:
    """A copy of the tree to mutate (tests read it through PYTHONPATH)."""
    dest = Path(tempfile.mkdtemp(prefix="tagger-mutate-"))
    for part in ("tagger", "training", "tests", "tools", "examples", "pyproject.toml"):
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / part)
    return dest  # (tests that need ../shared skip here: none beside the copy)


def run_tests(tree: Path, tests: list[str], timeout: float) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider", *tests]
    try:
        result = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout"
    if result.returncode == 0:
        return "survived"
    if result.returncode in (1, 2):
        return "killed"
    return f"error {result.returncode}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--module", action="append", choices=sorted(MODULES), help="only these (repeat)")
    ap.add_argument("--max", type=int, default=12, help="mutants per module, drawn at random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=900, help="seconds per mutant's test run")
    ap.add_argument("--list", action="store_true", help="list the modules, their tests and mutable places")
    args = ap.parse_args()
    chosen = args.module or sorted(MODULES)
    if args.list:
        for m in chosen:
            print(f"{m:12} {MODULES[m][0]:34} {len(mutants(m)):4} places  tests: {' '.join(MODULES[m][1])}")
        return 0
    tree = _scratch()
    rng = random.Random(args.seed)
    totals = {"killed": 0, "survived": 0, "timeout": 0, "error": 0}
    survivors = []
    started = time.perf_counter()
    try:
        baseline = {m: run_tests(tree, MODULES[m][1], args.timeout) for m in chosen}
        broken = [m for m, r in baseline.items() if r != "survived"]
        if broken:
            print(f"the unmutated tests do not pass for: {', '.join(broken)}", file=sys.stderr)
            return 1
        for m in chosen:
            rel, tests = MODULES[m]
            target = tree / rel
            original = target.read_text()
            every = mutants(m)
            picked = rng.sample(every, min(args.max, len(every)))
            counts = {"killed": 0, "survived": 0, "timeout": 0, "error": 0}
            for mut in picked:
                target.write_text(mut.source)
                outcome = run_tests(tree, tests, args.timeout)
                key = outcome.split()[0]
                counts[key] += 1
                if key == "survived":
                    diff = difflib.unified_diff(ast.unparse(ast.parse(original)).splitlines(),
                                                mut.source.splitlines(), lineterm="", n=1)
                    survivors.append((m, mut, "\n".join(list(diff)[2:12])))
                print(f"  {m:12} line {mut.line:4} {mut.what:32} {outcome}", flush=True)
            target.write_text(original)
            for k in totals:
                totals[k] += counts[k]
            scored = counts["killed"] + counts["timeout"] + counts["survived"]
            rate = (counts["killed"] + counts["timeout"]) / scored if scored else float("nan")
            print(f"{m:12} {len(every):4} places, {len(picked)} tried: killed {counts['killed']}, "
                  f"timeout {counts['timeout']}, survived {counts['survived']}, error {counts['error']}"
                  f" → score {rate:.2f}", flush=True)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    scored = totals["killed"] + totals["timeout"] + totals["survived"]
    print(f"\nall: killed {totals['killed']}, timeout {totals['timeout']}, survived {totals['survived']}, "
          f"error {totals['error']} → mutation score {(totals['killed'] + totals['timeout']) / max(scored, 1):.2f} "
          f"({time.perf_counter() - started:.0f} s, seed {args.seed})")
    for m, mut, diff in survivors:
        print(f"\nsurvivor in {m}, line {mut.line}: {mut.what}\n{diff}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
