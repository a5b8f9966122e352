"""The scan engine proven per track: what a scan stores for each file equals what the model
says about that file alone (``tag_file`` with the same chunk choice), whatever the batch
size, the number of decode workers, the order files finish in, or compilation."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import music_like, write_audio, write_m4a

from tagger.engine.inference import tag_file
from tagger.engine.options import ScanOptions
from tagger.scan import scan

SECONDS = {  # name → length: shorter than a chunk, exactly one, 17 chunks, long, between
    "a-short.wav": 1.4, "c-one.flac": 3.0, "e-seventeen.ogg": 51.0, "g-long.flac": 100.0,
    "i-seven.mp3": 21.0, "k-aac.m4a": 20.0, "m-two.opus": 7.0,
}
BAD = {"b-empty.mp3": b"", "d-noise.flac": np.random.default_rng(3).bytes(20000),
       "f-truncated.ogg": None, "h-text.wav": b"RIFF....WAVE but not really"}


@pytest.fixture(scope="module")
def engine_library(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    for i, (name, seconds) in enumerate(SECONDS.items()):
        sr = 48000 if name.endswith(".opus") else 44100 if i % 2 else 22050
        x = music_like(seconds, sr, 20 + i)
        if name.endswith(".m4a"):
            write_m4a(root / name, x, sr)
        else:
            kw = {"ogg": {"subtype": "VORBIS"}, "opus": {"format": "OGG", "subtype": "OPUS"},
                  "mp3": {"format": "MP3"}}.get(name.rsplit(".", 1)[1], {})
            write_audio(root / name, x, sr, **kw)
    ogg = (root / "e-seventeen.ogg").read_bytes()
    for name, data in BAD.items():
        (root / name).write_bytes(data if data is not None else ogg[: len(ogg) // 50])
    return root


@pytest.fixture(scope="module")
def references(engine_library, vgg):
    """tag_file on each good file alone, for 16 chunks and for every chunk."""
    return {n: {name: tag_file(vgg, engine_library / name, n) for name in SECONDS} for n in (16, None)}


def stored(db):
    with sqlite3.connect(db) as conn:
        tracks = {os.path.basename(p): (i, s, e, c) for i, p, s, e, c in
                  conn.execute("SELECT id, path, status, error, chunks FROM tracks")}
        probs = {}
        for track_id, idx, p in conn.execute("SELECT s.track_id, t.idx, s.prob FROM scores s JOIN tags t ON t.id = s.tag_id"):
            probs.setdefault(track_id, np.zeros(50))[idx] = p
        embs = {t: np.frombuffer(v, "<f2").astype(np.float32) for t, v in conn.execute("SELECT track_id, vector FROM embeddings")}
    return tracks, probs, embs


def assert_equals_tag_file(db, refs, atol):
    tracks, probs, embs = stored(db)
    assert set(tracks) == set(SECONDS) | set(BAD)
    for name in BAD:
        assert tracks[name][1] == "failed" and tracks[name][2], name
    for name, ref in refs.items():
        track_id, status, error, chunks = tracks[name]
        assert status == "ok", (name, error)
        assert chunks == ref.n_chunks, name
        np.testing.assert_allclose(probs[track_id], ref.probabilities, rtol=0, atol=atol, err_msg=name)
        # embeddings are stored as float16: equal to the reference rounded the same way, give or
        # take the last bit where a value sits on a rounding boundary
        np.testing.assert_allclose(embs[track_id], ref.embedding.astype(np.float16).astype(np.float32),
                                   rtol=2 ** -10, atol=1e-6, err_msg=name)


# every pair of values of the three options once (4 runs, not the 8 of all combinations):
# in-process and worker decoding, batches that split tracks differently, N chunks and all
@pytest.mark.parametrize("chunks,workers,batch", [(16, 0, 5), (16, 3, 7), (None, 0, 7), (None, 3, 5)],
                         ids=["16-0-5", "16-3-7", "all-0-7", "all-3-5"])
def test_scan_stores_what_the_model_says_of_each_file(engine_library, references, tmp_path, workers, batch, chunks):
    db = tmp_path / "lib.db"
    options = ScanOptions(models=("musicnn-vgg-mtt",), workers=workers, batch_size=batch, chunks=chunks, compile="no", device="cpu",
                          runtime="torch")  # the runtime against torch: tests/test_runtime.py
    summary = scan([str(engine_library)], str(db), options)
    assert summary.scanned == len(SECONDS) and len(summary.failed) == len(BAD)
    assert summary.engine_stats.chunks == sum(r.n_chunks for r in references[chunks].values())
    assert_equals_tag_file(db, references[chunks], atol=1e-5)


def test_openvino_scan_matches_too(engine_library, references, tmp_path):
    db = tmp_path / "lib.db"
    options = ScanOptions(models=("musicnn-vgg-mtt",), workers=2, batch_size=5, chunks=16, device="cpu", runtime="openvino", precision="fp32")
    summary = scan([str(engine_library)], str(db), options)
    assert (summary.engine_stats.runtime, summary.engine_stats.precision) == ("openvino", "fp32")
    # OpenVINO's sums differ from torch's in the last bits, and musicnn's float16 mel rounding
    # turns that into ~4e-4 in a probability (tests/test_runtime.py); embeddings likewise
    tracks, probs, embs = stored(db)
    for name, ref in references[16].items():
        track_id, status, error, chunks = tracks[name]
        assert status == "ok" and chunks == ref.n_chunks, (name, error)
        np.testing.assert_allclose(probs[track_id], ref.probabilities, rtol=0, atol=1e-3, err_msg=name)
        np.testing.assert_allclose(embs[track_id], ref.embedding, rtol=1e-2, atol=1e-2, err_msg=name)


def test_compiled_scan_matches_too(engine_library, tmp_path, vgg):
    from tagger.engine.runner import ModelRunner

    runner = ModelRunner(vgg, 7, compile=True)  # inductor's sums differ from eager by ~1e-4: compare like with like
    if not runner.compiled:
        pytest.skip(f"torch.compile is not available here: {runner.compile_error}")
    refs = {name: tag_file(vgg, engine_library / name, 16, runner=runner) for name in SECONDS}
    db = tmp_path / "lib.db"
    options = ScanOptions(models=("musicnn-vgg-mtt",), workers=2, batch_size=7, chunks=16, compile="yes", device="cpu", runtime="torch")
    summary = scan([str(engine_library)], str(db), options)
    assert summary.engine_stats.compiled
    assert_equals_tag_file(db, refs, atol=1e-5)


def _descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except OSError:
                pass
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def test_a_killed_decode_worker_costs_only_its_file(tmp_path):
    root = tmp_path / "music"
    root.mkdir()
    for i in range(12):  # 20 chunks each, batches of 16: a worker always holds a file half-sent
        write_audio(root / f"t{i:02d}.flac", music_like(60.0, 16000, i))
    db = tmp_path / "lib.db"
    proc = subprocess.Popen([sys.executable, "-m", "tagger", "scan", "-m", "musicnn-vgg-mtt", str(root), "--db", str(db), "--workers", "2",
                             "--chunks", "all", "--compile", "no", "--device", "cpu", "--batch-size", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim, deadline = None, time.time() + 120
    while victim is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            done = sqlite3.connect(db).execute("SELECT count(*) FROM tracks").fetchone()[0] if db.exists() else 0
        except sqlite3.OperationalError:
            continue
        workers = [p for p in _descendants(proc.pid) if _comm(p) == "tagger-decode"]
        if done >= 2 and workers:
            victim = workers[0]
            os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=180)
    assert victim is not None, ("the scan ended before a worker could be killed", out, err)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT status, count(*) FROM tracks GROUP BY status").fetchall())
        errors = [e for (e,) in conn.execute("SELECT error FROM tracks WHERE status = 'failed'")]
    assert rows == {"ok": 11, "failed": 1}, (rows, out, err)
    assert "decoding process died" in errors[0] and "SIGKILL" in errors[0]
    assert "died and were replaced" in out


def test_loud_and_non_finite_float_files(tmp_path, vgg):
    from conftest import run_cli

    root = tmp_path / "music"
    root.mkdir()
    write_audio(root / "good.flac", music_like(6.0, 44100, 1), 44100)
    loud = music_like(6.0, 44100, 2) * 1000.0  # legal in a float file: a player clips it
    write_audio(root / "loud.wav", loud, 44100, subtype="FLOAT")
    nan = music_like(6.0, 44100, 3)
    nan[50000:50100] = np.nan
    write_audio(root / "nan.wav", nan, 44100, subtype="FLOAT")
    db = tmp_path / "lib.db"
    for _ in range(2):  # and the next scan neither dies nor redoes them
        result = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db, "--workers", "0")
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    with sqlite3.connect(db) as conn:
        rows = {os.path.basename(p): (s, e) for p, s, e in conn.execute("SELECT path, status, error FROM tracks")}
        probs = [p for (p,) in conn.execute("SELECT prob FROM scores")]
    assert rows["good.flac"][0] == "ok" and rows["loud.wav"][0] == "ok"
    assert rows["nan.wav"][0] == "failed" and "non-finite samples" in rows["nan.wav"][1]
    assert "near 1.1 s" in rows["nan.wav"][1]
    assert all(np.isfinite(probs)) and len(probs) == 100
    clipped = tag_file(vgg, root / "loud.wav")
    as_played = tmp_path / "clipped.wav"
    write_audio(as_played, np.clip(loud, -1, 1), 44100, subtype="FLOAT")
    np.testing.assert_allclose(clipped.probabilities, tag_file(vgg, as_played).probabilities, atol=1e-6)


def test_a_model_with_nan_weights_is_refused_at_load(tmp_path, vgg):
    import torch
    from conftest import run_cli

    from tagger.model.modelfile import load_model, save_model

    model = load_model("musicnn-vgg-mtt")
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "weight" in n).fill_(float("nan"))
    path = tmp_path / "broken.safetensors"
    save_model(model, path, model.card)
    write_audio(tmp_path / "a.wav", music_like(3.0, 16000, 1))
    result = run_cli("scan", tmp_path / "a.wav", "--db", tmp_path / "lib.db", "--model", path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"tagger: error: {path}: gives non-finite scores (NaN or infinity) on a test input; its weights "
        "are damaged (re-export or retrain it)"]


def test_hung_decode_workers_are_replaced(tmp_path):
    """Workers that stop answering (here: SIGSTOPped as soon as they start, as a decoder stuck in
    a damaged file would look) are killed after TAGGER_DECODE_TIMEOUT seconds of silence and
    replaced; the scan finishes. (A worker stopped while it holds a file fails that file with
    'stopped answering', through the same death path as the SIGKILL test above.)"""
    root = tmp_path / "music"
    root.mkdir()
    for i in range(4):
        write_audio(root / f"t{i}.flac", music_like(10.0, 16000, i))
    db = tmp_path / "lib.db"
    env = dict(os.environ, TAGGER_DECODE_TIMEOUT="2")
    proc = subprocess.Popen([sys.executable, "-m", "tagger", "scan", "-m", "musicnn-vgg-mtt", str(root), "--db", str(db), "--workers", "2",
                             "--compile", "no", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stopped, deadline = set(), time.time() + 60
    while len(stopped) < 2 and time.time() < deadline and proc.poll() is None:
        for pid in _descendants(proc.pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    is_worker = b"tagger.engine.decode" in f.read()
            except OSError:
                continue
            if is_worker and pid not in stopped:
                os.kill(pid, signal.SIGSTOP)
                stopped.add(pid)
        time.sleep(0.01)
    out, err = proc.communicate(timeout=120)
    assert len(stopped) == 2 and proc.returncode == 0, (out, err)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT status, count(*) FROM tracks GROUP BY status").fetchall() == [("ok", 4)]
    assert "2 decoding process(es) died and were replaced" in out


def test_batches_take_the_oldest_rows_first_and_keep_the_rest_in_order():
    """A track split across batches keeps its place at the head of the queue; the tracks queued
    behind it are untouched."""
    from tagger.engine.batch import Batcher

    batcher = Batcher(4)
    for slot, n in ((0, 3), (1, 3), (2, 3)):
        batcher.add(slot, np.arange(n, dtype=np.float32)[:, None] + 10 * slot)
    taken = [batcher.take() for _ in range(3)]
    owners = np.concatenate([o for _, o in taken])
    rows = np.concatenate([c for c, _ in taken])[:, 0]
    assert [len(o) for _, o in taken] == [4, 4, 1] and batcher.queued == 0
    assert owners.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert rows.tolist() == [0, 1, 2, 10, 11, 12, 20, 21, 22]
