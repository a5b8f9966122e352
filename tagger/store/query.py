"""Track queries as objects, compiled to SQL (the library's query parser builds them).

A track's score for a term is its probability for the tag, or the maximum over a group's
members; ``--not`` terms score ``1 − p``. With several terms a track's score is the minimum of
its term scores (fuzzy AND: a track is as much "piano and female vocals" as its weaker tag),
and ``--min`` applies to that combined score. Filters on the track's own metadata are ANDed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Integer, Select, func, literal, select, union_all
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction

from tagger.store.catalog import Store, StoredModel
from tagger.store.schema import TEXT_FIELDS, TRACK_METADATA, embeddings, folded, learned_scores, scores, tracks
from tagger.store.text import fold

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
    # whose tags they are (a library may hold several models' scores); None: the query's model
    model: StoredModel | None = field(default=None, compare=False, hash=False)

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


class strpos(GenericFunction):  # noqa: N801 — SQL function name
    """Where the second text starts in the first (1-based), 0 if it is not in it: strpos in
    PostgreSQL, instr in SQLite. Unlike LIKE it has no pattern characters to escape and no
    pattern-length limit (SQLite refuses LIKE patterns over 50,000 bytes)."""
    type = Integer()
    inherit_cache = True


@compiles(strpos, "sqlite")
def _strpos_sqlite(element, compiler, **kw):
    return f"instr({compiler.process(element.clauses, **kw)})"


def _filter_clause(f: Filter):
    if f.field not in TEXT_FIELDS:  # year, track_no: whole numbers in range (library.query checks)
        col = tracks.c[f.field]
        return {">=": col >= f.value, "<=": col <= f.value}.get(f.op, col == f.value)
    # text: the folded copy beside the value, against the typed text folded the same way in
    # Python (tagger.store.text.fold): one rule on SQLite and PostgreSQL; bound parameters only
    col = tracks.c[folded(f.field)]
    if f.op == "~":
        return strpos(col, fold(str(f.value))) > 0
    return col == fold(str(f.value))


@dataclass(frozen=True)
class TrackQuery:
    terms: tuple[Term, ...]
    min_score: float | None = None
    top: int | None = None
    where: tuple[Filter, ...] = ()


def _table_and_id(model: StoredModel, raw: str):
    """(the table of its scores, its tags row) of a raw tag of the model or of a learned tag."""
    return (learned_scores, model.learned[raw]) if raw in model.learned else (scores, model.tag_id(raw))


def _rows_of(model: StoredModel, raws) -> list:
    """(table, [tag ids]) pairs holding the scores of ``raws``: the model's own tags in
    ``scores``, learned tags in ``learned_scores``."""
    by_table: dict = {}
    for raw in raws:
        table, tag_id = _table_and_id(model, raw)
        by_table.setdefault(table, []).append(tag_id)
    return list(by_table.items())


_ROW_COLUMNS = (tracks.c.id, tracks.c.path, tracks.c.duration_s, tracks.c.format,
                *(tracks.c[k] for k in TRACK_METADATA))


def _top_single(q: TrackQuery, model: StoredModel | None, not_ok: int) -> Select:
    """One positive term with a limit: an exact top-N from index range scans.

    A track in the true top N gets its score from some member tag m; fewer than N + k tracks
    (k = tracks that are not 'ok' but may still hold scores) can beat it on m, so it is in m's
    top N + k. The union of every member's top N + k therefore holds the answer, and a
    track's maximum over its candidate rows is exact for every track that can make the cut.
    """
    term = q.terms[0]
    model = term.model or model
    parts = []
    for raw in term.raw:
        table, tag_id = _table_and_id(model, raw)
        part = select(table.c.track_id, table.c.prob).where(table.c.tag_id == tag_id)
        if q.min_score is not None:
            part = part.where(table.c.prob >= q.min_score)
        parts.append(select(part.order_by(table.c.prob.desc()).limit(q.top + not_ok).subquery()))
    cand = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("cand")
    score = func.max(cand.c.prob)
    return (select(*_ROW_COLUMNS, score.label("score"), score.label("term_0"))
            .join(cand, cand.c.track_id == tracks.c.id)
            .where(tracks.c.status == "ok")
            .group_by(tracks.c.id).order_by(score.desc(), tracks.c.path).limit(q.top))


def compile_query(q: TrackQuery, model: StoredModel | None = None, not_ok: int = 0) -> Select:
    """Rows of (id, path, duration_s, format, score, term_0, term_1, …), best first. Each term
    is read from its own model's scores (``model`` for terms without one); a track is ranked
    only if every term's model scored it. ``not_ok``: how many tracks are not 'ok' (bounds the
    fast path's candidate lists)."""
    if len(q.terms) == 1 and not q.terms[0].negate and q.top is not None and not q.where:
        return _top_single(q, model, not_ok)  # (filters would void its candidate bound)
    term_cols = []
    stmt = select(*_ROW_COLUMNS)
    for i, term in enumerate(q.terms):
        parts = []
        of = term.model or model
        for table, ids in _rows_of(of, term.raw):
            part = select(table.c.track_id, table.c.prob).where(table.c.tag_id.in_(ids))
            if q.min_score is not None and not term.negate:
                # every term's score must reach --min for the minimum to; lets the index prune
                part = part.where(table.c.prob >= q.min_score)
            parts.append(part)
        if len(parts) == 1:  # (always, as terms are made: a learned tag is never in a group)
            table = _rows_of(of, term.raw)[0][0]
            sub = parts[0].with_only_columns(table.c.track_id, func.max(table.c.prob).label("p"))
            sub = sub.group_by(table.c.track_id).subquery(f"t{i}")
        else:
            rows = union_all(*parts).subquery()
            sub = select(rows.c.track_id, func.max(rows.c.prob).label("p")).group_by(rows.c.track_id).subquery(f"t{i}")
        stmt = stmt.join(sub, sub.c.track_id == tracks.c.id)
        term_cols.append((literal(1.0) - sub.c.p) if term.negate else sub.c.p)
    score = term_cols[0] if len(term_cols) == 1 else least(*term_cols)
    stmt = stmt.add_columns(score.label("score"), *[c.label(f"term_{i}") for i, c in enumerate(term_cols)])
    # (the joins keep the tracks every term's model scored)
    stmt = stmt.where(tracks.c.status == "ok", *map(_filter_clause, q.where))
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


def run_query(store: Store, q: TrackQuery, model: StoredModel | None = None) -> list[QueryRow]:
    """The ranked rows of ``q``; ``model``: where its terms name no model of their own."""
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
    scored = select(embeddings.c.track_id).where(embeddings.c.model_id == model.id)
    stmt = (select(tracks.c.id).where(tracks.c.status == "ok", tracks.c.id.in_(scored),
                                      *map(_filter_clause, where)).order_by(tracks.c.id))
    with store.sql_engine.connect() as conn:
        return list(conn.execute(stmt).scalars())
