"""The scan's plan on its own: which files are new, changed, unchanged, moved or missing, from
real files on disk and the store's states of the tracks (no model, no database)."""

import os

import numpy as np

from tagger.audio.discover import fingerprint
from tagger.engine.plan import plan_scan
from tagger.store.catalog import TrackState

MODEL = 1


def put(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def riff(seed: int, size: int = 200_000) -> bytes:
    """A WAV header and random samples: the same size for every seed, other content."""
    body = np.random.default_rng(seed).bytes(size - 44)
    return b"RIFF" + (size - 8).to_bytes(4, "little") + b"WAVEfmt " + bytes(24) + b"data" + \
        (size - 44).to_bytes(4, "little") + body


def state(i: int, path, fp=None, status="ok", model=MODEL, size=None, mtime=None) -> TrackState:
    st = os.stat(path) if os.path.exists(path) else None
    return TrackState(i, str(path), size if size is not None else st.st_size,
                      mtime if mtime is not None else st.st_mtime_ns, fp, status,
                      frozenset(model if isinstance(model, tuple) else (model,)))


def test_a_different_file_of_the_same_size_is_new_not_the_missing_one_moved(tmp_path):
    root = tmp_path / "lib"
    a = put(root / "a.wav", riff(1))
    known = {str(a): state(1, a, fingerprint(a))}
    a.unlink()
    b = put(root / "b.wav", riff(2))  # same size as a, other audio
    assert b.stat().st_size == known[str(a)].size
    plan = plan_scan(known, [root], [MODEL])
    assert plan.moved == []
    assert [f.path for f in plan.todo] == [str(b)] and plan.new == 1
    assert plan.missing == [1]


def test_each_moved_file_keeps_its_own_track(tmp_path):
    """Two gone tracks of one size and two new files of that size: matched by content."""
    root = tmp_path / "lib"
    a, b = put(root / "a.wav", riff(1)), put(root / "b.wav", riff(2))
    known = {str(a): state(1, a, fingerprint(a)), str(b): state(2, b, fingerprint(b))}
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.unlink()
    b.unlink()
    new_b = put(root / "x" / "1.wav", data_b)  # sorts first
    new_a = put(root / "x" / "2.wav", data_a)
    plan = plan_scan(known, [root], [MODEL])
    assert sorted(plan.moved) == sorted([(1, str(new_a), new_a.stat().st_mtime_ns),
                                         (2, str(new_b), new_b.stat().st_mtime_ns)])
    assert plan.todo == [] and plan.missing == [] and plan.new == 0


def test_new_changed_unchanged_and_other_model(tmp_path):
    root = tmp_path / "lib"
    same, grown, rewritten, other, touched = (put(root / f"{n}.wav", riff(i)) for i, n in enumerate("abcdf"))
    known = {str(same): state(1, same, fingerprint(same)),
             str(grown): state(2, grown, fingerprint(grown), size=123),
             str(rewritten): state(3, rewritten, "0" * 40, mtime=1),  # new time, other content
             str(other): state(4, other, fingerprint(other), model=2),
             str(touched): state(5, touched, fingerprint(touched), mtime=1)}  # new time, same content
    fresh = put(root / "e.wav", riff(9))
    plan = plan_scan(known, [root], [MODEL])
    # the track of another model is as stored: it is decoded again for this model only
    assert plan.unchanged == 3 and plan.new == 1 and plan.changed == 2
    assert sorted(f.path for f in plan.todo) == sorted(map(str, (grown, rewritten, other, fresh)))
    assert plan.only == {str(other): (0,)}
    assert plan.touched == [(5, str(touched), touched.stat().st_mtime_ns)]
    assert plan_scan(known, [root], [MODEL], force=True).changed == 5


def test_with_two_models_a_file_is_scored_by_those_it_lacks_and_a_changed_one_by_both(tmp_path):
    root = tmp_path / "lib"
    both, first, second, changed, failed = (put(root / f"{n}.wav", riff(i)) for i, n in enumerate("abcde"))
    known = {str(both): state(1, both, fingerprint(both), model=(1, 2)),
             str(first): state(2, first, fingerprint(first), model=1),
             str(second): state(3, second, fingerprint(second), model=2),
             str(changed): state(4, changed, fingerprint(changed), model=1, size=5),
             str(failed): state(5, failed, fingerprint(failed), status="failed", model=())}
    plan = plan_scan(known, [root], [1, 2])
    assert sorted(f.path for f in plan.todo) == sorted(map(str, (first, second, changed)))
    assert plan.only == {str(first): (1,), str(second): (0,)}  # positions in the scan's model list
    assert plan.changed == 1 and plan.unchanged == 4
    # a model not in the database yet (a dry run) is lacked by every track
    plan = plan_scan(known, [root], [1, None])
    assert plan.only == {str(both): (1,), str(first): (1,), str(second): (0, 1)}


def test_a_missing_track_found_again_comes_back_and_outside_roots_stays(tmp_path):
    root, elsewhere = tmp_path / "lib", tmp_path / "other"
    back = put(root / "back.wav", riff(1))
    away = tmp_path / "other" / "gone.wav"  # not under the scanned folder: not marked missing
    elsewhere.mkdir()
    known = {str(back): state(1, back, fingerprint(back), status="missing"),
             str(away): state(2, away, "f" * 40, size=5, mtime=5)}
    plan = plan_scan(known, [root], [MODEL])
    assert plan.back == [1] and plan.missing == [] and plan.todo == []


def test_a_file_stored_twice_keeps_the_track_of_the_scan_s_models(tmp_path):
    """Two tracks of one file (a path and a symlink to it): the one these models scored stays,
    whichever was stored first."""
    root = tmp_path / "lib"
    real = put(root / "a.wav", riff(1))
    link = root / "b.wav"
    link.symlink_to(real)
    known = {str(real): state(1, real, fingerprint(real), model=2),
             str(link): state(2, link, fingerprint(real), model=1)}
    assert plan_scan(known, [root], [1]).duplicates == [1]
    assert plan_scan(known, [root], [2]).duplicates == [2]
