"""What a database failure means for the person who ran the command: one line and what to do.

Every engine ``tagger.store.db`` opens passes its errors through ``database_failure``
(SQLAlchemy's ``handle_error`` event), so a full disk, a read-only or damaged file, a locked
database or a server that went away is one ``StoreError`` in every command, wherever the SQL
runs. What is one row's fault (a value the database refuses, a constraint) is left as it is:
``Store.save`` turns those into one failed file. What is neither (an SQL mistake) is a bug and
keeps its traceback.
"""

from __future__ import annotations

import re
import sqlite3

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from tagger.errors import TaggerError


class StoreError(TaggerError):
    """The database cannot be opened, is locked, is of an unknown version, or failed (a full
    disk, a read-only or damaged file, a server that went away)."""


_FOLDER_HINT = ("SQLite needs to create DB-wal and DB-shm beside the database, even to read it: make its folder "
                "writable, or copy the database into a folder that is")
DAMAGED_HINT = "restore it from a backup, or rescue what is left: sqlite3 DB .recover | sqlite3 NEW.db"

# SQLite result codes (``sqlite3.Error.sqlite_errorname``, its primary part) → (what, what to do)
_SQLITE = {
    "SQLITE_FULL": ("the disk is full", "free some space where the database lives and run the command "
                    "again; what was committed before is kept"),
    "SQLITE_READONLY": ("the database is read-only", "tagger needs write permission on the database file "
                        "and its folder; commands that only read (query, show, stats) work as it is"),
    "SQLITE_PERM": ("the database is read-only", "tagger needs write permission on the database file "
                    "and its folder"),
    "SQLITE_CORRUPT": ("the database file is damaged", DAMAGED_HINT),
    "SQLITE_NOTADB": ("the file is not a database, or is damaged", "check --db; restore it from a backup"),
    "SQLITE_BUSY": ("the database is locked by another program", "wait for it to finish and try again"),
    "SQLITE_LOCKED": ("the database is locked by another program", "wait for it to finish and try again"),
    "SQLITE_IOERR": ("the database file cannot be read or written (an I/O error)",
                     "check the disk (dmesg), or free some space; what was committed before is kept"),
    "SQLITE_CANTOPEN": ("cannot open the database file", _FOLDER_HINT),
    # extended codes: a read-only folder (DB-wal and DB-shm cannot be created), even for reading
    "SQLITE_READONLY_DIRECTORY": ("cannot use the database in a folder tagger may not write to", _FOLDER_HINT),
    "SQLITE_READONLY_CANTINIT": ("cannot use the database in a folder tagger may not write to", _FOLDER_HINT),
    "SQLITE_NOMEM": ("SQLite ran out of memory", "close other programs and try again"),
}

_GONE = ("the connection to the database server was lost",
         "what was committed before is kept; run the command again once the server is back")

# PostgreSQL SQLSTATE classes and codes → (what, what to do); the most specific first
_POSTGRES = (
    ("53100", ("the database server's disk is full", "free space on the server; what was committed "
                                                     "before is kept")),
    ("53200", ("the database server is out of memory or of lock slots",
               "raise max_locks_per_transaction (or memory) on the server, or run fewer scanners at once")),
    ("53300", ("the database server accepts no more connections", "raise max_connections on the server, "
                                                                  "or run fewer commands at once")),
    ("53", ("the database server is out of resources", "ask its administrator; then run the command again")),
    ("25006", ("the database server takes no writes (read-only)",
               "use the primary server, not a standby, or unset default_transaction_read_only")),
    ("42501", ("the database user may not do this (permission denied)",
               "grant the user the rights on tagger's tables, or use the user that created them")),
    ("57014", ("the database server cancelled the statement (statement_timeout, or an administrator)",
               "raise statement_timeout for tagger's user, or run the command again")),
    ("57", _GONE),  # admin shutdown, crash shutdown, cannot connect now, idle-session timeout
    ("08", _GONE),
    ("40", ("the database server aborted the transaction (a deadlock or a conflict with another command)",
            "run the command again")),
    ("55P03", ("a table tagger needs is locked on the server (lock_timeout)", "wait and try again")),
    ("58", ("the database server cannot read or write its files (an I/O error)", "ask its administrator")),
    ("XX001", ("the database is damaged on the server (data_corrupted)", "restore it from a backup")),
    ("XX002", ("an index of the database is damaged on the server", "REINDEX DATABASE on the server")),
)


def display_db(db: str) -> str:
    """``db`` as it may be printed: a path as it is, a URL with its password hidden."""
    if "://" not in db:
        return db
    authority = url_authority(db)
    if authority.count("@") > 1:  # an '@' of the password would be shown as part of the host
        scheme, rest = db.split("://", 1)
        return f"{scheme}://***@{authority.rsplit('@', 1)[1]}{rest[len(authority):]}"
    try:
        shown = make_url(db).render_as_string(hide_password=True)
        return re.sub(r"([?&](?:password|passwd)=)[^&]*", r"\1***", shown, flags=re.I)  # ?password=… too
    except (ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", db)



def url_authority(url: str) -> str:
    """USER:PASSWORD@HOST:PORT of a URL: what lies between ``://`` and the path or query."""
    return re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0]


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return (text or type(error).__name__)[:200]


def store_error(db: str, reason: str, hint: str | None = None) -> StoreError:
    """``StoreError`` naming ``db`` (a path as it is, a URL with its password hidden)."""
    if "://" in db:  # not StoreError(db, …): TaggerError takes its first argument as a path, which folds '//'
        return StoreError(None, f"{display_db(db)}: {reason}", hint)
    return StoreError(db, reason, hint)


def classify(error: BaseException, disconnect: bool = False) -> tuple[str, str] | None:
    """(what happened, what to do) when ``error`` (a driver's exception) is the database's own
    failure; None when it is one statement's or one row's (or a bug)."""
    if isinstance(error, sqlite3.Error):
        name = getattr(error, "sqlite_errorname", "") or ""
        primary = "_".join(name.split("_")[:2])
        if name in _SQLITE or primary in _SQLITE:
            return _SQLITE.get(name) or _SQLITE[primary]
        text = str(error)
        if "malformed" in text:  # some builds raise a plain DatabaseError without the code
            return _SQLITE["SQLITE_CORRUPT"]
        return None
    state = getattr(error, "sqlstate", None)
    if state:
        for prefix, meaning in _POSTGRES:
            if state.startswith(prefix):
                return meaning
        return None
    if disconnect:
        return _GONE
    return None


def database_failure(db: str, error: BaseException, disconnect: bool = False) -> StoreError | None:
    """The one-line StoreError for ``error`` when it is the database's own failure, else None."""
    meaning = classify(error, disconnect)
    if meaning is None:
        return None
    what, hint = meaning
    return store_error(db, f"{what} ({_first_line(error)})", hint)
