from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = ROOT.parent / "shared"
JORAM = SHARED / "fixtures" / "mtat-joram-solipsism.mp3"

# xdist runs one worker per core: a torch in each (and in every CLI it starts) that also spread
# its operators over every core spin-waited on the other's (training tests: 94 s → 77 s on 2
# cores). Set before anything imports torch; the CLI's subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


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


def as_unprivileged(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run Python ``code`` as a user without root's powers: ``nobody`` when the tests run as
    root (as CI does), else the current user. For the checks that root would pass anyway
    (read-only files and folders). Skips where there is no way to drop privileges."""
    import os
    import shutil

    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root, and setpriv (util-linux) is not here to drop privileges")
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/tmp"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or "/", env=env, timeout=120)


def sine(freq: float, seconds: float, sr: int = 16000, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write_audio(path: Path, audio: np.ndarray, sr: int = 16000, **kw) -> Path:
    sf.write(path, audio, sr, **kw)
    return path


@pytest.fixture(scope="session")
def vgg():
    from tagger.model.modelfile import load_model
    return load_model("musicnn-vgg-mtt")


@pytest.fixture(scope="session")
def reference() -> dict:
    import json
    return json.loads((FIXTURES / "musicnn_reference.json").read_text())


needs_shared = pytest.mark.skipif(not JORAM.is_file(), reason="../shared/fixtures is not here")


def write_m4a(path: Path, audio: np.ndarray, sr: int = 44100) -> Path:
    """AAC in an MP4 container through PyAV (libsndfile cannot write it)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=sr)
        stream.layout = "mono"
        planar = audio.astype(np.float32)[None, :]
        for i in range(0, planar.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar[:, i:i + 1024]), format="fltp",
                                               layout="mono")
            frame.rate = sr
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def music_like(seconds: float, sr: int, seed: int) -> np.ndarray:
    """A few seconds of tones and noise bursts, different per seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 110.0 * 2 ** (seed % 12 / 12)
    tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
    bursts = rng.standard_normal(len(t)) * (np.sin(2 * np.pi * (1 + seed % 4) * t) > 0.7)
    x = 0.3 * tone / 2.3 + 0.1 * bursts
    return (0.8 * x / np.max(np.abs(x))).astype(np.float32)


GOOD_FILES = {  # name → (writer kwargs, sample rate)
    "a.wav": ({}, 16000),
    "b.flac": ({}, 44100),
    "sub/c.ogg": ({"subtype": "VORBIS"}, 22050),
    "sub/d.opus": ({"format": "OGG", "subtype": "OPUS"}, 48000),
    "sub/deeper/e.mp3": ({"format": "MP3"}, 44100),
    "Ünïcødé 日本/ß.flac": ({}, 32000),
}


def build_library(root: Path, seconds: float = 7.0) -> dict[str, list[Path]]:
    """Real encoded files, plus the bad ones a real library has."""
    good = []
    for i, (name, (kw, sr)) in enumerate(GOOD_FILES.items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_audio(path, music_like(seconds, sr, i), sr, **kw)
        good.append(path)
    good.append(write_m4a(root / "sub" / "f.m4a", music_like(seconds, 44100, 9)))
    bad = []
    (root / "bad").mkdir()
    (root / "bad" / "empty.mp3").write_bytes(b"")
    (root / "bad" / "random.mp3").write_bytes(np.random.default_rng(5).bytes(30000))
    flac = (root / "b.flac").read_bytes()
    (root / "bad" / "truncated.flac").write_bytes(flac[: len(flac) // 3])
    bad += [root / "bad" / n for n in ("empty.mp3", "random.mp3", "truncated.flac")]
    (root / "bad" / "x.mp3").mkdir()  # a folder with an audio name: walked into, not a track
    (root / "bad" / "x.mp3" / "notes.txt").write_text("not audio")
    (root / "sub" / "loop").symlink_to(root)  # a symlink loop
    (root / "zz-alias.flac").symlink_to(root / "b.flac")  # the same file by a second path
    (root / ".hidden").mkdir()
    write_audio(root / ".hidden" / "h.wav", music_like(2.0, 16000, 3))
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not scanned")
    return {"good": good, "bad": bad}


# --- PostgreSQL: one real server per test run (tests/pg_server.py), started on first use ------

_SHARED = "TAGGER_TEST_SHARED"  # a folder the run's processes (pytest-xdist workers) share


# xdist hands whole files to its workers in collection order: the slowest files go first, so
# that a run does not end with one worker on a long file while the other has nothing left (the
# rest keep their order; measured with --durations=0 on 2 cores)
SLOWEST_FILES = ("test_train.py", "test_train_small.py", "test_ray.py", "test_postgres.py", "test_teacher.py",
                 "test_startup.py", "test_engine.py", "test_learn.py", "test_similar.py", "test_two_models.py",
                 "test_cli.py", "test_write.py", "test_parity.py", "test_library.py", "test_scan.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_configure(config):
    """The controlling process makes the shared folder before any worker starts (the workers
    inherit its name) and, at the end, stops the server a worker may have started there."""
    if not hasattr(config, "workerinput") and _SHARED not in os.environ:
        os.environ[_SHARED] = tempfile.mkdtemp(prefix="tagger-tests-")
        config._tagger_shared = os.environ[_SHARED]


def pytest_unconfigure(config):
    shared = getattr(config, "_tagger_shared", None)
    if shared:
        from pg_server import stop_shared

        stop_shared(Path(shared))
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server():
    """The run's PostgreSQL server: the first process that needs it starts it, the others
    (xdist workers) connect to the same one; the controlling process stops it at the end."""
    from pg_server import shared_server

    server, why = shared_server(Path(os.environ[_SHARED]))
    if server is None:
        pytest.skip(f"PostgreSQL tests skipped: {why}")
    return server


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a new, empty database on the test server."""
    return pg_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> str:
    """A database to pass as --db: a new SQLite file, then a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "library.db")
    return request.getfixturevalue("pg_url")


def module_db(request, tmp_path_factory, name: str) -> str:
    """A new database for a module-scoped fixture parametrised over "sqlite" and "postgresql"
    (a file in a temporary folder, or a database on the session's server)."""
    if request.param == "sqlite":
        return str(tmp_path_factory.mktemp(name) / "library.db")
    return request.getfixturevalue("pg_server").create_database()


# --- helpers of the store's fault tests (test_store_*.py) ----------------------------------

def one_line(result_or_stderr, status: int = 1) -> str:
    """The one line (``tagger: error: …``) a failed command printed: its exit status ``status``,
    no traceback. Takes the CompletedProcess, or the stderr text alone."""
    stderr = result_or_stderr if isinstance(result_or_stderr, str) else result_or_stderr.stderr
    if not isinstance(result_or_stderr, str):
        assert result_or_stderr.returncode == status, result_or_stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tagger: error: "), stderr
    return lines[0]


def short_library(root, n: int, seconds: float = 4.0, first: int = 0) -> list:
    """``n`` short WAV files of distinct sounds in ``root`` (made if need be)."""
    root.mkdir(parents=True, exist_ok=True)
    return [write_audio(root / f"t{i:02d}.wav", music_like(seconds, 16000, first + i), 16000) for i in range(n)]


def count_rows(url: str, sql: str) -> int:
    """The one number ``sql`` gives on the database at ``url``."""
    from sqlalchemy import create_engine, text

    from tagger.store.db import db_url

    engine = create_engine(db_url(url))
    with engine.connect() as conn:
        n = conn.execute(text(sql)).scalar_one()
    engine.dispose()
    return n


def stored_result(path: str, p: float = 0.3):
    """A TrackResult as a scan stores it (50 scores of ``p``, a zero embedding)."""
    import numpy as np

    from tagger.engine.results import ModelOutput, TrackResult

    return TrackResult(path, 1, 1, "f", "flac", 3.0, 1, (ModelOutput(np.full(50, p, np.float32), np.zeros(256, np.float32)),))


def file_bytes(paths) -> dict:
    """path → the file's bytes now."""
    return {p: p.read_bytes() for p in paths}
