"""The undo journal of tag writing: runs, and every field a run changed in a file."""

from __future__ import annotations

import base64
import time
import zlib
from collections.abc import Sequence

from sqlalchemy import func, insert, select, update

from tagger.store.catalog import Store
from tagger.store.schema import write_journal, write_runs


class Journal:
    """The undo journal of tag writing, on the library's database.

    Rows are written before the file is replaced, so a killed run's changes can be undone.
    Beside each file's field rows, one ``FILE_STATE`` row holds the file's ``[size, mtime_ns]``
    before the write (old) and ``[size, mtime_ns, fingerprint]`` of the written file (new): a
    file found in that state was written by tagger, even if the run died before recording it.
    For an Ogg file whose comment pages an undo field by field would not give back byte for
    byte, an ``OGG_PAGES`` row holds those pages as they were (old: zlib, base64) and the
    sha256 of the pages the write left (new), so that undo can put them back as they were.
    """

    FILE_STATE = "(file)"  # not a tag field: the file's state before and after the write
    OGG_PAGES = "(ogg pages)"  # not a tag field: an Ogg file's comment pages before the write
    NOT_FIELDS = (FILE_STATE, OGG_PAGES)

    def __init__(self, store: Store) -> None:
        self.sql_engine = store.sql_engine
        # writes go through the store's transactions: each verifies the writer lock first, so
        # a write that lost it stops before its next file is journalled (and so replaced)
        self.transaction = store.transaction

    def start(self, action: str, options: dict) -> int:
        with self.transaction() as conn:
            return conn.execute(insert(write_runs).values(action=action, started_at=time.time(),
                                                          options=options)).inserted_primary_key[0]

    def record(self, run_id: int, path: str, changes: Sequence[tuple[str, list[str], list[str]]],
               state: tuple[list, list] | None = None, ogg_pages: tuple[bytes, str] | None = None) -> None:
        """Journal ``changes`` (and the file's ``(before, after)`` state, and an Ogg file's
        ``(comment pages before, sha256 of those after)``) in one transaction."""
        rows = [{"run_id": run_id, "path": path, "field": f, "old": old, "new": new} for f, old, new in changes]
        if rows and state is not None:
            rows.append({"run_id": run_id, "path": path, "field": self.FILE_STATE,
                         "old": list(state[0]), "new": list(state[1])})
        if rows and ogg_pages is not None:
            packed = base64.b64encode(zlib.compress(ogg_pages[0], 9)).decode("ascii")
            rows.append({"run_id": run_id, "path": path, "field": self.OGG_PAGES,
                         "old": [packed], "new": [ogg_pages[1]]})
        if rows:
            with self.transaction() as conn:
                conn.execute(insert(write_journal), rows)

    def last_undoable(self) -> int | None:
        """The newest write or remove run that changed something and is not undone yet."""
        with self.sql_engine.connect() as conn:
            return conn.execute(select(func.max(write_runs.c.id))
                                .join(write_journal, write_journal.c.run_id == write_runs.c.id)
                                .where(write_runs.c.action != "undo", write_runs.c.undone_by.is_(None))).scalar()

    def run(self, run_id: int):
        with self.sql_engine.connect() as conn:
            return conn.execute(select(write_runs).where(write_runs.c.id == run_id)).first()

    def entries(self, run_id: int) -> dict[str, list[tuple[str, list[str], list[str]]]]:
        """path → [(field, old, new)] of one run."""
        out: dict[str, list] = {}
        with self.sql_engine.connect() as conn:
            for row in conn.execute(select(write_journal).where(write_journal.c.run_id == run_id,
                                                                write_journal.c.field.notin_(self.NOT_FIELDS))
                                    .order_by(write_journal.c.id)):
                out.setdefault(row.path, []).append((row.field, row.old, row.new))
        return out

    def file_states(self, run_id: int) -> dict[str, tuple[list, list]]:
        """path → (state before the run's write, state it left) of one run."""
        with self.sql_engine.connect() as conn:
            rows = conn.execute(select(write_journal).where(write_journal.c.run_id == run_id,
                                                            write_journal.c.field == self.FILE_STATE)
                                .order_by(write_journal.c.id)).all()
        out: dict[str, tuple[list, list]] = {}
        for row in rows:  # a path written twice in one run: its first before, its last after
            out[row.path] = (out.get(row.path, (row.old,))[0], row.new)
        return out

    def ogg_pages(self, run_id: int) -> dict[str, tuple[bytes, str]]:
        """path → (comment pages before the run's first write of it, sha256 of those its last
        write left) of one run's Ogg files that need them for a byte-exact undo."""
        with self.sql_engine.connect() as conn:
            rows = conn.execute(select(write_journal).where(write_journal.c.run_id == run_id,
                                                            write_journal.c.field == self.OGG_PAGES)
                                .order_by(write_journal.c.id)).all()
        out: dict[str, tuple[bytes, str]] = {}
        for row in rows:
            first = out[row.path][0] if row.path in out else zlib.decompress(base64.b64decode(row.old[0]))
            out[row.path] = (first, row.new[0])
        return out

    def last_written_state(self, path: str) -> list | None:
        """``[size, mtime_ns, fingerprint]`` of the file tagger last wrote at ``path``, if any."""
        with self.sql_engine.connect() as conn:
            return conn.execute(select(write_journal.c.new).where(write_journal.c.path == path,
                                                                  write_journal.c.field == self.FILE_STATE)
                                .order_by(write_journal.c.id.desc()).limit(1)).scalar()

    def runs(self, limit: int = 5) -> list:
        """The newest write and remove runs that changed files and can still be undone:
        rows of (id, action, started_at, files)."""
        files = func.count(func.distinct(write_journal.c.path)).label("files")
        with self.sql_engine.connect() as conn:
            return conn.execute(select(write_runs.c.id, write_runs.c.action, write_runs.c.started_at, files)
                                .join(write_journal, write_journal.c.run_id == write_runs.c.id)
                                .where(write_runs.c.action != "undo", write_runs.c.undone_by.is_(None))
                                .group_by(write_runs.c.id).order_by(write_runs.c.id.desc()).limit(limit)).all()

    def mark_undone(self, run_id: int, by: int) -> None:
        with self.transaction() as conn:
            conn.execute(update(write_runs).where(write_runs.c.id == run_id).values(undone_by=by))
