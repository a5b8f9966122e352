from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = ROOT.parent / "shared"
JORAM = SHARED / "fixtures" / "mtat-joram-solipsism.mp3"


def load_tool(name: str):
    """Import a script from tools/ (they are not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "tagger", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def sine(freq: float, seconds: float, sr: int = 16000, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write_audio(path: Path, audio: np.ndarray, sr: int = 16000, **kw) -> Path:
    sf.write(path, audio, sr, **kw)
    return path


@pytest.fixture(scope="session")
def vgg():
    from tagger.modelfile import load_model
    return load_model("musicnn-vgg-mtt")


@pytest.fixture(scope="session")
def reference() -> dict:
    import json
    return json.loads((FIXTURES / "musicnn_reference.json").read_text())


needs_shared = pytest.mark.skipif(not JORAM.is_file(), reason="../shared/fixtures is not here")
