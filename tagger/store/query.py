"""Track queries as objects, compiled to SQL (the library's query parser builds them).

A track's score for a term is its probability for the tag, or the maximum over a group's
members; ``--not`` terms score ``1 − p``. With several terms a track's score is the minimum of
its term scores (fuzzy AND: a track is as much "piano and female vocals" as its weaker tag),
and ``--min`` applies to that combined score. Filters on the track's own metadata are ANDed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Select, func, literal, select, union_all
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction

from tagger.store.catalog import Store, StoredModel
from tagger.store.schema import TRACK_METADATA, scores, tracks

FILTER_FIELDS = (*TRACK_METADATA, "format", "path")
NUMERIC_FIELDS = ("year", "track_no")


class least(GenericFunction):  # noqa: N801 — SQL function name
    """Scalar minimum of its arguments: LEAST in PostgreSQL, min() in SQLite."""
    inherit_cache = True


@compiles(least, "sqlite")
def _least_sqlite(element, compiler, **kw):
    return f"min({compiler.process(element.clauses, **kw)})"


@dataclass(frozen=True)
class Term:
    text: str  # as typed
    raw: tuple[str, ...]  # the raw tags it stands for
    negate: bool = False

    @property
    def label(self) -> str:
        return f"not {self.text}" if self.negate else self.text


@dataclass(frozen=True)
class Filter:
    """A condition on a track's own metadata: ``artist=Nina Simone`` (equal, ignoring case),
    ``genre~jazz`` (contains, ignoring case), ``year>=1990``, ``year<=1999``."""
    field: str
    op: str  # = ~ >= <=
    value: str | int


class fold(GenericFunction):  # noqa: N801 — SQL function name
    """Case folding for --where: LOWER() in PostgreSQL; in SQLite, whose LOWER() folds ASCII
    only, the Python function tagger_fold that tagger.store.db registers on each connection."""
    inherit_cache = True


@compiles(fold, "sqlite")
def _fold_sqlite(element, compiler, **kw):
    return f"tagger_fold({compiler.process(element.clauses, **kw)})"


@compiles(fold)
def _fold_default(element, compiler, **kw):
    return f"lower({compiler.process(element.clauses, **kw)})"


def _filter_clause(f: Filter):
    col = tracks.c[f.field]
    if f.op == ">=":
        return col >= f.value
    if f.op == "<=":
        return col <= f.value
    if f.field in NUMERIC_FIELDS:
        return col == f.value
    if f.op == "~":  # bound parameters, with % and _ in the text escaped: never SQL built from input
        return fold(col).contains(str(f.value).casefold(), autoescape=True)
    return fold(col) == str(f.value).casefold()


@dataclass(frozen=True)
class TrackQuery:
    terms: tuple[Term, ...]
    min_score: float | None = None
    top: int | None = None
    where: tuple[Filter, ...] = ()


def _tag_id(model: StoredModel, raw: str) -> int:
    """The tags row of a raw tag of the model, or of one of its learned tags."""
    return model.learned[raw] if raw in model.learned else model.tag_id(raw)


_ROW_COLUMNS = (tracks.c.id, tracks.c.path, tracks.c.duration_s, tracks.c.format,
                *(tracks.c[k] for k in TRACK_METADATA))


def _top_single(q: TrackQuery, model: StoredModel, not_ok: int) -> Select:
    """One positive term with a limit: an exact top-N from index range scans.

    A track in the true top N gets its score from some member tag m; fewer than N + k tracks
    (k = tracks that are not 'ok' but may still hold scores) can beat it on m, so it is in m's
    top N + k. The union of every member's top N + k therefore holds the answer, and a
    track's maximum over its candidate rows is exact for every track that can make the cut.
    """
    term = q.terms[0]
    parts = []
    for raw in term.raw:
        part = select(scores.c.track_id, scores.c.prob).where(scores.c.tag_id == _tag_id(model, raw))
        if q.min_score is not None:
            part = part.where(scores.c.prob >= q.min_score)
        parts.append(select(part.order_by(scores.c.prob.desc()).limit(q.top + not_ok).subquery()))
    cand = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("cand")
    score = func.max(cand.c.prob)
    return (select(*_ROW_COLUMNS, score.label("score"), score.label("term_0"))
            .join(cand, cand.c.track_id == tracks.c.id)
            .where(tracks.c.status == "ok", tracks.c.model_id == model.id)
            .group_by(tracks.c.id).order_by(score.desc(), tracks.c.path).limit(q.top))


def compile_query(q: TrackQuery, model: StoredModel, not_ok: int = 0) -> Select:
    """Rows of (id, path, duration_s, format, score, term_0, term_1, …), best first.
    ``not_ok``: how many tracks are not 'ok' (bounds the fast path's candidate lists)."""
    if len(q.terms) == 1 and not q.terms[0].negate and q.top is not None and not q.where:
        return _top_single(q, model, not_ok)  # (filters would void its candidate bound)
    term_cols = []
    stmt = select(*_ROW_COLUMNS)
    for i, term in enumerate(q.terms):
        ids = [_tag_id(model, raw) for raw in term.raw]
        sub = select(scores.c.track_id, func.max(scores.c.prob).label("p")).where(scores.c.tag_id.in_(ids))
        if q.min_score is not None and not term.negate:
            # every term's score must reach --min for the minimum to; lets the index prune
            sub = sub.where(scores.c.prob >= q.min_score)
        sub = sub.group_by(scores.c.track_id).subquery(f"t{i}")
        stmt = stmt.join(sub, sub.c.track_id == tracks.c.id)
        term_cols.append((literal(1.0) - sub.c.p) if term.negate else sub.c.p)
    score = term_cols[0] if len(term_cols) == 1 else least(*term_cols)
    stmt = stmt.add_columns(score.label("score"), *[c.label(f"term_{i}") for i, c in enumerate(term_cols)])
    stmt = stmt.where(tracks.c.status == "ok", tracks.c.model_id == model.id, *map(_filter_clause, q.where))
    if q.min_score is not None:
        stmt = stmt.where(score >= q.min_score)
    stmt = stmt.order_by(score.desc(), tracks.c.path)
    if q.top is not None:
        stmt = stmt.limit(q.top)
    return stmt


@dataclass(frozen=True)
class QueryRow:
    rank: int
    path: str
    duration_s: float | None
    format: str | None
    score: float
    term_scores: tuple[float, ...]
    metadata: dict = field(default_factory=dict)  # the file's own title, artist, … that it has


def run_query(store: Store, q: TrackQuery, model: StoredModel) -> list[QueryRow]:
    with store.sql_engine.connect() as conn:
        not_ok = conn.execute(select(func.count()).select_from(tracks).where(tracks.c.status != "ok")).scalar_one()
        rows = conn.execute(compile_query(q, model, not_ok)).all()
    n = len(q.terms)
    return [QueryRow(rank, r.path, r.duration_s, r.format, float(r.score),
                     tuple(float(getattr(r, f"term_{i}")) for i in range(n)),
                     {k: getattr(r, k) for k in TRACK_METADATA if getattr(r, k) is not None})
            for rank, r in enumerate(rows, 1)]


def filtered_track_ids(store: Store, model: StoredModel, where: tuple[Filter, ...]) -> list[int]:
    """Ids of the model's 'ok' tracks whose own metadata passes every filter, ascending."""
    stmt = (select(tracks.c.id).where(tracks.c.status == "ok", tracks.c.model_id == model.id,
                                      *map(_filter_clause, where)).order_by(tracks.c.id))
    with store.sql_engine.connect() as conn:
        return list(conn.execute(stmt).scalars())
