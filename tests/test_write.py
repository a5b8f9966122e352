"""Tag writing on real files of every format, read back with mutagen itself."""

import hashlib
import os

import mutagen
import numpy as np
import pytest
from conftest import music_like, run_cli, write_audio, write_m4a
from mutagen.id3 import ID3, TCON, TPE1

from tagger.audio.decode import decode

FORMATS = {"a.mp3": {"format": "MP3"}, "v23.mp3": {"format": "MP3"}, "b.flac": {}, "c.ogg": {"subtype": "VORBIS"},
           "d.opus": {"format": "OGG", "subtype": "OPUS"}, "e.wav": {}, "f.aiff": {}}


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def all_tags(path):
    """Every tag as mutagen sees it, comparable across runs."""
    f = mutagen.File(path)
    if f.tags is None:
        return {}
    return {k: [str(x) for x in (v.text if hasattr(v, "text") else v if isinstance(v, list) else [v])]
            for k, v in sorted(f.tags.items(), key=lambda kv: str(kv[0]))}


@pytest.fixture
def lib(tmp_path):
    root = tmp_path / "music"
    root.mkdir()
    for i, (name, kw) in enumerate(FORMATS.items()):
        write_audio(root / name, music_like(5.0, 44100 if "opus" not in name else 48000, i),
                    44100 if "opus" not in name else 48000, **kw)
    write_m4a(root / "g.m4a", music_like(5.0, 44100, 8))
    v23 = ID3()  # a file whose existing tag is ID3v2.3 with the user's own genre
    v23.add(TPE1(encoding=1, text=["Someone"]))
    v23.add(TCON(encoding=1, text=["Jazz"]))
    v23.save(root / "v23.mp3", v2_version=3)
    flac = mutagen.File(root / "b.flac")
    flac["GENRE"] = ["Folk"]
    flac["MOOD"] = ["Melancholic"]
    flac.save()
    db = tmp_path / "lib.db"
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db, "--workers", "0")
    assert result.returncode == 0 and "failed 0" in result.stdout, result.stdout + result.stderr
    return root, db


def write(db, *args, status=0):
    result = run_cli("write", "--db", db, *args)
    assert result.returncode == status, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


def test_fields_per_format_and_audio_untouched(lib):
    root, db = lib
    audio_before = {p.name: decode(p, 16000) for p in root.iterdir()}
    result = write(db, "--fields", "tags,mood,genre,grouping", "--min", "0.0", "--top", "4")
    assert "written 8" in result.stdout
    for p in root.iterdir():
        assert np.array_equal(decode(p, 16000), audio_before[p.name]), f"{p.name}: audio changed"
    assert not list(root.glob(".*tagger-tmp")), "no temporary file left behind"

    id3 = ID3(root / "a.mp3")
    assert id3.version == (2, 4, 0)
    tags = id3.getall("TXXX:TAGGER_TAGS")[0].text
    assert len(tags) == 4 and all(tags)  # a real multi-value
    scores = id3.getall("TXXX:TAGGER_SCORES")[0].text[0]
    assert [s.split("=")[0] for s in scores.split(";")] == tags
    assert id3.getall("TXXX:TAGGER_MODEL")[0].text[0].startswith("musicnn-vgg-mtt sha256:")
    assert id3.getall("TIT1")[0].text == tags  # grouping

    old = ID3(root / "v23.mp3")
    assert old.version == (2, 3, 0), "an ID3v2.3 file stays v2.3"
    assert old.getall("TCON")[0].text == ["Jazz"], "the user's genre is kept"
    assert not old.getall("TMOO"), "TMOO does not exist in v2.3"
    assert "/" in old.getall("TXXX:TAGGER_TAGS")[0].text[0]  # v2.3 joins multi-values

    flac = mutagen.File(root / "b.flac")
    assert flac["GENRE"] == ["Folk"] and flac["MOOD"] == ["Melancholic"]
    assert len(flac["TAGGER_TAGS"]) == 4
    for name in ("c.ogg", "d.opus"):
        vc = mutagen.File(root / name)
        assert len(vc["TAGGER_TAGS"]) == 4 and vc["TAGGER_MODEL"][0].startswith("musicnn-vgg-mtt")
    mp4 = mutagen.File(root / "g.m4a")
    assert [v.decode() for v in mp4.tags["----:org.tagger:TAGGER_TAGS"]] == \
           [str(x) for x in mp4.tags["\xa9grp"]]
    for name in ("e.wav", "f.aiff"):
        assert len(mutagen.File(root / name).tags.getall("TXXX:TAGGER_TAGS")[0].text) == 4

    # the database follows the rewritten files: a rescan touches nothing
    rescan = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db)
    assert "0 scanned" in rescan.stdout and "unchanged 8" in rescan.stdout


def test_force_overwrites_user_fields_and_undo_restores_exactly(lib):
    root, db = lib
    before = {p.name: all_tags(p) for p in root.iterdir()}
    hashes = {p.name: sha(p) for p in root.iterdir()}
    write(db, "--fields", "genre,mood", "--min", "0.0")
    again = write(db, "--fields", "genre,mood", "--min", "0.0")
    assert again.stdout.splitlines() == [
        "write: already-tagged 8",
        "8 files were tagged by this model already: tagger's own fields left as they are (--force rewrites them)"]
    grouping = write(db, "--fields", "grouping", "--min", "0.0")  # a field added later is still filled
    assert "written 8" in grouping.stdout
    assert mutagen.File(root / "b.flac")["GROUPING"] == mutagen.File(root / "b.flac")["TAGGER_TAGS"]
    write(db, "--fields", "genre,mood", "--min", "0.0", "--top", "10", "--force")
    assert mutagen.File(root / "b.flac")["GENRE"] != ["Folk"] or mutagen.File(root / "b.flac")["MOOD"] != ["Melancholic"]
    write(db, "--undo")  # the forced run
    write(db, "--undo")  # the grouping run
    write(db, "--undo")  # the first run
    assert {p.name: all_tags(p) for p in root.iterdir()} == before
    # files that had a tag block before come back byte for byte, their ID3v2.3 one included
    assert {n: sha(root / n) for n in ("v23.mp3", "b.flac")} == {n: hashes[n] for n in ("v23.mp3", "b.flac")}


def test_force_never_empties_the_users_fields(lib):
    root, db = lib
    flac = mutagen.File(root / "b.flac")
    flac["GROUPING"] = ["Live"]
    flac.save()
    assert run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db).returncode == 0  # the database learns the file's new state
    # no tag reaches --min 1.0: there is nothing to put into genre, mood or grouping
    write(db, "--fields", "genre,mood,grouping", "--force", "--min", "1.0")
    flac = mutagen.File(root / "b.flac")
    assert (flac["GENRE"], flac["MOOD"], flac["GROUPING"]) == (["Folk"], ["Melancholic"], ["Live"])
    assert ID3(root / "v23.mp3").getall("TCON")[0].text == ["Jazz"]


def test_dry_run_changes_no_byte(lib):
    root, db = lib
    hashes = {p.name: sha(p) for p in root.iterdir()}
    result = write(db, "--dry-run", "--fields", "tags,genre,mood,grouping", "--min", "0.0")
    assert "would-write 8" in result.stdout and "TAGGER" not in result.stdout
    assert "genre: (empty) →" in result.stdout or "tags: (empty) →" in result.stdout
    assert {p.name: sha(p) for p in root.iterdir()} == hashes


def test_remove_deletes_only_own_fields(lib):
    root, db = lib
    write(db, "--fields", "genre", "--min", "0.0")
    write(db, "--remove")
    flac = mutagen.File(root / "b.flac")
    assert "TAGGER_TAGS" not in flac and flac["GENRE"] == ["Folk"]
    assert not ID3(root / "a.mp3").getall("TXXX:TAGGER_TAGS")
    assert ID3(root / "v23.mp3").getall("TPE1")[0].text == ["Someone"]


def test_corrupt_and_changed_files_are_reported_and_left_alone(lib):
    root, db = lib
    flac = root / "b.flac"
    st = flac.stat()
    data = bytearray(flac.read_bytes())
    data[0:4] = b"XXXX"  # metadata unreadable, same size and mtime: passes the scan check
    flac.write_bytes(bytes(data))
    os.utime(flac, ns=(st.st_atime_ns, st.st_mtime_ns))
    touched = root / "c.ogg"
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    corrupt_hash, touched_hash = sha(flac), sha(touched)
    result = write(db, status=1)  # a file failed
    assert f"failed: {flac}" in result.stderr.replace("\n", "")
    assert "changed since it was scanned" in result.stderr
    assert sha(flac) == corrupt_hash and sha(touched) == touched_hash


def test_read_only_file_is_reported(lib):
    """Also as root (CI runs as root), who could write it: a file without write permission is
    left as it is."""
    root, db = lib
    ro = root / "e.wav"
    ro.chmod(0o444)
    h = sha(ro)
    result = write(db, status=1)
    assert "read-only" in result.stderr and sha(ro) == h


def test_scan_write_tags(tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    write_audio(root / "x.flac", music_like(4.0, 22050, 1), 22050)
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", tmp_path / "d.db", "--write-tags", "--min", "0.0", "--top", "3")
    assert result.returncode == 0 and "tags written into files: written 1" in result.stdout
    assert len(mutagen.File(root / "x.flac")["TAGGER_TAGS"]) == 3


def test_tagfile_id3v23_mood_and_unsupported_files(tmp_path):
    from tagger.files.tagfile import TagFile, TagWriteError

    path = write_audio(tmp_path / "m.mp3", music_like(2.0, 44100, 2), 44100, format="MP3")
    ID3().save(path, v2_version=3)
    tf = TagFile(path)
    tf.set("mood", ["calm", "dark"])
    tf.save()
    id3 = ID3(path)
    assert id3.version == (2, 3, 0) and not id3.getall("TMOO")
    assert id3.getall("TXXX:MOOD")[0].text == ["calm/dark"]
    assert TagFile(path).get("mood") == ["calm/dark"]
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(TagWriteError, match="not supported"):
        TagFile(text)


def test_scan_writing_in_many_batches_is_one_undoable_run(tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    for i in range(30):  # long enough for several one-second commits
        write_audio(root / f"t{i:02d}.flac", music_like(20.0, 16000, i))
    before = {p.name: sha(p) for p in root.iterdir()}
    db = tmp_path / "d.db"
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db, "--write-tags", "--min", "0.0", "--workers", "0", "--chunks", "all")
    assert result.returncode == 0 and "written 30" in result.stdout
    undone = write(db, "--undo")
    assert "written 30" in undone.stdout
    after = {p.name: all_tags(p) for p in root.iterdir()}
    assert all("TAGGER_TAGS" not in tags for tags in after.values())
    assert before.keys() == after.keys()
