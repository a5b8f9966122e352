"""Tag writing when things go wrong: links, killed runs, wrong input, byte-exact undo.

Real files encoded here, real mutagen, the real command line in subprocesses. One small
library is scanned once per module and copied back, at the same path, before each test.
"""

import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mutagen
import pytest
from mutagen.id3 import ID3, TDAT, TIT2, TYER

from tagger.discover import fingerprint
from tagger.library import Library

from conftest import ROOT, music_like, run_cli, write_audio

ID3V1 = (b"TAG" + b"Title".ljust(30, b"\0") + b"Artist".ljust(30, b"\0") + b"Album".ljust(30, b"\0")
         + b"1999" + b"only in the v1 tag".ljust(28, b"\0") + b"\0\x05" + bytes([8]))


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def all_tags(path):
    f = mutagen.File(path)
    if f.tags is None:
        return {}
    return {str(k): [str(x) for x in (v.text if hasattr(v, "text") else v if isinstance(v, list) else [v])]
            for k, v in f.tags.items()}


def id3v23_mp3(path: Path, seed: int) -> Path:
    """An MP3 as older taggers leave it: ID3v2.3 with TYER + TDAT, no padding, and an ID3v1
    tag holding a comment the v2 tag lacks."""
    write_audio(path, music_like(2.0, 22050, seed), 22050, format="MP3")
    tag = ID3()
    tag.version = (2, 3, 0)
    tag.add(TIT2(encoding=1, text=["Title"]))
    tag.add(TYER(encoding=0, text=["1999"]))
    tag.add(TDAT(encoding=0, text=["0503"]))
    tag.save(path, v2_version=3, v1=0, padding=lambda info: 0)
    with open(path, "ab") as f:
        f.write(ID3V1)
    return path


def write(db, *args):
    result = run_cli("write", "--db", db, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    base = tmp_path_factory.mktemp("safety")
    work = base / "work"
    lib, outside = work / "lib", work / "outside"
    lib.mkdir(parents=True)
    outside.mkdir()
    write_audio(lib / "a.flac", music_like(2.0, 22050, 1), 22050)
    flac = mutagen.File(lib / "a.flac")
    flac["ARTIST"] = ["Someone"]  # tagged before: it has a comment block with padding
    flac.save()
    id3v23_mp3(lib / "b.mp3", 2)
    write_audio(lib / "c.ogg", music_like(2.0, 22050, 3), 22050, subtype="VORBIS")
    write_audio(lib / "d.mp3", music_like(2.0, 22050, 4), 22050, format="MP3")  # no tag at all
    write_audio(outside / "real.flac", music_like(2.0, 22050, 5), 22050)
    (lib / "link.flac").symlink_to(Path("..") / "outside" / "real.flac")
    result = run_cli("scan", lib, "--db", work / "lib.db", "--workers", "0")
    assert result.returncode == 0 and "failed 0" in result.stdout, result.stdout + result.stderr
    shutil.copytree(work, base / "template", symlinks=True)  # copy2: sizes and mtimes kept
    return base


@pytest.fixture
def lib(template):
    """A fresh copy of the scanned library, at the path its database knows."""
    work = template / "work"
    shutil.rmtree(work)
    shutil.copytree(template / "template", work, symlinks=True)
    return work / "lib", work / "lib.db"


def test_symlink_is_written_through_and_stays_a_link(lib):
    root, db = lib
    names = sorted(os.listdir(root))
    write(db)
    link, real = root / "link.flac", root.parent / "outside" / "real.flac"
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", "outside", "real.flac")
    assert mutagen.File(real)["TAGGER_TAGS"], "the file the link points to is tagged"
    assert sorted(os.listdir(root)) == names, "no copy, no temporary file left in the library"
    # the database follows the target's new size and time: the next write has nothing to do
    again = write(db)
    assert "changed since it was scanned" not in again.stdout


def test_hard_linked_file_is_left_alone_unless_asked(lib):
    root, db = lib
    track, seeding = root / "a.flac", root.parent / "seeding-copy.flac"
    os.link(track, seeding)
    untouched = sha(seeding)
    assert f"skipped: {track}: has 2 hard links" in write(db, "--dry-run").stdout
    result = write(db)
    assert f"skipped: {track}: has 2 hard links" in result.stdout
    assert "--break-hardlinks" in result.stdout
    assert os.stat(track).st_nlink == 2 and sha(track) == untouched

    broken = write(db, "--break-hardlinks")
    assert "written 1" in broken.stdout
    assert mutagen.File(track)["TAGGER_TAGS"]
    assert sha(seeding) == untouched and os.stat(seeding).st_nlink == 1, "the other name keeps the old file"


def test_what_a_killed_run_leaves_is_cleaned_up_and_undoable(lib):
    """The three things a run killed mid-file can leave, made by hand: temporary copies of
    a dead process, and a file replaced whose new size/mtime never reached the database."""
    root, db = lib
    before = {p.name: all_tags(p) for p in root.iterdir()}
    track = root / "a.flac"
    st = track.stat()
    scanned_state = (st.st_size, st.st_mtime_ns, fingerprint(track))
    write(db)
    Library(str(db)).update_file_state(str(track), *scanned_state)  # killed before recording it
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [root / f".a.flac.{dead.pid}-k2j3h4g5.tagger-tmp",  # a killed process's
             root / ".b.mp3.x8c1m0qz.tagger-tmp"]  # a tagger from before PIDs were recorded
    live = root / f".c.ogg.{os.getpid()}-abcd1234.tagger-tmp"  # a running process's: not ours to take
    for tmp in (*stale, live):
        tmp.write_bytes(b"half a copy")

    again = write(db)
    assert "changed since it was scanned" not in again.stdout
    assert not any(p.exists() for p in stale) and live.exists()
    assert Library(str(db)).track(str(track)).mtime_ns == track.stat().st_mtime_ns
    live.unlink()
    write(db, "--undo")
    assert {p.name: all_tags(p) for p in root.iterdir()} == before


def test_sigkill_mid_run_then_write_and_undo(tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    n = 40
    for i in range(n):  # many small files, so that the kill comes mid-run
        write_audio(root / f"t{i:02d}.flac", music_like(1.0, 8000, i), 8000)
    db = tmp_path / "d.db"
    scanned = run_cli("scan", root, "--db", db, "--workers", "0", "--chunks", "1")
    assert scanned.returncode == 0 and f"{n} scanned" in scanned.stdout, scanned.stdout + scanned.stderr
    before = {p.name: all_tags(p) for p in root.iterdir()}
    first, first_inode = root / "t00.flac", (root / "t00.flac").stat().st_ino

    run = subprocess.Popen([sys.executable, "-m", "tagger", "write", "--db", str(db)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while first.stat().st_ino == first_inode and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)  # replaced by its tagged copy: the run is writing
    time.sleep(random.uniform(0, 0.04))  # files take ~10 ms: kill anywhere in one of the next few
    run.send_signal(signal.SIGKILL)
    run.wait()
    tagged = [p.name for p in sorted(root.glob("*.flac")) if "TAGGER_TAGS" in mutagen.File(p)]
    assert 0 < len(tagged) < n, f"the kill was meant to come mid-run; {len(tagged)} of {n} were written"

    rest = write(db)
    assert "changed since it was scanned" not in rest.stdout and "failed" not in rest.stdout
    assert not list(root.glob(".*tagger-tmp")), "no temporary copy left"
    assert all("TAGGER_TAGS" in mutagen.File(p) for p in root.glob("*.flac"))
    write(db, "--undo")  # the run that finished the job
    killed = write(db, "--undo")  # the killed one
    assert "undo of run 1" in killed.stdout and "failed" not in killed.stdout
    assert {p.name: all_tags(p) for p in root.iterdir()} == before


def test_undo_gives_back_the_bytes(lib):
    root, db = lib
    hashes = {p.name: sha(p) for p in root.iterdir()}
    write(db, "--fields", "genre,mood,grouping", "--min", "0.0")
    mp3 = ID3(root / "b.mp3", translate=False, load_v1=False)
    assert mp3.version[:2] == (2, 3) and mp3.getall("TYER") and mp3.getall("TDAT")
    assert not mp3.getall("TDRC"), "no ID3v2.4-only frame in an ID3v2.3 tag"
    assert not mp3.getall("COMM"), "the ID3v1 tag is not copied into the v2 one"
    assert (root / "b.mp3").read_bytes()[-128:] == ID3V1, "the ID3v1 tag is left as it was"
    write(db, "--undo")
    # byte-identical: files that had a tag block (with or without padding), and an MP3 that
    # had none (its empty tag is removed). An Ogg file that had no tags (c.ogg) gets them back,
    # but its comment packet keeps the padding mutagen added.
    for name in ("a.flac", "b.mp3", "d.mp3"):
        assert sha(root / name) == hashes[name], f"{name}: not byte-identical after undo"


def test_wrong_input_is_an_error(lib):
    root, db = lib
    missing = run_cli("write", "--db", db, root / "Nope")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip().splitlines() == [f"tagger: error: {root / 'Nope'}: no such file or folder "
                                                   "(nothing was written)"]
    write(db, root / "a.flac")  # run 1
    no_run = run_cli("write", "--db", db, "--undo", "--run", "7")
    assert no_run.returncode == 1 and len(no_run.stderr.strip().splitlines()) == 1
    assert "no write run 7" in no_run.stderr and "runs that can be undone, newest first: 1 (write, " in no_run.stderr
    assert "1 file)" in no_run.stderr


def test_help_lists_choices_without_type_names():
    result = subprocess.run([sys.executable, "-m", "tagger", "write", "--help"], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "200"}, timeout=120)
    assert result.returncode == 0
    assert "tags,mood,genre,grouping" in result.stdout
    for option in ("--top", "--min", "--fields", "--tag", "--not", "--match-min", "--run", "--db",
                   "--dry-run", "--force", "--break-hardlinks", "--remove", "--undo"):
        line = next(ln for ln in result.stdout.splitlines() if f" {option} " in ln)
        assert not re.search(r"<[a-z]", line), f"{option} shows a type name: {line.strip()}"  # <int>, <bool>…


def test_writing_modules_do_not_import_torch():
    """tagger.cli imports every command; load the write command's modules without the others."""
    code = ("import sys, types; pkg = types.ModuleType('tagger.cli'); pkg.__path__ = [sys.argv[1]]; "
            "sys.modules['tagger.cli'] = pkg; import tagger.cli.write_cmd, tagger.writer, tagger.query; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    result = subprocess.run([sys.executable, "-c", code, str(ROOT / "tagger" / "cli")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
