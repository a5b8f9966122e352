"""Opening a database: where it lives, SQLite settings, migrations, and the one-writer lock."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Callable

from sqlalchemy import (
    URL,
    Connection,
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    inspect,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError

from tagger.store.failures import DAMAGED_HINT, StoreError, database_failure, display_db, store_error, url_authority
from tagger.store.location import default_db  # noqa: F401 - its home before location.py
from tagger.store.schema import (
    INDEX_VERSION,
    SCHEMA_VERSION,
    TEXT_FIELDS,
    embeddings,
    folded,
    learned_scores,
    learned_tags,
    meta,
    metadata,
    scores,
    tracks,
    write_journal,
    write_runs,
)
from tagger.store.text import fold, path_key

__all__ = ["StoreError", "db_url", "db_exists", "display_db", "open_engine", "prepare_session"]


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
    # 64 MB of page cache (SQLite's default is 2 MB), taken only as pages are read: deleting or
    # rewriting rows spread over a 300 MB library (prune, re-learning a tag) otherwise reads the
    # same pages again and again (prune of 50,000 tracks: 45 s)
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


def _v1_to_v2(conn) -> None:
    write_runs.create(conn, checkfirst=True)
    write_journal.create(conn, checkfirst=True)


def _v2_to_v3(conn) -> None:
    for name, kind in (("title", "TEXT"), ("artist", "TEXT"), ("album", "TEXT"), ("album_artist", "TEXT"),
                       ("genre", "TEXT"), ("year", "INTEGER"), ("track_no", "INTEGER")):
        conn.execute(text(f"ALTER TABLE tracks ADD COLUMN {name} {kind}"))
    conn.execute(text("ALTER TABLE tracks ADD COLUMN metadata_read BOOLEAN"))  # NULL: still to read
    learned_tags.create(conn, checkfirst=True)


def _v3_to_v4(conn) -> None:
    """Tracks found by a hash of their path, folded text for --where, learned scores apart."""
    for column in ("path_key", *(folded(f) for f in TEXT_FIELDS)):
        kind = "VARCHAR(32)" if column == "path_key" else "TEXT"
        conn.execute(text(f"ALTER TABLE tracks ADD COLUMN {column} {kind}"))
    rows = conn.execute(text(f"SELECT id, {', '.join(TEXT_FIELDS)} FROM tracks")).all()
    values = [{"track_id": r[0], "path_key": path_key(r[-1]), **{folded(f): fold(v) for f, v in zip(TEXT_FIELDS, r[1:])}}
              for r in rows]
    for start in range(0, len(values), 5000):
        conn.execute(update(tracks).where(tracks.c.id == bindparam("track_id")), values[start:start + 5000])
    if conn.dialect.name == "postgresql":  # its unique index on the path itself refuses long paths
        conn.execute(text("ALTER TABLE tracks DROP CONSTRAINT IF EXISTS tracks_path_key"))
        conn.execute(text("ALTER TABLE tracks ALTER COLUMN path_key SET NOT NULL"))
    # (SQLite keeps its UNIQUE(path) of old: it has no length limit, and dropping it would
    # mean rebuilding the table)
    next(i for i in tracks.indexes if i.name == "ux_tracks_path_key").create(conn)
    # (schema 4 also replaced ix_tracks_status by one on (status, model_id); schema 5 has the
    # first back, so a library coming from 3 keeps it)
    learned_scores.create(conn)
    conn.execute(meta.insert().values(key=INDEX_VERSION, value="0"))
    learned = select(learned_tags.c.tag_id)
    conn.execute(insert(learned_scores).from_select(["tag_id", "track_id", "prob"],
                                                    select(scores.c.tag_id, scores.c.track_id, scores.c.prob)
                                                    .where(scores.c.tag_id.in_(learned))))
    conn.execute(delete(scores).where(scores.c.tag_id.in_(learned)))


def _v4_to_v5(conn) -> None:
    """Several models per track: embeddings keyed by (model, track); tracks.model_id, whose
    one model a track held, goes (its embedding row says the same)."""
    conn.execute(text("DROP INDEX IF EXISTS ix_tracks_status_model"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_tracks_status ON tracks (status)"))
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE embeddings DROP CONSTRAINT IF EXISTS embeddings_pkey"))
        conn.execute(text("ALTER TABLE embeddings ADD PRIMARY KEY (model_id, track_id)"))
        next(i for i in embeddings.indexes if i.name == "ix_embeddings_track").create(conn)
        conn.execute(text("ALTER TABLE tracks DROP COLUMN model_id"))
        return
    # SQLite changes no table's key in place: the table is made again, its rows copied
    conn.execute(text("ALTER TABLE embeddings RENAME TO embeddings_v4"))
    embeddings.create(conn)
    conn.execute(text("INSERT INTO embeddings (model_id, track_id, vector) "
                      "SELECT model_id, track_id, vector FROM embeddings_v4"))
    conn.execute(text("DROP TABLE embeddings_v4"))
    # SQLite drops no column that a foreign key names, as tracks.model_id's does (and none at
    # all before 3.35): the column stays, NULL in new rows, never read; rebuilding the table of
    # a large library for it would cost more than the column
    if not any("model_id" in fk["constrained_columns"] for fk in inspect(conn).get_foreign_keys("tracks")):
        conn.execute(text("ALTER TABLE tracks DROP COLUMN model_id"))


# each entry upgrades the schema from version N to N + 1, inside the opening transaction
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5}


# the two-key advisory lock space (apart from the one-key space of the file claims; the writer
# lock is (0x7A6767, 1): tagger.store.lock)
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
            conn.execute(meta.insert().values(key=INDEX_VERSION, value="0"))
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


def _url_error(db: str, reason: str, hint: str | None = None) -> StoreError:
    # not StoreError(db, …): TaggerError takes its first argument as a path, which folds '//'
    return StoreError(None, f"{display_db(db)}: {reason}", hint)


_db_error = store_error


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
    if "://" in db and url_authority(db).count("@") > 1:  # SQLAlchemy would take the rest for the host
        raise _url_error(db, "the user name or password holds an '@'",
                         "write it as %40 in the URL: postgresql://USER:PASS%40WORD@HOST/DATABASE")
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
    # many hours outlives server restarts and idle-connection reapers; TCP keepalives: a
    # session held for hours (the writer lock, the claims) is not dropped by a firewall or NAT
    # as idle, and one whose server vanished is noticed in about a minute
    return {"connect_args": {"connect_timeout": 10, "application_name": "tagger", "keepalives": 1,
                             "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3},
            "pool_pre_ping": True}


def prepare_session(conn: Connection) -> None:
    """A PostgreSQL session that tagger holds for a whole command (the writer lock, the claims)
    turns off the server's idle timeouts for itself: ending it would free its locks silently.
    (Both are settings any user may change for their own session; 14 added the first.)"""
    if conn.dialect.name != "postgresql":
        return
    if conn.dialect.server_version_info >= (14,):
        conn.execute(text("SELECT set_config('idle_session_timeout', '0', false)"))
    conn.execute(text("SELECT set_config('idle_in_transaction_session_timeout', '0', false)"))


def _on_error(db: str, context) -> BaseException | None:
    """SQLAlchemy's handle_error: the database's own failures become one-line StoreErrors
    (tagger.store.failures); a failed connection to a server says why, with a hint."""
    if context.is_pre_ping:  # SQLAlchemy reconnects by itself
        return None
    orig = context.original_exception
    if context.connection is None and "://" in db:
        return _connect_error(db, orig)
    return database_failure(db, orig, context.is_disconnect)


def _check_sqlite_file(path: Path, create: bool) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        if not create:
            raise StoreError(path, "no such database", "run 'tagger scan FOLDER' first, or pass --db") from None
        return
    except OSError as e:  # a folder on the way that this user may not enter
        raise StoreError(path, f"cannot open the database file: {e.strerror or e}",
                         "check the permissions of the file and of the folders above it") from None
    if path.is_dir():
        raise StoreError(path, "is a directory, not a database file")
    wal = Path(f"{path}-wal")
    # a new library in WAL mode may have all of its pages in DB-wal still, and a 0-byte file
    if st.st_size == 0 and not (wal.exists() and wal.stat().st_size > 0):
        raise StoreError(path, "is an empty file (0 bytes), not a tagger library",
                         "delete it to start a new library there, or pass --db")


# a SQLite file this small is checked for damage in a fraction of a second (quick_check reads every
# page: ~3 s for the 300 MB of a 100,000-track library, measured on 2 shared cores)
CHEAP_CHECK_BYTES = 64 << 20


def open_engine(db: str, create: bool = True, check: bool | str = False) -> Engine:
    """An engine on ``db`` (a path or an SQLAlchemy URL) with the schema in place. Its errors
    that are the database's own failures are one-line StoreErrors. ``check``: a SQLite file is
    checked for damage first (``PRAGMA quick_check``), always (True) or where that is cheap
    ("cheap": files up to CHEAP_CHECK_BYTES). Elsewhere damage is reported when a command
    reads a damaged page."""
    url = db_url(db)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        _check_sqlite_file(path, create)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(path.parent, f"cannot create the database folder: {e.strerror}") from None
    engine = _create_engine(db, url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "handle_error", partial(_on_error, db), retval=True)
    try:
        _migrate(engine, db)
        if engine.dialect.name == "sqlite" and (check is True or (
                check == "cheap" and path.stat().st_size <= CHEAP_CHECK_BYTES)):
            _quick_check(engine, db)
    except (OperationalError, DatabaseError) as e:  # what the handler left: not a failure it knows
        if "://" in db:
            raise _connect_error(db, e.orig) from None
        first = str(e.orig).strip().splitlines()[0] if str(e.orig).strip() else type(e.orig).__name__
        raise StoreError(db, f"cannot open database: {first}") from None
    return engine


def _quick_check(engine: Engine, db: str) -> None:
    with engine.connect() as conn:
        problems = [" ".join(str(r[0]).replace("*** in database main ***", "").split())
                    for r in conn.exec_driver_sql("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise StoreError(db, f"the database file is damaged ({'; '.join(problems)[:200]})", DAMAGED_HINT)
