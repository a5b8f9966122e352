"""Stage 1, plan: walk the folders and compare what is there with what the store knows."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tagger.audio.discover import BAD_NAME_REASON, FoundFile, discover, fingerprint, under


class TrackState(Protocol):
    """What the store knows of a track, as the plan compares it with the file on disk (the
    store's own TrackState rows are these)."""
    id: int
    path: str
    size: int
    mtime_ns: int
    fingerprint: str | None
    status: str
    model_ids: frozenset[int]  # the models whose scores of it are stored


@dataclass
class ScanPlan:
    todo: list[FoundFile]  # new and changed files, to decode and score
    new: int = 0
    changed: int = 0
    unchanged: int = 0  # (those in ``only`` too: their content is as stored)
    # files in todo whose content is as stored but lack some of the scan's models: path → the
    # positions (in the scan's model list) of the models to run; the others run every model
    only: dict[str, tuple[int, ...]] = field(default_factory=dict)
    moved: list[tuple[int, str, int]] = field(default_factory=list)  # (track id, new path, mtime)
    missing: list[int] = field(default_factory=list)  # track ids gone from disk
    back: list[int] = field(default_factory=list)  # tracks marked missing that are here again
    problems: list[tuple[str, str]] = field(default_factory=list)  # folders that could not be read
    bad_names: list[tuple[FoundFile, str]] = field(default_factory=list)  # to record as failed
    roots: list[str] = field(default_factory=list)  # the folders planned, absolute
    touched: list[tuple[int, str, int]] = field(default_factory=list)  # (track id, path, mtime): content as stored
    duplicates: list[int] = field(default_factory=list)  # tracks of a file stored under another path too


def plan_scan(known: Mapping[str, TrackState], roots: Sequence[str], model_ids: Sequence[int | None],
              force: bool = False, include_hidden: bool = False) -> ScanPlan:
    """Compare the files under ``roots`` with the stored tracks ``known`` (path → state);
    ``model_ids`` are the scanning models' rows (None: not in the database yet). A file whose
    content is as stored is scored again only by the models whose scores it lacks (``only``):
    decoding it again cannot be avoided (no audio is kept), scoring it again by the others can."""
    model_ids = list(model_ids)

    def lacking(state: TrackState) -> tuple[int, ...]:
        return tuple(k for k, m in enumerate(model_ids) if m is None or m not in state.model_ids)

    found = discover(roots, include_hidden)
    roots = [os.path.abspath(os.path.expanduser(str(r))) for r in roots]
    plan = ScanPlan(todo=[], problems=found.problems, roots=roots)
    seen: set[str] = set()
    for f in found.bad_names:
        seen.add(f.path)
        state = known.get(f.path)
        if state is None or state.size != f.size or state.mtime_ns != f.mtime_ns or state.status != "failed":
            plan.bad_names.append((f, BAD_NAME_REASON))
    by_file = _one_track_per_file(known, model_ids, plan)
    dropped = set(plan.duplicates)
    new: list[FoundFile] = []
    for f in found.files:
        state = known.get(f.path)
        if (state is None or state.id in dropped) and f.identity in by_file:
            state = by_file[f.identity]  # the same file, stored under another path: that track
            f = FoundFile(state.path, f.size, f.mtime_ns, f.identity)
        seen.add(f.path)
        if state is None:
            new.append(f)
        elif force or state.size != f.size or (state.status == "ok" and not state.model_ids):
            plan.todo.append(f)
            plan.changed += 1
        elif state.mtime_ns != f.mtime_ns and not _same_content(f, state):
            plan.todo.append(f)
            plan.changed += 1
        else:
            plan.unchanged += 1
            if state.status != "failed" and lacking(state):  # models added: only they score it
                plan.todo.append(f)
                plan.only[f.path] = lacking(state)
            if state.mtime_ns != f.mtime_ns:  # touched, not changed: the new time is all there is to store
                plan.touched.append((state.id, state.path, f.mtime_ns))
            if state.status == "missing":
                plan.back.append(state.id)
    gone = [s for p, s in known.items() if p not in seen and s.status != "missing" and s.id not in dropped
            and under(p, roots) and not os.path.exists(p)]
    gone_by_size: dict[int, list[TrackState]] = {}
    for s in gone + [s for s in known.values() if s.status == "missing"]:
        if s.fingerprint:
            gone_by_size.setdefault(s.size, []).append(s)
    moved_ids: set[int] = set()
    for f in new:
        candidates = [s for s in gone_by_size.get(f.size, []) if s.id not in moved_ids]
        match = None
        if candidates:
            try:
                fp = fingerprint(f.path, f.size)
                match = next((s for s in candidates if s.fingerprint == fp), None)
            except OSError:
                pass
        if match is not None and not force:
            moved_ids.add(match.id)
            plan.moved.append((match.id, f.path, f.mtime_ns))
            if match.status != "failed" and lacking(match):
                plan.todo.append(f)  # moved, and some of the scan's models have not scored it
                plan.only[f.path] = lacking(match)
        else:
            plan.todo.append(f)
            plan.new += 1
    plan.missing = [s.id for s in gone if s.id not in moved_ids]
    plan.todo.sort(key=lambda f: f.path)
    return plan


def _same_content(f: FoundFile, state: TrackState) -> bool:
    """Whether a file whose time changed but not its size still has the content stored (its
    fingerprint): touched (``touch``, a copy tool, a sync), not changed."""
    if not state.fingerprint:
        return False
    try:
        return fingerprint(f.path, f.size) == state.fingerprint
    except OSError:
        return False


def _one_track_per_file(known: Mapping[str, TrackState], model_ids: Sequence[int | None],
                        plan: ScanPlan) -> dict[tuple[int, int], TrackState]:
    """(device, inode) → the track of each stored file that is on disk. A file stored under
    two paths (reached through a symlink by a later scan, before tagger resolved paths the same
    way at every scan) keeps one track, the one scored by most of these models where one is,
    else the first stored; the others go into ``plan.duplicates`` to be deleted."""
    by_file: dict[tuple[int, int], list[TrackState]] = {}
    for path, state in known.items():
        if state.status == "missing":
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        by_file.setdefault((st.st_dev, st.st_ino), []).append(state)
    out = {}
    for key, states in by_file.items():
        states.sort(key=lambda s: (-(s.status == "ok") * len(s.model_ids & set(model_ids)), s.id))
        out[key] = states[0]
        plan.duplicates += [s.id for s in states[1:]]
    return out
