"""Claims on files, so that several scanners on one PostgreSQL database score each file once.

A claim is a session-level advisory lock (``pg_try_advisory_lock``) on a 64-bit hash of the
file's path, taken on one connection that the scanner holds for the whole scan. Nothing is
written for it: a scanner that dies (killed, crashed, its machine gone) loses its session,
and the server releases its claims with it, so no claim outlives its scanner and nothing is
left to clean up. ``try_claim`` never waits: a file another scanner holds is skipped.

SQLite has one writer at a time (tagger.store.lock.writer_lock), so there every claim is
granted without asking the database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import Engine, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT
from sqlalchemy.exc import DBAPIError

from tagger.store.db import prepare_session


def claim_key(path: str) -> int:
    """The advisory-lock key of ``path``: a signed 64-bit hash (a collision costs one file a
    skipped round, never a double score)."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8,
                             person=b"tagger-claim").digest()
    return int.from_bytes(digest, "big", signed=True)


_TRY = text("SELECT k, pg_try_advisory_lock(k) FROM unnest(:keys) AS k").bindparams(
    bindparam("keys", type_=ARRAY(BIGINT)))
_RELEASE = text("SELECT pg_advisory_unlock(k) FROM unnest(:keys) AS k").bindparams(
    bindparam("keys", type_=ARRAY(BIGINT)))


def _claim_error(e: DBAPIError):
    from tagger.store.failures import StoreError

    first = (str(e.orig).strip().splitlines() or [type(e.orig).__name__])[0]
    hint = ("raise max_locks_per_transaction on the server" if "shared memory" in first
            else "run the scan again: what was stored is kept")
    return StoreError(None, f"cannot claim files in the database: {first}", hint)


class Claims:
    """One scanner's claims. Use as a context manager; closing releases every claim."""

    def __init__(self, engine: Engine) -> None:
        self.shared = engine.dialect.name == "postgresql"
        # autocommit: the session holds the locks, and is never left idle in a transaction; the
        # server's idle timeouts must not end it between two rounds (its claims would go with it)
        self.conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT") if self.shared else None
        if self.conn is not None:
            prepare_session(self.conn)
        self.held: set[str] = set()

    def try_claim(self, paths: Sequence[str]) -> list[str]:
        """Claim what can be claimed of ``paths`` now, without waiting; returns those claimed."""
        if self.conn is None:
            self.held.update(paths)
            return list(paths)
        todo = [p for p in paths if p not in self.held]
        keys = {claim_key(p): p for p in todo}
        try:
            got = {k for k, ok in self.conn.execute(_TRY, {"keys": list(keys)}) if ok} if keys else set()
        except DBAPIError as e:  # e.g. the server's lock table full, or the connection lost
            raise _claim_error(e) from None
        claimed = [p for p in todo if claim_key(p) in got]
        self.held.update(claimed)
        return claimed

    def release(self, paths: Sequence[str]) -> None:
        """Give up the claims on ``paths`` (after their results are committed)."""
        mine = [p for p in paths if p in self.held]
        self.held.difference_update(mine)
        if self.conn is not None and mine:
            try:
                self.conn.execute(_RELEASE, {"keys": [claim_key(p) for p in mine]})
            except DBAPIError as e:
                raise _claim_error(e) from None

    def close(self) -> None:
        self.held.clear()
        if self.conn is not None:
            conn, self.conn = self.conn, None
            try:
                conn.execute(text("SELECT pg_advisory_unlock_all()"))
                conn.close()
            except Exception:  # the session is gone (server restart, Ctrl-C mid-query): so are its
                conn.invalidate()  # locks; dropping the socket frees them if it is not, and the
                # error that brought us here, if any, stays the one reported

    def __enter__(self) -> Claims:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
