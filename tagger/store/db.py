"""Opening a database: where it lives, SQLite settings, migrations, and the one-writer lock."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import platformdirs
from sqlalchemy import Connection, Engine, create_engine, event, inspect, select
from sqlalchemy.exc import DatabaseError, OperationalError

from tagger.errors import TaggerError
from tagger.store.schema import SCHEMA_VERSION, meta, metadata, write_journal, write_runs


class StoreError(TaggerError):
    """The database cannot be opened, is locked, or is of an unknown version."""


def default_db() -> str:
    """``$TAGGER_DB``, else ``library.db`` in the user data folder (platformdirs)."""
    return os.environ.get("TAGGER_DB") or str(Path(platformdirs.user_data_dir("tagger")) / "library.db")


def db_url(db: str) -> str:
    """A path becomes a SQLite URL; anything with ``://`` is taken as an SQLAlchemy URL."""
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().absolute()}"


def db_exists(db: str) -> bool:
    """Whether the database is there already (always assumed for server URLs)."""
    url = db_url(db)
    return not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).is_file()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (query) never wait for the scan's writes
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes of tagger
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _v1_to_v2(conn) -> None:
    write_runs.create(conn, checkfirst=True)
    write_journal.create(conn, checkfirst=True)


# each entry upgrades the schema from version N to N + 1, inside the opening transaction
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1_to_v2}


def _migrate(engine: Engine, path: str) -> None:
    names = set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        if "meta" not in names:
            if names - {"meta"}:
                raise StoreError(path, "is a database, but not a tagger library",
                                 "choose another file with --db")
            metadata.create_all(conn)
            conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
            return
        version = int(conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar_one())
        if version > SCHEMA_VERSION:
            raise StoreError(path, f"was written by a newer tagger (schema {version}, this one "
                             f"knows {SCHEMA_VERSION})", "upgrade tagger")
        for v in range(version, SCHEMA_VERSION):
            MIGRATIONS[v](conn)
        if version != SCHEMA_VERSION:
            conn.execute(meta.update().where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))


def open_engine(db: str, create: bool = True) -> Engine:
    """An engine on ``db`` (a path or an SQLAlchemy URL) with the schema in place."""
    url = db_url(db)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists() and not create:
            raise StoreError(path, "no such database", "run 'tagger scan FOLDER' first, or pass --db")
        if path.is_dir():
            raise StoreError(path, "is a directory, not a database file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(path.parent, f"cannot create the database folder: {e.strerror}") from None
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        _migrate(engine, db)
    except (OperationalError, DatabaseError) as e:
        raise StoreError(db, f"cannot open database: {str(e.orig).splitlines()[0]}") from None
    return engine


@contextmanager
def writer_lock(db: str) -> Iterator[None]:
    """One scan (writer) per database: a second one gets a clear error instead of waiting.

    For SQLite an flock on ``DB.lock`` (released by the OS if tagger is killed); other
    databases rely on their own transactions.
    """
    url = db_url(db)
    if not url.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(url.removeprefix("sqlite:///") + ".lock")
    with open(lock_path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(db, "another tagger scan is writing to this database",
                             "wait for it to finish, or use another --db") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
