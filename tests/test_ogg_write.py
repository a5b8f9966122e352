"""Tag writes into Ogg files keep every audio page byte for byte, decode as before with
libsndfile, FFmpeg and oggdec, and undo gives the file its bytes back, on the page layouts
real encoders make (the files are built with mutagen's Ogg page layer):

- the first audio packet on the last header page (libvorbis does this: in the real corpus
  many Wesnoth files), whose granule position must stay with it;
- a setup header (or a comment) spread over two pages.
"""

from __future__ import annotations

import fractions
import shutil
import subprocess

import av
import mutagen
import numpy as np
import pytest
import soundfile as sf
from conftest import music_like, run_cli, write_audio
from mutagen.ogg import OggPage

from tagger.files.tagfile import TagFile

OWN = {"tags": ["slow", "piano", "ambient"], "scores": ["slow=0.500;piano=0.400;ambient=0.300"],
       "model": ["musicnn-vgg-mtt sha256:" + "a" * 64 + " 2026-12-03"]}


def raw_pages(path) -> list[bytes]:
    """Each page of the file as its bytes."""
    out = []
    with open(path, "rb") as f:
        while True:
            start = f.tell()
            try:
                OggPage(f)
            except EOFError:
                return out
            end = f.tell()
            f.seek(start)
            out.append(f.read(end - start))


def pages_of(path) -> list[OggPage]:
    with open(path, "rb") as f:
        pages = []
        while True:
            try:
                pages.append(OggPage(f))
            except EOFError:
                return pages


def save_pages(path, pages: list[OggPage]) -> None:
    path.write_bytes(b"".join(p.write() for p in pages))


def first_audio_on_header_page(src, dst) -> None:
    """Move the first audio packet onto the page that ends the setup header, as libvorbis
    does: that packet decodes to no samples, so the page's granule position stays 0."""
    pages = pages_of(src)
    header, audio = pages[1], pages[2]
    assert header.complete and len(header.packets) == 2 and not audio.continued
    header.packets.append(audio.packets.pop(0))
    save_pages(dst, pages)
    return dst


def split_page(src, dst, index: int, j: int, cut: int) -> None:
    """Spread page ``index`` over two pages, cutting its packet ``j`` after ``cut`` bytes (a
    multiple of 255); later pages are numbered one up."""
    pages = pages_of(src)
    page = pages[index]
    assert 0 < cut < len(page.packets[j]) and cut % 255 == 0
    one, two = OggPage(), OggPage()
    for p in (one, two):
        p.serial, p.version = page.serial, 0
    one.sequence, two.sequence = page.sequence, page.sequence + 1
    one.first = page.first
    one.packets = page.packets[:j] + [page.packets[j][:cut]]
    one.complete, one.position = False, (0 if j else -1)
    two.packets = [page.packets[j][cut:]] + page.packets[j + 1:]
    two.continued, two.complete, two.position = True, page.complete, page.position
    for p in pages[index + 1:]:
        p.sequence += 1
    save_pages(dst, pages[:index] + [one, two] + pages[index + 1:])
    return dst


def vorbis(path, seed=1):
    return write_audio(path, music_like(4.0, 44100, seed), 44100, subtype="VORBIS")


def opus(path, seed=2):
    return write_audio(path, music_like(4.0, 48000, seed), 48000, format="OGG", subtype="OPUS")


def ogg_flac(path, seed=3):
    """FLAC in Ogg, as FFmpeg muxes it."""
    audio = (music_like(4.0, 44100, seed) * 32767).astype(np.int16).reshape(1, -1)
    with av.open(str(path), "w", format="ogg") as c:
        stream = c.add_stream("flac", rate=44100, layout="mono")
        frame = av.AudioFrame.from_ndarray(audio, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 44100, 0, fractions.Fraction(1, 44100)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            c.mux(packet)
    return path


def with_long_comment(path, size=2000):
    """The file with a comment long enough to spread over pages (mutagen's own write)."""
    f = mutagen.File(path)
    f["DESCRIPTION"] = ["x" * size]
    f.save(padding=lambda info: 0)  # as an encoder writes it: no padding
    return path


def layouts(tmp_path) -> dict[str, object]:
    src = tmp_path / "src"
    src.mkdir()
    out = tmp_path / "music"
    out.mkdir()
    made = {}
    # comments of a few KB (an embedded lyric, another tagger's padding): with the setup
    # header they fill more than the 4 KB pages mutagen makes
    first_audio_on_header_page(with_long_comment(vorbis(src / "v1.ogg", 1)),
                               out / "vorbis-audio-on-header-page.ogg")
    split_page(with_long_comment(vorbis(src / "v2.ogg", 2), 3500), out / "vorbis-setup-over-two-pages.ogg",
               1, 1, 255 * 6)
    first_audio_on_header_page(with_long_comment(vorbis(src / "v3.ogg", 3), 3500), src / "v3b.ogg")
    split_page(src / "v3b.ogg", out / "vorbis-both.ogg", 1, 1, 255 * 8)
    split_page(with_long_comment(opus(src / "o.opus")), out / "opus-comment-over-two-pages.opus", 1, 0, 255 * 3)
    split_page(with_long_comment(ogg_flac(src / "f.oga")), out / "flac-comment-over-two-pages.oga", 1, 0, 255 * 2)
    shutil.copy(ogg_flac(src / "plain.oga", 4), out / "flac-plain.oga")
    for p in sorted(out.iterdir()):
        made[p.name] = p
    return made


def decoded(path):
    """(libsndfile's samples, FFmpeg's); libsndfile's are None for FLAC in Ogg as FFmpeg muxes
    it, which libsndfile cannot read at all (before or after a write)."""
    try:
        a = sf.read(str(path), dtype="float32")[0]
    except sf.LibsndfileError:
        if not str(path).endswith(".oga"):
            raise
        a = None
    with av.open(str(path)) as c:
        b = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return a, b


def test_layouts_are_what_they_claim(tmp_path):
    files = layouts(tmp_path)
    p = pages_of(files["vorbis-audio-on-header-page.ogg"])
    assert len(p[1].packets) == 3 and p[1].complete
    p = pages_of(files["vorbis-setup-over-two-pages.ogg"])
    assert not p[1].complete and p[2].continued and len(p[2].packets) == 1
    p = pages_of(files["vorbis-both.ogg"])
    assert not p[1].complete and p[2].continued and len(p[2].packets) == 2
    for name, path in files.items():
        a, b = decoded(path)
        assert (a is None or len(a) > 100_000) and len(b) > 100_000, name


@pytest.mark.parametrize("name", ["vorbis-audio-on-header-page.ogg", "vorbis-setup-over-two-pages.ogg",
                                  "vorbis-both.ogg", "opus-comment-over-two-pages.opus",
                                  "flac-comment-over-two-pages.oga", "flac-plain.oga"])
def test_write_keeps_audio_pages_and_undo_gives_the_bytes_back(tmp_path, name):
    path = layouts(tmp_path)[name]
    original = path.read_bytes()
    before_pages, before_audio = raw_pages(path), decoded(path)
    tf = TagFile(path)
    for f, v in OWN.items():
        tf.set(f, v)
    tf.save()
    after_pages = raw_pages(path)
    assert TagFile(path).read_all()["tags"] == OWN["tags"]
    # the page count stays, and every page but those of the comment is as it was
    assert len(after_pages) == len(before_pages)
    changed = [i for i, (a, b) in enumerate(zip(before_pages, after_pages)) if a != b]
    assert changed and max(changed) <= 2, changed
    assert all(b.startswith(b"OggS") for b in after_pages)
    for a, b in zip(before_audio, decoded(path)):
        assert (a is None and b is None) or (a.shape == b.shape and np.array_equal(a, b))
    if name.endswith(".ogg") and shutil.which("oggdec"):
        pcm = [subprocess.run(["oggdec", "-Q", "-o", "-", str(p)], capture_output=True, check=True).stdout
               for p in (path,)]
        keep = tmp_path / "orig.ogg"
        keep.write_bytes(original)
        assert pcm[0] == subprocess.run(["oggdec", "-Q", "-o", "-", str(keep)], capture_output=True,
                                        check=True).stdout
    # undo, as tagger write --undo does it: each field back, padded to the old size
    back = TagFile(path)
    for f in OWN:
        back.set(f, [])
    back.save(len(original))
    assert path.read_bytes() == original


def test_a_comment_that_outgrows_its_page_renumbers_later_pages_only(tmp_path):
    path = first_audio_on_header_page(vorbis(tmp_path / "v.ogg"), tmp_path / "grown.ogg")
    original = path.read_bytes()
    before_pages, before_audio = pages_of(path), decoded(path)
    tf = TagFile(path)
    tf.set("tags", ["y" * 70_000])  # more than one page holds (255 segments of 255 bytes)
    tf.save()
    after = pages_of(path)
    assert len(after) == len(before_pages) + 1
    # later pages: the same packets, granule positions and flags, numbered one up
    for old, new in zip(before_pages[2:], after[3:]):
        assert (new.packets, new.position, new.complete, new.continued) == (
            old.packets, old.position, old.complete, old.continued)
        assert new.sequence == old.sequence + 1
    for a, b in zip(before_audio, decoded(path)):
        assert np.array_equal(a, b)
    back = TagFile(path)
    back.set("tags", [])
    back.save(len(original))
    assert path.read_bytes() == original


def test_a_comment_packet_undo_cannot_rebuild_is_kept_for_undo(tmp_path):
    """A Vorbis comment with bytes after its framing bit (other taggers' padding): written
    field by field it could not come back byte for byte, so the write hands its pages to the
    journal."""
    path = vorbis(tmp_path / "v.ogg")
    pages = pages_of(path)
    pages[1].packets[0] += b"\x55" * 40
    save_pages(path, pages)
    original = path.read_bytes()
    tf = TagFile(path)
    tf.set("tags", ["slow"])
    tf.save()
    assert tf.undo_pages is not None and tf.undo_pages in original
    put_back = TagFile(path)
    put_back.save(None, tf.undo_pages)
    assert path.read_bytes() == original
    # a plain file needs nothing kept
    plain = vorbis(tmp_path / "plain.ogg", 5)
    tf = TagFile(plain)
    tf.set("tags", ["slow"])
    tf.save()
    assert tf.undo_pages is None


def test_cli_write_and_undo_on_every_layout(tmp_path):
    files = layouts(tmp_path)
    root = tmp_path / "music"
    # the user's own genre, overwritten with --force: undo needs the journaled pages
    f = mutagen.File(files["vorbis-both.ogg"])
    f["GENRE"] = ["Folk"]
    f["ARTIST"] = ["Someone"]
    f.save()
    before = {n: p.read_bytes() for n, p in files.items()}
    audio = {n: decoded(p) for n, p in files.items()}
    db = tmp_path / "lib.db"
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db, "--workers", "0")
    assert result.returncode == 0 and "failed 0" in result.stdout, result.stdout + result.stderr
    result = run_cli("write", "--db", db, "--min", "0", "--fields", "tags,genre", "--force")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"written {len(files)}" in result.stdout, result.stdout
    for n, p in files.items():
        assert p.read_bytes() != before[n]
        for a, b in zip(audio[n], decoded(p)):
            assert (a is None and b is None) or (a.shape == b.shape and np.array_equal(a, b)), n
    assert mutagen.File(files["vorbis-both.ogg"])["GENRE"] != ["Folk"]
    result = run_cli("write", "--db", db, "--undo")
    assert result.returncode == 0, result.stdout + result.stderr
    for n, p in files.items():
        assert p.read_bytes() == before[n], n
