"""Track queries as objects: parse what a person typed into terms, compile them to SQL.

A track's score for a term is its probability for the tag, or the maximum over a group's
members; ``--not`` terms score ``1 − p``. With several terms a track's score is the minimum of
its term scores (fuzzy AND: a track is as much "piano and female vocals" as its weaker tag),
and ``--min`` applies to that combined score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Select, func, literal, select, union_all
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction

from tagger.errors import UsageError
from tagger.library import StoredModel
from tagger.store.schema import scores, tracks
from tagger.vocab import Vocabulary


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
class TrackQuery:
    terms: tuple[Term, ...]
    min_score: float | None = None
    top: int | None = None


def parse_terms(vocab: Vocabulary, tags: Sequence[str], not_tags: Sequence[str] = ()) -> tuple[Term, ...]:
    """Resolve tag names and groups; an unknown name is an error that suggests close ones."""
    terms = []
    for text, negate in [(t, False) for t in tags] + [(t, True) for t in not_tags]:
        raw = vocab.resolve(text)
        if raw is None:
            close = vocab.suggest(text)
            hint = f"did you mean {', '.join(close)}?" if close else "run 'tagger tags' for the list"
            raise UsageError(None, f"unknown tag {text!r}", hint)
        terms.append(Term(text, tuple(raw), negate))
    if terms and all(t.negate for t in terms):
        raise UsageError(None, "--not needs at least one --tag to rank by")
    return tuple(terms)


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
        part = select(scores.c.track_id, scores.c.prob).where(scores.c.tag_id == model.tag_id(raw))
        if q.min_score is not None:
            part = part.where(scores.c.prob >= q.min_score)
        parts.append(select(part.order_by(scores.c.prob.desc()).limit(q.top + not_ok).subquery()))
    cand = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("cand")
    score = func.max(cand.c.prob)
    return (select(tracks.c.id, tracks.c.path, tracks.c.duration_s, tracks.c.format,
                   score.label("score"), score.label("term_0"))
            .join(cand, cand.c.track_id == tracks.c.id)
            .where(tracks.c.status == "ok", tracks.c.model_id == model.id)
            .group_by(tracks.c.id).order_by(score.desc(), tracks.c.path).limit(q.top))


def compile_query(q: TrackQuery, model: StoredModel, not_ok: int = 0) -> Select:
    """Rows of (id, path, duration_s, format, score, term_0, term_1, …), best first.
    ``not_ok``: how many tracks are not 'ok' (bounds the fast path's candidate lists)."""
    if len(q.terms) == 1 and not q.terms[0].negate and q.top is not None:
        return _top_single(q, model, not_ok)
    term_cols = []
    stmt = select(tracks.c.id, tracks.c.path, tracks.c.duration_s, tracks.c.format)
    for i, term in enumerate(q.terms):
        ids = [model.tag_id(raw) for raw in term.raw]
        sub = select(scores.c.track_id, func.max(scores.c.prob).label("p")).where(scores.c.tag_id.in_(ids))
        if q.min_score is not None and not term.negate:
            # every term's score must reach --min for the minimum to; lets the index prune
            sub = sub.where(scores.c.prob >= q.min_score)
        sub = sub.group_by(scores.c.track_id).subquery(f"t{i}")
        stmt = stmt.join(sub, sub.c.track_id == tracks.c.id)
        term_cols.append((literal(1.0) - sub.c.p) if term.negate else sub.c.p)
    score = term_cols[0] if len(term_cols) == 1 else least(*term_cols)
    stmt = stmt.add_columns(score.label("score"), *[c.label(f"term_{i}") for i, c in enumerate(term_cols)])
    stmt = stmt.where(tracks.c.status == "ok", tracks.c.model_id == model.id)
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


def run_query(library, q: TrackQuery, model: StoredModel) -> list[QueryRow]:
    with library.engine.connect() as conn:
        not_ok = conn.execute(select(func.count()).select_from(tracks).where(tracks.c.status != "ok")).scalar_one()
        rows = conn.execute(compile_query(q, model, not_ok)).all()
    n = len(q.terms)
    return [QueryRow(rank, r.path, r.duration_s, r.format, float(r.score),
                     tuple(float(getattr(r, f"term_{i}")) for i in range(n)))
            for rank, r in enumerate(rows, 1)]
