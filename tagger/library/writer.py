"""Writing predicted tags into audio files (shared/docs/metadata.md).

For each track: pick its top tags (a synonym group counts once, by its best member), plan the
field changes (tagger's own fields unless the file is tagged by this model already;
GENRE/MOOD/GROUPING only when asked and only if empty, unless forced), then write to a
temporary copy beside the file, read the copy back, compare, journal the change, and rename
the copy over the original: a file is never left half-written, audio bytes are never touched
by us, and a run killed at any point can be undone (the journal row comes before the rename).

A symlink is followed: the file it points to is written and the link stays a link. A file
with other hard links is left alone unless ``break_hardlinks``: renaming a copy over one name
would give that name a new file and leave the other names with the old tags.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tagger.audio.discover import fingerprint
from tagger.errors import CommandLineError, UsageError
from tagger.files.atomic import remove_stale_temps_in, replace_atomically
from tagger.files.fields import FIELD_CHOICES, OPTIONAL_FIELDS, OWN_FIELDS
from tagger.files.tagfile import TagFile, TagWriteError
from tagger.library.learned import LEARNED_MIN
from tagger.model.vocab import GENRES, MOODS, tag_name
from tagger.store.catalog import Store, StoredModel
from tagger.store.journal import Journal

Changes = list[tuple[str, list[str], list[str]]]  # (field, old, new)


class HardLinkedError(TagWriteError):
    """A file shares its data with other names, which a write would leave behind."""


@dataclass(frozen=True)
class WriteOptions:
    top: int = 5
    min_prob: float = 0.2
    fields: tuple[str, ...] = ()  # optional fields to fill: mood, genre, grouping
    force: bool = False
    dry_run: bool = False
    break_hardlinks: bool = False  # write hard-linked files anyway (this name gets its own copy)


@dataclass
class FileOutcome:
    path: str
    status: str  # written | would-write | unchanged | already-tagged | no-tags | skipped | failed
    reason: str = ""
    changes: Changes = field(default_factory=list)
    settled: bool = False  # skipped on purpose: trying again would leave it alone again


def choose_tags(scores: dict[str, float], model: StoredModel, top: int, min_prob: float) -> list[tuple[str, float]]:
    """The track's best tags as names a person reads, best first: groups collapse their
    members ("female vocals" for female/woman/female vocal/female voice), other raw tags stay,
    and the model's learned tags (``tagger learn``) compete with them ("calm piano" for
    calm_piano). A learned tag counts from its own threshold (LEARNED_MIN, 0.5: where its
    classifier says "yes"), or from ``min_prob`` if that is higher."""
    grouped = {m for members in model.vocabulary.groups.values() for m in members}
    candidates = {g.replace("_", " "): max(scores[m] for m in members)
                  for g, members in model.vocabulary.groups.items()}
    candidates.update({raw: p for raw, p in scores.items() if raw not in grouped and raw not in model.learned})
    learned = {learned_label(name): p for name, p in scores.items() if name in model.learned}
    candidates.update(learned)
    ranked = sorted(candidates.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(name, p) for name, p in ranked
            if p >= (max(min_prob, LEARNED_MIN) if name in learned else min_prob)][:top]


def learned_label(name: str) -> str:
    """How a learned tag is written into files: as the model's tags are, with spaces."""
    return name.replace("_", " ")


@dataclass
class TrackTags:
    """What a track's models say, ready to write: the top tags of its main model, and the genres
    and moods of every model that scored it (an MTT and an MSD model: Classical or Techno from
    the one, Jazz, Hip-Hop or Mellow from the other), each label ranked by its best probability."""
    chosen: list[tuple[str, float]]  # the main model's top tags
    models: list[StoredModel]  # the models the written values come from, main first
    genres: list[str] = field(default_factory=list)  # GENRE values, best first
    moods: list[str] = field(default_factory=list)


def track_tags(scores: dict[int, dict[str, float]], models: Sequence[StoredModel], top: int, min_prob: float,
               fields: Sequence[str] = ()) -> TrackTags:
    """``scores``: model id → the track's scores by it; ``models``: those that scored it, the
    main one (the library's largest, or the one asked for) first. A genre or mood comes from a
    model's own top tags (``top`` of them at ``min_prob`` or more, as the tags are chosen)."""
    main = models[0]
    chosen = choose_tags(scores[main.id], main, top, min_prob)
    out = TrackTags(chosen, [main])
    wanted = [(kind, table) for kind, table in (("genres", GENRES), ("moods", MOODS)) if kind[:-1] in fields]
    if not wanted:
        return out
    best: dict[str, dict[str, float]] = {kind: {} for kind, _ in wanted}
    for m in models:
        picked = chosen if m is main else choose_tags(scores[m.id], m, top, min_prob)
        for name, p in picked:
            for kind, table in wanted:
                label = table.get(tag_name(name))
                if label is None:
                    continue
                if m not in out.models:
                    out.models.append(m)
                if p > best[kind].get(label, -1.0):
                    best[kind][label] = p
    for kind, labels in best.items():  # (a stable sort: of equal probabilities, the main model's first)
        setattr(out, kind, [label for label, _ in sorted(labels.items(), key=lambda kv: -kv[1])])
    return out


def planned_values(picked: TrackTags, fields: Sequence[str] = ()) -> dict[str, list[str]]:
    """The values of every field a write may set, for the fields asked for."""
    chosen = picked.chosen
    names = [n for n, _ in chosen]
    day = time.strftime('%Y-%m-%d')
    values = {"tags": names,
              "scores": [";".join(f"{n}={p:.3f}" for n, p in chosen)] if chosen else [],
              "model": [f"{m.name} sha256:{m.sha256} {day}" for m in picked.models]}
    optional = {"genre": picked.genres, "mood": picked.moods, "grouping": names}
    # the user's fields are only ever filled or (--force) replaced: a prediction with nothing
    # for a field must not delete what the user put there
    values.update({f: v for f, v in optional.items() if f in fields and v})
    return values


def _same(kind_id3_v23: bool, a: list[str], b: list[str]) -> bool:
    if kind_id3_v23:  # ID3v2.3 has no multi-values: mutagen stores "a/b"
        return "/".join(a) == "/".join(b)
    return a == b


def _reason(e: TagWriteError) -> str:
    return f"{e.reason} ({e.hint})" if e.hint else e.reason


def _file_to_write(path: Path, break_hardlinks: bool) -> Path:
    """The real file behind ``path`` (a symlink's target: the link itself stays), once it is
    known that tagger may replace it."""
    real = path.resolve()
    st = real.stat()
    if st.st_nlink > 1 and not break_hardlinks:
        raise HardLinkedError(path, f"has {st.st_nlink} hard links (names for the same data); writing "
                                    "would give this name a new file and leave the other names untagged",
                              "left untouched; --break-hardlinks writes it anyway")
    # a file nobody may write is the user's way of saying "leave it": root may, but won't
    if not os.access(real, os.W_OK) or not st.st_mode & 0o222:
        raise TagWriteError(path, "is read-only; left untouched", "make it writable (chmod u+w) to tag it")
    if not os.access(real.parent, os.W_OK):
        raise TagWriteError(path, "its folder is not writable (tagger writes a copy beside the file)")
    return real


def _state(path: Path) -> list:
    """What identifies a file's content cheaply: ``[size, mtime_ns, fingerprint]``."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, fingerprint(path, st.st_size)]


def _keep_owner(copy: Path, original: os.stat_result) -> None:
    """The copy replaces the original, so it takes the original's owner and group where we
    may set them (copy2 took the mode, times and extended attributes)."""
    try:
        os.chown(copy, original.st_uid, original.st_gid)
    except OSError:
        pass


def _verify(copy: Path, path: Path, changes: Changes) -> None:
    check = TagFile(copy)
    v23 = check.kind == "id3" and check.id3_version == 3
    for f, _, new in changes:
        if not _same(v23, check.get(f), new):
            raise TagWriteError(path, f"read-back of {f} differs after writing; file left untouched")


def _write_safely(path: Path, changes: Changes, journal_it: Callable[[list, list, tuple | None], None],
                  size: int | None = None, break_hardlinks: bool = False, ogg_pages: bytes | None = None) -> list:
    """Apply ``changes`` to a copy beside the real file, verify the copy, journal the change
    (``journal_it(state_before, state_after, ogg_pages)``, the last the Ogg comment pages an
    undo needs and the sha256 of the new ones, or None), then rename the copy over the file.
    ``ogg_pages``: put these comment pages back instead (a byte-exact undo). Returns the
    file's new state. On any error the file is untouched (should the rename itself fail, the
    journal row stays: undo finds the file as it was before and leaves it)."""
    real = _file_to_write(path, break_hardlinks)
    before = real.stat()
    with replace_atomically(real, remove_stale=False) as tmp:  # write_tracks swept the folder
        shutil.copy2(real, tmp)
        _keep_owner(tmp, before)
        try:
            tf = TagFile(tmp)
            for f, _, new in changes:
                tf.set(f, new)
            tf.save(size, ogg_pages)
            _verify(tmp, path, changes)
            pages = None
            if tf.undo_pages is not None:
                pages = (tf.undo_pages, hashlib.sha256(TagFile(tmp).comment_pages()).hexdigest())
        except TagWriteError as e:  # it names the temporary copy: name the file instead
            raise TagWriteError(path, e.reason, e.hint) from None
        after = _state(tmp)  # a rename keeps size, mtime and content: the file's state once replaced
        journal_it([before.st_size, before.st_mtime_ns], after, pages)
    return after


def _commit(library: Store, journal: Journal, run_id: int | None, path: Path, changes: Changes,
            dry_run: bool, note: str = "", size: int | None = None,
            break_hardlinks: bool = False, ogg_pages: bytes | None = None) -> FileOutcome:
    """The one way a planned change reaches a file: shown (dry run), or journaled and written
    safely, and the file's new size/mtime recorded so rescans leave it alone."""
    if not changes:
        return FileOutcome(str(path), "unchanged")
    if dry_run:
        return _dry_run(path, changes, break_hardlinks)

    def journal_it(before: list, after: list, pages: tuple | None) -> None:
        journal.record(run_id, str(path), changes, (before, after), pages)

    try:
        after = _write_safely(path, changes, journal_it, size, break_hardlinks, ogg_pages)
    except HardLinkedError as e:
        return FileOutcome(str(path), "skipped", _reason(e))
    except TagWriteError as e:
        return FileOutcome(str(path), "failed", _reason(e))
    except OSError as e:  # disk full, permissions…: the copy is gone, the original untouched
        return FileOutcome(str(path), "failed", f"cannot write: {e.strerror or e}")
    library.update_file_state(str(path), *after)
    return FileOutcome(str(path), "written", note, changes)


def _dry_run(path: Path, changes: Changes, break_hardlinks: bool) -> FileOutcome:
    """What ``_commit`` would do, short of writing: a file it would refuse is reported as such."""
    try:
        _file_to_write(path, break_hardlinks)
    except HardLinkedError as e:
        return FileOutcome(str(path), "skipped", _reason(e))
    except TagWriteError as e:
        return FileOutcome(str(path), "failed", _reason(e))
    except OSError as e:
        return FileOutcome(str(path), "failed", f"cannot write: {e.strerror or e}")
    try:
        tf = TagFile(path)
        if tf.is_ogg:  # pages tagger could not rewrite without touching the audio: said now, not after
            tf.check_ogg()
    except TagWriteError as e:
        return FileOutcome(str(path), "failed", _reason(e))
    return FileOutcome(str(path), "would-write", changes=changes)


def _remove_stale_temps(paths: Iterable[str]) -> None:
    """Delete the temporary copies killed runs left in the folders of ``paths`` (one listing
    per folder; a symlink's copies sit beside its target)."""
    folders = set()
    for p in paths:
        try:
            folders.add(Path(p).resolve().parent)
        except OSError:
            continue
    for folder in folders:
        remove_stale_temps_in(folder)


def start_write_run(library: Store, options: WriteOptions) -> int:
    """A journal run that ``write_tracks`` calls record into; ``--undo`` undoes a run whole."""
    return Journal(library).start("write", {"top": options.top, "min": options.min_prob,
                                            "fields": list(options.fields), "force": options.force})


def write_tracks(library: Store, rows: Sequence, options: WriteOptions,
                 on_file: Callable[[FileOutcome], None] | None = None,
                 run_id: int | None = None, models: Sequence[StoredModel] | None = None) -> list[FileOutcome]:
    """Write tags for track ``rows`` (from Library.tracks_under); one outcome per row. The
    changes are journaled in ``run_id`` (a new run if None), so that a scan writing in many
    batches is still one undoable run. ``models``: the library's models, the main one first
    (``Store.scored_models()``, which reads every track: a scan writing at every commit reads
    it once)."""
    journal = Journal(library)
    if not options.dry_run:
        _remove_stale_temps(r.path for r in rows)
        if run_id is None:
            run_id = start_write_run(library, options)
    order = library.scored_models() if models is None else models
    scored_by = library.model_sets([r.id for r in rows])
    if {i for s in scored_by.values() for i in s} - {m.id for m in order}:  # a model new since ``models``
        order = library.scored_models()
    outcomes = []
    for row in rows:
        models = [m for m in order if m.id in scored_by.get(row.id, ())]
        outcome = _write_one(library, row, models, options, journal, run_id)
        outcomes.append(outcome)
        if on_file:
            on_file(outcome)
    return outcomes


def _written_by_tagger(journal: Journal, path: Path, st: os.stat_result) -> list | None:
    """The file's state if it is exactly as tagger last wrote it: a run killed between
    replacing the file and recording its new size/mtime leaves the database stale, not the
    file."""
    state = journal.last_written_state(str(path))
    if state is None or state[:2] != [st.st_size, st.st_mtime_ns] or state[2] != fingerprint(path, st.st_size):
        return None
    return state


def _write_one(library, row, models: list[StoredModel], options, journal, run_id) -> FileOutcome:
    path = Path(row.path)
    if not models:
        return FileOutcome(row.path, "no-tags", settled=True)
    try:
        st = path.stat()
    except OSError as e:
        return FileOutcome(row.path, "skipped", f"cannot stat: {e.strerror}")
    if st.st_size != row.size or st.st_mtime_ns != row.mtime_ns:
        state = _written_by_tagger(journal, path, st)
        if state is None:
            return FileOutcome(row.path, "skipped", "changed since it was scanned; run 'tagger scan' first")
        if not options.dry_run:
            library.update_file_state(row.path, *state)  # what the killed run could not record
    try:
        tf = TagFile(path)
        current = tf.read_all()
    except TagWriteError as e:
        return FileOutcome(row.path, "failed", _reason(e))
    scores = {m.id: library.track_scores(row.id, m) for m in models}
    picked = track_tags(scores, models, options.top, options.min_prob, options.fields)
    model, chosen = models[0], picked.chosen
    tagged_already = not options.force and all(any(f"sha256:{m.sha256}" in v for v in current["model"])
                                               for m in picked.models)
    if not chosen:  # nothing to say about this track: no TAGGER_MODEL-only write
        return FileOutcome(row.path, "no-tags", settled=True)
    if tagged_already and _new_learned(chosen, model, current["tags"]):
        tagged_already = False  # a tag learned since the file was tagged: tagger's own fields are redone
    planned = planned_values(picked, fields=options.fields)
    changes = _changes(current, planned, tf.kind == "id3" and tf.id3_version == 3, options.force, tagged_already)
    if not changes and tagged_already:
        return FileOutcome(row.path, "already-tagged")
    return _commit(library, journal, run_id, path, changes, options.dry_run,
                   break_hardlinks=options.break_hardlinks)


def _new_learned(chosen: list[tuple[str, float]], model: StoredModel, written: list[str]) -> bool:
    """Whether a learned tag is among ``chosen`` but not among the file's TAGGER_TAGS."""
    have = {t.strip() for v in written for t in v.split("/")}  # ID3v2.3 holds "a/b"
    learned = {learned_label(n) for n in model.learned}
    return any(n in learned and n not in have for n, _ in chosen)


def _changes(current: dict[str, list[str]], planned: dict[str, list[str]], v23: bool, force: bool,
             keep_own: bool) -> Changes:
    """The planned fields that differ from the file's. ``keep_own``: the file is tagged by
    this model already, so tagger's own fields stay as they are (the optional fields asked
    for are still filled)."""
    changes = []
    for f, new in planned.items():
        old = current[f]
        if f in OWN_FIELDS and keep_own:
            continue
        if f not in OWN_FIELDS and old and not force:
            continue  # fill, don't clobber: the user's own GENRE/MOOD/GROUPING stay
        if f == "model" and _same(v23, [v.rsplit(" ", 1)[0] for v in old], [v.rsplit(" ", 1)[0] for v in new]):
            continue  # same model, only the date would change
        if not _same(v23, old, new):
            changes.append((f, old, new))
    return changes


def remove_tags(library: Store, rows: Sequence, dry_run: bool = False,
                on_file: Callable[[FileOutcome], None] | None = None,
                break_hardlinks: bool = False) -> list[FileOutcome]:
    """Delete tagger's own fields (and nothing else) from the files of ``rows``."""
    journal = Journal(library)
    run_id = None
    if not dry_run:
        _remove_stale_temps(r.path for r in rows)
        run_id = journal.start("remove", {})
    outcomes = []
    for row in rows:
        try:
            tf = TagFile(row.path)
            changes = [(f, tf.get(f), []) for f in OWN_FIELDS if tf.get(f)]
            outcome = _commit(library, journal, run_id, Path(row.path), changes, dry_run,
                              break_hardlinks=break_hardlinks)
        except TagWriteError as e:
            outcome = FileOutcome(row.path, "failed", _reason(e))
        outcomes.append(outcome)
        if on_file:
            on_file(outcome)
    return outcomes


def undo(library: Store, run_id: int | None = None, dry_run: bool = False,
         on_file: Callable[[FileOutcome], None] | None = None,
         break_hardlinks: bool = False) -> tuple[int | None, list[FileOutcome]]:
    """Restore the fields a write or remove run changed (the last one by default; None when
    there is none). A field changed again since then is left alone and reported. A file
    nothing else touched since gets back its size, and so, where the format's writer
    reproduces the untouched parts, its bytes. Raises UsageError for a ``run_id`` that
    cannot be undone. The run is marked undone once no file is left to restore
    (``left_to_undo``); until then undoing it again restores the files still left."""
    journal = Journal(library)
    run_id = _run_to_undo(journal, run_id)
    if run_id is None:
        return None, []
    entries, states = journal.entries(run_id), journal.file_states(run_id)
    pages = journal.ogg_pages(run_id)
    undo_id = None
    if not dry_run:
        _remove_stale_temps(entries)
        undo_id = journal.start("undo", {"run": run_id})
    outcomes = []
    for path_text, fields in entries.items():
        outcome = _undo_one(library, journal, undo_id, Path(path_text), fields, states.get(path_text),
                            dry_run, break_hardlinks, pages.get(path_text))
        outcomes.append(outcome)
        if on_file:
            on_file(outcome)
    if not dry_run and not left_to_undo(outcomes):
        # a file skipped or failed keeps the run open: undoing it again restores the rest
        journal.mark_undone(run_id, undo_id)
    return run_id, outcomes


def left_to_undo(outcomes: Iterable[FileOutcome]) -> list[FileOutcome]:
    """The files an undo did not restore but a later undo of the same run may (a hard link
    broken with --break-hardlinks, a file made writable again): failed, or skipped unless on
    purpose (fields changed since the run are the user's and stay)."""
    return [o for o in outcomes if o.status == "failed" or (o.status == "skipped" and not o.settled)]


def _undo_one(library, journal, undo_id, path: Path, entries: Changes, state, dry_run: bool,
              break_hardlinks: bool, pages: tuple[bytes, str] | None = None) -> FileOutcome:
    try:
        tf = TagFile(path)
    except TagWriteError as e:
        return FileOutcome(str(path), "failed", _reason(e))
    v23 = tf.kind == "id3" and tf.id3_version == 3
    restore, stale = [], []
    for f, old, new in entries:
        now = tf.get(f)
        if _same(v23, now, old):
            continue  # as before the run already (or the run died before replacing the file)
        if _same(v23, now, new):
            restore.append((f, now, old))
        else:
            stale.append(f)
    if not restore:
        if stale:
            return FileOutcome(str(path), "skipped", "fields changed since that run; left alone", settled=True)
        return FileOutcome(str(path), "unchanged")
    note = f"not restored (changed since): {', '.join(stale)}" if stale else ""
    exact = None  # an Ogg file's comment pages, put back whole if they are as the run left them
    if pages is not None and not stale:
        try:
            if hashlib.sha256(tf.comment_pages()).hexdigest() == pages[1]:
                exact = pages[0]
        except (OSError, ValueError):  # pages not as the run left them: undo field by field
            exact = None
    return _commit(library, journal, undo_id, path, restore, dry_run, note, _size_before(path, state),
                   break_hardlinks, exact)


def _size_before(path: Path, state) -> int | None:
    """The file's size before the run, if its content is still as the run left it (its time
    may differ: undoing a later run gives the bytes back, not the time). A wrong guess would
    cost only padding, never a tag."""
    if state is None:
        return None
    before, after = state
    try:
        size = path.stat().st_size
        same = size == after[0] and fingerprint(path, size) == after[2]
    except OSError:
        return None
    return before[0] if same else None


def _run_to_undo(journal: Journal, run_id: int | None) -> int | None:
    if run_id is None:
        return journal.last_undoable()
    run = journal.run(run_id)
    if run is None:
        raise UsageError(None, f"there is no write run {run_id} in this database", _runs_hint(journal))
    if run.action == "undo":
        raise UsageError(None, f"run {run_id} is an undo itself; it cannot be undone",
                         "to write the tags again, run 'tagger write'")
    if run.undone_by is not None:
        raise UsageError(None, f"run {run_id} was undone already (by run {run.undone_by})", _runs_hint(journal))
    if not journal.entries(run_id):
        raise UsageError(None, f"run {run_id} changed no file; there is nothing to undo", _runs_hint(journal))
    return run_id


def _runs_hint(journal: Journal) -> str:
    runs = journal.runs()
    if not runs:
        return "no run in this database can be undone"
    listed = ", ".join(f"{r.id} ({r.action}, {time.strftime('%Y-%m-%d %H:%M', time.localtime(r.started_at))}, "
                       f"{r.files} file{'s' if r.files != 1 else ''})" for r in runs)
    return f"runs that can be undone, newest first: {listed}; 'tagger write --undo' undoes the newest"


def select_tracks(library: Store, roots: Sequence[str] = (), tags: Sequence[str] = (),
                  not_tags: Sequence[str] = (), match_min: float | None = None,
                  model_name: str | None = None) -> list:
    """Track rows to write: every tagged track, or those under ``roots``, or those a query
    (``tags``/``not_tags``/``match_min``, as in ``tagger query``) returns. Raises UsageError
    for a root that does not exist or holds no scanned track (a typo must not look like
    "nothing to do")."""
    from tagger.library.query import library_terms
    from tagger.store.query import TrackQuery, run_query

    roots = [os.path.abspath(os.path.expanduser(str(r))) for r in roots]
    for root in roots:
        if not os.path.exists(root):
            raise UsageError(root, "no such file or folder", "nothing was written")
    rows = _tracks_under(library, roots) if roots else library.tracks_under()
    if roots and not rows:
        raise UsageError(None, f"no scanned track under {', '.join(roots)}",
                         "run 'tagger scan PATH' first; nothing was written")
    if tags or not_tags or model_name:
        model = library.model(name=model_name) if model_name else None
        if model is not None:
            scored_by = library.model_sets([r.id for r in rows])
            rows = [r for r in rows if model.id in scored_by.get(r.id, ())]
        if tags or not_tags:
            terms = library_terms(library, tags, not_tags, model)
            wanted = {r.path for r in run_query(library, TrackQuery(terms, match_min, None))}
            rows = [r for r in rows if r.path in wanted]
    return rows


def _tracks_under(library: Store, roots: Sequence[str]) -> list:
    """Track rows under ``roots`` by any path to them: a scan stores a file under the first
    path it reached it by, which may be a symlink (``lib/link.flac`` for ``/outside/real.flac``)
    or lie under a symlinked folder. A track is selected if its path lies under a root as given
    or resolved, or its resolved path lies under a resolved root."""
    from tagger.audio.discover import under

    real_roots = [os.path.realpath(r) for r in roots]
    as_given = [*roots, *real_roots]
    folders: dict[str, str] = {}  # a folder's resolved path, resolved once for all its tracks
    return [r for r in library.tracks_under() if under(r.path, as_given)
            or under(_resolved(r.path, folders), real_roots)]


def _resolved(path: str, folders: dict[str, str]) -> str:
    """``os.path.realpath(path)``, with one lstat per file rather than one per path component."""
    folder, name = os.path.split(path)
    if folder not in folders:
        folders[folder] = os.path.realpath(folder)
    joined = os.path.join(folders[folder], name)
    return os.path.realpath(joined) if os.path.islink(joined) else joined


def parse_fields(text: str) -> tuple[str, ...]:
    """``tags,mood,genre`` → the optional fields asked for (tagger's own are always written)."""
    names = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in names if f not in FIELD_CHOICES]
    if unknown:
        raise CommandLineError(None, f"unknown field(s) {', '.join(unknown)}",
                               f"choose from {', '.join(FIELD_CHOICES)}")
    return tuple(f for f in OPTIONAL_FIELDS if f in names)
