"""``tagger scan PATH...``: tag a music library into the database."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn,
                           TextColumn, TimeRemainingColumn)
from rich.text import Text

from tagger.cli.common import DB_OPTION, db_path, parse_chunks, stderr_console, stdout_console
from tagger.cli.write_cmd import FIELDS_OPTION, MIN_OPTION, TOP_OPTION
from tagger.errors import UsageError
from tagger.modelfile import DEFAULT_MODEL
from tagger.writer import WriteOptions, parse_fields
from tagger.scan import DEFAULT_CHUNKS, ScanOptions, ScanPlan, ScanProgress, ScanSummary, scan


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        hours = task.fields.get("hours", 0.0)
        return Text(f"{hours:.2f} h audio  {speed or 0:.1f} tracks/s", style="cyan")


def scan_command(
    paths: list[Path] = typer.Argument(..., help="Folders (or files) to scan.", show_default=False),
    db: str = DB_OPTION,
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Built-in model name or model file."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Chunks per model batch."),
    workers: int = typer.Option(None, "--workers", min=0, show_default=False,
                                help="Decoding processes (default: from the CPU count); 0 decodes "
                                     "in the main process."),
    threads: int = typer.Option(None, "--threads", min=1, show_default=False,
                                help="CPU threads for the model (default: every core)."),
    chunks: str = typer.Option(str(DEFAULT_CHUNKS), "--chunks",
                               help="3 s chunks per track: N evenly spaced ones, or 'all'."),
    force: bool = typer.Option(False, "--force", help="Rescan every file, changed or not."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be scanned; change nothing."),
    hidden: bool = typer.Option(False, "--hidden", help="Also scan hidden files and folders."),
    compile: str = typer.Option("auto", "--compile",
                                help="torch.compile the model on CPU: auto (for large scans), yes, no."),
    write_tags: bool = typer.Option(False, "--write-tags", help="Also write the top tags into each "
                                    "file's metadata (as 'tagger write'; undo with 'tagger write --undo')."),
    top: int = TOP_OPTION,
    min_prob: float = MIN_OPTION,
    fields: str = FIELDS_OPTION,
) -> None:
    """Tag every audio file under PATHS and store the results; rescans only touch what changed."""
    if compile not in ("auto", "yes", "no"):
        raise UsageError(None, f"--compile must be auto, yes or no, not {compile!r}")
    options = ScanOptions(model=model, device=device, batch_size=batch_size, workers=workers, threads=threads,
                          chunks=parse_chunks(chunks), force=force, dry_run=dry_run,
                          include_hidden=hidden, compile=compile,
                          write=WriteOptions(top=top, min_prob=min_prob, fields=parse_fields(fields),
                                             force=force) if write_tags and not dry_run else None)
    out, err = stdout_console(), stderr_console()
    interactive = err.is_terminal
    progress = Progress(SpinnerColumn(), TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
                        _Rate(), TimeRemainingColumn(), console=err, transient=True,
                        disable=not interactive)
    task = None

    def on_plan(plan: ScanPlan) -> None:
        nonlocal task
        for path, reason in plan.problems:
            err.print(f"skipped {escape(path)}: {escape(reason)}", style="yellow")
        if dry_run:
            for f in plan.todo:
                out.print(escape(f.path), soft_wrap=True)
        task = progress.add_task("scan", total=len(plan.todo), hours=0.0)

    def on_progress(p: ScanProgress) -> None:
        if p.error and interactive:  # live, above the bar; the summary lists failures either way
            progress.console.print(f"failed {escape(p.path)}: {escape(p.error)}", style="red", soft_wrap=True)
        progress.update(task, completed=p.done, hours=p.audio_s / 3600)

    with progress:
        summary = scan([str(p) for p in paths], db_path(db), options, on_progress, on_plan)
    _print_summary(out, summary, dry_run)
    if summary.interrupted:
        print(f"tagger: interrupted; {summary.scanned + len(summary.failed)} tracks were saved. "
              "Run the same command again to continue.", file=sys.stderr)
        raise typer.Exit(130)


def _print_summary(out, s: ScanSummary, dry_run: bool) -> None:
    p = s.plan
    verb = "would scan" if dry_run else "scanned"
    out.print(f"{len(p.todo) if dry_run else s.scanned} {verb} · new {p.new} · changed {p.changed} · "
              f"unchanged {p.unchanged} · moved {len(p.moved)} · missing {len(p.missing)} · "
              f"failed {len(s.failed)}")
    if dry_run or not (s.scanned or s.failed):
        return
    t = max(s.elapsed_s, 1e-9)
    out.print(f"{s.audio_s / 3600:.2f} h of audio in {t:.1f} s: {(s.scanned + len(s.failed)) / t:.2f} tracks/s, "
              f"{s.audio_s / t:.0f}× real time · model {s.model_name} on {s.device}"
              f"{' (compiled)' if s.compiled else ''}, {s.chunks} chunks, {100 * s.model_s / t:.0f}% of the time "
              f"in the model, {100 * s.wait_s / t:.0f}% waiting for decoding ({s.workers} workers)")
    if s.written:
        out.print("tags written into files: " + " · ".join(f"{k} {v}" for k, v in s.written.items()))
    if s.compile_error:
        out.print(f"note: torch.compile was not used ({escape(s.compile_error)})", style="yellow")
    for path, reason in s.failed[:20]:
        out.print(f"  failed: {escape(path)}: {escape(reason)}", style="red", soft_wrap=True)
    if len(s.failed) > 20:
        out.print(f"  … and {len(s.failed) - 20} more (tagger stats lists them)")
