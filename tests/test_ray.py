"""The Ray Data engine: a real local Ray, real files, the real CLI, a real SQLite file."""

import socket
import sqlite3
import time

import numpy as np
import pytest
from conftest import music_like, run_cli, write_audio

ray = pytest.importorskip("ray")

LENGTHS_S = {"short.wav": 2.0, "mid.flac": 8.0, "long.wav": 40.0}  # 1, 3 and 13 chunks of 3 s


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-music")
    for k, (name, seconds) in enumerate(LENGTHS_S.items()):
        write_audio(root / name, music_like(seconds, 16000, k))
    (root / "broken.mp3").write_bytes(np.random.default_rng(3).bytes(20000))
    return root


@pytest.fixture(scope="module")
def local_ray():
    """One in-process local Ray for the module: starting one costs seconds."""
    import os
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _files(root):
    from tagger.audio.discover import discover
    return sorted(discover([str(root)]).files, key=lambda f: f.path)


def _by_path(results):
    out = {}
    for r in results:
        assert r.path not in out, f"two results for {r.path}"
        out[r.path] = r
    return out


@pytest.mark.parametrize("chunks", [16, None], ids=["chunks16", "chunks-all"])
def test_ray_scores_equal_the_local_engine(music, local_ray, vgg, chunks):
    from tagger.engine.engine import score_files
    from tagger.engine.options import ScanOptions
    from tagger.engine.ray_engine import score_files_ray
    from tagger.engine.results import EngineStats
    from tagger.engine.runner import ModelRunner

    files = _files(music)
    local = _by_path(score_files(files, ModelRunner(vgg, 8), chunks, workers=0))
    stats = EngineStats()
    # a batch size unlike the local one: rows of several files share batches differently
    options = ScanOptions(chunks=chunks, batch_size=5, scan_engine="ray")
    remote = _by_path(score_files_ray(files, vgg, options, stats))
    assert set(remote) == set(local) == {f.path for f in files}
    for path, want in local.items():
        got = remote[path]
        if want.error:
            assert got.error == want.error and got.outputs == ()
            continue
        assert got.error is None, got.error
        assert got.chunks == want.chunks and got.format == want.format
        assert got.fingerprint == want.fingerprint and got.duration_s == pytest.approx(want.duration_s)
        (g,), (w,) = got.outputs, want.outputs
        np.testing.assert_allclose(g.probabilities, w.probabilities, atol=1e-5, rtol=0)
        np.testing.assert_allclose(g.embedding, w.embedding, atol=1e-5, rtol=0)
    assert stats.chunks == sum(r.chunks for r in local.values())
    assert stats.device.startswith("ray")


def test_a_workers_tagger_error_is_the_one_line_it_is(music, local_ray, vgg, tmp_path):
    """A model actor that cannot load its model (a file missing on that node): the driver
    raises the worker's own ModelFileError, not Ray's "the actor died" behind a traceback."""
    from tagger.engine.options import ScanOptions
    from tagger.engine.ray_engine import score_files_ray
    from tagger.errors import ModelFileError

    missing = tmp_path / "only-on-the-driver.safetensors"
    options = ScanOptions(models=(str(missing),), scan_engine="ray")
    with pytest.raises(ModelFileError) as caught:
        list(score_files_ray(_files(music), vgg, options))
    message = str(caught.value)
    assert message.startswith(f"{missing}: no such model file") and "on the Ray cluster" in message
    assert "\n" not in message and "\x1b" not in message


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_scan_with_the_ray_engine_stores_every_track(music, tmp_path):
    """Two models: Ray runs a pass of each over the files; each track gets both, counted once."""
    db = tmp_path / "ray.db"
    result = run_cli("scan", music, "--db", db, "--engine", "ray", "-m", "musicnn-vgg-mtt", "-m", "musicnn-vgg-msd")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # none of Ray's own log lines (an ERROR about max_restarts on every scan)
    assert "3 scanned" in result.stdout and "failed 1" in result.stdout
    assert "on ray: 1 × cpu" in result.stdout
    with sqlite3.connect(db) as conn:
        status = dict(conn.execute("SELECT path, status FROM tracks"))
        n_scores = dict(conn.execute("SELECT g.model_id, count(*) FROM scores s JOIN tags g ON g.id = s.tag_id "
                                     "GROUP BY g.model_id"))
        n_embeddings = conn.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    assert status == {**{str(music / n): "ok" for n in LENGTHS_S}, str(music / "broken.mp3"): "failed"}
    assert list(n_scores.values()) == [3 * 50, 3 * 50] and n_embeddings == 6


def test_an_address_that_does_not_answer_is_one_line_and_writes_nothing(music, tmp_path):
    db = tmp_path / "nothing.db"
    t0 = time.monotonic()
    result = run_cli("scan", music, "--db", db, "--engine", "ray", "--ray-address", f"127.0.0.1:{_free_port()}")
    assert time.monotonic() - t0 < 30
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Ray cluster answers at 127.0.0.1:" in lines[0], result.stderr
    assert not db.exists()  # checked before the database is opened


def test_ray_options_without_the_ray_engine_are_command_line_errors(music, tmp_path):
    result = run_cli("scan", music, "--db", tmp_path / "x.db", "--ray-address", "auto")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "--ray-address needs --engine ray" in result.stderr
