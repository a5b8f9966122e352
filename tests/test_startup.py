"""Commands that need no model never import torch (importing it costs seconds on small machines)."""

import subprocess
import sys

import pytest
from conftest import run_cli, sine, write_audio

HELP = [["--help"], *([c, "--help"] for c in ("scan", "query", "show", "tags", "stats", "prune", "write",
                                              "tag", "evaluate", "models", "train", "similar", "radio", "learn", "map")),
        ["models", "info", "--help"], ["models", "convert-musicnn", "--help"]]


def imported_modules(*args: str) -> tuple[subprocess.CompletedProcess, list[tuple[int, str]]]:
    """Run the command line under ``-X importtime``: (result, [(depth, module)] in import order)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "tagger", *map(str, args)],
                            capture_output=True, text=True, timeout=120)
    modules = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1]
            if name.strip() != "imported package":
                modules.append(((len(name) - len(name.lstrip())) // 2, name.strip()))
    return result, modules


def torch_chain(modules: list[tuple[int, str]], heavy: tuple[str, ...] = ("torch",)) -> list[str] | None:
    """The chain of imports that brought torch (or another of ``heavy``) in, outermost first, or None.

    importtime prints a module after the modules it imported, one level less indented."""
    for i, (depth, name) in enumerate(modules):
        if name.split(".")[0] in heavy:
            chain = [name]
            for d, n in modules[i + 1:]:
                if d < depth:
                    chain.append(n)
                    depth = d
            chain = chain[::-1]
            return chain[:next(k for k, n in enumerate(chain) if n.split(".")[0] in heavy) + 1]
    return None


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("startup")
    write_audio(root / "a.wav", sine(440.0, 3.5))
    write_audio(root / "b.wav", sine(660.0, 3.5))
    db = root / "lib.db"
    result = run_cli("scan", root, "--db", db, "--workers", "0")
    assert result.returncode == 0, result.stderr
    return root, db


@pytest.mark.parametrize("args", HELP, ids=lambda a: " ".join(a))
def test_help_imports_no_torch(args):
    result, modules = imported_modules(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Usage:" in result.stdout
    assert torch_chain(modules) is None, " → ".join(torch_chain(modules))


def test_model_free_commands_import_no_torch(library):
    root, db = library
    for args in (["query", "--db", db, "-t", "piano", "-f", "json"], ["show", root / "a.wav", "--db", db],
                 ["tags", "--db", db], ["stats", "--db", db], ["prune", "--db", db],
                 ["write", "--dry-run", "--db", db], ["models"], ["models", "info", "musicnn-mtt"],
                 ["similar", root / "a.wav", "--db", db], ["radio", root / "b.wav", "--db", db, "--seed", "1"],
                 ["learn", "sine", "--like", root / "a.wav", "--db", db], ["learn", "--list", "--db", db],
                 ["map", "--db", db, "--out", root / "map.html"],
                 ["scan", root, "--db", db], ["scan", root, "--db", db, "--dry-run"]):
        result, modules = imported_modules(*args)
        assert result.returncode == 0, (args, result.stderr[-2000:])
        chain = torch_chain(modules, ("torch", "openvino"))
        assert chain is None, f"{' '.join(map(str, args[:2]))}: torch imported by {' → '.join(chain)}"
