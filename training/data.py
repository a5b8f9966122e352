"""Training data: MagnaTagATune, a CSV of your own labels, or any folder of audio (whose
targets come from teacher models, training/teacher.py), decoded once into a cache.

A dataset is a list of clips (source path, 0/1 label vector, optional soft targets, split)
plus its tag list. The
cache holds each clip as 16 kHz mono float16 in its own ``.npy`` (read memory-mapped) with a
CRC-32 in ``manifest.json``; ``prepare`` fills it, resumes where it stopped, and rebuilds any
entry whose file is missing or whose checksum no longer matches. By default it lives in the
user cache folder, one folder per audio folder (``default_cache_dir``), never beside the music.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import platformdirs
import torch
from torch.utils.data import Dataset

from tagger.audio.chunks import cut_chunks
from tagger.audio.decode import decode
from tagger.audio.discover import discover
from tagger.errors import TaggerError, UsageError
from tagger.files.atomic import replace_atomically
from tagger.model.vocab import MTAT_GROUP_ALIASES, MTAT_GROUPS, MTAT_TAGS
from training.splits import SPLITS, assign_splits

SAMPLE_RATE = 16000
CHUNK = 48000


@dataclass
class Clip:
    key: str  # normalised path relative to the audio root: the clip's identity (cache, split, fingerprint)
    path: str  # source path (absolute for a CSV)
    labels: np.ndarray  # [n_tags] uint8: what evaluation scores against (ROC-AUC needs 0/1)
    split: str
    # [n_tags] float32 in [0, 1]: what training fits, where it is not the labels themselves
    # (a teacher's probabilities); None: the labels
    targets: np.ndarray | None = None

    @property
    def train_targets(self) -> np.ndarray:
        """What the loss compares the model's output with: ``[n_tags]`` float32."""
        return (self.labels if self.targets is None else self.targets).astype(np.float32)


@dataclass
class TagDataset:
    name: str
    tags: list[str]
    clips: list[Clip]
    groups: dict[str, list[str]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    root: Path | None = None  # the folder the clip keys are relative to
    # the models whose probabilities are the targets ({"name", "sha256"} each); [] for labels
    teachers: list[dict] = field(default_factory=list)

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if c.split == name]

    def fingerprint(self) -> str:
        """Identifies the data a model was trained on: tags, clips, labels and splits."""
        h = hashlib.sha256("\n".join(self.tags).encode())
        for t in self.teachers:  # other teachers are other targets, though the labels may agree
            h.update(f"teacher\t{t['sha256']}\n".encode())
        for c in sorted(self.clips, key=lambda c: c.key):
            h.update(f"{c.key}\t{c.split}\t{''.join(map(str, c.labels.tolist()))}\n".encode())
        return h.hexdigest()

    def summary(self) -> dict:
        """What a run records of its data, so that a later one can say what changed."""
        return {"fingerprint": self.fingerprint(), "tags": list(self.tags),
                "clips": {s: len(self.split(s)) for s in SPLITS}}


def recorded_data(provenance: dict, tags: list[str]) -> dict | None:
    """The ``summary()`` of the data a model was trained on, from its card's provenance (None
    for models tagger train did not write)."""
    if not provenance.get("data_fingerprint"):
        return None
    return {"fingerprint": provenance["data_fingerprint"], "tags": list(tags), "clips": provenance.get("clips", {})}


def describe_change(before: dict, now: dict) -> str | None:
    """How the data of summary ``now`` differs from ``before``, in a phrase; None when it does not."""
    if before.get("fingerprint") == now["fingerprint"]:
        return None
    parts = []
    for word, names in (("added", [t for t in now["tags"] if t not in before.get("tags", [])]),
                        ("removed", [t for t in before.get("tags", []) if t not in now["tags"]])):
        if names:
            parts.append(f"tags {word}: {', '.join(names)}")
    old, new = before.get("clips", {}), now["clips"]
    moved = ", ".join(f"{s} {old.get(s, 0)} → {new[s]}" for s in SPLITS if old.get(s, 0) != new[s])
    if sum(old.values()) != sum(new.values()):
        parts.append(f"{sum(old.values())} → {sum(new.values())} clips: {moved}")
    elif moved:
        parts.append(f"other clips per split: {moved}")
    return "; ".join(parts) or "the same tags and numbers of clips, but other files, labels or splits"


def _mtat_split_from_folder(mp3_path: str) -> str:
    folder = mp3_path.split("/")[0].lower()
    return "train" if folder in "0123456789ab" else "valid" if folder == "c" else "test"


def _read_split_dir(split_dir: Path) -> dict[str, str]:
    """``row<TAB>dir/file.mp3`` list files → path → split."""
    names = {"train": ("train",), "valid": ("valid", "val", "validation"), "test": ("test",)}
    out: dict[str, str] = {}
    for split, stems in names.items():
        files = [split_dir / f"{s}{ext}" for s in stems for ext in (".tsv", ".txt", "")]
        found = next((f for f in files if f.is_file()), None)
        if found is None:
            raise UsageError(split_dir, f"has no {split} list", f"expected one of {', '.join(f.name for f in files[:3])}")
        for line in found.read_text().splitlines():
            if line.strip():
                out[line.split("\t")[-1].strip()] = split
    return out


def load_mtat(data_dir: str | os.PathLike[str], split_dir: str | os.PathLike[str] | None = None,
              n_tags: int = 50) -> TagDataset:
    """``annotations_final.csv`` (tab-separated: clip_id, 188 tag columns, mp3_path) and the
    mp3 folders; the ``n_tags`` most frequent tags; split by folder (0–b / c / d–f) or by
    the list files in ``split_dir``. Training clips without any of the tags are dropped."""
    root = Path(data_dir).expanduser()
    ann = root / "annotations_final.csv"
    if not ann.is_file():
        raise UsageError(ann, "not found", "--data-dir must be the MagnaTagATune folder")
    with ann.open(newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    header = rows[0]
    if header[0] != "clip_id" or header[-1] != "mp3_path":
        raise UsageError(ann, "is not MagnaTagATune's annotations_final.csv (clip_id … mp3_path)")
    all_tags = header[1:-1]
    matrix = np.array([[int(v) for v in r[1:-1]] for r in rows[1:] if len(r) == len(header)], dtype=np.uint8)
    paths = [r[-1] for r in rows[1:] if len(r) == len(header)]
    counts = matrix.sum(axis=0).astype(np.int64)  # unsigned counts would overflow when negated
    order = sorted(range(len(all_tags)), key=lambda i: (-counts[i], all_tags[i]))[:n_tags]
    tags = [all_tags[i] for i in order]
    groups, aliases = {}, {}
    if set(tags) == set(MTAT_TAGS):  # the published top 50: keep its order and groups
        tags, groups, aliases = list(MTAT_TAGS), MTAT_GROUPS, MTAT_GROUP_ALIASES
    cols = [all_tags.index(t) for t in tags]
    splits = _read_split_dir(Path(split_dir)) if split_dir else None
    clips = []
    for p, row in zip(paths, matrix):
        split = splits.get(p) if splits is not None else _mtat_split_from_folder(p)
        labels = row[cols]
        if split is None or (split == "train" and labels.sum() == 0):
            continue
        clips.append(Clip(p, str(root / p), labels, split))
    return TagDataset("mtat", tags, clips, groups, aliases, root)


def load_csv(labels: str | os.PathLike[str], audio_root: str | os.PathLike[str], seed: int = 0,
             valid_frac: float = 0.1, test_frac: float = 0.1) -> TagDataset:
    """A ``path`` (or ``file``) column relative to ``audio_root``, then either a ``tags`` column
    (``;``-separated) or one 0/1 column per tag; an optional ``split`` column (train/valid/test).
    Rows naming one file (``a.wav``, ``./a.wav``; one row per tag) are one clip with all their
    labels. Files without a split get a seeded one that stays put as rows are added and leaves
    no split empty (training/splits.py)."""
    labels_path = Path(labels).expanduser()
    rows = _read_rows(labels_path)
    columns = list(rows[0])
    path_col = next((c for c in ("path", "file", "filename") if c in columns), None)
    if path_col is None:
        raise UsageError(labels_path, "needs a 'path' column")
    tags, vectors = _row_labels(rows, columns, path_col, labels_path)
    root = Path(audio_root).expanduser()
    files = _by_file(rows, vectors, path_col, root, labels_path)
    keys = list(files)
    fractions = {"valid": valid_frac, "test": test_frac}  # train: the rest
    splits = assign_splits([files[k].split for k in keys], [files[k].labels for k in keys], keys, seed,
                           fractions, str(labels_path))
    clips = [Clip(k, files[k].path, files[k].labels, split) for k, split in zip(keys, splits)]
    return TagDataset("csv", tags, clips, root=root)


def load_folder(data_dir: str | os.PathLike[str], test_folders: list[str] | tuple[str, ...] = (),
                seed: int = 0, valid_frac: float = 0.1, test_frac: float = 0.1) -> TagDataset:
    """Every audio file under ``data_dir`` (tagger.audio.discover: by extension or content, hidden
    files skipped) as one clip per file, without tags yet: training/teacher.py gives them
    their targets (and cuts long files into clips). Split per file, so the clips of one file
    never land in two splits: files under ``test_folders`` (folders relative to ``data_dir``,
    e.g. whole albums held out) are the test split, the rest get a seeded hash split that
    stays put as files are added (valid ``valid_frac``; test ``test_frac`` only when no test
    folders are given)."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UsageError(root, "is not a folder", "--data-dir must be a folder of audio files")
    held_out = [f.strip().strip("/") for f in test_folders if f.strip().strip("/")]
    missing = [f for f in held_out if not (root / f).is_dir()]
    if missing:
        raise UsageError(root, f"has no folder {', '.join(missing)} (--test-folders)",
                         "name folders relative to --data-dir, comma-separated")
    found = discover([root]).files
    if not found:
        raise UsageError(root, "holds no audio files", "point --data-dir at a folder with music in it")
    keys, paths = [], []
    resolved = root.resolve()
    for f in found:
        key, path = _normalised(root, f.path)
        if not Path(path).is_relative_to(resolved):  # a link out of the folder: keep its own path
            key, path = os.path.relpath(f.path, root), f.path
        keys.append(key)
        paths.append(path)
    given = ["test" if any(k == h or k.startswith(h + "/") for h in held_out) else None for k in keys]
    need = 2 if held_out else 3  # a file for each split the hash split must fill
    if given.count(None) < need:
        where = " outside --test-folders" if held_out else ""
        raise UsageError(root, f"has {given.count(None)} audio file(s){where}",
                         f"training needs at least {need}: to train on, to validate with"
                         f"{'' if held_out else ' and to test'}")
    splits = assign_splits(given, [np.zeros(0, np.uint8)] * len(keys), keys, seed,
                           {"valid": valid_frac, "test": 0.0 if held_out else test_frac}, str(root),
                           "or fewer --test-folders")
    clips = [Clip(k, p, np.zeros(0, np.uint8), s) for k, p, s in zip(keys, paths, splits)]
    return TagDataset("folder", [], clips, root=root)


def _read_rows(path: Path) -> list[dict]:
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark, which would hide 'path'
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise UsageError(path, f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(path, "is not UTF-8 text (Latin-1 or Windows-1252?)",
                         "save it as UTF-8, e.g. Excel's 'CSV UTF-8'") from None
    except csv.Error as e:
        raise UsageError(path, f"is not a CSV file tagger can read ({e})", "save it as UTF-8 CSV") from None
    rows = [r for r in rows if not _blank(r)]  # spreadsheets save empty rows as ",,,"
    if not rows:
        raise UsageError(path, "has no rows")
    return rows


def _blank(row: dict) -> bool:
    return not any(isinstance(v, str) and v.strip() for v in row.values())


def _row_labels(rows: list[dict], columns: list[str], path_col: str,
                source: Path) -> tuple[list[str], list[np.ndarray]]:
    """The tags and one 0/1 vector per row."""
    if "tags" in columns:
        named = [{t.strip() for t in (r["tags"] or "").split(";") if t.strip()} for r in rows]
        tags = sorted(set().union(*named))
        vectors = [np.array([t in n for t in tags], np.uint8) for n in named]
    else:
        tags = [c for c in columns if c not in (path_col, "split")]
        try:
            vectors = [np.array([int(r[t] or 0) for t in tags], np.uint8) for r in rows]
        except ValueError:
            raise UsageError(source, "tag columns must hold 0 or 1 (or use one 'tags' column)") from None
    if not tags:
        raise UsageError(source, "names no tags")
    return tags, vectors


@dataclass
class _File:
    path: str
    labels: np.ndarray
    split: str | None


def _by_file(rows: list[dict], vectors: list[np.ndarray], path_col: str, root: Path,
             source: Path) -> dict[str, _File]:
    """Rows grouped by the file they name (key → file, in first-row order), labels merged: a
    file in two clips could land in train and test at once, each with part of its labels."""
    files: dict[str, _File] = {}
    for row, vector in zip(rows, vectors):
        written = row[path_col] or ""
        if not written.strip():
            raise UsageError(source, "has a row without a path", "fill it in or delete the row")
        key, path = _normalised(root, written)
        split, known = _given_split(row), files.get(key)
        if known is None:
            files[key] = _File(path, vector.copy(), split)
            continue
        if split and known.split and split != known.split:
            raise UsageError(source, f"{key} is given two splits, {known.split} and {split}",
                             "give all rows of a file the same split, or leave it empty")
        known.labels |= vector
        known.split = known.split or split
    return files


def _normalised(root: Path, written: str) -> tuple[str, str]:
    """(key, absolute path) of a path as a label file writes it: resolved against ``root``, so
    ``a.wav``, ``./a.wav``, ``sub/../a.wav`` and a link to it are one file; the key is relative
    to ``root`` when the file is inside it (a moved music folder keeps its clips' splits)."""
    path = (root / written).resolve()
    try:
        return path.relative_to(root.resolve()).as_posix(), str(path)
    except ValueError:  # outside the root: ../x.wav, or an absolute path elsewhere
        return path.as_posix(), str(path)


def _given_split(row: dict) -> str | None:
    split = (row.get("split") or "").strip().lower()
    split = {"val": "valid", "validation": "valid"}.get(split, split)
    return split if split in SPLITS else None


# --- the cache ----------------------------------------------------------------------------

def default_cache_dir(data: TagDataset) -> Path:
    """``tagger/training/FOLDER-HASH`` in the user cache folder (platformdirs, so
    ``$XDG_CACHE_HOME`` on Linux), one per audio folder: entries are keyed by the path relative
    to it, so label files (or MTAT and a CSV) over the same folder share its decoded clips. Each
    entry records its source's absolute path too, so folders with the same layout under one
    ``--cache`` never take each other's clips."""
    root = (data.root or Path(".")).expanduser().absolute()
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", root.name)[:40] or "root"
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    return Path(platformdirs.user_cache_dir("tagger")) / "training" / f"{readable}-{digest}"


@dataclass
class PrepareReport:
    total: int = 0
    cached: int = 0
    decoded: int = 0
    rebuilt: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def _entry_file(key: str) -> str:
    h = hashlib.sha1(key.encode()).hexdigest()
    return f"{h[:2]}/{h}.npy"


def _decode_clip(args: tuple[str, str, str]) -> tuple[str, dict | None, str | None]:
    key, source, target = args
    try:
        audio = decode(source, SAMPLE_RATE).astype(np.float16)
    except TaggerError as e:
        return key, None, e.reason
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with replace_atomically(target, sync=False) as tmp, open(tmp, "wb") as f:
        np.save(f, audio)  # a file object: np.save would add .npy to the temporary's name
    st = os.stat(source)
    return key, {"file": os.path.relpath(target, Path(target).parent.parent), "samples": int(len(audio)),
                 "crc32": zlib.crc32(audio.tobytes()), "source": os.path.abspath(source),
                 "source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}, None


class Cache:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self.manifest_path = self.root / "manifest.json"
        self.entries: dict[str, dict] = {}
        self.failed: dict[str, str] = {}
        if self.manifest_path.is_file():
            try:
                data = json.loads(self.manifest_path.read_text())
                self.entries, self.failed = data.get("entries", {}), data.get("failed", {})
            except (ValueError, OSError):
                pass  # a damaged manifest: every entry is verified and rebuilt as needed

    def valid(self, key: str, source: str, full: bool = True) -> bool:
        """Whether the entry can be trusted: it was decoded from this very file (another audio
        folder with the same layout has the same keys; entries older than the ``source`` field
        are decoded again), the source is unchanged and the cached samples are there (``full``:
        and their CRC-32 matches, which reads them all)."""
        e = self.entries.get(key)
        if e is None or e.get("source") != os.path.abspath(source):
            return False
        try:
            st = os.stat(source)
            if (st.st_size, st.st_mtime_ns) != (e["source_size"], e["source_mtime_ns"]):
                return False
            audio = np.load(self.root / e["file"], mmap_mode="r")
            if len(audio) != e["samples"]:
                return False
            return not full or zlib.crc32(np.ascontiguousarray(audio).tobytes()) == e["crc32"]
        except (OSError, ValueError, KeyError):
            return False

    def load(self, key: str) -> np.ndarray:
        """The clip's samples ``[T]`` float16, memory-mapped; a segment's part of its file."""
        e = self.entries[key]
        audio = np.load(self.root / e["file"], mmap_mode="r")
        return audio[e["start"]:e["stop"]] if "start" in e else audio

    def add_segments(self, file_key: str, segments: list[tuple[str, int, int]]) -> None:
        """Entries ``key → file_key's samples[start:stop]`` for ``(key, start, stop)``: clips cut
        from one decoded file share its samples (nothing is copied). Kept in memory only; the
        teacher step makes them on every run."""
        whole = self.entries[file_key]
        for key, start, stop in segments:
            self.entries[key] = dict(whole, start=int(start), stop=int(stop), of=file_key)

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        entries = {k: e for k, e in self.entries.items() if "of" not in e}  # segments: made anew
        with replace_atomically(self.manifest_path) as tmp, open(tmp, "w") as f:
            json.dump({"version": 1, "sample_rate": SAMPLE_RATE, "entries": entries,
                       "failed": self.failed}, f)

    def prepare(self, clips: list[Clip], workers: int = 2, full_check: bool = True,
                on_progress: Callable[[int, int], None] | None = None) -> PrepareReport:
        """Decode every clip not already (validly) cached; resumable and self-healing."""
        report = PrepareReport(total=len(clips))
        todo = []
        for c in clips:
            if self.valid(c.key, c.path, full_check):
                report.cached += 1
            else:
                report.rebuilt += c.key in self.entries
                todo.append((c.key, c.path, str(self.root / _entry_file(c.key))))
        done = report.cached
        if on_progress:
            on_progress(done, len(clips))
        self.root.mkdir(parents=True, exist_ok=True)
        pool = ProcessPoolExecutor(workers) if workers > 0 and len(todo) > 1 else None
        results = pool.map(_decode_clip, todo, chunksize=4) if pool else map(_decode_clip, todo)
        try:
            for i, (key, entry, error) in enumerate(results, 1):
                if entry is None:
                    self.failed[key] = error
                    self.entries.pop(key, None)
                    report.failed[key] = error
                else:
                    self.entries[key] = entry
                    self.failed.pop(key, None)
                    report.decoded += 1
                done += 1
                if on_progress:
                    on_progress(done, len(clips))
                if i % 200 == 0:
                    self.save()  # resumable: what is done stays done
        finally:
            self.save()
            if pool:
                pool.shutdown(cancel_futures=True)
        return report


# --- torch datasets -----------------------------------------------------------------------

class CropDataset(Dataset):
    """Training: one random 3 s crop per clip per epoch, reproducible from (seed, epoch, i)."""

    def __init__(self, cache: Cache, clips: list[Clip], seed: int = 0) -> None:
        self.cache, self.clips, self.seed, self.epoch = cache, clips, seed, 0

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        clip = self.clips[i]
        audio = self.cache.load(clip.key)
        rng = np.random.default_rng((self.seed, self.epoch, i))
        start = int(rng.integers(0, max(1, len(audio) - CHUNK + 1)))
        x = cut_chunks(np.asarray(audio[start:start + CHUNK], dtype=np.float32), CHUNK, 1)[0]
        return torch.from_numpy(x), torch.from_numpy(clip.train_targets)


def evenly_spaced_chunks(audio: np.ndarray, n: int) -> np.ndarray:
    """The recipe's evaluation protocol: exactly ``n`` evenly spaced 3 s chunks ``[n, 48000]``
    float32, overlapping where the clip is short (a clip under 3 s is repeated to fill one).
    Teacher targets use the same chunks, so a teacher scores a clip as evaluation does."""
    audio = np.asarray(audio, dtype=np.float32)
    if len(audio) < CHUNK:
        audio = cut_chunks(audio, CHUNK, 1)[0]
    starts = np.linspace(0, len(audio) - CHUNK, n).round().astype(int)
    return np.stack([audio[s:s + CHUNK] for s in starts])


class ChunksDataset(Dataset):
    """Evaluation: ``n`` evenly spaced 3 s chunks per clip → ``[n, 48000]``."""

    def __init__(self, cache: Cache, clips: list[Clip], n: int = 16) -> None:
        self.cache, self.clips, self.n = cache, clips, n

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        clip = self.clips[i]
        chunks = evenly_spaced_chunks(self.cache.load(clip.key), self.n)
        return torch.from_numpy(chunks), torch.from_numpy(clip.labels.astype(np.float32))
