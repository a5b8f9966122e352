"""Track queries as objects: parse what a person typed into terms, compile them to SQL.

A track's score for a term is its probability for the tag, or the maximum over a group's
members; ``--not`` terms score ``1 − p``. With several terms a track's score is the minimum of
its term scores (fuzzy AND: a track is as much "piano and female vocals" as its weaker tag),
and ``--min`` applies to that combined score.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Select, func, literal, select, union_all
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction

from tagger.errors import CommandLineError, UsageError
from tagger.library import StoredModel
from tagger.store.schema import TRACK_METADATA, scores, tracks
from tagger.vocab import Vocabulary, tag_name


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


FILTER_FIELDS = (*TRACK_METADATA, "format", "path")
_NUMERIC = ("year", "track_no")


_WHERE = re.compile(r"\s*(\w+)\s*(>=|<=|=|~)(.*)", re.S)  # the first operator after the field name


def parse_where(texts: Sequence[str]) -> tuple[Filter, ...]:
    """``FIELD=VALUE``, ``FIELD~TEXT``, ``FIELD>=N``, ``FIELD<=N`` → filters; bad ones are
    command-line errors (the value may itself hold =, ~ or >=: ``title~Love = War``)."""
    out = []
    for text in texts:
        m = _WHERE.match(text)
        if not m:
            raise CommandLineError(None, f"--where {text!r} is not FIELD=VALUE, FIELD~TEXT, FIELD>=N or FIELD<=N",
                                   f"fields: {', '.join(FILTER_FIELDS)}")
        field, op, value = m.group(1).lower().replace("albumartist", "album_artist"), m.group(2), m.group(3).strip()
        if field not in FILTER_FIELDS:
            raise CommandLineError(None, f"--where: unknown field {field!r}", f"fields: {', '.join(FILTER_FIELDS)}")
        if op in (">=", "<=") or field in _NUMERIC:
            if field not in _NUMERIC:
                raise CommandLineError(None, f"--where {text!r}: {op} needs a number field ({', '.join(_NUMERIC)})")
            if op == "~":
                raise CommandLineError(None, f"--where {text!r}: {field} is a number: use =, >= or <=")
            try:
                value = int(value)
            except ValueError:
                raise CommandLineError(None, f"--where {text!r}: {field} must be a whole number") from None
        out.append(Filter(field, op, value))
    return tuple(out)


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
    if f.field in _NUMERIC:
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


def parse_terms(vocab: Vocabulary, tags: Sequence[str], not_tags: Sequence[str] = (),
                learned: Collection[str] = ()) -> tuple[Term, ...]:
    """Resolve tag names, groups and the names of ``learned`` tags (a learned tag stands for
    itself); an unknown name is an error that suggests close ones."""
    terms = []
    for text, negate in [(t, False) for t in tags] + [(t, True) for t in not_tags]:
        raw = vocab.resolve(text)
        if raw is None and tag_name(text) in learned:
            raw = [tag_name(text)]
        if raw is None:
            close = difflib.get_close_matches(tag_name(text), vocab.names() + sorted(learned), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else "run 'tagger tags' for the list"
            raise UsageError(None, f"unknown tag {text!r}", hint)
        terms.append(Term(text, tuple(raw), negate))
    if terms and all(t.negate for t in terms):
        raise UsageError(None, "--not needs at least one --tag to rank by")
    return tuple(terms)


def model_terms(library, model: StoredModel, tags: Sequence[str], not_tags: Sequence[str] = ()) -> tuple[Term, ...]:
    """``parse_terms`` for a stored model, with its learned tags. A name learned on another
    model is an error that says which, and how to learn it again on this one."""
    for text in [*tags, *not_tags]:
        name = tag_name(text)
        if model.vocabulary.resolve(text) is None and name not in model.learned:
            other = library.learned_tag_rows(name)
            if other:
                from tagger.learned import relearn_hint

                row = other[0]
                still = (f"; --model {row.model_name} ranks the {row.tracks} tracks it still scores"
                         if row.tracks else "")
                raise UsageError(None, f"{name!r} was learned on {row.model_name}, not on {model.name} "
                                 "(whose scores are ranked here)",
                                 f"learn it again on {model.name}: {relearn_hint(name, row.examples)}{still}")
    return parse_terms(model.vocabulary, tags, not_tags, model.learned)


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


def run_query(library, q: TrackQuery, model: StoredModel) -> list[QueryRow]:
    with library.engine.connect() as conn:
        not_ok = conn.execute(select(func.count()).select_from(tracks).where(tracks.c.status != "ok")).scalar_one()
        rows = conn.execute(compile_query(q, model, not_ok)).all()
    n = len(q.terms)
    return [QueryRow(rank, r.path, r.duration_s, r.format, float(r.score),
                     tuple(float(getattr(r, f"term_{i}")) for i in range(n)),
                     {k: getattr(r, k) for k in TRACK_METADATA if getattr(r, k) is not None})
            for rank, r in enumerate(rows, 1)]
