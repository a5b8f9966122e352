"""``tagger map``: the library as one self-contained HTML page to look at, search and play from."""

from __future__ import annotations

import enum

import typer

from tagger.cli.common import DB_OPTION, db_path, plural, printable, warn


class Link(str, enum.Enum):
    relative = "relative"
    absolute = "absolute"


class Projection(str, enum.Enum):
    pca = "pca"
    tsne = "tsne"


def map_command(
    out: str = typer.Option("library-map.html", "--out", "-o", metavar="FILE", help="The page to write."),
    color: str = typer.Option(None, "--color", "-c", metavar="TAG|genre|mood", show_default=False,
                              help="What the points are coloured by when the page opens: genre (the "
                                   "default), mood, a tag, a group or a learned tag. The page can change it."),
    where: list[str] = typer.Option([], "--where", "-w", metavar="FIELD=VALUE", show_default=False,
                                    help="Only tracks whose own metadata matches, as in tagger query "
                                         "(artist=NAME, genre~jazz, year>=1990, path~/live/). Repeat: all must hold."),
    model: str = typer.Option(None, "--model", "-m", metavar="NAME", show_default=False,
                              help="Whose embeddings and scores to map (default: the model that scored most tracks)."),
    link: Link = typer.Option(Link.relative, "--link",
                              help="How the page's players reach the files: relative to the page (keep it "
                                   "beside the library; it moves with it) or absolute file:// URLs."),
    projection: Projection = typer.Option(Projection.pca, "--projection",
                                          help="pca (fast, any size) or tsne (keeps neighbourhoods better; "
                                               "needs openTSNE; slow past ~20,000 tracks)."),
    db: str = DB_OPTION,
) -> None:
    """Write the library as a map: one offline HTML page of every track, placed by its embedding.

    Coloured by a tag, genre or mood; hover, play, search, filter and select into an m3u
    playlist; the library in figures."""
    # numpy and SQLAlchemy: imported here, not needed for --help
    from tagger.library.map import write_map
    from tagger.library.query import parse_where
    from tagger.store.catalog import Store

    filters = parse_where(where)
    summary = write_map(Store(db_path(db), create=False), out, model, filters, color, link.value, projection.value)
    print(f"wrote {printable(str(summary.path))}: {plural(summary.tracks, 'track')} of {summary.model}, "
          f"{summary.bytes / 1e6:.1f} MB, in {summary.seconds:.1f} s")
    if summary.filtered_out:
        warn(f"{plural(summary.filtered_out, 'track')} left out by --where")
    if summary.other_models:
        warn(f"{plural(summary.other_models, 'track')} not scored by {summary.model} are not on the map "
             "(--model NAME maps another model's tracks)")
    if summary.failed:
        warn(f"{plural(summary.failed, 'file')} that failed to decode are not on the map (the page lists them)")
