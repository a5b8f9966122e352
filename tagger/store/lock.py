"""The one-writer lock of a database, held for real for as long as a command writes.

SQLite: an flock on ``DB.lock`` (released by the OS if tagger dies), one writer at a time.

PostgreSQL: an advisory lock held by a session of its own (released by the server if tagger
dies). Scans take it shared, so that several scan at once (each file is claimed:
tagger.store.claims), while write, undo, learn and prune take it alone. A session can end
under a scan that runs for hours (a server restart, ``pg_terminate_backend``, an
idle-connection reaper, ``idle_session_timeout``) and its lock with it, silently. So:

- the session turns off the server's idle timeouts for itself, asks for TCP keepalives, and
  a thread sends it a query every ``CHECK_EVERY_S`` (neither idle nor dropped by a firewall);
- when that query fails the lock is *lost*: ``check()`` raises from then on;
- every write transaction of a command that holds the lock first verifies, inside the
  transaction, that the lock's session still holds it (``verify``), and a scan's also takes
  the lock shared for the transaction itself. A transaction of a scan that lost its lock is
  refused before it writes anything, and no exclusive writer (learn, write) can start while
  one commits: what a scan stores is never missed by a ``learn`` that ran beside it.
"""

from __future__ import annotations

import fcntl
import threading
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, event, text
from sqlalchemy.exc import DBAPIError

from tagger.store.db import _connect_error, _create_engine, _engine_options, _on_error, db_url, prepare_session
from tagger.store.failures import StoreError, store_error

# the two-key advisory lock space (apart from the one-key space of the file claims)
WRITER_LOCK_KEYS = (0x7A6767, 1)  # 'tgg', the writer lock
CHECK_EVERY_S = 5.0  # the lock's session is sent a query this often

BUSY = ("another tagger scan or write is writing to this database", "wait for it to finish, or use another --db")
LOST_HINT = ("nothing was stored after that; run the command again. If the server ends idle sessions "
             "(an idle-connection reaper, a pooler), exempt tagger's user")


class WriterLock:
    """A held writer lock. ``check()`` raises StoreError once it is known lost; ``verify(conn)``
    runs inside a write transaction and refuses it when the lock is not held."""

    def __init__(self, db: str, shared: bool) -> None:
        self.db, self.shared = db, shared
        self.lost: str | None = None  # why, once lost

    def check(self) -> None:
        if self.lost is not None:
            raise self._lost_error()

    def verify(self, conn: Connection) -> None:
        self.check()

    def _lost_error(self) -> StoreError:
        who = "this scan" if self.shared else "this command"
        return store_error(self.db, f"{who} lost the database's writer lock ({self.lost})", LOST_HINT)


class _ServerLock(WriterLock):
    """The PostgreSQL lock: its session, the thread that keeps it busy, the in-transaction check."""

    _HELD = text("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = :pid "
                 "AND classid = :a AND objid = :b AND objsubid = 2 AND granted)")
    _HELD_AND_SHARED = text("SELECT pg_try_advisory_xact_lock_shared(:a, :b) AND EXISTS (SELECT 1 FROM pg_locks "
                            "WHERE locktype = 'advisory' AND pid = :pid AND classid = :a AND objid = :b "
                            "AND objsubid = 2 AND granted)")

    def __init__(self, db: str, shared: bool, conn: Connection) -> None:
        super().__init__(db, shared)
        self.conn = conn
        self.pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="tagger-writer-lock", daemon=True)
        self._thread.start()

    def _keep(self) -> None:
        while not self._stop.wait(CHECK_EVERY_S):
            try:
                self.conn.execute(text("SELECT 1"))
            except Exception as e:  # the session is gone, and the lock with it
                self.lost = _first_line(e)
                return

    def verify(self, conn: Connection) -> None:
        """Inside a write transaction on ``conn``: refuse it when the lock's session no longer
        holds the lock (a scan's transaction also holds it shared until it commits)."""
        self.check()
        query = self._HELD_AND_SHARED if self.shared else self._HELD
        a, b = WRITER_LOCK_KEYS
        if not conn.execute(query, {"a": a, "b": b, "pid": self.pid}).scalar():
            self.lost = self.lost or "the server ended the session that held it"
            raise self._lost_error()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * CHECK_EVERY_S)


@contextmanager
def writer_lock(db: str, shared: bool = False) -> Iterator[WriterLock]:
    """One writer (a scan or a write) per database: a second one gets a clear error instead
    of waiting. Yields the held lock (see the module docstring)."""
    url = db_url(db)
    if not url.startswith("sqlite:///"):
        with _server_lock(db, url, shared) as lock:
            yield lock
        return
    lock_path = Path(url.removeprefix("sqlite:///") + ".lock")
    with _open_lock(lock_path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(db, *BUSY) from None
        try:
            yield WriterLock(db, shared)  # the OS holds an flock for as long as the process lives
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def _server_lock(db: str, url: str, shared: bool) -> Iterator[WriterLock]:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = _create_engine(db, url)
    if engine.dialect.name != "postgresql":  # other servers: their own transactions only
        engine.dispose()
        yield WriterLock(db, shared)
        return
    engine = create_engine(engine.url, poolclass=NullPool, **_engine_options(engine.url))
    event.listen(engine, "handle_error", partial(_on_error, db), retval=True)  # its failures: one line too
    try:
        try:
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except DBAPIError as e:
            raise _connect_error(db, e.orig) from None
        with conn:
            prepare_session(conn)
            kind = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
            if not conn.execute(text(f"SELECT {kind}(:a, :b)"), dict(zip("ab", WRITER_LOCK_KEYS))).scalar():
                raise store_error(db, *BUSY)
            lock = _ServerLock(db, shared, conn)
            try:
                yield lock  # closing the session releases the lock
            finally:
                lock.close()
    finally:
        engine.dispose()


def _open_lock(lock_path: Path):
    """The lock file, opened (created if need be) for flock. It lives beside the database,
    so a folder of that name or a database folder tagger may not write in stops it here."""
    try:
        return open(lock_path, "a")
    except OSError as e:
        hint = ("a folder has that name: move it, or use another --db" if isinstance(e, IsADirectoryError)
                else "tagger needs to create it beside the database: make that folder writable, or use another --db")
        raise StoreError(lock_path, f"cannot open the lock file: {e.strerror or e}", hint) from None


def _first_line(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    return (" ".join(str(orig).split()) or type(orig).__name__)[:200]
