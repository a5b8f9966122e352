"""Finding audio files under the folders a user names."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

AUDIO_EXTENSIONS = frozenset({
    ".mp3", ".mp2", ".flac", ".ogg", ".oga", ".opus", ".wav", ".wave", ".aif", ".aiff", ".aifc",
    ".m4a", ".m4b", ".mp4", ".aac", ".alac", ".wma", ".wv", ".ape", ".mka", ".webm", ".caf", ".w64",
})
# never opened to sniff: what sits next to music in a library
NOT_AUDIO_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".txt", ".nfo", ".cue",
    ".log", ".m3u", ".m3u8", ".pls", ".pdf", ".db", ".ini", ".json", ".xml", ".html", ".md",
    ".sfv", ".md5", ".lrc", ".accurip", ".zip", ".rar", ".7z", ".exe", ".py", ".sh",
})


def sniff_audio(path: str) -> bool:
    """True if the file starts like a container we decode (files without a known extension)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return (head.startswith((b"ID3", b"fLaC", b"OggS", b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", b"wvpk", b"MAC "))
            or (head[:4] == b"RIFF" and head[8:12] == b"WAVE")
            or (head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"))
            or head[4:8] == b"ftyp")


@dataclass(frozen=True)
class FoundFile:
    path: str  # absolute, as reached (a symlink keeps its own path)
    size: int
    mtime_ns: int
    identity: tuple[int, int] | None = field(default=None, compare=False)  # (device, inode) of the real file


@dataclass
class Discovery:
    files: list[FoundFile]
    problems: list[tuple[str, str]]  # (path, reason) for folders we could not read
    # audio files whose names are not valid UTF-8: the database cannot hold such a path, so
    # they are recorded as failures under a printable stand-in (bytes as \xNN)
    bad_names: list[FoundFile] = field(default_factory=list)


BAD_NAME_REASON = "file name is not valid UTF-8; rename it (e.g. with convmv) to scan it"


def printable_path(path: str) -> str:
    """A path as text that can be stored and printed: undecodable bytes become \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def discover(roots: Iterable[str | os.PathLike[str]], include_hidden: bool = False) -> Discovery:
    """Every audio file under ``roots`` (files may be named directly), each inode once.

    Symbolic links are followed, each real folder is entered once (so link loops end), and a
    file reachable by two paths is one track, under the first path in sorted walk order.
    """
    files: list[FoundFile] = []
    problems: list[tuple[str, str]] = []
    bad_names: list[FoundFile] = []
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()

    def consider(path: str, st: os.stat_result, by_extension_only: bool = False) -> None:
        key = (st.st_dev, st.st_ino)
        if key in seen_files:
            return
        ext = os.path.splitext(path)[1].lower()
        if ext in AUDIO_EXTENSIONS or (not by_extension_only and ext not in NOT_AUDIO_EXTENSIONS
                                       and sniff_audio(path)):
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:
                seen_files.add(key)
                bad_names.append(FoundFile(printable_path(path), st.st_size, st.st_mtime_ns))
                return
            seen_files.add(key)
            files.append(FoundFile(path, st.st_size, st.st_mtime_ns, key))

    def walk(top: str) -> None:
        stack = [top]  # depth-first, in sorted order, without recursion limits
        while stack:
            folder = stack.pop()
            try:
                st = os.stat(folder)
                if (st.st_dev, st.st_ino) in seen_dirs:
                    continue
                seen_dirs.add((st.st_dev, st.st_ino))
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                problems.append((folder, e.strerror or str(e)))
                continue
            subfolders = []
            for entry in entries:
                if not include_hidden and _is_hidden(entry.name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=True)
                except OSError as e:  # dangling link, link loop, vanished file
                    problems.append((entry.path, e.strerror or str(e)))
                    continue
                if stat.S_ISDIR(st.st_mode):
                    subfolders.append(entry.path)
                elif stat.S_ISREG(st.st_mode):
                    consider(entry.path, st)
            stack.extend(reversed(subfolders))

    for root in roots:
        root = os.path.abspath(os.path.expanduser(os.fspath(root)))
        try:
            st = os.stat(root)
        except OSError as e:
            problems.append((root, e.strerror or str(e)))
            continue
        if stat.S_ISDIR(st.st_mode):
            walk(root)
        elif stat.S_ISREG(st.st_mode):
            consider(root, st)
    return Discovery(files, problems, bad_names)


def under(path: str, roots: Iterable[str]) -> bool:
    """Whether ``path`` lies in one of the (absolute) ``roots``."""
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def fingerprint(path: str | os.PathLike[str], size: int | None = None) -> str:
    """A cheap content fingerprint (size + first, middle and last 64 KiB, SHA-1) that finds a
    moved or renamed file without reading it whole."""
    import hashlib

    block = 1 << 16
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size if size is None else size
        h = hashlib.sha1(str(size).encode())
        for offset in sorted({0, max(0, size // 2 - block // 2), max(0, size - block)}):
            f.seek(offset)
            h.update(f.read(block))
    return h.hexdigest()
