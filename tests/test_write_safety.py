"""Tag writing when things go wrong: links, killed runs, wrong input, byte-exact undo.

Real files encoded here, real mutagen, the real command line in subprocesses. One small
library is scanned once per module and copied back, at the same path, before each test.
"""

import fcntl
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
from conftest import ROOT, as_unprivileged, music_like, run_cli, write_audio
from mutagen.id3 import ID3, TDAT, TIT2, TYER

from tagger.audio.discover import fingerprint
from tagger.files.atomic import remove_stale_temps_in, replace_atomically
from tagger.store.catalog import Store
from tagger.store.db import StoreError
from tagger.store.lock import writer_lock

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
    # as libsndfile writes them: no tag block (WAV, AIFF), no padding (its FLAC, like real.flac)
    write_audio(lib / "e.wav", music_like(2.0, 22050, 6), 22050)
    write_audio(lib / "f.aiff", music_like(2.0, 22050, 7), 22050)
    write_audio(lib / "g.opus", music_like(2.0, 48000, 8), 48000, format="OGG", subtype="OPUS")
    write_audio(outside / "real.flac", music_like(2.0, 22050, 5), 22050)
    (lib / "link.flac").symlink_to(Path("..") / "outside" / "real.flac")
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", lib, "--db", work / "lib.db", "--workers", "0")
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
    assert f"skipped: {track}: has 2 hard links" in write(db, "--dry-run").stderr
    result = write(db)
    assert f"skipped: {track}: has 2 hard links" in result.stderr
    assert "--break-hardlinks" in result.stderr
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
    Store(str(db)).update_file_state(str(track), *scanned_state)  # killed before recording it
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
    assert Store(str(db)).track(str(track)).mtime_ns == track.stat().st_mtime_ns
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
    scanned = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db, "--workers", "0", "--chunks", "1")
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
    # byte-identical: files that had a tag block (with or without padding), and files as
    # libsndfile writes them: FLAC without a padding block (link.flac's target), an Ogg comment
    # packet without padding, WAV, AIFF and MP3 without any tag (the tag the write added is
    # removed again)
    assert set(hashes) == {"a.flac", "b.mp3", "c.ogg", "d.mp3", "e.wav", "f.aiff", "g.opus", "link.flac"}
    for name in hashes:
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
            "sys.modules['tagger.cli'] = pkg; import tagger.cli.write_cmd, tagger.library.writer, tagger.library.query; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    result = subprocess.run([sys.executable, "-c", code, str(ROOT / "tagger" / "cli")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_undo_left_unfinished_by_a_hard_link_can_be_finished(lib):
    root, db = lib
    before = {p.name: all_tags(p) for p in root.iterdir()}
    write(db)  # run 1
    track = root / "a.flac"
    os.link(track, root.parent / "backup.flac")  # a backup made after the write
    first = write(db, "--undo")  # undo run 2
    assert f"skipped: {track}: has 2 hard links" in first.stdout + first.stderr
    assert "TAGGER_TAGS" in mutagen.File(track), "the hard-linked file is left as the write left it"
    rest = write(db, "--undo", "--run", "1", "--break-hardlinks")  # the file still left
    assert rest.stdout.startswith("undo of run 1: written 1 · unchanged "), rest.stdout
    assert {p.name: all_tags(p) for p in root.iterdir()} == before
    assert "run 1 is undone in part: 1 file left" in first.stderr
    done = run_cli("write", "--db", db, "--undo", "--run", "1")
    assert done.returncode == 1 and "run 1 was undone already (by run 3)" in done.stderr


def test_failed_files_exit_1_and_go_to_stderr(lib):
    root, db = lib
    flac = root / "a.flac"
    st = flac.stat()
    data = bytearray(flac.read_bytes())
    data[0:4] = b"XXXX"  # unreadable metadata, same size and time: the scan check passes it
    flac.write_bytes(bytes(data))
    os.utime(flac, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = run_cli("write", "--db", db)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"failed: {flac}: ")
    assert "failed:" not in result.stdout
    assert result.stdout.startswith("write: written ") and " · failed 1" in result.stdout.splitlines()[0]


def test_bad_option_combinations_exit_2(lib):
    root, db = lib
    for args in (["--fields", "tags,colour"], ["--run", "1"], ["--undo", root], ["--undo", "--tag", "rock"],
                 ["--undo", "--remove"]):
        result = run_cli("write", "--db", db, *args)
        assert result.returncode == 2, (args, result.stdout + result.stderr)
        assert result.stderr.startswith("tagger: error: ") and len(result.stderr.strip().splitlines()) == 1


def test_lock_file_problems_are_one_line_errors(lib):
    root, db = lib
    lock = Path(f"{db}.lock")
    lock.unlink(missing_ok=True)  # the scan left its lock file
    lock.mkdir()  # something else's folder where the lock file goes
    blocked = run_cli("write", "--db", db)
    assert blocked.returncode == 1 and "Traceback" not in blocked.stderr
    assert blocked.stderr.startswith(f"tagger: error: {lock}: cannot open the lock file")
    assert len(blocked.stderr.strip().splitlines()) == 1
    lock.rmdir()
    with open(lock, "a") as held:  # as a running write holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = run_cli("write", "--db", db)
    assert busy.returncode == 1
    assert "another tagger scan or write is writing to this database" in busy.stderr


def test_lock_beside_a_database_path_that_is_no_folder_is_a_store_error(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("a file, where --db names a folder")
    with pytest.raises(StoreError, match=r"notes\.txt/lib\.db\.lock: cannot open the lock file"):
        with writer_lock(str(notes / "lib.db")):
            pass


def test_lock_in_a_read_only_folder_is_a_store_error():
    """As a user who cannot write the folder (nobody, where the tests run as root)."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="tagger-ro-"))
    try:
        base.chmod(0o755)
        folder = base / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        code = ("from tagger.store.db import StoreError\nfrom tagger.store.lock import writer_lock\n"
                "try:\n"
                f"    with writer_lock({str(folder / 'lib.db')!r}):\n"
                "        print('locked')\n"
                "except StoreError as e:\n"
                "    print('StoreError:', e)\n")
        result = as_unprivileged(code)
        assert result.returncode == 0, result.stderr
        assert re.search(r"StoreError: .*lib\.db\.lock: cannot open the lock file", result.stdout), result.stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_paths_select_tracks_by_resolved_and_symlinked_paths(lib):
    root, db = lib
    outside = root.parent / "outside"  # link.flac's target lies here; the track is lib/link.flac
    by_target = write(db, outside)
    assert "written 1" in by_target.stdout and mutagen.File(outside / "real.flac")["TAGGER_TAGS"]
    alias = root.parent / "alias"
    alias.symlink_to(root)
    by_alias = write(db, alias / "a.flac")
    assert "written 1" in by_alias.stdout and mutagen.File(root / "a.flac")["TAGGER_TAGS"]
    assert "TAGGER_TAGS" not in mutagen.File(root / "c.ogg"), "only the track asked for"


def test_stale_temps_are_judged_by_host_and_pid(tmp_path):
    target = tmp_path / "x.bin"
    with replace_atomically(target) as tmp:
        tmp.write_bytes(b"new")
        name = tmp.name
    parts = re.fullmatch(r"\.x\.bin\.([A-Za-z0-9_-]+)-(\d+)-[a-z0-9_]+\.tagger-tmp", name)
    assert parts and parts.group(2) == str(os.getpid()), name
    here = parts.group(1)
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = {f".x.bin.{here}-{dead.pid}-aaaa1111.tagger-tmp",  # a killed run on this host
            f".x.bin.{dead.pid}-bbbb2222.tagger-tmp",  # the same, named by an older tagger
            ".x.bin.cccc3333.tagger-tmp"}  # a tagger from before PIDs were recorded
    kept = {f".x.bin.{here}-{os.getpid()}-dddd4444.tagger-tmp",  # a live run on this host
            f".x.bin.{os.getpid()}-eeee5555.tagger-tmp",  # the same, older name
            f".x.bin.nas-box-2-{dead.pid}-ffff6666.tagger-tmp"}  # another host's: its PIDs mean nothing here
    for n in gone | kept:
        (tmp_path / n).write_bytes(b"part of a copy")
    assert {p.name for p in remove_stale_temps_in(tmp_path)} == gone
    assert {p.name for p in tmp_path.iterdir()} == kept | {"x.bin"}
    # another host's temp a day old is stale whatever its PID: its run is long over
    later = time.time() + 25 * 3600
    assert {p.name for p in remove_stale_temps_in(tmp_path, now=later)} == \
           {f".x.bin.nas-box-2-{dead.pid}-ffff6666.tagger-tmp"}


def test_the_journal_row_comes_before_the_file_changes(lib, monkeypatch):
    """Deterministic fault injection at the one step that changes a file, the rename of its
    tagged copy: when it fails, the journal already holds the file's row (so a run killed at
    that instant is undoable), the file is byte-identical, no copy is left, and undo finds the
    file as it was and leaves it alone. A journal written after the rename would be empty here."""
    from sqlalchemy import select

    from tagger.library.writer import WriteOptions, undo, write_tracks
    from tagger.store.journal import Journal
    from tagger.store.schema import write_journal

    root, db = lib
    track = root / "a.flac"
    before = sha(track)
    store = Store(str(db))
    rows = store.tracks_at([str(track)])
    real_replace = os.replace

    def failing_replace(src, dst, *args, **kwargs):
        if str(src).endswith(".tagger-tmp"):
            raise OSError(5, "Input/output error (injected)")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing_replace)
    (outcome,) = write_tracks(store, rows, WriteOptions())
    monkeypatch.setattr(os, "replace", real_replace)
    assert outcome.status == "failed" and "Input/output error" in outcome.reason
    assert sha(track) == before and not list(root.glob(".*tagger-tmp"))
    with store.sql_engine.connect() as conn:
        journaled = conn.execute(select(write_journal.c.field, write_journal.c.path)).all()
    assert (Journal.FILE_STATE, str(track)) in journaled, "the journal row precedes the rename"
    assert {f for f, _ in journaled} >= {"tags", "scores", "model", Journal.FILE_STATE}
    _, outcomes = undo(store)
    assert [o.status for o in outcomes] == ["unchanged"] and sha(track) == before
