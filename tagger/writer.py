"""Writing predicted tags into audio files (shared/docs/metadata.md).

For each track: pick its top tags (a synonym group counts once, by its best member), plan the
field changes (tagger's own fields always; GENRE/MOOD/GROUPING only when asked and only if
empty, unless forced), then write to a temporary copy beside the file, read the copy back,
compare, and rename it over the original — so a file is never left half-written and audio
bytes are never touched by us. Every changed field's previous value goes to an undo journal.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tagger.discover import fingerprint
from tagger.library import Journal, Library, StoredModel
from tagger.tagfile import OWN_FIELDS, TagFile, TagWriteError
from tagger.vocab import MTAT_GENRES, MTAT_MOODS

OPTIONAL_FIELDS = ("mood", "genre", "grouping")


@dataclass(frozen=True)
class WriteOptions:
    top: int = 5
    min_prob: float = 0.2
    fields: tuple[str, ...] = ()  # optional fields to fill: mood, genre, grouping
    force: bool = False
    dry_run: bool = False


@dataclass
class FileOutcome:
    path: str
    status: str  # written | would-write | unchanged | skipped | failed
    reason: str = ""
    changes: list[tuple[str, list[str], list[str]]] = field(default_factory=list)  # (field, old, new)


def choose_tags(scores: dict[str, float], model: StoredModel, top: int, min_prob: float) -> list[tuple[str, float]]:
    """The track's best tags as names a person reads, best first: groups collapse their
    members ("female vocals" for female/woman/female vocal/female voice), other raw tags stay."""
    grouped = {m for members in model.vocabulary.groups.values() for m in members}
    candidates = {g.replace("_", " "): max(scores[m] for m in members)
                  for g, members in model.vocabulary.groups.items()}
    candidates.update({raw: p for raw, p in scores.items() if raw not in grouped})
    ranked = sorted(candidates.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(name, p) for name, p in ranked if p >= min_prob][:top]


def planned_values(chosen: list[tuple[str, float]], model: StoredModel, fields: Sequence[str]) -> dict[str, list[str]]:
    names = [n for n, _ in chosen]
    values = {"tags": names,
              "scores": [";".join(f"{n}={p:.3f}" for n, p in chosen)] if chosen else [],
              "model": [f"{model.name} sha256:{model.sha256} {time.strftime('%Y-%m-%d')}"]}
    if "genre" in fields:
        values["genre"] = [n for n in names if n in MTAT_GENRES]
    if "mood" in fields:
        values["mood"] = [n for n in names if n in MTAT_MOODS]
    if "grouping" in fields:
        values["grouping"] = names
    return values


def _same(kind_id3_v23: bool, a: list[str], b: list[str]) -> bool:
    if kind_id3_v23:  # ID3v2.3 has no multi-values: mutagen stores "a/b"
        return "/".join(a) == "/".join(b)
    return a == b


def _write_safely(path: Path, changes: list[tuple[str, list[str], list[str]]]) -> None:
    """Apply ``changes`` to a copy in the same folder, verify the copy, rename it over ``path``."""
    if not os.access(path, os.W_OK):
        raise TagWriteError(path, "is read-only; left untouched")
    if not os.access(path.parent, os.W_OK):
        raise TagWriteError(path, "its folder is not writable (tagger writes a copy beside the file)")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tagger-tmp", dir=path.parent)
    os.close(fd)
    try:
        shutil.copy2(path, tmp)
        tf = TagFile(tmp)
        for f, _, new in changes:
            tf.set(f, new)
        tf.save()
        check = TagFile(tmp)
        v23 = check.kind == "id3" and check.id3_version == 3
        for f, _, new in changes:
            if not _same(v23, check.get(f), new):
                raise TagWriteError(path, f"read-back of {f} differs after writing; file left untouched")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _commit(library: Library, journal: Journal, run_id: int | None, path: Path,
            changes: list[tuple[str, list[str], list[str]]], dry_run: bool, note: str = "") -> FileOutcome:
    """The one way a planned change reaches a file: shown (dry run), or written safely,
    journaled for undo, and the file's new size/mtime recorded so rescans leave it alone."""
    if not changes:
        return FileOutcome(str(path), "unchanged")
    if dry_run:
        return FileOutcome(str(path), "would-write", changes=changes)
    try:
        _write_safely(path, changes)
    except TagWriteError as e:
        return FileOutcome(str(path), "failed", e.reason)
    except OSError as e:  # disk full, permissions…: the copy is gone, the original untouched
        return FileOutcome(str(path), "failed", f"cannot write: {e.strerror or e}")
    journal.record(run_id, str(path), changes)
    st = path.stat()
    library.update_file_state(str(path), st.st_size, st.st_mtime_ns, fingerprint(path, st.st_size))
    return FileOutcome(str(path), "written", note, changes)


def start_write_run(library: Library, options: WriteOptions) -> int:
    """A journal run that ``write_tracks`` calls record into; ``--undo`` undoes a run whole."""
    return Journal(library).start("write", {"top": options.top, "min": options.min_prob,
                                            "fields": list(options.fields), "force": options.force})


def write_tracks(library: Library, rows: Sequence, options: WriteOptions,
                 on_file: Callable[[FileOutcome], None] | None = None,
                 run_id: int | None = None) -> list[FileOutcome]:
    """Write tags for track ``rows`` (from Library.tracks_under); one outcome per row. The
    changes are journaled in ``run_id`` (a new run if None), so that a scan writing in many
    batches is still one undoable run."""
    journal = Journal(library)
    if run_id is None and not options.dry_run:
        run_id = start_write_run(library, options)
    models: dict[int, StoredModel] = {}
    outcomes = []
    for row in rows:
        if row.model_id not in models:
            models[row.model_id] = library.model(model_id=row.model_id)
        outcome = _write_one(library, row, models[row.model_id], options, journal, run_id)
        outcomes.append(outcome)
        if on_file:
            on_file(outcome)
    return outcomes


def _write_one(library, row, model, options, journal, run_id) -> FileOutcome:
    path = Path(row.path)
    try:
        st = path.stat()
    except OSError as e:
        return FileOutcome(row.path, "skipped", f"cannot stat: {e.strerror}")
    if st.st_size != row.size or st.st_mtime_ns != row.mtime_ns:
        return FileOutcome(row.path, "skipped", "changed since it was scanned; run 'tagger scan' first")
    try:
        tf = TagFile(path)
        current = tf.read_all()
    except TagWriteError as e:
        return FileOutcome(row.path, "failed", e.reason)
    if not options.force and any(f"sha256:{model.sha256}" in v for v in current["model"]):
        return FileOutcome(row.path, "skipped", "already tagged by this model (--force rewrites)")
    chosen = choose_tags(library.track_scores(row.id), model, options.top, options.min_prob)
    v23 = tf.kind == "id3" and tf.id3_version == 3
    changes = []
    for f, new in planned_values(chosen, model, options.fields).items():
        old = current[f]
        if f not in OWN_FIELDS and old and not options.force:
            continue  # fill, don't clobber: the user's own GENRE/MOOD/GROUPING stay
        if f == "model" and _same(v23, [v.rsplit(" ", 1)[0] for v in old], [v.rsplit(" ", 1)[0] for v in new]):
            continue  # same model, only the date would change
        if not _same(v23, old, new):
            changes.append((f, old, new))
    return _commit(library, journal, run_id, path, changes, options.dry_run)


def remove_tags(library: Library, rows: Sequence, dry_run: bool = False,
                on_file: Callable[[FileOutcome], None] | None = None) -> list[FileOutcome]:
    """Delete tagger's own fields (and nothing else) from the files of ``rows``."""
    journal = Journal(library)
    run_id = None if dry_run else journal.start("remove", {})
    outcomes = []
    for row in rows:
        try:
            tf = TagFile(row.path)
            changes = [(f, tf.get(f), []) for f in OWN_FIELDS if tf.get(f)]
            outcome = _commit(library, journal, run_id, Path(row.path), changes, dry_run)
        except TagWriteError as e:
            outcome = FileOutcome(row.path, "failed", e.reason)
        outcomes.append(outcome)
        if on_file:
            on_file(outcome)
    return outcomes


def undo(library: Library, run_id: int | None = None, dry_run: bool = False,
         on_file: Callable[[FileOutcome], None] | None = None) -> tuple[int | None, list[FileOutcome]]:
    """Restore the fields a write or remove run changed (the last one by default). A field
    changed again since then is left alone and reported."""
    journal = Journal(library)
    run_id = run_id or journal.last_undoable()
    if run_id is None or journal.run(run_id) is None:
        return None, []
    undo_id = None if dry_run else journal.start("undo", {"run": run_id})
    outcomes = []
    for path_text, entries in journal.entries(run_id).items():
        try:
            tf = TagFile(path_text)
            v23 = tf.kind == "id3" and tf.id3_version == 3
            changes, stale = [], []
            for f, old, new in entries:
                (changes if _same(v23, tf.get(f), new) else stale).append((f, tf.get(f), old))
            if not changes:
                outcome = FileOutcome(path_text, "skipped", "fields changed since that run; left alone")
            else:
                note = f"not restored (changed since): {', '.join(f for f, *_ in stale)}" if stale else ""
                outcome = _commit(library, journal, undo_id, Path(path_text), changes, dry_run, note)
        except TagWriteError as e:
            outcome = FileOutcome(path_text, "failed", e.reason)
        outcomes.append(outcome)
        if on_file:
            on_file(outcome)
    if not dry_run:
        journal.mark_undone(run_id, undo_id)
    return run_id, outcomes


def select_tracks(library: Library, roots: Sequence[str] = (), tags: Sequence[str] = (),
                  not_tags: Sequence[str] = (), match_min: float | None = None,
                  model_name: str | None = None) -> list:
    """Track rows to write: every tagged track, or those under ``roots``, or those a query
    (``tags``/``not_tags``/``match_min``, as in ``tagger query``) returns."""
    from tagger.query import TrackQuery, parse_terms, run_query

    roots = [os.path.abspath(os.path.expanduser(str(r))) for r in roots]
    rows = library.tracks_under(roots or None)
    if tags or not_tags or model_name:
        model = library.model(name=model_name)
        rows = [r for r in rows if r.model_id == model.id]
        if tags or not_tags:
            terms = parse_terms(model.vocabulary, tags, not_tags)
            wanted = {r.path for r in run_query(library, TrackQuery(terms, match_min, None), model)}
            rows = [r for r in rows if r.path in wanted]
    return rows


def parse_fields(text: str) -> tuple[str, ...]:
    """``tags,mood,genre`` → the optional fields asked for (tagger's own are always written)."""
    from tagger.errors import UsageError

    names = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in names if f not in ("tags", *OPTIONAL_FIELDS)]
    if unknown:
        raise UsageError(None, f"unknown field(s) {', '.join(unknown)}",
                         f"choose from tags, {', '.join(OPTIONAL_FIELDS)}")
    return tuple(f for f in OPTIONAL_FIELDS if f in names)
