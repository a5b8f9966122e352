"""``tagger write``: put predicted tags into the files' metadata, undo it, or remove it."""

from __future__ import annotations

import copy
from contextlib import nullcontext
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from tagger.cli.common import COUNT_MAX, DB_OPTION, SafeConsole, db_path, stdout_console
from tagger.errors import CommandLineError
from tagger.files.fields import FIELD_CHOICES

# tagger.store.catalog (SQLAlchemy, numpy) and tagger.library.writer (mutagen) load when the command runs:
# every command's --help imports this module

# metavars name what a value is; without them typer shows its internal types (<list[str]>, <bool>)
TOP_OPTION = typer.Option(5, "--top", min=1, metavar="N", help="Tags written per file at most.")
MIN_OPTION = typer.Option(0.2, "--min", min=0.0, max=1.0, metavar="P",
                          help="Write only tags with at least this probability. Learned tags (tagger "
                               "learn) need at least 0.5, their own threshold, or P if higher.")
FIELDS_OPTION = typer.Option("tags", "--fields", metavar=",".join(FIELD_CHOICES),
                             help="Comma list of fields to write: tags (tagger's own fields, always), "
                                  "mood, genre, grouping. mood/genre/grouping are filled only where empty "
                                  "unless --force.")
FLAG = ""  # the metavar of an on/off option: it takes no value


def _db_option():
    option = copy.copy(DB_OPTION)
    option.metavar = "DB"
    return option


def write_command(
    paths: list[Path] = typer.Argument(None, metavar="PATH", show_default=False,
                                       help="Only tracks under these folders/files (default: all)."),
    tag: list[str] = typer.Option([], "--tag", "-t", metavar="TAG", show_default=False,
                                  help="Only tracks matching this tag (as in query)."),
    not_tag: list[str] = typer.Option([], "--not", metavar="TAG", show_default=False, help="As in query."),
    match_min: float = typer.Option(None, "--match-min", min=0.0, max=1.0, metavar="SCORE", show_default=False,
                                    help="With --tag: only tracks whose query score reaches this."),
    top: int = TOP_OPTION,
    min_prob: float = MIN_OPTION,
    fields: str = FIELDS_OPTION,
    dry_run: bool = typer.Option(False, "--dry-run", metavar=FLAG,
                                 help="Show every field that would change; write nothing."),
    force: bool = typer.Option(False, "--force", metavar=FLAG, help="Rewrite files tagged by the same model, "
                                                                    "and overwrite existing mood/genre/grouping."),
    break_hardlinks: bool = typer.Option(False, "--break-hardlinks", metavar=FLAG,
                                         help="Also write files that have other hard links: this name gets "
                                              "its own tagged copy, the other names keep the old file."),
    remove: bool = typer.Option(False, "--remove", metavar=FLAG, help="Delete tagger's own fields (nothing else)."),
    undo_: bool = typer.Option(False, "--undo", metavar=FLAG,
                               help="Restore what the last write (or --run N) changed."),
    run: int = typer.Option(None, "--run", min=1, max=COUNT_MAX, metavar="N", show_default=False, help="With --undo: the run to undo."),
    db: str = _db_option(),
) -> None:
    """Write each selected track's top tags into its file (undo with --undo).

    tagger's own fields TAGGER_TAGS, TAGGER_SCORES and TAGGER_MODEL; MOOD, GENRE and GROUPING
    with --fields. Only the tag block changes: the audio stays byte for byte."""
    _check_combination(paths, tag, not_tag, remove, undo_, run)
    from tagger.library.writer import (
        WriteOptions,
        left_to_undo,
        parse_fields,
        remove_tags,
        select_tracks,
        undo,
        write_tracks,
    )
    from tagger.store.catalog import Store

    parsed_fields = parse_fields(fields)  # a bad --fields is a command line error, before any work
    library = Store(db_path(db), create=False, check=False if dry_run else "cheap")
    console = stdout_console()
    report = _Reporter(console, _stderr_console(), dry_run)
    # one writer per database: a scan or another write must not rewrite the same files meanwhile
    with nullcontext() if dry_run else library.writing():
        if undo_:
            run_id, outcomes = undo(library, run, dry_run, report, break_hardlinks)
            if run_id is None:
                console.print("nothing to undo")
                return
            report.summary(f"undo of run {run_id}")
            report.left_to_undo(run_id, len(left_to_undo(outcomes)))
        else:
            rows = select_tracks(library, [str(p) for p in paths or []], tag, not_tag, match_min)
            if remove:
                remove_tags(library, rows, dry_run, report, break_hardlinks)
                report.summary("remove")
            else:
                options = WriteOptions(top=top, min_prob=min_prob, fields=parsed_fields, force=force,
                                       dry_run=dry_run, break_hardlinks=break_hardlinks)
                write_tracks(library, rows, options, report)
                report.summary("write")
    if report.counts.get("failed"):  # scripts must see it; a skipped file is tagger's choice, not a failure
        raise typer.Exit(1)


def _check_combination(paths, tag, not_tag, remove: bool, undo_: bool, run: int | None) -> None:
    if run is not None and not undo_:
        raise CommandLineError(None, "--run goes with --undo", "tagger write --undo --run N")
    if undo_ and (paths or tag or not_tag or remove):
        raise CommandLineError(None, "--undo restores a whole run; it takes no PATH, --tag, --not or --remove",
                               "tagger write --undo [--run N]")


def _stderr_console() -> Console:
    """Like stdout_console, on stderr: a failed file's line stays whole in a log."""
    console = SafeConsole(stderr=True, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = 100_000
    return console


class _Reporter:
    """Prints each file's outcome as it comes: changes and notes on stdout with the summary,
    files skipped or failed on stderr (what a script or a log must not miss)."""

    ORDER = ("would-write", "written", "unchanged", "already-tagged", "no-tags", "skipped", "failed")

    def __init__(self, console, errors, dry_run: bool) -> None:
        self.console, self.errors, self.dry_run = console, errors, dry_run
        self.counts: dict[str, int] = {}

    def __call__(self, o) -> None:  # a tagger.library.writer.FileOutcome
        self.counts[o.status] = self.counts.get(o.status, 0) + 1
        if o.status == "would-write":
            self.console.print(escape(o.path), style="bold", soft_wrap=True)
            for f, old, new in o.changes:
                self.console.print(f"  {f}: {_show(old)} → {_show(new)}", soft_wrap=True)
        elif o.status in ("failed", "skipped"):
            self.errors.print(f"{o.status}: {escape(o.path)}: {escape(o.reason)}",
                              style="red" if o.status == "failed" else "yellow", soft_wrap=True)
        elif o.reason:
            self.console.print(f"note: {escape(o.path)}: {escape(o.reason)}", style="yellow", soft_wrap=True)

    def summary(self, what: str) -> None:
        parts = [f"{k} {self.counts[k]}" for k in self.ORDER if self.counts.get(k)]
        self.console.print(f"{what}: " + (" · ".join(parts) if parts else "no tracks selected")
                           + (" (dry run: nothing was changed)" if self.dry_run else ""))
        already = self.counts.get("already-tagged")
        if already:  # one line for them all: a second run over a library is the usual case
            self.console.print(f"{already} file{'s were' if already > 1 else ' was'} tagged by this model "
                               "already: tagger's own fields left as they are (--force rewrites them)",
                               style="dim")
        if self.counts.get("no-tags"):
            n = self.counts["no-tags"]
            self.console.print(f"{n} file{'s have' if n > 1 else ' has'} no tag at or above --min: left as "
                               f"{'they are' if n > 1 else 'it is'}", style="dim")
        if self.counts.get("written") and what in ("write", "remove"):
            self.console.print("undo with: tagger write --undo", style="dim")

    def left_to_undo(self, run_id: int, left: int) -> None:
        if left and not self.dry_run:
            self.errors.print(f"run {run_id} is undone in part: {left} file{'s' if left > 1 else ''} left "
                              f"(above); once fixed, 'tagger write --undo --run {run_id}' restores "
                              f"{'them' if left > 1 else 'it'}", style="yellow", soft_wrap=True)


def _show(values: list[str]) -> str:
    return "(empty)" if not values else escape(" | ".join(values))
