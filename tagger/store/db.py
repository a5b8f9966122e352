"""Opening a database: where it lives, SQLite settings, migrations, and the one-writer lock."""

from __future__ import annotations

import fcntl
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, make_url, select, text
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError

from tagger.errors import TaggerError
from tagger.store.location import default_db  # noqa: F401 - its home before location.py
from tagger.store.schema import SCHEMA_VERSION, learned_tags, meta, metadata, write_journal, write_runs


class StoreError(TaggerError):
    """The database cannot be opened, is locked, or is of an unknown version."""


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
    # Unicode case folding for query filters (SQLite's LOWER() folds ASCII only: 'É' stays)
    dbapi_conn.create_function("tagger_fold", 1, lambda s: s.casefold() if isinstance(s, str) else s,
                               deterministic=True)


def _v1_to_v2(conn) -> None:
    write_runs.create(conn, checkfirst=True)
    write_journal.create(conn, checkfirst=True)


def _v2_to_v3(conn) -> None:
    for name, kind in (("title", "TEXT"), ("artist", "TEXT"), ("album", "TEXT"), ("album_artist", "TEXT"),
                       ("genre", "TEXT"), ("year", "INTEGER"), ("track_no", "INTEGER")):
        conn.execute(text(f"ALTER TABLE tracks ADD COLUMN {name} {kind}"))
    conn.execute(text("ALTER TABLE tracks ADD COLUMN metadata_read BOOLEAN"))  # NULL: still to read
    learned_tags.create(conn, checkfirst=True)


# each entry upgrades the schema from version N to N + 1, inside the opening transaction
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3}


# the two-key advisory lock space (apart from the one-key space of the file claims)
WRITER_LOCK_KEYS = (0x7A6767, 1)  # 'tgg', the writer lock
MIGRATE_LOCK_KEYS = (0x7A6767, 2)  # creating or upgrading the schema


def _migrate(engine: Engine, path: str) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # scanners starting together: one creates, the others see it
            conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), dict(zip("ab", MIGRATE_LOCK_KEYS)))
        names = set(inspect(conn).get_table_names())
        if "meta" not in names:
            if names - {"meta"}:
                raise _db_error(path, "is a database, but not a tagger library",
                                "choose another file with --db")
            metadata.create_all(conn)
            conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
            return
        version = int(conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar_one())
        if version > SCHEMA_VERSION:
            raise _db_error(path, f"was written by a newer tagger (schema {version}, this one "
                            f"knows {SCHEMA_VERSION})", "upgrade tagger")
        for v in range(version, SCHEMA_VERSION):
            MIGRATIONS[v](conn)
        if version != SCHEMA_VERSION:
            conn.execute(meta.update().where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))


# the extra that installs a dialect's default driver (pyproject.toml)
DRIVER_EXTRAS = {"postgresql": "postgres"}
URL_FORM = "expected DIALECT://USER:PASSWORD@HOST:PORT/DATABASE (e.g. postgresql://…), or a file path"


def display_db(db: str) -> str:
    """``db`` as it may be printed: a path as it is, a URL with its password hidden."""
    if "://" not in db:
        return db
    try:
        shown = make_url(db).render_as_string(hide_password=True)
        return re.sub(r"([?&](?:password|passwd)=)[^&]*", r"\1***", shown, flags=re.I)  # ?password=… too
    except (ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", db)


def _url_error(db: str, reason: str, hint: str | None = None) -> StoreError:
    # not StoreError(db, …): TaggerError takes its first argument as a path, which folds '//'
    return StoreError(None, f"{display_db(db)}: {reason}", hint)


def _db_error(db: str, reason: str, hint: str | None = None) -> StoreError:
    return _url_error(db, reason, hint) if "://" in db else StoreError(db, reason, hint)


# what a server's refusal means for the person who typed the URL
_CONNECT_HINTS = (
    (re.compile(r'database "[^"]*" does not exist'), "create it first (createdb NAME, as its owner), or fix the URL"),
    (re.compile(r"password authentication failed|no password supplied|role \"[^\"]*\" does not exist"),
     "check the user name and password in the URL"),
    (re.compile(r"Connection refused|timeout expired|No route to host|failed to resolve host|Network is unreachable"),
     "is the server running, and reachable from this machine at that host and port?"),
)


def _connect_error(db: str, orig: BaseException) -> StoreError:
    text = " ".join(str(orig).split())
    # psycopg: 'connection failed: connection to server at "h" (ip), port N failed: FATAL:  reason'
    reason = re.sub(r"^.*\bport \d+ failed: (FATAL: )?", "", text) if "connection to server" in text else text
    reason = re.sub(r"\s*Is the server running.*$", "", reason.removeprefix("connection failed: "))
    reason = reason.strip() or type(orig).__name__
    hint = next((h for pattern, h in _CONNECT_HINTS if pattern.search(text)), None)
    return _db_error(db, f"cannot open database: {reason}", hint)


def _create_engine(db: str, url: str) -> Engine:
    """create_engine, with what goes wrong before any connection as one-line errors."""
    try:
        parsed: URL = make_url(url)
    except (ArgumentError, ValueError) as e:
        raise _url_error(db, f"is not a valid database URL ({e})", URL_FORM) from None
    if parsed.drivername == "postgresql":  # SQLAlchemy's default is psycopg2; our extra installs psycopg 3
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        return create_engine(parsed, **_engine_options(parsed))
    except NoSuchModuleError:
        backend = parsed.get_backend_name()
        hint = "it is written postgresql://" if backend == "postgres" else URL_FORM
        raise _url_error(db, f"unknown kind of database {backend!r}", hint) from None
    except ImportError as e:  # the dialect is known, its driver is not installed
        backend, module = parsed.get_backend_name(), e.name or str(e)
        extra = DRIVER_EXTRAS.get(backend) if "+" not in parsed.drivername else None
        hint = f"pip install 'tagger[{extra}]'" if extra else f"install the Python package that provides {module!r}"
        raise _url_error(db, f"needs the {backend} driver {module!r}, which is not installed", hint) from None


def _engine_options(url: URL) -> dict:
    if url.get_backend_name() != "postgresql":
        return {}
    # an unreachable server fails in seconds instead of the OS's minutes; pre_ping: a scan of
    # many hours outlives server restarts and idle-connection reapers
    return {"connect_args": {"connect_timeout": 10, "application_name": "tagger"}, "pool_pre_ping": True}


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
    engine = _create_engine(db, url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        _migrate(engine, db)
    except (OperationalError, DatabaseError) as e:
        if "://" in db:
            raise _connect_error(db, e.orig) from None
        first = str(e.orig).strip().splitlines()[0] if str(e.orig).strip() else type(e.orig).__name__
        raise StoreError(db, f"cannot open database: {first}") from None
    return engine


BUSY = ("another tagger scan or write is writing to this database", "wait for it to finish, or use another --db")


@contextmanager
def writer_lock(db: str, shared: bool = False) -> Iterator[None]:
    """One writer (a scan or a write) per database: a second one gets a clear error instead
    of waiting.

    For SQLite an flock on ``DB.lock`` (released by the OS if tagger is killed), the same for
    scans and writes. For PostgreSQL an advisory lock held by a session of its own (released by
    the server if tagger dies): scans take it ``shared``, so that several scan at once (each
    file is claimed: tagger.store.claims), while write, undo and learn take it alone.
    """
    url = db_url(db)
    if not url.startswith("sqlite:///"):
        with _server_lock(db, url, shared):
            yield
        return
    lock_path = Path(url.removeprefix("sqlite:///") + ".lock")
    with _open_lock(lock_path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(db, *BUSY) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def _server_lock(db: str, url: str, shared: bool) -> Iterator[None]:
    from sqlalchemy.pool import NullPool

    engine = _create_engine(db, url)
    if engine.dialect.name != "postgresql":  # other servers: their own transactions only
        engine.dispose()
        yield
        return
    engine = create_engine(engine.url, poolclass=NullPool, **_engine_options(engine.url))
    try:
        try:
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except (OperationalError, DatabaseError) as e:
            raise _connect_error(db, e.orig) from None
        with conn:
            kind = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
            if not conn.execute(text(f"SELECT {kind}(:a, :b)"), dict(zip("ab", WRITER_LOCK_KEYS))).scalar():
                raise _url_error(db, *BUSY)
            yield  # closing the session releases the lock
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
