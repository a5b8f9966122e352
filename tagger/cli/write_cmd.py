"""``tagger write``: put predicted tags into the files' metadata, undo it, or remove it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from tagger.cli.common import DB_OPTION, db_path, stdout_console
from tagger.library import Library
from tagger.writer import FileOutcome, WriteOptions, parse_fields, remove_tags, select_tracks, undo, write_tracks

TOP_OPTION = typer.Option(5, "--top", min=1, help="Tags written per file at most.")
MIN_OPTION = typer.Option(0.2, "--min", min=0.0, max=1.0, help="Write only tags with at least this probability.")
FIELDS_OPTION = typer.Option("tags", "--fields",
                             help="Comma list: tags (tagger's own fields, always), mood, genre, grouping. "
                                  "mood/genre/grouping are filled only where empty unless --force.")


def write_command(
    paths: list[Path] = typer.Argument(None, help="Only tracks under these folders/files (default: all).",
                                       show_default=False),
    tag: list[str] = typer.Option([], "--tag", "-t", help="Only tracks matching this tag (as in query).",
                                  show_default=False),
    not_tag: list[str] = typer.Option([], "--not", help="As in query.", show_default=False),
    match_min: float = typer.Option(None, "--match-min", min=0.0, max=1.0, show_default=False,
                                    help="With --tag: only tracks whose query score reaches this."),
    top: int = TOP_OPTION,
    min_prob: float = MIN_OPTION,
    fields: str = FIELDS_OPTION,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show every field that would change; write nothing."),
    force: bool = typer.Option(False, "--force", help="Rewrite files tagged by the same model, and "
                                                      "overwrite existing mood/genre/grouping."),
    remove: bool = typer.Option(False, "--remove", help="Delete tagger's own fields (nothing else)."),
    undo_: bool = typer.Option(False, "--undo", help="Restore what the last write (or --run N) changed."),
    run: int = typer.Option(None, "--run", show_default=False, help="With --undo: the run to undo."),
    db: str = DB_OPTION,
) -> None:
    """Write each selected track's top tags into its file (TAGGER_TAGS, TAGGER_SCORES,
    TAGGER_MODEL; optionally MOOD, GENRE, GROUPING)."""
    library = Library(db_path(db), create=False)
    console = stdout_console()
    report = _Reporter(console, dry_run)
    if undo_:
        run_id, outcomes = undo(library, run, dry_run, report)
        if run_id is None:
            console.print("nothing to undo")
            return
        report.summary(f"undo of run {run_id}")
        return
    rows = select_tracks(library, [str(p) for p in paths or []], tag, not_tag, match_min)
    if remove:
        remove_tags(library, rows, dry_run, report)
        report.summary("remove")
        return
    options = WriteOptions(top=top, min_prob=min_prob, fields=parse_fields(fields), force=force, dry_run=dry_run)
    write_tracks(library, rows, options, report)
    report.summary("write")


class _Reporter:
    def __init__(self, console, dry_run: bool) -> None:
        self.console, self.dry_run = console, dry_run
        self.counts: dict[str, int] = {}

    def __call__(self, o: FileOutcome) -> None:
        self.counts[o.status] = self.counts.get(o.status, 0) + 1
        if o.status == "would-write":
            self.console.print(escape(o.path), style="bold", soft_wrap=True)
            for f, old, new in o.changes:
                self.console.print(f"  {f}: {_show(old)} → {_show(new)}", soft_wrap=True)
        elif o.status in ("failed", "skipped"):
            self.console.print(f"{o.status}: {escape(o.path)}: {escape(o.reason)}",
                               style="red" if o.status == "failed" else "yellow", soft_wrap=True)
        elif o.reason:
            self.console.print(f"note: {escape(o.path)}: {escape(o.reason)}", style="yellow", soft_wrap=True)

    def summary(self, what: str) -> None:
        order = ("would-write", "written", "unchanged", "skipped", "failed")
        parts = [f"{k} {self.counts[k]}" for k in order if self.counts.get(k)]
        self.console.print(f"{what}: " + (" · ".join(parts) if parts else "no tracks selected")
                           + (" (dry run: nothing was changed)" if self.dry_run else ""))
        if self.counts.get("written") and what in ("write", "remove"):
            self.console.print("undo with: tagger write --undo", style="dim")


def _show(values: list[str]) -> str:
    return "(empty)" if not values else escape(" | ".join(values))
