"""``tagger learn``: teach the library a tag of your own from example tracks; list and remove them."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from tagger.cli.common import DB_OPTION, SEED_MAX, db_path, plural, stdout_console, warn
from tagger.errors import CommandLineError, UsageError, quoted

# tagger.store.catalog (SQLAlchemy, numpy), and tagger.library.learned load when the command
# runs: every command's --help imports this module

EXAMPLES_METAVAR = "PATH|M3U|tag:TAG[>=P]"


def learn_command(
    name: str = typer.Argument(None, metavar="NAME", show_default=False,
                               help="The tag to learn (or, with --remove, to remove)."),
    like: list[str] = typer.Option([], "--like", metavar=EXAMPLES_METAVAR, show_default=False,
                                   help="Tracks that have the tag: files or folders (their tagged tracks), an "
                                        ".m3u/.m3u8 playlist, or a query tag:TAG[,TAG…][>=P] (tracks scoring at "
                                        "least P, default 0.5, for those tags). Repeat to add more."),
    unlike: list[str] = typer.Option([], "--unlike", metavar=EXAMPLES_METAVAR, show_default=False,
                                     help="Tracks that do not have it, named the same ways (default: a random "
                                          "sample of the rest of the library stands in for them)."),
    model: str = typer.Option(None, "--model", "-m", metavar="NAME", show_default=False,
                              help="Whose embeddings to learn on (default: the model that scored most tracks)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, metavar="N", help="Seed of the random sample and the folds."),
    list_: bool = typer.Option(False, "--list", help="List the learned tags."),
    remove: bool = typer.Option(False, "--remove", help="Remove learned tag NAME and its scores."),
    as_json: bool = typer.Option(False, "--json", help="With --list: print JSON."),
    db: str = DB_OPTION,
) -> None:
    """Learn a tag of your own from example tracks.

    A classifier on the model's embeddings, cross-validated, that scores every track now and
    every track scanned later. It then works as any tag does: query --tag NAME (also with the
    model's tags), show, tags, write. Learning NAME again replaces it.

    \b
    tagger learn calm --like ~/Music/Calm --like evening.m3u
    tagger learn my_drums --like 'tag:drums>=0.8' --unlike ~/Music/Jazz
    tagger learn --list
    tagger learn --remove calm"""
    _check_combination(name, like, unlike, list_, remove, as_json)
    from tagger.store.catalog import Store

    library = Store(db_path(db), create=False, check=False if list_ else "cheap")
    if list_:
        _list(library, as_json)
        return
    with library.writing():  # a scan storing tracks meanwhile would miss the tag's scores
        if remove:
            _remove(library, name)
        else:
            _learn(library, name, like, unlike, model, seed)


def _check_combination(name, like, unlike, list_: bool, remove: bool, as_json: bool) -> None:
    if list_ and (name or like or unlike or remove):
        raise CommandLineError(None, "--list takes no NAME, --like, --unlike or --remove", "tagger learn --list")
    if as_json and not list_:
        raise CommandLineError(None, "--json goes with --list", "tagger learn --list --json")
    if remove and (like or unlike):
        raise CommandLineError(None, "--remove takes only NAME", "tagger learn --remove NAME")
    if not list_ and not name:
        raise CommandLineError(None, "which tag? give NAME", "tagger learn NAME --like PATH, or tagger learn --list")
    if not list_ and not remove and not like:
        raise CommandLineError(None, f"learning {quoted(name)} needs examples: --like {EXAMPLES_METAVAR}",
                         "see 'tagger learn --help'")


def _learn(library, name: str, like: list[str], unlike: list[str], model_name: str | None, seed: int) -> None:
    from tagger.library import examples
    from tagger.library.learned import check_name, learn

    from tagger.library.embedding import embedding_model

    model = embedding_model(library, model_name)
    name = check_name(name, model)
    liked = examples.resolve(library, model, like, "--like")
    unliked = examples.resolve(library, model, unlike, "--unlike") if unlike else None
    for option, chosen in (("--like", liked), ("--unlike", unliked)):
        if chosen is not None and chosen.other_model:
            if not chosen.ids:
                raise UsageError(None, f"no {option} track is scored by {model.name}",
                                 "--model NAME learns on another model's tracks; nothing was learned")
            warn(f"warning: {plural(chosen.other_model, option + ' track')} not scored by "
                 f"{model.name} left out (--model chooses the model)")
    specs = {"like_specs": liked.specs, "unlike_specs": unliked.specs if unliked else []}
    report = learn(library, model, name, liked.ids, unliked.ids if unliked else None, seed, specs)
    for note in report.notes:
        warn(f"warning: {note}")
    console = stdout_console()
    against = (f"{plural(report.negatives, 'other track')} (a random sample of the library standing in for "
               "unliked ones)" if report.sampled else plural(report.negatives, "unliked track"))
    verb = "re-learned" if report.replaced else "learned"
    console.print(f"{verb} [bold]{escape(name)}[/bold] on {escape(report.model)}: "
                  f"{plural(report.positives, 'liked track')} against {against}")
    if report.roc_auc is not None:
        console.print(f"cross-validated ROC-AUC {report.roc_auc:.3f} ({report.folds}-fold, "
                      f"{report.positives + report.negatives} examples)")
    console.print(f"scored {plural(report.scored, 'track')}, {report.applies} at p ≥ 0.5: "
                  f"tagger query --tag {escape(name)}")


def _remove(library, name: str) -> None:
    from tagger.model.vocab import tag_name

    name = tag_name(name)
    rows = library.learned_tag_rows(name)
    if not rows:
        known = [r.name for r in library.learned_tag_rows()]
        raise UsageError(None, f"no learned tag named {quoted(name)}",
                         f"learned tags here: {', '.join(known)}" if known else "this library has no learned tags")
    library.remove_learned(name)
    print(f"removed learned tag {name} ({plural(sum(r.tracks for r in rows), 'track score')}); files it was "
          "written into keep it until 'tagger write --force'")


def _list(library, as_json: bool) -> None:
    from tagger.library.learned import age, relearn_hint

    rows = library.learned_tag_rows()
    scoring = {mid for mid, *_ in library.model_counts()}
    main = _main_model(library)
    items = []
    for r in rows:
        ex = r.examples
        stale = None
        if main is not None and r.model_id not in scoring:
            stale = (f"learned on {r.model_name}, which scores no track here now (the library is scored by "
                     f"{main.name}): {relearn_hint(r.name, ex)}")
        items.append({"name": r.name, "model": r.model_name, "tracks": r.tracks, "like": ex.get("like"),
                      "unlike": ex.get("unlike"), "sampled_negatives": ex.get("sampled_negatives"),
                      "roc_auc": ex.get("roc_auc"), "learned_at": age(r.created_at),
                      "like_specs": ex.get("like_specs", []), "unlike_specs": ex.get("unlike_specs", []),
                      "stale": stale})
    if as_json:
        print(json.dumps(items, indent=1, ensure_ascii=False))
        return
    console = stdout_console()
    if not items:
        console.print("no learned tags; teach one with: tagger learn NAME --like PATH")
        return
    table = Table(show_edge=False)
    for col, just in (("name", "left"), ("model", "left"), ("tracks", "right"), ("examples", "left"),
                      ("ROC-AUC", "right"), ("learned", "left")):
        table.add_column(col, justify=just)
    for it in items:
        others = "random" if it["sampled_negatives"] else "unliked"
        auc = "—" if it["roc_auc"] is None else f"{it['roc_auc']:.3f}"
        table.add_row(escape(it["name"]), escape(it["model"]), str(it["tracks"]),
                      f"{it['like']} liked, {it['unlike']} {others}", auc, it["learned_at"])
    console.print(table)
    for it in items:
        if it["stale"]:
            console.print(f"stale: {escape(it['name'])}: {escape(it['stale'])}", style="yellow")


def _main_model(library):
    try:
        return library.model()
    except UsageError:  # no tagged tracks at all
        return None
