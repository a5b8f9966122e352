"""Parsing what a person typed into query objects: tag names, groups and learned tags into
terms, ``--where FIELD=VALUE`` into filters (tagger.store.query compiles and runs them)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Sequence

from tagger.errors import CommandLineError, UsageError, quoted
from tagger.model.vocab import Vocabulary, tag_name
from tagger.store.catalog import Store, StoredModel
from tagger.store.query import FILTER_FIELDS, NUMERIC_FIELDS, Filter, Term

LARGEST = 2**31 - 1  # the largest year or track number a --where can compare with
MAX_TEXT = 4096  # the longest text a --where can match (PATH_MAX; tag values are shorter)
_WHERE = re.compile(r"\s*(\w+)\s*(>=|<=|=|~)(.*)", re.S)  # the first operator after the field name


def parse_where(texts: Sequence[str]) -> tuple[Filter, ...]:
    """``FIELD=VALUE``, ``FIELD~TEXT``, ``FIELD>=N``, ``FIELD<=N`` → filters; bad ones are
    command-line errors (the value may itself hold =, ~ or >=: ``title~Love = War``)."""
    out = []
    for text in texts:
        m = _WHERE.match(text)
        if not m:
            raise CommandLineError(None, f"--where {quoted(text)} is not FIELD=VALUE, FIELD~TEXT, FIELD>=N or FIELD<=N",
                                   f"fields: {', '.join(FILTER_FIELDS)}")
        field, op, value = m.group(1).lower().replace("albumartist", "album_artist"), m.group(2), m.group(3).strip()
        if field not in FILTER_FIELDS:
            raise CommandLineError(None, f"--where: unknown field {quoted(field)}", f"fields: {', '.join(FILTER_FIELDS)}")
        if op in (">=", "<=") or field in NUMERIC_FIELDS:
            if field not in NUMERIC_FIELDS:
                raise CommandLineError(None, f"--where {quoted(text)}: {op} needs a number field ({', '.join(NUMERIC_FIELDS)})")
            if op == "~":
                raise CommandLineError(None, f"--where {quoted(text)}: {field} is a number: use =, >= or <=")
            try:
                value = int(value)
            except ValueError:
                raise CommandLineError(None, f"--where {quoted(text)}: {field} must be a whole number") from None
            if not -LARGEST <= value <= LARGEST:  # both databases hold these fields as 32-bit integers
                raise CommandLineError(None, f"--where {quoted(text)}: {field} must be a whole number "
                                       f"from -{LARGEST} to {LARGEST}")
        elif len(value) > MAX_TEXT:  # no tag value or path is longer
            raise CommandLineError(None, f"--where {quoted(text)}: the text is longer than {MAX_TEXT} characters")
        out.append(Filter(field, op, value))
    return tuple(out)


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
            raise UsageError(None, f"unknown tag {quoted(text)}", hint)
        terms.append(Term(text, tuple(raw), negate))
    if terms and all(t.negate for t in terms):
        raise UsageError(None, "--not needs at least one --tag to rank by")
    return tuple(terms)


def library_terms(library: Store, tags: Sequence[str], not_tags: Sequence[str] = (),
                  prefer: StoredModel | None = None) -> tuple[Term, ...]:
    """Tag names, groups and learned tags of every model that scored tracks, each name read
    from the first model that has it: ``prefer`` (--model), then the model that scored the most
    tracks, then the others by tracks scored. So ``jazz`` comes from the MSD model and ``piano``
    from the MTT one, and ``rock``, which both have, from ``prefer`` or the larger."""
    models = library.scored_models(prefer)
    if not models:
        library.model()  # raises: the database holds no tagged tracks yet
    terms = []
    for text, negate in [(t, False) for t in tags] + [(t, True) for t in not_tags]:
        owner = next((m for m in models if m.vocabulary.resolve(text) is not None or tag_name(text) in m.learned),
                     None)
        if owner is None:  # not a name of any model: the single-model errors, with every vocabulary's names
            _unknown(library, models, text)
        (term,) = parse_terms(owner.vocabulary, [text], [], owner.learned)
        terms.append(Term(term.text, term.raw, negate, owner))
    if terms and all(t.negate for t in terms):
        raise UsageError(None, "--not needs at least one --tag to rank by")
    return tuple(terms)


def _unknown(library: Store, models: Sequence[StoredModel], text: str) -> None:
    """Raise the error for a name no scoring model knows: learned on a model that scores no
    track now, or unknown (with the close names of every vocabulary)."""
    name = tag_name(text)
    other = library.learned_tag_rows(name)
    if other:
        from tagger.library.learned import relearn_hint

        row = other[0]
        raise UsageError(None, f"{name!r} was learned on {row.model_name}, which scores no track in this library now",
                         f"learn it again: {relearn_hint(name, row.examples)}")
    known = sorted({n for m in models for n in [*m.vocabulary.names(), *m.learned]})
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run 'tagger tags' for the list"
    raise UsageError(None, f"unknown tag {quoted(text)}", hint)


def model_terms(library: Store, model: StoredModel, tags: Sequence[str], not_tags: Sequence[str] = ()) -> tuple[Term, ...]:
    """``parse_terms`` for a stored model, with its learned tags. A name learned on another
    model is an error that says which, and how to learn it again on this one."""
    for text in [*tags, *not_tags]:
        name = tag_name(text)
        if model.vocabulary.resolve(text) is None and name not in model.learned:
            other = library.learned_tag_rows(name)
            if other:
                from tagger.library.learned import relearn_hint

                row = other[0]
                still = (f"; --model {row.model_name} ranks the {row.tracks} tracks it still scores"
                         if row.tracks else "")
                raise UsageError(None, f"{name!r} was learned on {row.model_name}, not on {model.name} "
                                 "(whose scores are ranked here)",
                                 f"learn it again on {model.name}: {relearn_hint(name, row.examples)}{still}")
    return parse_terms(model.vocabulary, tags, not_tags, model.learned)


