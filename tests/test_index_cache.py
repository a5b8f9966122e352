"""The similarity index kept between commands (tagger.library.index_cache) on both stores:
used while the store has not changed, never after it has (a scan's commit, a move, tracks
marked missing or back, a prune), and no error where it cannot be written."""

from __future__ import annotations

import numpy as np

from tagger.engine.results import ModelOutput, TrackResult
from tagger.library import index_cache
from tagger.library.similar import load_index
from tagger.model.modelfile import read_card
from tagger.store.catalog import Store


def _result(i: int, rng) -> TrackResult:
    return TrackResult(f"/m/{i:03d}.flac", 1000 + i, i, f"{i:040x}", "flac", 3.0, 1,
                       (ModelOutput(rng.random(50).astype(np.float32), rng.standard_normal(256).astype(np.float32)),))


def test_the_kept_index_is_used_until_the_store_changes_and_never_after(db, tmp_path, monkeypatch):
    if "://" in db:  # a server's index is kept in the user cache folder: here, one of the test's own
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    library = Store(db)
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    library.save([_result(i, rng) for i in range(30)], model)
    first = load_index(library, model)
    path = index_cache.path_for(library.db, model.sha256, "standardised")
    assert path.exists() and not isinstance(first.vectors, np.memmap)
    again = load_index(library, model)  # nothing changed: mapped from the file
    assert isinstance(again.vectors, np.memmap)
    assert np.array_equal(again.track_ids, first.track_ids) and np.allclose(again.vectors, first.vectors)
    assert np.allclose(again.space(np.ones(256)), first.space(np.ones(256)))

    def ids() -> set[int]:
        return set(load_index(library, model).track_ids.tolist())

    library.save([_result(30, rng)], model)  # a scan stores a track
    new = library.track("/m/030.flac").id
    assert new in ids()
    library.set_missing([(new, "/m/030.flac")])  # it is gone
    assert new not in ids()
    library.set_status([new], "ok")  # and back
    assert new in ids()
    library.set_status([new], "missing")
    library.prune()
    assert new not in ids() and len(ids()) == 30
    library.sql_engine.dispose()


def test_a_kept_index_of_another_version_or_not_ours_is_not_read(tmp_path):
    path = tmp_path / "x.similar"
    kept = index_cache.CachedIndex(np.arange(3), np.ones((3, 4), np.float32), np.zeros(4, np.float32), None)
    index_cache.save(path, "7", 1, kept)
    assert index_cache.load(path, "7", 1) is not None
    assert index_cache.load(path, "8", 1) is None and index_cache.load(path, "7", 2) is None
    path.write_bytes(b"something else")
    assert index_cache.load(path, "7", 1) is None
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    index_cache.save(ro / "x", "7", 1, kept)  # (as root the folder is writable: no error either way)
