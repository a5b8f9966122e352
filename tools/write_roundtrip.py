"""Does ``tagger write`` keep the user's files theirs? On a copy of a folder: scan it, write
every file (every field tagger writes, every tag it has), decode each file with libsndfile
(soundfile) and FFmpeg (PyAV), and oggdec where it is installed (Ogg Vorbis), before and after
the write; then ``tagger write --undo`` and compare every file with the original byte for byte.

    python tools/write_roundtrip.py FOLDER [--work DIR] [--keep] [--jobs N]

Prints one row per format: files, written, byte-identical after undo, decode-identical after
write per decoder (a file a decoder cannot read before the write is counted apart, as
"cannot decode"). Exit status 1 if any file is not byte-identical after undo or decodes
differently after the write. The folder itself is never written.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

AUDIO = {".ogg", ".oga", ".opus", ".mp3", ".flac", ".wav", ".aif", ".aiff", ".m4a", ".mp4", ".wma"}


def file_format(path: Path) -> str:
    """The container and codec, from the content (mutagen), not the extension."""
    import mutagen

    try:
        f = mutagen.File(str(path))
    except Exception:
        f = None
    name = type(f).__name__ if f is not None else "unknown"
    return {"OggVorbis": "Ogg Vorbis", "OggOpus": "Ogg Opus", "OggFLAC": "Ogg FLAC", "MP3": "MP3",
            "FLAC": "FLAC", "WAVE": "WAV", "AIFF": "AIFF", "MP4": "M4A"}.get(name, name)


def _digest(chunks) -> str:
    h = hashlib.sha256()
    n = 0
    for c in chunks:
        h.update(c.tobytes())
        n += c.size
    return f"{n}:{h.hexdigest()}"


def decode_soundfile(path: str) -> str:
    """Every sample libsndfile decodes. (Read whole: for a CBR MP3 without a Xing header
    libsndfile's frame count is an estimate from the file's size, tag included, and reading
    in blocks up to it returns samples past the real end that depend on that estimate.)"""
    import soundfile as sf

    return _digest([sf.read(path, dtype="float32", always_2d=True)[0]])


def decode_pyav(path: str) -> str:
    import av

    with av.open(path) as c:
        return _digest(frame.to_ndarray() for frame in c.decode(audio=0))


def decode_oggdec(path: str) -> str:
    out = subprocess.run(["oggdec", "-Q", "-o", "-", path], capture_output=True, timeout=600)
    if out.returncode:
        raise RuntimeError(out.stderr.decode(errors="replace").strip()[:200])
    return hashlib.sha256(out.stdout).hexdigest()


DECODERS = {"libsndfile": decode_soundfile, "FFmpeg": decode_pyav, "oggdec": decode_oggdec}


def decode_all(path: str, decoders: tuple[str, ...]) -> dict[str, str | None]:
    out = {}
    for name in decoders:
        try:
            out[name] = DECODERS[name](path)
        except Exception:
            out[name] = None  # this decoder cannot read it
    return out


def run_tagger(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "tagger", *args], capture_output=True, text=True)
    if result.returncode not in (0, 1):
        sys.exit(f"tagger {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--work", type=Path, help="where the copy goes (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the copy and its database")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="decoding processes")
    parser.add_argument("--chunks", default="4", help="chunks per track for the scan (the tags do not matter)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="write-roundtrip-", dir=args.work))
    copy = work / "music"
    db = work / "lib.db"
    t0 = time.time()
    shutil.copytree(args.folder, copy, symlinks=False)
    files = sorted(p for p in copy.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO)
    originals = {p: p.read_bytes() for p in files} if sum(p.stat().st_size for p in files) < 4 << 30 else None
    if originals is None:
        sys.exit("the folder is over 4 GB: this tool keeps the originals in memory")
    formats = {p: file_format(p) for p in files}
    decoders = ("libsndfile", "FFmpeg") + (("oggdec",) if shutil.which("oggdec") else ())
    print(f"{len(files)} files copied to {copy}; decoders: {', '.join(decoders)}", file=sys.stderr)

    def decode_every(label: str) -> dict[Path, dict]:
        t = time.time()
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = {p: pool.submit(decode_all, str(p), tuple(d for d in decoders
                                                                if d != "oggdec" or formats[p] == "Ogg Vorbis"))
                       for p in files}
            out = {p: f.result() for p, f in futures.items()}
        print(f"decoded {label} in {time.time() - t:.0f} s", file=sys.stderr)
        return out

    before = decode_every("the originals")
    scan = run_tagger("scan", str(copy), "--db", str(db), "--chunks", args.chunks)
    print(scan.stdout.strip().splitlines()[-1] if scan.stdout.strip() else scan.stderr, file=sys.stderr)
    write = run_tagger("write", "--db", str(db), "--min", "0", "--top", "10",
                       "--fields", "tags,genre,mood,grouping")
    print("\n".join(line for line in write.stdout.splitlines() if line.startswith("write:")), file=sys.stderr)
    if write.stderr.strip():
        print(write.stderr.strip(), file=sys.stderr)
    written = {p for p in files if originals[p] != p.read_bytes()}
    after = decode_every("after the write")
    undo = run_tagger("write", "--db", str(db), "--undo")
    print("\n".join(line for line in undo.stdout.splitlines() if line.startswith("undo")), file=sys.stderr)
    if undo.stderr.strip():
        print(undo.stderr.strip(), file=sys.stderr)
    identical = {p for p in files if p.read_bytes() == originals[p]}

    rows, bad = [], []
    for fmt in sorted(set(formats.values())):
        mine = [p for p in files if formats[p] == fmt]
        row = [fmt, str(len(mine)), str(len([p for p in mine if p in written])),
               str(len([p for p in mine if p in identical]))]
        for d in decoders:
            readable = [p for p in mine if before[p].get(d) is not None]
            if d == "oggdec" and fmt != "Ogg Vorbis":
                row.append("–")
                continue
            same = [p for p in readable if after[p].get(d) == before[p][d]]
            cell = f"{len(same)}/{len(readable)}"
            if len(readable) < len(mine):
                cell += f" ({len(mine) - len(readable)} cannot decode)"
            row.append(cell)
            bad += [f"{p.relative_to(copy)}: decodes differently with {d} after the write"
                    for p in readable if p not in same]
        rows.append(row)
        bad += [f"{p.relative_to(copy)}: not byte-identical after undo" for p in mine if p not in identical]
        bad += [f"{p.relative_to(copy)}: not written" for p in mine if p not in written]
    header = ["format", "files", "written", "byte-identical after undo"] + [f"decode-identical after write ({d})"
                                                                            for d in decoders]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{len(files)} files, {time.time() - t0:.0f} s", file=sys.stderr)
    for line in bad:
        print(line, file=sys.stderr)
    if not args.keep:
        shutil.rmtree(work)
    else:
        print(f"kept: {work}", file=sys.stderr)
    return 1 if any("not byte-identical" in b or "decodes differently" in b for b in bad) else 0


if __name__ == "__main__":
    sys.exit(main())
